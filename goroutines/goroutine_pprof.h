// A goroutine snapshot as a pprof profile: one sample per goroutine with
// values goroutines/count (1) and wait/nanoseconds (see goroutine.wait; 0
// when unknown or not waiting), its full stack (runtime frames included, like
// Go's own goroutine profile), and labels:
//   goroutine (numeric id), goroutine.parent (numeric, Go 1.21+),
//   goroutine.state, goroutine.wait_reason (waiting ones),
//   goroutine.wait ("exact" | "lower bound" | "unknown"; waiting and
//   syscall ones),
//   goroutine.created_by (function), goroutine.created_at (file:line),
//   and the goroutine's own pprof labels under their own keys.
#ifndef GOERRPROF_GOROUTINES_GOROUTINE_PPROF_H_
#define GOERRPROF_GOROUTINES_GOROUTINE_PPROF_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "github.com/google/pprof/proto/profile.pb.h"
#include "goroutines/goroutine_snapshot.h"
#include "symbolizer/go_binary.h"

namespace goerrprof::profiler {

absl::StatusOr<perftools::profiles::Profile> GoroutineProfile(const Snapshot& snap,
                                                             const symbolizer::GoBinary& binary);
// The same profile built into *out (cleared first), which may live on a
// protobuf Arena: 100 000 goroutines make about a million small messages,
// which an arena allocates and frees far faster than the heap.
absl::Status GoroutineProfileInto(const Snapshot& snap, const symbolizer::GoBinary& binary,
                                  perftools::profiles::Profile* out);

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_GOROUTINES_GOROUTINE_PPROF_H_
