#include "goabi/malloc_layout.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace goerrprof::goabi {

absl::StatusOr<MallocLayout> MallocLayoutFor(const GoVersion& v) {
  if (!v.AtLeast(1, 19)) {
    return absl::UnimplementedError(
        absl::StrCat("allocator counters: ", v.ToString(), " is older than go1.19"));
  }
  MallocLayout m;
  // heapStatsDelta: six int64 byte deltas, five from 1.25 (no
  // inPtrScalarBits), then
  // tinyAllocCount, largeAlloc, largeAllocCount, smallAllocCount,
  // largeFree, largeFreeCount, smallFreeCount.
  const int32_t head = v.AtLeast(1, 25) ? 5 * 8 : 6 * 8;
  m.tiny_alloc_count = head;
  m.large_alloc_count = head + 16;
  m.small_alloc_count = head + 24;
  m.delta_size = m.small_alloc_count + 2 * MallocLayout::kSizeClasses * 8 + 16;
  m.heap_stats_gen = 3 * m.delta_size;
  // p: 1.23 packed sysmontick's two uint32s together (a word less).
  m.p_mcache = v.AtLeast(1, 23) ? 56 : 64;
  // mcache: 1.24 added memProfRate before the counters.
  m.mcache_tiny_allocs = v.AtLeast(1, 24) ? 40 : 32;
  m.mcache_alloc = m.mcache_tiny_allocs + 8;
  // mspan: 1.21 added pinnerBits before allocCount; 1.22 narrowed
  // freeindex and nelems to uint16s, which won the word back.
  m.mspan_alloc_count = (v.major == 1 && v.minor == 21) ? 104 : 96;
  m.mspan_alloc_count_before_cache = m.mspan_alloc_count + 6;
  m.mspan_sweepgen = m.mspan_alloc_count - 8;
  return m;
}

}  // namespace goerrprof::goabi
