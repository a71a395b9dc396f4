#include "session/capabilities.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace goerrprof::profiler {
namespace {

constexpr Capability kTracing[] = {Capability::kBpf, Capability::kPerfmon,
                                   Capability::kSysPtrace, Capability::kDacReadSearch,
                                   Capability::kSysAdmin};

bool CoveredByAdmin(Capability cap) {
  return cap == Capability::kBpf || cap == Capability::kPerfmon;
}

bool Held(Capability cap) {
  return HasCapability(cap) || (CoveredByAdmin(cap) && HasCapability(Capability::kSysAdmin));
}

}  // namespace

absl::string_view CapabilityName(Capability cap) {
  switch (cap) {
    case Capability::kDacReadSearch: return "CAP_DAC_READ_SEARCH";
    case Capability::kSysPtrace: return "CAP_SYS_PTRACE";
    case Capability::kSysAdmin: return "CAP_SYS_ADMIN";
    case Capability::kPerfmon: return "CAP_PERFMON";
    case Capability::kBpf: return "CAP_BPF";
  }
  return "CAP_?";
}

bool HasCapability(Capability cap) {
  __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (syscall(SYS_capget, &hdr, data) != 0) return false;
  const int n = static_cast<int>(cap);
  return (data[n / 32].effective >> (n % 32)) & 1u;
}

std::vector<CapabilityNeed> NeededCapabilities() {
  return {
      {Capability::kBpf, "to load BPF: record, doctor", true},
      {Capability::kPerfmon, "to load and attach tracing programs: record, doctor", true},
      {Capability::kSysPtrace, "for another user's or a more privileged process", false},
      {Capability::kDacReadSearch, "for a process whose executable this user cannot read",
       false},
  };
}

std::string CapabilityReport(bool* required_missing, bool* any_missing) {
  std::vector<std::string> present, missing;
  *required_missing = *any_missing = false;
  for (const CapabilityNeed& n : NeededCapabilities()) {
    std::string name(CapabilityName(n.cap));
    if (Held(n.cap)) {
      if (!HasCapability(n.cap)) absl::StrAppend(&name, " (as CAP_SYS_ADMIN)");
      present.push_back(name);
      continue;
    }
    missing.push_back(absl::StrCat(name, " (", n.when, ")"));
    *any_missing = true;
    *required_missing = *required_missing || n.required;
  }
  return absl::StrCat("present: ", present.empty() ? "none" : absl::StrJoin(present, ", "),
                      "; missing: ", missing.empty() ? "none" : absl::StrJoin(missing, ", "));
}

std::string MissingBpfCapabilities() {
  std::vector<absl::string_view> missing;
  for (Capability c : {Capability::kBpf, Capability::kPerfmon}) {
    if (!Held(c)) missing.push_back(CapabilityName(c));
  }
  return absl::StrJoin(missing, " and ");
}

absl::Status CheckProcessReadable(pid_t pid) {
  const std::string exe = absl::StrCat("/proc/", pid, "/exe");
  struct stat st;
  // The link itself is behind the ptrace access check.
  if (stat(exe.c_str(), &st) != 0) {
    if (errno != EACCES) return absl::OkStatus();
    return absl::PermissionDeniedError(
        absl::StrCat("process ", pid, " is another user's or more privileged: reading it needs ",
                     CapabilityName(Capability::kSysPtrace)));
  }
  // The file behind it, by its own permissions.
  int fd = open(exe.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    close(fd);
    return absl::OkStatus();
  }
  if (errno != EACCES) return absl::OkStatus();
  char path[PATH_MAX];
  ssize_t n = readlink(exe.c_str(), path, sizeof(path) - 1);
  return absl::PermissionDeniedError(absl::StrCat(
      "cannot read ", n > 0 ? std::string(path, static_cast<size_t>(n)) : exe,
      ", the executable of process ", pid, ": needs ",
      CapabilityName(Capability::kDacReadSearch)));
}

void DropTracingCapabilitiesBeforeExec() {
  // Lowering one that is not raised, or on a kernel without ambient
  // capabilities, fails harmlessly.
  for (Capability c : kTracing) {
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_LOWER, static_cast<unsigned long>(c), 0, 0);
  }
}

}  // namespace goerrprof::profiler
