// Fault injection for the crash tests: GOERRPROF_FAULT=NAME makes the
// process SIGKILL itself when it reaches the point NAME, the way an OOM
// kill or `kill -9` would hit it there. Unset, a point costs one compare.
#ifndef GOERRPROF_BASE_FAULT_POINT_H_
#define GOERRPROF_BASE_FAULT_POINT_H_

#include "absl/strings/string_view.h"

namespace goerrprof {

// Points: "attached" (every probe of a target attached), "exec-stopped"
// (a followed exec stopped, not yet continued), "writing" (the profile's
// temporary file written, not yet renamed over the output).
void FaultPoint(absl::string_view name);

}  // namespace goerrprof

#endif  // GOERRPROF_BASE_FAULT_POINT_H_
