// What the running kernel lets goerrprof do, found by trying it: each BPF
// feature is probed by loading a tiny program (or creating a map or link)
// the way goerrprof's own programs use it, never by comparing version
// numbers (distributions backport features, and fixes).
#ifndef GOERRPROF_SESSION_KERNEL_FEATURES_H_
#define GOERRPROF_SESSION_KERNEL_FEATURES_H_

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace goerrprof::profiler {

enum class KernelFeature {
  kPrivileges,      // CAP_BPF + CAP_PERFMON, or CAP_SYS_ADMIN
  kBtf,             // /sys/kernel/btf/vmlinux (CO-RE, tp_btf)
  kLockdown,        // not in "confidentiality" mode
  kRingBuffer,      // BPF_MAP_TYPE_RINGBUF
  kBpfLoop,         // the bpf_loop helper
  kAttachCookie,    // bpf_get_attach_cookie in kprobe/uprobe programs
  kAtomics,         // BPF_ATOMIC compare-and-exchange (and the fetch ops)
  kSleepableUprobe, // BPF_F_SLEEPABLE kprobe-type programs + bpf_copy_from_user
  kUprobeMulti,     // uprobe_multi links that filter by process
};

struct FeatureCheck {
  KernelFeature feature;
  std::string name;    // "bpf_loop"
  bool supported = false;
  // The probe could not tell (no privileges, an unexpected error): then
  // supported is false but nothing is known to be missing.
  bool unknown = false;
  // Without it record cannot run; otherwise goerrprof falls back (per-probe
  // links, a non-sleepable program) and only says so.
  bool required = true;
  std::string reason;  // one line: what was seen
  std::string needs;   // what to get when missing: "Linux 5.17+"
};

// Every check, in the order `doctor` prints them. Probed once per process
// (the kernel does not change under us); later calls return the same.
const std::vector<FeatureCheck>& KernelFeatures();
const FeatureCheck& KernelFeatureCheck(KernelFeature feature);
inline bool KernelSupports(KernelFeature feature) {
  return KernelFeatureCheck(feature).supported;
}

// Privileges are the calling process's, not the kernel's: probed afresh on
// each call (a process may drop them after KernelFeatures() cached its look).
FeatureCheck ProbePrivileges();
inline bool HaveBpfPrivileges() { return ProbePrivileges().supported; }

// "this kernel lacks bpf_loop (needs Linux 5.17+), atomics (needs ...)":
// every required kernel feature known to be missing (privileges and BTF
// excluded: the loaders report those themselves); nullopt when none is.
std::optional<std::string> MissingRequiredFeature();
std::optional<std::string> MissingRequiredFeature(absl::Span<const FeatureCheck> checks);

// For a BPF load failure: when a required kernel feature is missing, the
// same status code with the message "this kernel lacks X (needs ...); see
// `goerrprof doctor`" (IsMissingKernelFeature is then true); otherwise
// `load_error` as it is.
absl::Status ExplainLoadFailure(absl::Status load_error);
absl::Status ExplainLoadFailure(absl::Status load_error, absl::Span<const FeatureCheck> checks);
bool IsMissingKernelFeature(const absl::Status& status);

// Why loading a BPF object failed (libbpf's -errno `err`), in one line, the
// same for every session: missing privileges (only when we lack them: the
// verifier answers EACCES too), a missing kernel feature, or else `what`
// with the verifier's last words from `log_tail`.
absl::Status LoadFailure(int err, absl::string_view what, absl::string_view log_tail);

// BPF_LINK_CREATE of a uprobe_multi link (Linux 6.6 UAPI; Debian 12's
// headers predate it) of prog_fd at `offsets` in `path`, with `cookies`
// (empty, or one per offset), for process `pid` (0: any). Entry probes only.
// Returns the link fd, or -errno.
int RawUprobeMultiLinkCreate(int prog_fd, const char* path, absl::Span<const uint64_t> offsets,
                             absl::Span<const uint64_t> cookies, pid_t pid);

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_SESSION_KERNEL_FEATURES_H_
