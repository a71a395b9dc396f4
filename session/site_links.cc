#include "session/site_links.h"

#include <bpf/bpf.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <thread>

#include "absl/strings/str_cat.h"
#include "base/errno.h"
#include "base/status_macros.h"
#include "bpf/probe_abi.h"

namespace goerrprof::profiler {

absl::Status SiteLinks::Attach(const bpf_program* prog, const ProbeTarget& target,
                               absl::Span<const uint64_t> offsets,
                               absl::Span<const uint64_t> cookies,
                               absl::Span<const uint64_t> ips, bool multi, int link_gen_fd) {
  Remove();
  prog_ = prog;
  target_ = &target;
  multi_ = multi;
  gen_fd_ = link_gen_fd;
  offsets_.assign(offsets.begin(), offsets.end());
  ips_.assign(ips.begin(), ips.end());
  cookies_.clear();
  // The planner's cookies carry no tags: generation 0, shared.
  for (uint64_t c : cookies) cookies_.push_back(c & ~GEP_COOKIE_TAGS);
  state_.assign(offsets.size(), kShared);
  solo_.clear();
  solo_.resize(offsets.size());
  shard_of_.assign(offsets.size(), 0);
  const size_t per = multi ? kShardSize : std::max<size_t>(1, offsets.size());
  for (size_t first = 0; first < offsets.size(); first += per) {
    Shard& shard = shards_.emplace_back();
    size_t n = std::min(per, offsets.size() - first);
    for (size_t i = first; i < first + n; ++i) {
      shard.probes.push_back(i);
      shard.in_link.push_back(i);
      shard_of_[i] = static_cast<uint32_t>(shards_.size() - 1);
    }
    shard.link = std::make_unique<ProbeLinks>();
    RETURN_IF_ERROR(shard.link->Attach(prog, target, absl::MakeConstSpan(offsets_).subspan(first, n),
                                       absl::MakeConstSpan(cookies_).subspan(first, n), multi));
  }
  return absl::OkStatus();
}

absl::Status SiteLinks::SwapShard(Shard& shard) {
  const bool gen = !shard.gen;
  std::vector<uint64_t> offsets, cookies;
  std::vector<size_t> kept;
  for (size_t i : shard.probes) {
    if (state_[i] != kShared) continue;
    kept.push_back(i);
    offsets.push_back(offsets_[i]);
    cookies.push_back(cookies_[i] | (gen ? GEP_COOKIE_F_GEN : 0));
  }
  // The probes going off are ignored by the program from now on (no
  // generation matches kGenOff): until the old link is gone each hit there
  // pays the trap alone, not the program's stack walk and record. The new
  // link's attach may wait for an RCU grace period (tens of ms, with a
  // storm trapping all the while).
  std::vector<size_t> dropped;
  for (size_t i : shard.in_link) {
    if (std::find(kept.begin(), kept.end(), i) == kept.end()) dropped.push_back(i);
  }
  const uint32_t old_gen = shard.gen ? 1 : 0;
  if (absl::Status s = SetGeneration(dropped, kGenOff); !s.ok()) {
    SetGeneration(dropped, old_gen).IgnoreError();  // the old link counts them still
    return s;
  }
  auto next = std::make_unique<ProbeLinks>();
  if (!offsets.empty()) {
    if (absl::Status s = next->Attach(prog_, *target_, offsets, cookies, true); !s.ok()) {
      // The old link stays, and counts them again.
      if (absl::Status back = SetGeneration(dropped, old_gen); !back.ok()) {
        return absl::InternalError(absl::StrCat(s.message(), "; and their hits stay ignored: ",
                                                back.message()));
      }
      return s;
    }
  }
  // Each kept probe now counts through the new link only; then the old
  // link goes (its uprobes first, then a grace period).
  if (absl::Status s = SetGeneration(kept, gen ? 1 : 0); !s.ok()) {
    // Back to the old link for all of them; the new one's hits are stale.
    SetGeneration(kept, old_gen).IgnoreError();
    SetGeneration(dropped, old_gen).IgnoreError();
    Retire(std::move(next), {});
    return s;
  }
  // The old link's uprobes for the probes just taken off are still in
  // until it is gone: none of them is put back before (a solo link counts
  // whatever the generation).
  Retire(std::move(shard.link), std::move(dropped));
  shard.link = std::move(next);
  shard.in_link = std::move(kept);
  shard.gen = gen;
  ++swaps_;
  return absl::OkStatus();
}

absl::Status SiteLinks::SetGeneration(absl::Span<const size_t> probes, uint32_t gen) {
  for (size_t i : probes) {
    if (bpf_map_update_elem(gen_fd_, &ips_[i], &gen, BPF_ANY) != 0) {
      return absl::InternalError(absl::StrCat("link generation map: ", Errno(errno)));
    }
  }
  return absl::OkStatus();
}

absl::Status SiteLinks::Detach(absl::Span<const size_t> probes) {
  std::vector<uint32_t> swap;
  for (size_t i : probes) {
    if (i >= state_.size() || state_[i] == kOff) continue;
    if (state_[i] == kSolo) {
      Retire(std::move(solo_[i]), {i});
    } else if (multi_) {
      swap.push_back(shard_of_[i]);
    } else {
      Retire(shards_[0].link->Release(i), {i});
    }
    state_[i] = kOff;
  }
  std::sort(swap.begin(), swap.end());
  swap.erase(std::unique(swap.begin(), swap.end()), swap.end());
  for (uint32_t k : swap) {
    absl::Status s = SwapShard(shards_[k]);
    if (s.ok()) continue;
    // The old link still traps them: on, as far as anyone asks.
    for (size_t i : probes) {
      if (i < state_.size() && state_[i] == kOff && multi_ && shard_of_[i] == k &&
          std::find(shards_[k].in_link.begin(), shards_[k].in_link.end(), i) !=
              shards_[k].in_link.end()) {
        state_[i] = kShared;
      }
    }
    return s;
  }
  return absl::OkStatus();
}

absl::Status SiteLinks::Reattach(absl::Span<const size_t> probes) {
  // All or none: a site half back on would be taken as off.
  for (size_t i : probes) {
    if (i < state_.size() && state_[i] == kOff && StillCounted(i)) {
      return absl::UnavailableError(
          absl::StrCat("probe ", i, ": its old link is still being removed"));
    }
  }
  for (size_t i : probes) {
    if (i >= state_.size() || state_[i] != kOff) continue;
    auto link = std::make_unique<ProbeLinks>();
    uint64_t offset = offsets_[i], cookie = cookies_[i] | GEP_COOKIE_F_SOLO;
    RETURN_IF_ERROR(link->Attach(prog_, *target_, absl::MakeConstSpan(&offset, 1),
                                 absl::MakeConstSpan(&cookie, 1), multi_));
    solo_[i] = std::move(link);
    state_[i] = kSolo;
  }
  return absl::OkStatus();
}

void SiteLinks::PruneRetired() {
  // The list stays as long as removals overlap.
  std::erase_if(retiring_, [](Retiring& r) {
    return r.done.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
  });
}

bool SiteLinks::StillCounted(size_t probe) {
  PruneRetired();
  for (const Retiring& r : retiring_) {
    if (std::find(r.probes.begin(), r.probes.end(), probe) != r.probes.end()) return true;
  }
  return false;
}

void SiteLinks::Retire(std::unique_ptr<ProbeLinks> link, std::vector<size_t> probes) {
  if (!link) return;
  PruneRetired();
  retiring_.push_back(
      {std::async(std::launch::async, [l = std::move(link)] { l->Remove(); }), std::move(probes)});
}

void SiteLinks::Remove() {
  for (Retiring& r : retiring_) r.done.wait();
  retiring_.clear();
  std::vector<std::unique_ptr<ProbeLinks>> links;
  for (Shard& s : shards_) {
    if (s.link) links.push_back(std::move(s.link));
  }
  for (auto& l : solo_) {
    if (l) links.push_back(std::move(l));
  }
  shards_.clear();
  solo_.clear();
  if (links.size() <= 1) return;  // the destructor below removes it
  // Removing a uprobe_multi link waits for a grace period; several links
  // waiting at once share them.
  const size_t n = std::min<size_t>(links.size(), 16);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < n; ++t) {
    threads.emplace_back([&links, t, n] {
      for (size_t i = t; i < links.size(); i += n) links[i]->Remove();
    });
  }
  for (std::thread& t : threads) t.join();
}

size_t SiteLinks::probes_attached() const {
  size_t n = 0;
  for (State s : state_) n += s != kOff;
  return n;
}

}  // namespace goerrprof::profiler
