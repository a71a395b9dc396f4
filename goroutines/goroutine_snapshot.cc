#include "goroutines/goroutine_snapshot.h"

#include <time.h>

#include <algorithm>
#include <cstring>
#include <thread>

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

int64_t WallNow() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

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

  std::vector<GoroutineRead> all;
  all.reserve(len);
  for (uint64_t g : gptrs) {
    if (g == 0) {
      ++snap.stats.dead;
    } else {
      all.emplace_back().gaddr = g;
    }
  }
  // Large snapshots are read by two threads, each its share of the gs
  // (each with its own scratch buffer); the kernel copies dominate.
  int threads = options.threads > 0 ? options.threads
                                    : static_cast<int>(std::min(
                                          2u, std::max(1u, std::thread::hardware_concurrency())));
  if (all.size() < kGsPerThread) threads = 1;
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
      r.g.labels = std::move(*l);
    } else {
      r.g.labels_unreadable = true;
      ++snap.stats.labels_unreadable;
    }
  }
  snap.stats.syscalls += mem.syscalls();
  snap.stats.elapsed_ns = MonotonicNanos() - start;

  // By id; allgs is mostly in id order already, and moving goroutines is
  // dearer than moving pointers.
  std::vector<GoroutineRead*> shown;
  shown.reserve(all.size());
  for (GoroutineRead& r : all) {
    if (!r.accepted) continue;
    if (r.g.system && !options.include_system) {
      ++snap.stats.system_hidden;
      continue;
    }
    shown.push_back(&r);
  }
  auto by_id = [](const GoroutineRead* a, const GoroutineRead* b) { return a->g.id < b->g.id; };
  if (!std::is_sorted(shown.begin(), shown.end(), by_id)) {
    std::sort(shown.begin(), shown.end(), by_id);
  }
  snap.goroutines.reserve(shown.size());
  for (GoroutineRead* r : shown) snap.goroutines.push_back(std::move(r->g));
  return snap;
}

}  // namespace goerrprof::profiler
