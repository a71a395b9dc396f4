// Where park tracing puts its probes in a Go binary, found from the
// pclntab and the code alone (stripped binaries work): gopark's
// CALL runtime.mcall, the instruction after it, and runtime.ready's entry.
#ifndef GOERRPROF_PLAN_PARK_PROBES_H_
#define GOERRPROF_PLAN_PARK_PROBES_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "symbolizer/go_binary.h"

namespace goerrprof::profiler {

// File virtual addresses.
struct ParkProbes {
  uint64_t gopark = 0;       // entry of runtime.gopark
  uint64_t park_call = 0;    // its CALL runtime.mcall(park_m)
  uint64_t resume = 0;       // the instruction after that CALL
  uint64_t ready = 0;        // entry of runtime.ready
  uint64_t mcall = 0;        // entry of runtime.mcall
};

// NotFound with a one-line reason when a function is missing (inlined or
// renamed by a release we do not know) or gopark has no single such CALL.
absl::StatusOr<ParkProbes> FindParkProbes(const symbolizer::GoBinary& binary);

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_PLAN_PARK_PROBES_H_
