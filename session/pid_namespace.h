// PID namespaces, for BPF programs that must recognise a process by pid.
// Inside a container goerrprof's pids are not the kernel's: BPF's
// bpf_get_current_pid_tgid() and task->tgid are pids of the initial
// namespace, while /proc, kill(), pidfd_open() and the uprobe pid filters
// take them in goerrprof's own. These say which namespace to compare in.
#ifndef GOERRPROF_SESSION_PID_NAMESPACE_H_
#define GOERRPROF_SESSION_PID_NAMESPACE_H_

#include <sys/types.h>

#include <cstdint>

#include "absl/status/statusor.h"

namespace goerrprof::profiler {

// A PID namespace as bpf_get_ns_current_pid_tgid() names one (the nsfs
// device in the kernel's dev_t encoding, and the inode), with a process's
// pid in it. dev and ino are 0 for the initial namespace, whose pids BPF's
// plain bpf_get_current_pid_tgid() returns.
struct PidNamespaceId {
  uint64_t dev = 0;
  uint64_t ino = 0;
  uint32_t pid = 0;  // the process's pid (tgid) there
};

// The PID namespace process `pid` (a pid as goerrprof sees it) runs in, and
// its pid there: what the error and park probes compare with the threads
// that hit them (the namespace may be nested in goerrprof's own, e.g. a
// sandbox inside the container). NotFound when the process is gone;
// FailedPrecondition when /proc belongs to another namespace than
// goerrprof's, so that no pid would mean the same process in both.
absl::StatusOr<PidNamespaceId> PidNamespaceOf(pid_t pid);

// goerrprof's own PID namespace (pid: getpid()), the one the pids of the
// exec follower are reported in.
absl::StatusOr<PidNamespaceId> OwnPidNamespace();

// OK when /proc is a proc of goerrprof's own PID namespace, so that
// /proc/PID and kill(PID) name the same process; else FailedPrecondition
// with a one-line remedy (`unshare --pid --fork` without --mount-proc keeps
// the outer /proc).
absl::Status CheckProcIsOurs();

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_SESSION_PID_NAMESPACE_H_
