// Finding a runtime function by name, and where to probe it "at its entry"
// so that one call is one hit.
#ifndef GOERRPROF_PLAN_ENTRY_PROBE_H_
#define GOERRPROF_PLAN_ENTRY_PROBE_H_

#include <cstdint>
#include <optional>

#include "absl/strings/string_view.h"
#include "symbolizer/go_binary.h"
#include "x86/decoder.h"

namespace goerrprof::profiler {

struct FuncRange {
  uint64_t entry = 0, end = 0;
};

// The function named `name` in the binary's function table.
std::optional<FuncRange> FindFunction(const symbolizer::Pclntab& tab, absl::string_view name);

// The first instruction past the prologue's stack check (a CMP of the stack
// pointer against g.stackguard0, then a jump to the morestack call): when
// the stack must grow, morestack restarts the function from its entry, so
// a probe there would fire twice for one call. Up to that point registers,
// the stack pointer and the frame are untouched. The entry itself for
// functions without the check, or whose code cannot be read.
uint64_t PastStackCheck(const symbolizer::GoBinary& binary, x86::Decoder& decoder,
                        const FuncRange& f);

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_PLAN_ENTRY_PROBE_H_
