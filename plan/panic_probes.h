// Panics, probed by the error program like creations: runtime.gopanic's
// entry sees every panic with its value (an `any`) in the argument
// registers; runtime.fatalpanic's entry sees the one nothing recovered,
// just before it ends the process, through its *_panic argument. One trap
// per panic, and one more when a panic is fatal.
#ifndef GOERRPROF_PLAN_PANIC_PROBES_H_
#define GOERRPROF_PLAN_PANIC_PROBES_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "goabi/g_layout.h"
#include "plan/layouts.h"
#include "symbolizer/go_binary.h"

namespace goerrprof::profiler {

// The two probes (kinds kPanic, kFatalPanic). Empty before the register ABI
// (Go 1.17), where the value is on the stack, or without the functions.
std::vector<ProbeSpec> PanicProbeSpecs(const symbolizer::GoBinary& binary,
                                       const goabi::GLayout& g);

// Layouts for panic values that are not errors, among the type descriptors
// the code refers to (`candidates`): string (its text) and the integer
// kinds (their value). Types in `have` are left out.
absl::StatusOr<std::vector<ErrorLayout>> PanicValueLayouts(
    const symbolizer::GoBinary& binary, absl::Span<const uint64_t> candidates,
    const std::vector<ErrorLayout>& have);

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_PLAN_PANIC_PROBES_H_
