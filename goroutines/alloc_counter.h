// How many objects a Go process has allocated so far, read from outside,
// without a probe or a stop, and exact: the runtime's consistent heap stats
// (memstats.heapStats, three generations of heapStatsDelta whose sum is the
// running total) plus what each P's mcache has allocated from the spans it
// holds and not yet added (a span's count is added when it is used up, so
// the totals alone lag by up to a span per size class per P).
//
// The overhead budget uses it as a trap-free measure of the target's work:
// creations per allocation learned while a site is probed, times the
// allocations made while it is off. Unlike CPU time, the count does not
// move with what the traps cost; and a storm's window on is short (a few
// hundred allocations), so the lag would matter.
#ifndef GOERRPROF_GOROUTINES_ALLOC_COUNTER_H_
#define GOERRPROF_GOROUTINES_ALLOC_COUNTER_H_

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "goabi/malloc_layout.h"
#include "goroutines/goroutine_memory.h"
#include "symbolizer/go_binary.h"

namespace goerrprof::profiler {

// File virtual address of runtime.memstats.heapStats: the receiver
// runtime.(*mcache).refill passes (RIP-relative, in RAX) to
// runtime.(*consistentHeapStats).acquire. Never uses the symbol table.
absl::StatusOr<uint64_t> FindHeapStats(const symbolizer::GoBinary& binary);

class AllocCounter {
 public:
  static constexpr int kSizeClasses = goabi::MallocLayout::kSizeClasses;

  // `bias`: the process's load bias. Checks the layout once (the
  // generation index must be 0, 1 or 2). `source` replaces the process in
  // tests.
  static absl::StatusOr<std::unique_ptr<AllocCounter>> Open(pid_t pid,
                                                            const symbolizer::GoBinary& binary,
                                                            uint64_t bias,
                                                            MemorySource* source = nullptr);

  struct Counts {
    uint64_t objects = 0;  // every allocation: tiny, small and large
    std::array<uint64_t, kSizeClasses> small{};  // by size class
    // False when some class kept moving through every retry (then short
    // by less than one span each).
    bool exact = true;
    // When the counts were taken (CLOCK_MONOTONIC): from before the first
    // read whose values were kept to after the last. Not the whole call:
    // what comes before (the consistency pass) may be descheduled at will.
    int64_t from_ns = 0, to_ns = 0;
  };
  // One reading; Unavailable when the process is gone, or the runtime
  // kept folding its generations together through every retry.
  absl::StatusOr<Counts> Read();

  struct Stats {
    uint64_t reads = 0;
    uint64_t retries = 0;  // a span was used up mid-read: read again
    uint64_t approximate = 0;  // classes still moving after every retry (off by < a span)
  };
  const Stats& stats() const { return stats_; }

 private:
  AllocCounter(pid_t pid, MemorySource* source) : memory_(pid, source) {}

  // One generation's counters, tiny to the last size class, as read.
  static constexpr int kWords = 3 + kSizeClasses;
  struct Heap {
    uint64_t gen[3][kWords];
    uint32_t gen_index = 0;  // consistentHeapStats.gen
    bool Rotating() const;
    uint64_t Tiny() const;
    uint64_t Large() const;
    uint64_t Small(int c) const;
  };
  // An mcache's tinyAllocs and alloc array, as read.
  static constexpr int kCacheWords = 1 + goabi::MallocLayout::kSpanClasses;
  using Cache = std::array<uint64_t, kCacheWords>;

  absl::Status LoadCaches();
  void HeapRanges(Heap& h, std::vector<ReadRange>& out);

  ProcessMemory memory_;
  goabi::MallocLayout layout_;
  uint64_t heap_ = 0;   // runtime address of heapStats.stats[0]
  uint64_t allp_ = 0;   // runtime address of the allp slice header
  uint64_t allp_hdr_[2] = {0, 0};  // ptr and len when caches_ were found
  std::vector<uint64_t> caches_;   // every P's mcache
  Stats stats_;
};

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_GOROUTINES_ALLOC_COUNTER_H_
