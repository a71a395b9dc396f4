// Where a Go process keeps its goroutines: the address of runtime.allgs
// (a []*g) found from the machine code of runtime.allgadd, so stripped
// binaries work.
#ifndef GOERRPROF_GOROUTINES_GOROUTINE_LOCATE_H_
#define GOERRPROF_GOROUTINES_GOROUTINE_LOCATE_H_

#include <sys/types.h>

#include <cstdint>

#include "absl/status/statusor.h"
#include "symbolizer/go_binary.h"

namespace goerrprof::profiler {

// File virtual address of the runtime.allgs slice header {ptr, len, cap}.
// allgadd appends to allgs, so its code addresses the three header words
// RIP-relative in writable data; forEachG (which ranges over it) is the
// fallback. Never uses the symbol table.
absl::StatusOr<uint64_t> FindAllgs(const symbolizer::GoBinary& binary);

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_GOROUTINES_GOROUTINE_LOCATE_H_
