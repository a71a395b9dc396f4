// Byte offsets of the Go allocator's counters, per Go release (1.19+), for
// reading how many objects a process has allocated (goroutines/
// alloc_counter.h): the consistent heap stats the runtime sums, and what
// each P's mcache has allocated from its cached spans but not yet added.
// Facts from the runtime sources of each release, checked against the
// compiler's DWARF of the corpus (tests/goabi/g_layout_test.cc).
#ifndef GOERRPROF_GOABI_MALLOC_LAYOUT_H_
#define GOERRPROF_GOABI_MALLOC_LAYOUT_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "goabi/go_version.h"

namespace goerrprof::goabi {

struct MallocLayout {
  static constexpr int kSizeClasses = 68;    // _NumSizeClasses / gc.NumSizeClasses
  static constexpr int kSpanClasses = 136;   // numSpanClasses: each size, scan or noscan

  // runtime.heapStatsDelta; runtime.consistentHeapStats holds three, then
  // gen (which of them writers use now).
  int32_t delta_size = 0;
  int32_t tiny_alloc_count = 0;   // uint64
  int32_t large_alloc_count = 0;  // uint64
  int32_t small_alloc_count = 0;  // [kSizeClasses]uint64
  int32_t heap_stats_gen = 0;     // consistentHeapStats.gen (atomic.Uint32)
  // runtime.p.mcache (*mcache).
  int32_t p_mcache = 0;
  // runtime.mcache: tiny allocations not yet flushed; alloc [kSpanClasses]*mspan.
  int32_t mcache_tiny_allocs = 0;
  int32_t mcache_alloc = 0;
  // runtime.mspan: its sweep generation (uint32; odd while an mcache
  // holds it), objects allocated now, and when the mcache took it (uint16s).
  int32_t mspan_sweepgen = 0;
  int32_t mspan_alloc_count = 0;
  int32_t mspan_alloc_count_before_cache = 0;
};

// Unimplemented before go1.19; newer releases than the table get its newest.
absl::StatusOr<MallocLayout> MallocLayoutFor(const GoVersion& version);

}  // namespace goerrprof::goabi

#endif  // GOERRPROF_GOABI_MALLOC_LAYOUT_H_
