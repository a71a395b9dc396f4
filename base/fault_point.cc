#include "base/fault_point.h"

#include <signal.h>

#include <cstdlib>

namespace goerrprof {

void FaultPoint(absl::string_view name) {
  static const char* const fault = std::getenv("GOERRPROF_FAULT");
  if (fault != nullptr && name == fault) raise(SIGKILL);
}

}  // namespace goerrprof
