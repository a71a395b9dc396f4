// goerrprof: where Go errors are born, read from outside the process.
#include <unistd.h>

#include <climits>
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "session/capabilities.h"
#include "session/pid_namespace.h"

ABSL_FLAG(bool, json, false, "print machine-readable JSON");
// A string, so a bad value gets goerrprof's own one-line error.
ABSL_FLAG(std::string, pid, "", "target process (its /proc/PID/exe is read)");

namespace goerrprof::profiler {
namespace {

constexpr char kUsage[] =
    "goerrprof: where Go errors are born.\n"
    "  goerrprof inspect [--json] (BINARY | --pid PID)\n"
    "  goerrprof symbolize [--json] BINARY ADDR...\n"
    "  goerrprof record --pid PID [--duration D] [-o errors.pb.gz] [--max-chain N]\n"
    "                 [--ringbuf-bytes N] [--goroutines[=sample|trace|off]] [--hz N]\n"
    "                 [--messages full|redact|off] [--max-overhead PCT]\n"
    "  goerrprof record [-o errors.pb.gz] [--toolchain] [--goroutines[=sample|trace|off]]\n"
    "                 [--hz N] [--messages full|redact|off] [--max-overhead PCT] -- COMMAND ARGS...\n"
    "  goerrprof goroutines --pid PID [-o goroutines.pb.gz] [--text] [--leaks [--min-wait D]] [--all]\n"
    "  goerrprof diff BASE NEW [--threshold PCT] [--min-increase N] [--estimate-tolerance PCT]\n"
    "                 [--json | --markdown]\n"
    "  goerrprof doctor [--pid PID] [--json]\n"
    "  goerrprof agent [--listen 127.0.0.1:9464] [--include RE] [--exclude RE]\n"
    "                 [--max-processes N] [--max-sites N] [--duration D] [--max-overhead PCT]\n"
    "                 [--messages off|redact|full]\n";

}  // namespace

absl::StatusOr<int64_t> PidFlag() {
  std::string text = absl::GetFlag(FLAGS_pid);
  if (text.empty()) return 0;
  int64_t pid = 0;
  if (!absl::SimpleAtoi(text, &pid) || pid <= 0 || pid > INT32_MAX) {
    return absl::InvalidArgumentError(absl::StrCat("invalid pid \"", text, "\""));
  }
  return pid;
}

absl::StatusOr<std::string> TargetPath(const std::vector<std::string>& args) {
  auto flag = PidFlag();
  if (!flag.ok()) return flag.status();
  int64_t pid = *flag;
  if (pid != 0) {
    // In a container, /proc must be its own for /proc/PID to be that pid.
    if (absl::Status s = CheckProcIsOurs(); !s.ok()) return s;
    std::string proc = absl::StrCat("/proc/", pid);
    if (access(proc.c_str(), F_OK) != 0) {
      return absl::NotFoundError(absl::StrCat("no process with pid ", pid));
    }
    if (absl::Status s = CheckProcessReadable(static_cast<pid_t>(pid)); !s.ok()) return s;
    return proc + "/exe";
  }
  if (args.empty()) return absl::InvalidArgumentError("no binary given (name one, or use --pid)");
  return args[0];
}

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "goerrprof: %s\n", std::string(status.message()).c_str());
  return 1;
}

}  // namespace goerrprof::profiler

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(goerrprof::profiler::kUsage);
  // Accept --max-chain as well as --max_chain: flag names are identifiers.
  // Nothing after a bare "--" is ours to respell.
  // A bare --goroutines (record's string flag) made explicit first.
  std::vector<std::string> spelled =
      goerrprof::profiler::NormalizeRecordFlags(std::vector<std::string>(argv, argv + argc));
  std::vector<char*> respelled;
  bool ours = true;
  for (std::string& a : spelled) {
    if (a == "--") ours = false;
    if (ours && a.rfind("--", 0) == 0) {
      size_t end = std::min(a.find('='), a.size());
      std::replace(a.begin() + 2, a.begin() + end, '-', '_');
    }
    respelled.push_back(a.data());
  }
  // absl exits 1 on an unknown flag, which `diff` means as "regressed":
  // refuse it first with our own one-line error and exit code 2.
  for (const std::string& a : spelled) {
    if (a == "--") break;
    if (a.size() < 2 || a[0] != '-' || a == "-") continue;
    std::string name = a.substr(a.find_first_not_of('-'));
    name = name.substr(0, name.find('='));
    static const char* const kAbslOwn[] = {"help",     "helpfull", "helpshort",  "helppackage",
                                           "helpon",   "helpmatch", "version",   "only_check_args",
                                           "flagfile", "fromenv",  "tryfromenv", "undefok"};
    bool known = absl::FindCommandLineFlag(name) != nullptr ||
                 std::find(std::begin(kAbslOwn), std::end(kAbslOwn), name) != std::end(kAbslOwn) ||
                 (name.rfind("no", 0) == 0 && absl::FindCommandLineFlag(name.substr(2)) != nullptr);
    if (!known) {
      std::fprintf(stderr, "goerrprof: unknown flag %s\n", a.c_str());
      return 2;
    }
  }
  respelled.push_back(nullptr);
  std::vector<char*> positional =
      absl::ParseCommandLine(static_cast<int>(respelled.size() - 1), respelled.data());
  if (positional.size() < 2) {
    std::fputs(goerrprof::profiler::kUsage, stderr);
    return 2;
  }
  std::string command = positional[1];
  std::vector<std::string> args(positional.begin() + 2, positional.end());
  // What follows a bare "--" is a command to run (record -- COMMAND).
  std::vector<std::string> after_dashes;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--") {
      after_dashes.assign(argv + i + 1, argv + argc);
      break;
    }
  }
  if (after_dashes.size() <= args.size()) {
    args.resize(args.size() - after_dashes.size());
  }
  if (command == "inspect") return goerrprof::profiler::RunInspect(args);
  if (command == "symbolize") return goerrprof::profiler::RunSymbolize(args);
  if (command == "record") return goerrprof::profiler::RunRecord(args, after_dashes);
  if (command == "goroutines") return goerrprof::profiler::RunGoroutines(args);
  if (command == "diff") return goerrprof::profiler::RunDiff(args);
  if (command == "doctor") return goerrprof::profiler::RunDoctor(args);
  if (command == "agent") return goerrprof::profiler::RunAgent(args);
  std::fprintf(stderr, "goerrprof: unknown command \"%s\"\n%s", command.c_str(),
               goerrprof::profiler::kUsage);
  return 2;
}
