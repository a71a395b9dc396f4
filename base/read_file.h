// Reading a whole file with a size cap, by read(2): /proc files of
// processes that may exit at any moment fail with ESRCH midway, which
// std::ifstream turns into an exception (libstdc++'s underflow throws).
#ifndef GOERRPROF_BASE_READ_FILE_H_
#define GOERRPROF_BASE_READ_FILE_H_

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"

namespace goerrprof {

// The whole file, at most max_bytes (OutOfRange past that). NotFound when
// the file (or, under /proc, its process) is gone.
absl::StatusOr<std::string> ReadWholeFile(const std::string& path,
                                         size_t max_bytes = size_t{64} << 20);

}  // namespace goerrprof

#endif  // GOERRPROF_BASE_READ_FILE_H_
