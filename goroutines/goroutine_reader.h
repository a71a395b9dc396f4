// Reading goroutines of a live process (part of goroutine_snapshot): each
// g is read, validated (status, goid, stack bounds, PCs in text), its
// stack walked by saved frame pointers from the used top read in bulk,
// and the g re-read to make sure it did not run meanwhile; what fails is
// retried up to `max_attempts` times, then skipped and counted.
#ifndef GOERRPROF_GOROUTINES_GOROUTINE_READER_H_
#define GOERRPROF_GOROUTINES_GOROUTINE_READER_H_

#include <sys/types.h>

#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "goabi/g_layout.h"
#include "goroutines/goroutine_memory.h"
#include "goroutines/goroutine_snapshot.h"
#include "symbolizer/go_binary.h"

namespace goerrprof::profiler {

struct GoroutineRead {
  uint64_t gaddr = 0;       // in: the g's address in the target
  Goroutine* g = nullptr;   // in: where the goroutine goes; out: filled when accepted
  bool accepted = false;    // out: a live goroutine read consistently (else free or skipped)
  uint64_t labels = 0;      // out: g.labels, for ReadLabels
};

// Reads `share` (one thread's part of runtime.allgs); `bias` is the load
// bias of the executable. Counts into stats: dead, retried, skipped,
// stacks_truncated, syscalls. Fails only when the process cannot be read.
// `source`: where the memory comes from instead of pid (ProcessMemory).
absl::Status ReadGoroutines(pid_t pid, const symbolizer::GoBinary& binary,
                            const goabi::GLayout& layout, uint64_t bias,
                            absl::Span<GoroutineRead> share, int max_attempts,
                            SnapshotStats* stats, MemorySource* source = nullptr);

// CLOCK_MONOTONIC in nanoseconds: the clock of the runtime's nanotime.
int64_t MonotonicNanos();

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_GOROUTINES_GOROUTINE_READER_H_
