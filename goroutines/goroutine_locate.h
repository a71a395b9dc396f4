// Where a Go process keeps its goroutines and its Ps: the addresses of
// runtime.allgs (a []*g) and runtime.allp, found from the machine code of
// the runtime functions that grow them, so stripped binaries work.
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

// File virtual address of the runtime.allp slice header {ptr, len, cap}
// ([]*p), the slice procresize rebuilds, found the same way.
absl::StatusOr<uint64_t> FindAllp(const symbolizer::GoBinary& binary);

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_GOROUTINES_GOROUTINE_LOCATE_H_
