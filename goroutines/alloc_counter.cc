#include "goroutines/alloc_counter.h"

#include "base/clock.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "goroutines/goroutine_locate.h"
#include "x86/decoder.h"

namespace goerrprof::profiler {
namespace {

constexpr char kAcquire[] = "runtime.(*consistentHeapStats).acquire";

std::optional<size_t> FuncIndex(const symbolizer::Pclntab& tab, absl::string_view name) {
  for (size_t i = 0; i < tab.num_functions(); ++i) {
    if (tab.FuncName(i) == name) return i;
  }
  return std::nullopt;
}

// The RIP-relative address last loaded into RAX before a call to
// `callee` in `caller`'s code.
absl::StatusOr<uint64_t> ReceiverOfCall(const symbolizer::GoBinary& binary,
                                        absl::string_view caller, uint64_t callee) {
  const symbolizer::Pclntab& tab = binary.pclntab();
  auto i = FuncIndex(tab, caller);
  if (!i) return absl::NotFoundError(absl::StrCat(caller, " not found"));
  uint64_t entry = tab.FuncEntry(*i), end = tab.FuncEnd(*i);
  auto code = binary.elf().ReadVirtual(entry, end - entry);
  if (!code.ok()) return code.status();
  auto decoder = x86::Decoder::Create();
  if (!decoder.ok()) return decoder.status();
  uint64_t rax = 0;  // 0: not a known static address
  for (const x86::Insn& in : (*decoder)->Decode(*code, entry)) {
    if (in.flow == x86::Flow::kCall && in.target == callee && rax != 0) return rax;
    if (in.id == X86_INS_LEA && in.nops == 2 && in.ops[0].type == x86::Operand::kReg &&
        in.ops[0].reg == x86::kRax && in.ops[1].type == x86::Operand::kMem &&
        in.ops[1].base == x86::kRip && in.ops[1].index == x86::kNoReg) {
      rax = static_cast<uint64_t>(in.ops[1].value);
    } else if (in.regs_written & (1u << x86::kRax)) {
      rax = 0;
    }
  }
  return absl::NotFoundError(absl::StrCat("no call of ", kAcquire, " with a static receiver in ",
                                          caller));
}

}  // namespace

absl::StatusOr<uint64_t> FindHeapStats(const symbolizer::GoBinary& binary) {
  const symbolizer::Pclntab& tab = binary.pclntab();
  auto acquire = FuncIndex(tab, kAcquire);
  if (!acquire) return absl::NotFoundError(absl::StrCat(kAcquire, " not found"));
  const uint64_t callee = tab.FuncEntry(*acquire);
  // refill takes the stats for every span it returns; releaseAll (when a P
  // flushes its cache) is the fallback.
  auto stats = ReceiverOfCall(binary, "runtime.(*mcache).refill", callee);
  if (stats.ok()) return stats;
  auto release = ReceiverOfCall(binary, "runtime.(*mcache).releaseAll", callee);
  if (release.ok()) return release;
  return stats.status();
}

absl::StatusOr<std::unique_ptr<AllocCounter>> AllocCounter::Open(
    pid_t pid, const symbolizer::GoBinary& binary, uint64_t bias, MemorySource* source) {
  auto layout = goabi::MallocLayoutFor(binary.version());
  if (!layout.ok()) return layout.status();
  auto heap = FindHeapStats(binary);
  if (!heap.ok()) return heap.status();
  auto allp = FindAllp(binary);
  if (!allp.ok()) return allp.status();
  std::unique_ptr<AllocCounter> c(new AllocCounter(pid, source));
  c->layout_ = *layout;
  c->heap_ = *heap + bias;
  c->allp_ = *allp + bias;
  // gen cycles 0, 1, 2 (zero before the runtime starts): a wrong layout or
  // address shows here.
  uint32_t gen = 0;
  absl::Status s = c->memory_.Read(c->heap_ + layout->heap_stats_gen, &gen, sizeof(gen));
  if (!s.ok()) return s;
  if (gen > 2) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "allocation counts: heapStats at 0x%x has generation %u, not 0-2 (layout?)", c->heap_,
        gen));
  }
  return c;
}

uint64_t AllocCounter::Heap::Tiny() const { return gen[0][0] + gen[1][0] + gen[2][0]; }
uint64_t AllocCounter::Heap::Large() const { return gen[0][2] + gen[1][2] + gen[2][2]; }
uint64_t AllocCounter::Heap::Small(int c) const {
  return gen[0][3 + c] + gen[1][3 + c] + gen[2][3 + c];
}

void AllocCounter::HeapRanges(Heap& h, std::vector<ReadRange>& out) {
  // tinyAllocCount, largeAlloc, largeAllocCount, smallAllocCount[68]: the
  // words from tinyAllocCount on are contiguous. Then gen.
  for (int g = 0; g < 3; ++g) {
    ReadRange r;
    r.addr = heap_ + g * layout_.delta_size + layout_.tiny_alloc_count;
    r.len = sizeof(h.gen[g]);
    r.out = reinterpret_cast<uint8_t*>(h.gen[g]);
    out.push_back(r);
  }
  out.push_back({heap_ + layout_.heap_stats_gen, sizeof(h.gen_index),
                 reinterpret_cast<uint8_t*>(&h.gen_index), false});
}

absl::Status AllocCounter::LoadCaches() {
  caches_.clear();
  absl::Status s = memory_.Read(allp_, allp_hdr_, sizeof(allp_hdr_));
  if (!s.ok()) return s;
  const uint64_t n = allp_hdr_[1];
  if (n == 0) return absl::OkStatus();  // the runtime has not started
  if (n > 1 << 16) {
    return absl::FailedPreconditionError(absl::StrCat("allocation counts: allp has ", n, " Ps"));
  }
  std::vector<uint64_t> ps(n);
  s = memory_.Read(allp_hdr_[0], ps.data(), n * 8);
  if (!s.ok()) return s;
  std::vector<ReadRange> ranges(n);
  caches_.assign(n, 0);
  for (uint64_t i = 0; i < n; ++i) {
    ranges[i].addr = ps[i] + layout_.p_mcache;
    ranges[i].len = 8;
    ranges[i].out = reinterpret_cast<uint8_t*>(&caches_[i]);
  }
  s = memory_.ReadBatch(ranges);
  if (!s.ok()) return s;
  std::vector<uint64_t> live;
  for (uint64_t i = 0; i < n; ++i) {
    if (ranges[i].ok && caches_[i] != 0) live.push_back(caches_[i]);
  }
  caches_ = std::move(live);
  return absl::OkStatus();
}

bool AllocCounter::Heap::Rotating() const {
  // read() (runtime/metrics, ReadMemStats) moves gen on, then merges the
  // generation before into the current one and zeroes it: until then the
  // totals would count it twice. At rest the generation after gen is zero.
  if (gen_index > 2) return true;
  for (uint64_t w : gen[(gen_index + 1) % 3]) {
    if (w != 0) return true;
  }
  return false;
}

absl::StatusOr<AllocCounter::Counts> AllocCounter::Read() {
  ++stats_.reads;
  // Two passes: (A) the totals, then each P's cache; (B) the cached spans'
  // counts, the caches again, the totals again (ranges are read in order).
  // A size class whose totals and cached spans did not change from the
  // start of A to the end of B had no span used up in between, so its
  // total plus what its spans hold is exact. Classes that moved are read
  // again. A span a refill is replacing is already out of its mcentral's
  // cache (its sweepgen even) while still in c.alloc, with its count in
  // the totals: it counts as moving.
  constexpr int kAttempts = 4;
  std::array<bool, kSizeClasses + 2> done{};  // then tiny, then large
  const int kTiny = kSizeClasses, kLarge = kSizeClasses + 1;
  Counts out;
  out.exact = true;
  uint64_t tiny = 0, large = 0;
  int reloads = 0;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    if (attempt > 0) ++stats_.retries;
    Heap a, b;
    uint64_t hdr[2] = {0, 0};
    std::vector<Cache> ca(caches_.size()), cb(caches_.size());
    std::vector<ReadRange> ranges;
    HeapRanges(a, ranges);
    ranges.push_back({allp_, sizeof(hdr), reinterpret_cast<uint8_t*>(hdr), false});
    for (size_t p = 0; p < caches_.size(); ++p) {
      ranges.push_back({caches_[p] + layout_.mcache_tiny_allocs, sizeof(Cache),
                        reinterpret_cast<uint8_t*>(ca[p].data()), false});
    }
    absl::Status s = memory_.ReadBatch(ranges);
    if (!s.ok()) return s;
    for (const ReadRange& r : ranges) {
      if (!r.ok) return absl::UnavailableError("allocation counts: unreadable");
    }
    if (hdr[0] != allp_hdr_[0] || hdr[1] != allp_hdr_[1]) {
      // The Ps changed (the runtime started, or GOMAXPROCS changed).
      s = LoadCaches();
      if (!s.ok()) return s;
      if (++reloads > 8) return absl::UnavailableError("allocation counts: allp keeps changing");
      --attempt;
      continue;
    }
    // Every distinct span any cache holds (most entries share emptymspan).
    std::vector<uint64_t> spans;
    for (const Cache& c : ca) {
      for (int k = 1; k < kCacheWords; ++k) {
        if (c[k] != 0) spans.push_back(c[k]);
      }
    }
    std::sort(spans.begin(), spans.end());
    spans.erase(std::unique(spans.begin(), spans.end()), spans.end());
    // From sweepgen (uint32) to allocCountBeforeCache (uint16).
    const uint64_t span_len = layout_.mspan_alloc_count_before_cache + 2 - layout_.mspan_sweepgen;
    std::vector<std::array<uint8_t, 32>> raw(spans.size());
    ranges.clear();
    for (size_t i = 0; i < spans.size(); ++i) {
      ranges.push_back({spans[i] + layout_.mspan_sweepgen, span_len, raw[i].data(), false});
    }
    for (size_t p = 0; p < caches_.size(); ++p) {
      ranges.push_back({caches_[p] + layout_.mcache_tiny_allocs, sizeof(Cache),
                        reinterpret_cast<uint8_t*>(cb[p].data()), false});
    }
    HeapRanges(b, ranges);
    const int64_t b0 = MonotonicNs();
    s = memory_.ReadBatch(ranges);
    const int64_t b1 = MonotonicNs();
    if (!s.ok()) return s;
    for (size_t i = spans.size(); i < ranges.size(); ++i) {
      if (!ranges[i].ok) return absl::UnavailableError("allocation counts: unreadable");
    }
    if (a.gen_index != b.gen_index || a.Rotating() || b.Rotating()) continue;
    // What a cached span holds beyond its count when cached; nullopt: the
    // span is being replaced (or unreadable).
    auto held = [&](uint64_t span) -> std::optional<uint64_t> {
      auto it = std::lower_bound(spans.begin(), spans.end(), span);
      size_t i = static_cast<size_t>(it - spans.begin());
      if (it == spans.end() || *it != span || !ranges[i].ok) return std::nullopt;
      uint32_t sweepgen;
      uint16_t now, then;
      std::memcpy(&sweepgen, raw[i].data(), 4);
      std::memcpy(&now, raw[i].data() + (layout_.mspan_alloc_count - layout_.mspan_sweepgen), 2);
      std::memcpy(&then, raw[i].data() + (layout_.mspan_alloc_count_before_cache -
                                          layout_.mspan_sweepgen), 2);
      const uint64_t n = now >= then ? now - then : 0;
      if (n > 0 && sweepgen % 2 == 0) return std::nullopt;  // uncached: in the totals
      return n;
    };
    const bool last = attempt == kAttempts - 1;
    const auto keep_b = [&] {  // a value of this pass B is kept
      if (out.from_ns == 0) out.from_ns = b0;
      out.to_ns = b1;
    };
    for (int c = 0; c < kSizeClasses; ++c) {
      if (done[c]) continue;
      bool still = a.Small(c) == b.Small(c);
      uint64_t n = b.Small(c);
      for (size_t p = 0; p < caches_.size(); ++p) {
        for (int spc = 2 * c; spc <= 2 * c + 1; ++spc) {
          still = still && ca[p][1 + spc] == cb[p][1 + spc];
          std::optional<uint64_t> h = held(cb[p][1 + spc]);
          still = still && h.has_value();
          n += h.value_or(0);  // when moving: at most a span short
        }
      }
      if (still || last) {
        out.small[c] = n;
        done[c] = true;
        keep_b();
        if (!still) {
          ++stats_.approximate;
          out.exact = false;
        }
      }
    }
    if (!done[kTiny]) {
      // Any refill adds the cache's tiny count to the totals and zeroes it.
      bool still = a.Tiny() == b.Tiny();
      uint64_t n = b.Tiny();
      for (size_t p = 0; p < caches_.size(); ++p) n += cb[p][0];
      if (still || last) {
        tiny = n;
        done[kTiny] = true;
        keep_b();
        if (!still) {
          ++stats_.approximate;
          out.exact = false;
        }
      }
    }
    if (!done[kLarge] && (a.Large() == b.Large() || last)) {
      large = b.Large();
      done[kLarge] = true;
      keep_b();
      if (a.Large() != b.Large()) {
        ++stats_.approximate;
        out.exact = false;
      }
    }
    bool all = true;
    for (bool d : done) all = all && d;
    if (all) break;
  }
  for (bool d : done) {
    // Every attempt found the runtime folding its generations together.
    if (!d) return absl::UnavailableError("allocation counts: the runtime kept reading them");
  }
  out.objects = tiny + large;
  for (int c = 0; c < kSizeClasses; ++c) out.objects += out.small[c];
  return out;
}

}  // namespace goerrprof::profiler
