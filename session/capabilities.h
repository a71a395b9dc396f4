// The Linux capabilities goerrprof's commands need, and which this process
// has. Found by running each command with one capability fewer (Linux 6.18;
// tests/e2e/privileges_test.cc keeps it so), as a user other than root:
//
//   record --pid, record --goroutines,       CAP_BPF, CAP_PERFMON (or
//   record -- COMMAND, doctor                CAP_SYS_ADMIN, which covers both)
//   goroutines --pid, inspect --pid          none
//   any of them given another user's process + CAP_SYS_PTRACE (/proc/PID/exe,
//   or a more privileged one (root's, to a     its memory, its uprobes)
//   root with fewer capabilities)
//   any of them given a process whose        + CAP_DAC_READ_SEARCH
//   executable this user cannot read
//
// Not needed: CAP_SYS_RESOURCE (BPF memory is charged to the memory cgroup
// since Linux 5.11, not to RLIMIT_MEMLOCK), CAP_KILL (record -- COMMAND
// signals only its own command's processes: SIGCONT reaches even a setuid
// one in the same session), CAP_DAC_OVERRIDE, CAP_NET_ADMIN.
#ifndef GOERRPROF_SESSION_CAPABILITIES_H_
#define GOERRPROF_SESSION_CAPABILITIES_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace goerrprof::profiler {

// Capability numbers (linux/capability.h), for those goerrprof cares about.
enum class Capability : int {
  kDacReadSearch = 2,
  kSysPtrace = 19,
  kSysAdmin = 21,
  kPerfmon = 38,
  kBpf = 39,
};
absl::string_view CapabilityName(Capability cap);  // "CAP_BPF"

// Whether `cap` itself is in this process's effective set (false when
// capget fails).
bool HasCapability(Capability cap);

struct CapabilityNeed {
  Capability cap;
  std::string when;  // "to load BPF", "for another user's process", ...
  bool required;     // record cannot run at all without it
};
// Every capability some command needs, in the order above.
std::vector<CapabilityNeed> NeededCapabilities();

// doctor's line: "present: CAP_BPF, CAP_PERFMON; missing: CAP_SYS_PTRACE
// (for another user's process ...)"; *required_missing says whether one
// that record cannot run without is missing, *any_missing whether any is.
std::string CapabilityReport(bool* required_missing, bool* any_missing);

// The BPF capabilities this process lacks, "CAP_BPF and CAP_PERFMON" or
// one of them; "" when it has both, or CAP_SYS_ADMIN (the kernel lets it
// stand for both).
std::string MissingBpfCapabilities();

// Whether process `pid` and its executable can be read, in one line naming
// the capability that is missing: PermissionDenied "process P is another
// user's or more privileged: reading it needs CAP_SYS_PTRACE", or "cannot
// read P's executable X: needs CAP_DAC_READ_SEARCH". OK otherwise, also when
// the process does not exist (the callers say that in their own words).
absl::Status CheckProcessReadable(pid_t pid);

// In the child of record -- COMMAND, before exec: lowers the ambient
// capabilities that goerrprof holds for tracing, so the command does not
// inherit them (a command run by root stays root). Async-signal-safe.
void DropTracingCapabilitiesBeforeExec();

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_SESSION_CAPABILITIES_H_
