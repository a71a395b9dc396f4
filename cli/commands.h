// goerrprof's subcommands. Each takes its positional arguments (after the
// subcommand name), prints its result, and returns the process exit code;
// errors are printed as one line on stderr.
#ifndef GOERRPROF_CLI_COMMANDS_H_
#define GOERRPROF_CLI_COMMANDS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace goerrprof::profiler {

int RunInspect(const std::vector<std::string>& args);
int RunSymbolize(const std::vector<std::string>& args);
// `command`: what followed a bare "--" (record -- COMMAND ARGS...).
int RunRecord(const std::vector<std::string>& args, const std::vector<std::string>& command);
int RunGoroutines(const std::vector<std::string>& args);
int RunDiff(const std::vector<std::string>& args);
// Whether this kernel (and with --pid, that process) can be recorded.
int RunDoctor(const std::vector<std::string>& args);
// A node agent: records every Go process it finds, serves /metrics.
int RunAgent(const std::vector<std::string>& args);

// --pid as a number: 0 when not given; InvalidArgument for anything else
// that is not a positive process id.
absl::StatusOr<int64_t> PidFlag();
// The executable to read: /proc/PID/exe with --pid, else the first argument.
absl::StatusOr<std::string> TargetPath(const std::vector<std::string>& args);
// argv with record's --goroutines made explicit for absl (a string flag):
// a bare --goroutines is --goroutines=sample, `--goroutines trace` (or
// sample, off) is --goroutines=trace, --nogoroutines is --goroutines=off.
// Nothing after a bare "--" is touched.
std::vector<std::string> NormalizeRecordFlags(std::vector<std::string> argv);
// Prints "goerrprof: <message>" on stderr and returns the exit code for it.
int Fail(const absl::Status& status);

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_CLI_COMMANDS_H_
