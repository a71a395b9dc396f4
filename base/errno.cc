#include "base/errno.h"

#include <errno.h>

#include <cstring>

#include "absl/strings/str_cat.h"

namespace goerrprof {

std::string Errno(int err) { return absl::StrCat(strerror(err), " (errno ", err, ")"); }

absl::Status ErrnoStatus(int err, absl::string_view message) {
  std::string text = absl::StrCat(message, ": ", Errno(err));
  switch (err) {
    case ENOENT:
    case ESRCH:
      return absl::NotFoundError(text);
    case EPERM:
    case EACCES:
      return absl::PermissionDeniedError(text);
    case EINVAL:
      return absl::InvalidArgumentError(text);
    case EEXIST:
      return absl::AlreadyExistsError(text);
    case ENOSPC:
    case ENOMEM:
    case E2BIG:
      return absl::ResourceExhaustedError(text);
    case EAGAIN:
    case EBUSY:
      return absl::UnavailableError(text);
    default:
      return absl::InternalError(text);
  }
}

}  // namespace goerrprof
