#include "absl/status/status.h"
#include "profiler/commands.h"

namespace goerrprof::profiler {

int RunDiff(const std::vector<std::string>& args) {
  return Fail(absl::UnimplementedError("diff: not implemented yet"));
}

}  // namespace goerrprof::profiler
