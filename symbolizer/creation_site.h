// Where a goroutine was created, as Go prints it after "created by ": one
// rule for the goroutine snapshot and the error profile's
// goroutine.created_by/created_at labels.
#ifndef GOERRPROF_SYMBOLIZER_CREATION_SITE_H_
#define GOERRPROF_SYMBOLIZER_CREATION_SITE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "symbolizer/go_binary.h"

namespace goerrprof::symbolizer {

// The function containing the go statement (the physical function, not an
// inlined one), and file:line of the call (gopc-1, so inlined positions
// show) with +0x(gopc - function entry).
struct CreationSite {
  std::string function;
  std::string file;
  int32_t line = 0;
  uint64_t offset = 0;  // gopc - entry; Go omits " +0x.." when 0
};

// `gopc` is g.gopc as a file virtual address. NotFound when it is in no
// function.
absl::StatusOr<CreationSite> CreatedBy(const GoBinary& binary, uint64_t gopc);

}  // namespace goerrprof::symbolizer

#endif  // GOERRPROF_SYMBOLIZER_CREATION_SITE_H_
