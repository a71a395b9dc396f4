// errno as goerrprof reports it: one text form, and a Status whose code
// follows the errno's meaning.
#ifndef GOERRPROF_BASE_ERRNO_H_
#define GOERRPROF_BASE_ERRNO_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace goerrprof {

// "No such file or directory (errno 2)".
std::string Errno(int err);

// "<message>: <Errno(err)>" with the code errno implies (ENOENT/ESRCH:
// NotFound, EPERM/EACCES: PermissionDenied, EINVAL: InvalidArgument, ...).
absl::Status ErrnoStatus(int err, absl::string_view message);

}  // namespace goerrprof

#endif  // GOERRPROF_BASE_ERRNO_H_
