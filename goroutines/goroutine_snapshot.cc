#include "goroutines/goroutine_snapshot.h"

#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <thread>

#include "base/clock.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "goabi/g_layout.h"
#include "goroutines/goroutine_labels.h"
#include "goroutines/goroutine_locate.h"
#include "goroutines/goroutine_memory.h"
#include "goroutines/goroutine_reader.h"
#include "symbolizer/load_bias.h"

namespace goerrprof::profiler {
namespace {

namespace gabi = goabi;

constexpr uint64_t kMaxGoroutines = uint64_t{1} << 26;
constexpr uint64_t kGptrsPerRead = 1 << 16;
// Below this many gs a second reader thread costs more than it saves.
constexpr size_t kGsPerThread = 20000;

// Puts gs[from[d]] at d for every d, moving each goroutine once; what
// `from` does not name is dropped.
void Arrange(std::vector<Goroutine>& gs, const std::vector<uint32_t>& from) {
  constexpr uint32_t kNone = UINT32_MAX;
  size_t n = from.size();
  std::vector<uint32_t> to(gs.size(), kNone);  // where the goroutine at p goes
  for (size_t d = 0; d < n; ++d) to[from[d]] = static_cast<uint32_t>(d);
  std::vector<bool> done(n, false);
  // Chains start at a place whose own goroutine goes nowhere: fill it,
  // then the place its filler left, until one outside [0, n) is left.
  for (size_t head = 0; head < n; ++head) {
    if (to[head] != kNone || done[head]) continue;
    for (size_t d = head; d < n && !done[d];) {
      done[d] = true;
      gs[d] = std::move(gs[from[d]]);
      d = from[d];
    }
  }
  // What is left are cycles (or goroutines already in place).
  for (size_t d = 0; d < n; ++d) {
    if (done[d]) continue;
    if (from[d] == d) {
      done[d] = true;
      continue;
    }
    Goroutine held = std::move(gs[d]);
    size_t at = d;
    while (from[at] != d) {
      done[at] = true;
      gs[at] = std::move(gs[from[at]]);
      at = from[at];
    }
    done[at] = true;
    gs[at] = std::move(held);
  }
  gs.resize(n);
}

// Sorts (id, index) pairs. allgs is a few sorted runs (gs are appended
// as created, and each P takes ids in batches): those are merged, in
// O(n log runs); anything more mixed is sorted.
void SortById(std::vector<std::pair<uint64_t, uint32_t>>& order) {
  constexpr size_t kMaxRuns = 64;
  std::vector<size_t> runs = {0};  // where each sorted run starts
  for (size_t i = 1; i < order.size() && runs.size() <= kMaxRuns; ++i) {
    if (order[i] < order[i - 1]) runs.push_back(i);
  }
  if (runs.size() == 1) return;
  if (runs.size() > kMaxRuns) {
    std::sort(order.begin(), order.end());
    return;
  }
  runs.push_back(order.size());
  while (runs.size() > 2) {
    std::vector<size_t> merged = {0};
    for (size_t r = 0; r + 2 < runs.size(); r += 2) {
      std::inplace_merge(order.begin() + runs[r], order.begin() + runs[r + 1],
                         order.begin() + runs[r + 2]);
      merged.push_back(runs[r + 2]);
    }
    if (runs.size() % 2 == 0) merged.push_back(runs.back());  // an odd run out
    runs = std::move(merged);
  }
}

// Faults in the pages of [p, p + n) with one call per thread, each its
// share: one fault at a time costs about 2 µs a page here. Only a hint:
// without MADV_POPULATE_WRITE (Linux 5.14) the pages fault in when used.
void Prefault(void* p, size_t n, int threads) {
  const uintptr_t page = static_cast<uintptr_t>(getpagesize());
  uintptr_t lo = (reinterpret_cast<uintptr_t>(p) + page - 1) & ~(page - 1);
  uintptr_t hi = (reinterpret_cast<uintptr_t>(p) + n) & ~(page - 1);
  if (hi <= lo) return;
  auto populate = [](uintptr_t from, uintptr_t to) {
#ifdef MADV_POPULATE_WRITE
    if (to > from) madvise(reinterpret_cast<void*>(from), to - from, MADV_POPULATE_WRITE);
#endif
  };
  std::vector<std::thread> helpers;
  for (int t = 1; t < threads; ++t) {
    uintptr_t from = lo + ((hi - lo) / page * t / threads) * page;
    uintptr_t to = lo + ((hi - lo) / page * (t + 1) / threads) * page;
    helpers.emplace_back(populate, from, to);
  }
  populate(lo, lo + ((hi - lo) / page / threads) * page);
  for (std::thread& h : helpers) h.join();
}

int64_t WallNow() { return WallNs(); }

}  // namespace

absl::StatusOr<Snapshot> TakeSnapshot(pid_t pid, const symbolizer::GoBinary& binary,
                                      const SnapshotOptions& options) {
  auto layout = gabi::GLayoutFor(binary.version());
  if (!layout.ok()) return layout.status();
  auto allgs = FindAllgs(binary);
  if (!allgs.ok()) return allgs.status();
  auto bias = symbolizer::LoadBias(pid, binary.elf());
  if (!bias.ok()) return bias.status();
  return ReadSnapshot(pid, nullptr, binary, *layout, *allgs + *bias, *bias, options);
}

absl::StatusOr<Snapshot> ReadSnapshot(pid_t pid, MemorySource* source,
                                      const symbolizer::GoBinary& binary,
                                      const gabi::GLayout& layout, uint64_t allgs, uint64_t bias,
                                      const SnapshotOptions& options) {
  Snapshot snap;
  snap.pid = pid;
  snap.time_nanos = WallNow();
  int64_t start = MonotonicNanos();
  ProcessMemory mem(pid, source);

  // The slice header; allgadd may be appending, so read until two reads
  // agree.
  uint64_t hdr[3] = {0, 0, 0};
  for (int attempt = 0;; ++attempt) {
    uint64_t again[3];
    absl::Status s = mem.Read(allgs, hdr, sizeof(hdr));
    if (s.ok()) s = mem.Read(allgs, again, sizeof(again));
    if (absl::IsUnavailable(s)) {
      return absl::FailedPreconditionError(
          absl::StrFormat("pid %d: runtime.allgs at 0x%x is unreadable (is it this binary?)", pid,
                          allgs));
    }
    if (!s.ok()) return s;
    if (std::memcmp(hdr, again, sizeof(hdr)) == 0) break;
    if (attempt + 1 >= options.max_attempts) {
      return absl::UnavailableError("runtime.allgs kept changing while being read");
    }
  }
  uint64_t len = hdr[1];
  if (hdr[0] == 0 || len > hdr[2] || len > kMaxGoroutines) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "pid %d: runtime.allgs does not look like a slice (len %d, cap %d)", pid, len, hdr[2]));
  }
  // Read in pieces: the array grows with what the target really holds,
  // not with what its length word claims.
  std::vector<uint64_t> gptrs;
  for (uint64_t done = 0; done < len;) {
    uint64_t n = std::min(len - done, kGptrsPerRead);
    gptrs.resize(done + n);
    absl::Status s = mem.Read(hdr[0] + done * 8, gptrs.data() + done, n * 8);
    if (!s.ok()) {
      return absl::UnavailableError(absl::StrCat("cannot read the goroutine list: ", s.message()));
    }
    done += n;
  }
  snap.stats.allgs = len;

  // Large snapshots are read by two threads, each its share of the gs
  // (each with its own scratch buffer); the kernel copies dominate.
  size_t count = len - std::count(gptrs.begin(), gptrs.end(), 0);
  int threads = options.threads > 0 ? options.threads
                                    : static_cast<int>(std::min(
                                          2u, std::max(1u, std::thread::hardware_concurrency())));
  if (count < kGsPerThread) threads = 1;
  // The goroutines are read in place: `gs` becomes snap.goroutines. Its
  // pages (16 MB for 100 000) are faulted in ahead, by as many threads.
  std::vector<Goroutine> gs;
  gs.reserve(count);
  Prefault(gs.data(), count * sizeof(Goroutine), threads);
  gs.resize(count);
  std::vector<GoroutineRead> all;
  all.reserve(count);
  Prefault(all.data(), count * sizeof(GoroutineRead), threads);
  for (uint64_t g : gptrs) {
    if (g == 0) {
      ++snap.stats.dead;
    } else {
      GoroutineRead& r = all.emplace_back();
      r.gaddr = g;
      r.g = &gs[all.size() - 1];
    }
  }
  std::vector<SnapshotStats> stats(threads);
  std::vector<absl::Status> statuses(threads);
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    size_t from = all.size() * t / threads, to = all.size() * (t + 1) / threads;
    absl::Span<GoroutineRead> share = absl::MakeSpan(all).subspan(from, to - from);
    auto run = [&, t, share]() {
      statuses[t] = ReadGoroutines(pid, binary, layout, bias, share, options.max_attempts,
                                   &stats[t], source);
    };
    if (t + 1 == threads) {
      run();
    } else {
      workers.emplace_back(run);
    }
  }
  for (std::thread& w : workers) w.join();
  for (int t = 0; t < threads; ++t) {
    if (!statuses[t].ok()) return statuses[t];
    snap.stats.dead += stats[t].dead;
    snap.stats.retried += stats[t].retried;
    snap.stats.skipped += stats[t].skipped;
    snap.stats.stacks_truncated += stats[t].stacks_truncated;
    snap.stats.syscalls += stats[t].syscalls;
  }

  // Labels: few goroutines have them; read one by one.
  for (GoroutineRead& r : all) {
    if (!r.accepted || r.labels == 0) continue;
    absl::StatusOr<LabelList> l = absl::UnavailableError("");
    for (int a = 0; a < options.max_attempts && !l.ok(); ++a) {
      l = ReadLabels(mem, r.labels, layout.label_storage);
      if (!l.ok() && !absl::IsUnavailable(l.status()) && !absl::IsDataLoss(l.status())) {
        return l.status();
      }
    }
    if (l.ok()) {
      r.g->labels = std::move(*l);
    } else {
      r.g->labels_unreadable = true;
      ++snap.stats.labels_unreadable;
    }
  }
  snap.stats.syscalls += mem.syscalls();
  snap.stats.elapsed_ns = MonotonicNanos() - start;

  // The shown ones, by id. allgs is mostly in id order already (each P
  // takes ids in batches): sort (id, index) pairs, then move each
  // goroutine once, in place.
  std::vector<std::pair<uint64_t, uint32_t>> order;
  order.reserve(all.size());
  for (size_t i = 0; i < all.size(); ++i) {
    if (!all[i].accepted) continue;
    if (gs[i].system && !options.include_system) {
      ++snap.stats.system_hidden;
      continue;
    }
    order.emplace_back(gs[i].id, static_cast<uint32_t>(i));
  }
  SortById(order);
  std::vector<uint32_t> from(order.size());
  for (size_t j = 0; j < order.size(); ++j) from[j] = order[j].second;
  Arrange(gs, from);
  snap.goroutines = std::move(gs);
  return snap;
}

}  // namespace goerrprof::profiler
