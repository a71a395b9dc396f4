#include "absl/status/status.h"
#include "profiler/commands.h"

namespace goerrprof::profiler {

int RunGoroutines(const std::vector<std::string>& args) {
  return Fail(absl::UnimplementedError("goroutines: not implemented yet"));
}

}  // namespace goerrprof::profiler
