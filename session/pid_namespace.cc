#include "session/pid_namespace.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "base/read_file.h"

namespace goerrprof::profiler {
namespace {

// PROC_PID_INIT_INO (include/linux/proc_ns.h, uapi nsfs.h since 6.18): the
// inode of the initial PID namespace, the same on every kernel.
constexpr uint64_t kInitPidNsIno = 0xEFFFFFFCu;

absl::StatusOr<PidNamespaceId> Lookup(const std::string& dir, pid_t pid) {
  if (absl::Status s = CheckProcIsOurs(); !s.ok()) return s;
  const std::string ns_path = dir + "/ns/pid";
  struct stat st;
  if (stat(ns_path.c_str(), &st) != 0) {
    int err = errno;
    if (err == ENOENT || err == ESRCH) {
      return absl::NotFoundError(absl::StrCat("no process with pid ", pid));
    }
    std::string msg = absl::StrCat("cannot read ", ns_path, ": ", strerror(err));
    if (err == EACCES || err == EPERM) return absl::PermissionDeniedError(msg);
    return absl::InternalError(msg);
  }
  PidNamespaceId id;
  if (st.st_ino != kInitPidNsIno) {
    // The kernel's dev_t: MKDEV(major, minor) = major << 20 | minor.
    id.dev = (static_cast<uint64_t>(major(st.st_dev)) << 20) | minor(st.st_dev);
    id.ino = st.st_ino;
  }
  // NSpid: its pid in each namespace from /proc's (goerrprof's) down to
  // its own; the last one is its own.
  absl::StatusOr<std::string> status = ReadWholeFile(dir + "/status");
  if (!status.ok()) return absl::NotFoundError(absl::StrCat("no process with pid ", pid));
  for (absl::string_view line : absl::StrSplit(*status, '\n')) {
    if (!absl::StartsWith(line, "NSpid:")) continue;
    std::vector<absl::string_view> nums =
        absl::StrSplit(line.substr(6), absl::ByAnyChar(" \t"),
                       absl::SkipEmpty());
    uint32_t own = 0;
    if (!nums.empty() && absl::SimpleAtoi(nums.back(), &own) && own > 0) {
      id.pid = own;
      return id;
    }
    break;
  }
  return absl::InternalError(
      absl::StrCat("cannot read the pid of process ", pid, " in its PID namespace (NSpid in ",
                   dir, "/status, Linux 4.1+)"));
}

}  // namespace

absl::Status CheckProcIsOurs() {
  char buf[32] = {};
  ssize_t n = readlink("/proc/self", buf, sizeof(buf) - 1);
  if (n <= 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot read /proc/self (", strerror(errno),
        "): mount a proc of goerrprof's PID namespace on /proc"));
  }
  const absl::string_view seen(buf, static_cast<size_t>(n));
  int seen_pid = 0;
  if (absl::SimpleAtoi(seen, &seen_pid) && seen_pid == getpid()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "/proc is not a proc of goerrprof's PID namespace (it calls goerrprof ", seen,
      ", goerrprof is pid ", getpid(),
      "): mount one for it (unshare --mount-proc, or the container's own /proc)"));
}

absl::StatusOr<PidNamespaceId> PidNamespaceOf(pid_t pid) {
  if (pid <= 0) return absl::InvalidArgumentError(absl::StrCat("bad pid ", pid));
  return Lookup(absl::StrCat("/proc/", pid), pid);
}

absl::StatusOr<PidNamespaceId> OwnPidNamespace() { return Lookup("/proc/self", getpid()); }

}  // namespace goerrprof::profiler
