#include "session/error_program.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>

#include <algorithm>
#include <chrono>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/errno.h"
#include "base/status_macros.h"
#include "bpf/errors.skel.h"
#include "session/bpf_session.h"
#include "session/kernel_features.h"
#include "session/libbpf_log.h"
#include "session/shared_maps.h"
#include "session/uprobe_attach.h"
#include "symbolizer/elf_file.h"

namespace goerrprof::profiler {

absl::StatusOr<std::shared_ptr<ErrorProgram>> ErrorProgram::Create(
    const SessionConfig& config, const ProbeTarget& target, const symbolizer::ElfFile& elf,
    bool shared, const Member& member) {
  std::shared_ptr<ErrorProgram> p(new ErrorProgram());
  p->shared_ = shared;
  // A shared program's maps hold file addresses; each member's hits are
  // rebased by its own bias (gep_member). One process's: its runtime ones.
  const uint64_t bias = shared ? 0 : target.load_bias();
  // Probe file offsets before loading anything, so bad input fails cheaply.
  std::vector<uint64_t> offsets;
  size_t n_sites = 0;
  for (const ProbeSpec& s : config.probes) {
    auto off = elf.FileOffsetOf(s.vaddr);
    if (!off.ok()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "probe address 0x%x is not in an executable segment of %s", s.vaddr, target.exe_link()));
    }
    offsets.push_back(*off);
    // Probe addresses are unique in a plan; a clash would leave the leaf
    // ambiguous, so it falls back to the probe's own pc.
    ProbeInfo info{s.site, static_cast<EventKind>(s.kind)};
    p->site_probes_[s.site != 0 ? s.site : s.vaddr].push_back(offsets.size() - 1);
    if (!p->probe_info_.try_emplace(s.vaddr, info).second) p->probe_info_[s.vaddr].site = 0;
    if (GEP_LOC_KIND(GEP_COOKIE_TAB(s.cookie)) == GEP_LOC_CONST ||
        GEP_LOC_KIND(GEP_COOKIE_DATA(s.cookie)) == GEP_LOC_CONST ||
        (GEP_COOKIE_TAB(s.cookie) & GEP_LOC_F_CHECK)) {
      ++n_sites;
    }
  }
  if (shared) {
    ASSIGN_OR_RETURN(p->everyone_, ProbeTarget::Everyone(target));
  }

  auto t0 = std::chrono::steady_clock::now();
  // Chosen by probing: a uprobe_multi kernel whose pid filter is per thread
  // would load and attach fine, then miss every other thread's errors.
  const uint32_t own_id = shared ? 0 : member.session;
  absl::Status loaded =
      p->Load(config, member.ns, n_sites, config.uprobe_multi && UprobeMultiSupported(), own_id);
  if (!loaded.ok() && config.uprobe_multi && absl::IsUnimplemented(loaded)) {
    loaded = p->Load(config, member.ns, n_sites, false, own_id);  // kernel before 6.6
  }
  RETURN_IF_ERROR(loaded);
  p->load_time_ = std::chrono::steady_clock::now() - t0;
  RETURN_IF_ERROR(p->Fill(config, bias));
  RETURN_IF_ERROR(p->AddMember(member));

  if (!config.probes.empty()) {
    std::vector<uint64_t> cookies, ips;
    cookies.reserve(config.probes.size());
    ips.reserve(config.probes.size());
    for (const ProbeSpec& s : config.probes) {
      cookies.push_back(s.cookie);
      ips.push_back(s.vaddr + bias);
    }
    RETURN_IF_ERROR(p->links_.Attach(p->skel_->progs.gep_on_error, shared ? p->everyone_ : target,
                                     offsets, cookies, ips, p->multi_,
                                     bpf_map__fd(p->skel_->maps.link_gen)));
  }
  return p;
}

ErrorProgram::~ErrorProgram() {
  links_.Remove();  // first: nothing new arrives
  if (skel_) errors_bpf__destroy(skel_);
}

// Opens and loads the skeleton. Unimplemented when the kernel does not know
// uprobe_multi programs (the caller then retries without).
absl::Status ErrorProgram::Load(const SessionConfig& config, const PidNamespaceId& ns,
                                size_t n_sites, bool multi, uint32_t session_id) {
  if (skel_) {
    errors_bpf__destroy(skel_);
    skel_ = nullptr;
  }
  ScopedLibbpfLog log;
  skel_ = errors_bpf__open();
  if (!skel_) {
    return absl::InternalError(absl::StrCat("cannot open the BPF object: ", Errno(errno), " ",
                                            log.Tail(2)));
  }
  ErrorProbeLoad load;
  // The target as its threads' BPF sees it (inside a container: its PID
  // namespace). Shared: members come through the targets map instead.
  load.target = ns;
  if (shared_) load.target.pid = 0;
  load.n_layouts = config.layouts.size();
  load.n_addr_types = 0;
  for (const ErrorLayout& l : config.layouts) load.n_addr_types += l.addr_type.has_value();
  load.n_sites = n_sites;
  load.n_probes = config.probes.size();
  load.multi = multi;
  load.session_id = session_id;
  load.n_targets = shared_ ? kMaxMembers : 1;
  // Without sleepable uprobes (before 6.0) the same program loads plain.
  load.sleepable = config.sleepable && KernelSupports(KernelFeature::kSleepableUprobe);
  RETURN_IF_ERROR(ConfigureErrorProbe(skel_, config, load));
  if (config.shared_maps) {
    if (bpf_map__set_max_entries(skel_->maps.events, config.shared_maps->bytes()) != 0 ||
        bpf_map__reuse_fd(skel_->maps.events, config.shared_maps->map_fd()) != 0 ||
        bpf_map__reuse_fd(skel_->maps.scratch, config.shared_maps->scratch_fd()) != 0) {
      return absl::InternalError(absl::StrCat("cannot share the event maps: ", Errno(errno)));
    }
  }

  if (int err = errors_bpf__load(skel_); err != 0) {
    if (multi && -err == EINVAL && !UprobeMultiSupported()) {
      return absl::UnimplementedError("kernel without uprobe_multi");
    }
    return LoadFailure(err, "BPF program failed to load", log.Tail(8));
  }
  multi_ = multi;
  return absl::OkStatus();
}

// The layout and site maps, keyed by address at `bias` (0 for a shared
// program: its members' hits are rebased by their own).
absl::Status ErrorProgram::Fill(const SessionConfig& config, uint64_t bias) {
  names_.key_bias = bias;
  int layouts_fd = bpf_map__fd(skel_->maps.layouts);
  int addr_types_fd = bpf_map__fd(skel_->maps.addr_types);
  for (LayoutMapEntry& e : MapEntriesFor(config.layouts)) {
    uint64_t key = e.type_addr + bias;
    fields_dropped_ += e.fields_dropped;
    const void* value = e.is_addr ? static_cast<const void*>(&e.addr) : &e.type;
    if (bpf_map_update_elem(e.is_addr ? addr_types_fd : layouts_fd, &key, value, BPF_ANY) != 0) {
      return absl::InternalError(absl::StrCat("filling the ", e.is_addr ? "address" : "layout",
                                              " map: ", Errno(errno)));
    }
    TypeNames names{std::move(e.name), std::move(e.strings), std::move(e.addrs)};
    (e.is_addr ? names_.addr_types : names_.types)[key] = std::move(names);
  }
  int sites_fd = bpf_map__fd(skel_->maps.sites);
  for (const ProbeSpec& p : config.probes) {
    bool tconst = GEP_LOC_KIND(GEP_COOKIE_TAB(p.cookie)) == GEP_LOC_CONST;
    bool dconst = GEP_LOC_KIND(GEP_COOKIE_DATA(p.cookie)) == GEP_LOC_CONST;
    bool check = (GEP_COOKIE_TAB(p.cookie) & GEP_LOC_F_CHECK) != 0;
    if (!tconst && !dconst && !check) continue;
    uint64_t key = p.vaddr + bias;
    gep_site v = {tconst ? p.const_type + bias : 0, dconst ? p.const_data + bias : 0,
                  check ? p.check_tab + bias : 0};
    if (bpf_map_update_elem(sites_fd, &key, &v, BPF_ANY) != 0) {
      return absl::InternalError(absl::StrCat("filling the site map: ", Errno(errno)));
    }
  }
  return absl::OkStatus();
}

absl::Status ErrorProgram::AddMember(const Member& m) {
  std::lock_guard<std::mutex> lock(mu_);
  if (shared_) {
    if (members_.size() >= kMaxMembers) {
      return absl::ResourceExhaustedError("the shared program has no room for another process");
    }
    // Replaces what a process that exec'd the same file again left.
    const gep_member value = {m.session, 0, m.bias};
    if (bpf_map_update_elem(bpf_map__fd(skel_->maps.targets), &m.ns.pid, &value, BPF_ANY) != 0) {
      return absl::InternalError(absl::StrCat("adding pid ", m.ns.pid, " to a shared probe: ",
                                              Errno(errno)));
    }
  }
  members_.push_back({m.who, m.ns.pid, m.session});
  if (answers_ == nullptr) {
    answers_ = m.who;
    base_ = ReadCounters();
  }
  return absl::OkStatus();
}

std::array<uint64_t, GEP_CTR__COUNT> ErrorProgram::RemoveMember(const void* who) {
  std::lock_guard<std::mutex> lock(mu_);
  std::array<uint64_t, GEP_CTR__COUNT> out{};
  auto it = std::find_if(members_.begin(), members_.end(),
                         [&](const Joined& j) { return j.who == who; });
  if (it == members_.end()) return out;
  if (shared_) {
    // Only if still its own: the same pid may have joined again since.
    gep_member value = {};
    int fd = bpf_map__fd(skel_->maps.targets);
    if (bpf_map_lookup_elem(fd, &it->tgid, &value) == 0 && value.session == it->session) {
      bpf_map_delete_elem(fd, &it->tgid);
    }
  }
  members_.erase(it);
  if (answers_ == who) {
    const std::array<uint64_t, GEP_CTR__COUNT> now = ReadCounters();
    for (size_t k = 0; k < out.size(); ++k) out[k] = now[k] - std::min(now[k], base_[k]);
    answers_ = members_.empty() ? nullptr : members_.front().who;
    base_ = now;
  }
  return out;
}

size_t ErrorProgram::members() const {
  std::lock_guard<std::mutex> lock(mu_);
  return members_.size();
}

std::array<uint64_t, GEP_CTR__COUNT> ErrorProgram::Counters(const void* who) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::array<uint64_t, GEP_CTR__COUNT> out{};
  if (answers_ != who) return out;
  const std::array<uint64_t, GEP_CTR__COUNT> now = ReadCounters();
  for (size_t k = 0; k < out.size(); ++k) out[k] = now[k] - std::min(now[k], base_[k]);
  return out;
}

std::array<uint64_t, GEP_CTR__COUNT> ErrorProgram::ReadCounters() const {
  std::array<uint64_t, GEP_CTR__COUNT> c{};
  if (!skel_) return c;
  for (uint32_t k = 0; k < GEP_CTR__COUNT; ++k) c[k] = SumPerCpu(skel_->maps.counters, k);
  c[GEP_CTR_HITS] -= std::min(c[GEP_CTR_HITS], calibration_hits_);
  c[GEP_CTR_FOREIGN] -= std::min(c[GEP_CTR_FOREIGN], calibration_hits_);
  return c;
}

absl::Status ErrorProgram::SetSiteProbed(uint64_t site, bool probed) {
  auto it = site_probes_.find(site);
  if (it == site_probes_.end()) {
    return absl::NotFoundError(absl::StrFormat("no probe serves site 0x%x", site));
  }
  return probed ? links_.Reattach(it->second) : links_.Detach(it->second);
}

bool ErrorProgram::SiteOff(uint64_t site) const {
  auto it = site_probes_.find(site);
  if (it == site_probes_.end()) return false;
  for (size_t p : it->second) {
    if (links_.attached(p)) return false;
  }
  return true;
}

void ErrorProgram::Orphan(uint64_t site) {
  if (std::find(orphans_.begin(), orphans_.end(), site) == orphans_.end()) orphans_.push_back(site);
  RetryOrphans();
}

void ErrorProgram::RetryOrphans() {
  // Kept until it is back (Unavailable: its old link is still being
  // removed; anything else may pass too): next time.
  std::erase_if(orphans_, [&](uint64_t site) {
    absl::Status s = SetSiteProbed(site, true);
    return s.ok() || absl::IsNotFound(s);
  });
}

std::pair<uint64_t, uint64_t> ErrorProgram::ProgramRunTime() const {
  if (!skel_) return {0, 0};
  bpf_prog_info info;
  std::memset(&info, 0, sizeof(info));
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(bpf_program__fd(skel_->progs.gep_on_error), &info, &len) != 0) {
    return {0, 0};
  }
  // Runs that returned at once (another process's hit, a stale link's, a
  // site being taken off: tens of thousands in a storm's swap) are not
  // what a recorded hit costs; the calibration's ran before the kernel
  // timed anything.
  const uint64_t foreign = SumPerCpu(skel_->maps.counters, GEP_CTR_FOREIGN);
  const uint64_t early = foreign - std::min(foreign, calibration_hits_) +
                         SumPerCpu(skel_->maps.counters, GEP_CTR_STALE_LINK);
  const uint64_t runs = info.run_cnt;
  return {info.run_time_ns, runs - std::min(runs, early)};
}

const bpf_map* ErrorProgram::events_map() const { return skel_ ? skel_->maps.events : nullptr; }

std::vector<uint32_t> ErrorProgram::prog_ids() const {
  std::vector<uint32_t> ids;
  if (uint32_t id = skel_ ? ProgramId(skel_->progs.gep_on_error) : 0) ids.push_back(id);
  return ids;
}

}  // namespace goerrprof::profiler
