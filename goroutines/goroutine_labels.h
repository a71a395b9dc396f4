// A goroutine's pprof labels (g.labels) read from another process: before
// Go 1.24 a map[string]string (classic hmap, growth with oldbuckets
// included), from 1.24 a sorted []{key, value string}.
#ifndef GOERRPROF_GOROUTINES_GOROUTINE_LABELS_H_
#define GOERRPROF_GOROUTINES_GOROUTINE_LABELS_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "goabi/g_layout.h"
#include "goroutines/goroutine_memory.h"

namespace goerrprof::profiler {

using LabelList = std::vector<std::pair<std::string, std::string>>;

// `labels` is the value of g.labels (non-zero). Sorted by key. Fails
// (Unavailable / DataLoss) on unreadable or inconsistent memory.
absl::StatusOr<LabelList> ReadLabels(ProcessMemory& mem, uint64_t labels,
                                     goabi::LabelStorage storage);

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_GOROUTINES_GOROUTINE_LABELS_H_
