#include "session/kernel_features.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/capability.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cstddef>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/errno.h"
#include "session/capabilities.h"

namespace goerrprof::profiler {
namespace {

constexpr char kBtfPath[] = "/sys/kernel/btf/vmlinux";
constexpr char kLockdownPath[] = "/sys/kernel/security/lockdown";
constexpr char kLsmPath[] = "/sys/kernel/security/lsm";
constexpr char kPayloadUrl[] = "goerrprof/missing-kernel-feature";
constexpr uint32_t kAttachUprobeMulti = 48;  // BPF_TRACE_UPROBE_MULTI (6.6 UAPI)
constexpr int kBpfLinkCreate = 28;           // BPF_LINK_CREATE


// union bpf_attr as BPF_LINK_CREATE reads it for uprobe_multi.
struct UprobeMultiAttr {
  uint32_t prog_fd;
  uint32_t target_fd;  // 0: newer kernels refuse anything else here
  uint32_t attach_type;
  uint32_t flags;
  uint64_t path;
  uint64_t offsets;
  uint64_t ref_ctr_offsets;
  uint64_t cookies;
  uint32_t cnt;
  uint32_t multi_flags;  // BPF_F_UPROBE_MULTI_RETURN: never (no uretprobes on Go)
  uint32_t pid;
  uint32_t pad;
  uint8_t tail[64];  // the kernel wants unknown trailing bytes zero
};
static_assert(offsetof(UprobeMultiAttr, path) == 16 && offsetof(UprobeMultiAttr, pid) == 56);

// --- A few BPF instructions, enough for the probe programs. ---

bpf_insn Insn(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm) {
  bpf_insn i;
  std::memset(&i, 0, sizeof(i));
  i.code = code;
  i.dst_reg = dst & 0xf;
  i.src_reg = src & 0xf;
  i.off = off;
  i.imm = imm;
  return i;
}
bpf_insn MovImm(uint8_t dst, int32_t imm) {
  return Insn(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm);
}
bpf_insn MovReg(uint8_t dst, uint8_t src) {
  return Insn(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0);
}
bpf_insn AddImm(uint8_t dst, int32_t imm) {
  return Insn(BPF_ALU64 | BPF_ADD | BPF_K, dst, 0, 0, imm);
}
bpf_insn StoreDw(uint8_t dst, int16_t off, uint8_t src) {
  return Insn(BPF_STX | BPF_MEM | BPF_DW, dst, src, off, 0);
}
bpf_insn Call(int32_t helper) { return Insn(BPF_JMP | BPF_CALL, 0, 0, 0, helper); }
bpf_insn Exit() { return Insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0); }

// LINUX_VERSION_CODE of the running kernel: kprobe programs needed it
// before 5.0; harmless after.
uint32_t KernelVersionCode() {
  utsname u;
  int a = 0, b = 0, c = 0;
  if (uname(&u) != 0 || sscanf(u.release, "%d.%d.%d", &a, &b, &c) < 2) return 0;
  return (static_cast<uint32_t>(a) << 16) + (static_cast<uint32_t>(b) << 8) +
         static_cast<uint32_t>(c > 255 ? 255 : c);
}

struct Loaded {
  int fd = -1;
  int err = 0;
  std::string log;  // the verifier's last non-empty line
};

Loaded LoadKprobe(const std::vector<bpf_insn>& insns, uint32_t flags,
                  uint32_t expected_attach_type = 0) {
  char log[8192] = {0};
  LIBBPF_OPTS(bpf_prog_load_opts, opts, .expected_attach_type =
                  static_cast<bpf_attach_type>(expected_attach_type),
              .prog_flags = flags, .kern_version = KernelVersionCode(), .log_level = 1,
              .log_size = sizeof(log), .log_buf = log);
  Loaded r;
  r.fd = bpf_prog_load(BPF_PROG_TYPE_KPROBE, "gep_probe", "GPL", insns.data(), insns.size(),
                       &opts);
  r.err = r.fd < 0 ? errno : 0;
  std::string last;
  absl::string_view text(log, strnlen(log, sizeof(log)));
  for (absl::string_view l : absl::StrSplit(text, '\n')) {
    l = absl::StripAsciiWhitespace(l);
    if (!l.empty() && !absl::StartsWith(l, "processed ")) last = std::string(l);
  }
  r.log = last;
  return r;
}

FeatureCheck Make(KernelFeature f, const char* name, bool required, const char* needs) {
  FeatureCheck c;
  c.feature = f;
  c.name = name;
  c.required = required;
  c.needs = needs;
  return c;
}

void Unknown(FeatureCheck& c, const std::string& why) {
  c.supported = false;
  c.unknown = true;
  c.reason = absl::StrCat("could not probe: ", why);
}

// --- The checks. ---

}  // namespace

FeatureCheck ProbePrivileges() {
  FeatureCheck c = Make(KernelFeature::kPrivileges, "privileges", true,
                        "root, or CAP_BPF and CAP_PERFMON (Linux 5.8+)");
  __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (syscall(SYS_capget, &hdr, data) != 0) {
    Unknown(c, absl::StrCat("capget: ", Errno(errno)));
    return c;
  }
  if (HasCapability(Capability::kSysAdmin)) {
    c.supported = true;
    c.reason = geteuid() == 0 ? "root (CAP_SYS_ADMIN)" : "CAP_SYS_ADMIN";
  } else if (HasCapability(Capability::kBpf) && HasCapability(Capability::kPerfmon)) {
    c.supported = true;
    c.reason = "CAP_BPF and CAP_PERFMON";
    // /proc/PID/exe and maps of another user's process need it.
    if (!HasCapability(Capability::kSysPtrace)) {
      absl::StrAppend(&c.reason, " (other users' processes need CAP_SYS_PTRACE)");
    }
  } else {
    c.reason = "neither CAP_SYS_ADMIN nor CAP_BPF with CAP_PERFMON in the effective set";
  }
  return c;
}

namespace {

FeatureCheck ProbeBtf() {
  FeatureCheck c =
      Make(KernelFeature::kBtf, "btf", true, "a kernel built with CONFIG_DEBUG_INFO_BTF");
  struct stat st;
  if (stat(kBtfPath, &st) != 0) {
    c.reason = absl::StrCat(kBtfPath, ": ", Errno(errno));
    return c;
  }
  int fd = open(kBtfPath, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    c.reason = absl::StrCat(kBtfPath, " is not readable: ", Errno(errno));
    return c;
  }
  close(fd);
  c.supported = true;
  c.reason = absl::StrFormat("%s (%.1f MiB)", kBtfPath, st.st_size / 1048576.0);
  return c;
}

std::string ReadSmallFile(const char* path, bool* ok) {
  std::ifstream in(path);
  *ok = static_cast<bool>(in);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

FeatureCheck ProbeLockdown() {
  FeatureCheck c = Make(KernelFeature::kLockdown, "lockdown", true,
                        "lockdown \"none\" or \"integrity\" (confidentiality forbids BPF "
                        "reading kernel memory)");
  bool ok = false;
  std::string text = ReadSmallFile(kLockdownPath, &ok);
  if (!ok) {
    // No file: no lockdown LSM, or securityfs not mounted (then we cannot
    // tell; the program loads below show what it allows).
    bool lsm_ok = false;
    std::string lsms = ReadSmallFile(kLsmPath, &lsm_ok);
    c.supported = true;
    c.reason = lsm_ok ? absl::StrCat("no lockdown LSM active (",
                                     absl::StripAsciiWhitespace(lsms), ")")
                      : "not reported (securityfs not mounted at /sys/kernel/security)";
    return c;
  }
  size_t open = text.find('['), close = text.find(']');
  if (open == std::string::npos || close == std::string::npos || close < open) {
    Unknown(c, absl::StrCat("unexpected ", kLockdownPath, ": ", absl::StripAsciiWhitespace(text)));
    return c;
  }
  std::string mode = text.substr(open + 1, close - open - 1);
  c.supported = mode != "confidentiality";
  c.reason = c.supported
                 ? mode
                 : "confidentiality: BPF may not read kernel memory (bpf_probe_read_kernel)";
  return c;
}

FeatureCheck ProbeRingBuffer() {
  FeatureCheck c = Make(KernelFeature::kRingBuffer, "ring_buffer", true, "Linux 5.8+");
  int r = libbpf_probe_bpf_map_type(BPF_MAP_TYPE_RINGBUF, nullptr);
  if (r < 0) {
    Unknown(c, Errno(-r));
  } else {
    c.supported = r == 1;
    c.reason = c.supported ? "BPF_MAP_TYPE_RINGBUF maps can be created"
                           : "the kernel refuses BPF_MAP_TYPE_RINGBUF maps";
  }
  return c;
}

FeatureCheck ProbeHelper(KernelFeature f, const char* name, const char* needs, bpf_func_id helper,
                         const char* helper_name) {
  FeatureCheck c = Make(f, name, true, needs);
  // libbpf calls the helper from a kprobe program and reads the verifier's
  // "invalid func"/"unknown func" as absent, anything else as present.
  int r = libbpf_probe_bpf_helper(BPF_PROG_TYPE_KPROBE, helper, nullptr);
  if (r < 0) {
    Unknown(c, Errno(-r));
  } else {
    c.supported = r == 1;
    c.reason = absl::StrCat(helper_name, c.supported ? " is callable from kprobe/uprobe programs"
                                                      : " is unknown to the verifier");
  }
  return c;
}

FeatureCheck ProbeAtomics() {
  FeatureCheck c = Make(KernelFeature::kAtomics, "atomics", true, "Linux 5.12+");
  // *(u64 *)(r10 - 8) = 0; r0 = 0; r1 = 1; r0 = cmpxchg(r10 - 8, r0, r1)
  std::vector<bpf_insn> insns = {
      MovImm(1, 0),
      StoreDw(BPF_REG_10, -8, 1),
      MovImm(0, 0),
      MovImm(1, 1),
      Insn(BPF_STX | BPF_ATOMIC | BPF_DW, BPF_REG_10, 1, -8, BPF_CMPXCHG),
      MovImm(0, 0),
      Exit(),
  };
  Loaded l = LoadKprobe(insns, 0);
  if (l.fd >= 0) {
    close(l.fd);
    c.supported = true;
    c.reason = "BPF_ATOMIC compare-and-exchange verifies";
  } else if (l.err == EINVAL) {
    c.reason = absl::StrCat("BPF_ATOMIC compare-and-exchange refused: ", l.log);
  } else {
    Unknown(c, absl::StrCat(Errno(l.err), " ", l.log));
  }
  return c;
}

FeatureCheck ProbeSleepable() {
  FeatureCheck c = Make(KernelFeature::kSleepableUprobe, "sleepable_uprobes", false, "Linux 6.0+");
  // bpf_copy_from_user(r10 - 8, 8, NULL): the helper the sleepable errors
  // program uses, callable only when the kernel took BPF_F_SLEEPABLE.
  std::vector<bpf_insn> insns = {
      MovReg(1, BPF_REG_10), AddImm(1, -8), MovImm(2, 8), MovImm(3, 0),
      Call(BPF_FUNC_copy_from_user), MovImm(0, 0), Exit(),
  };
  Loaded l = LoadKprobe(insns, BPF_F_SLEEPABLE);
  if (l.fd >= 0) {
    close(l.fd);
    c.supported = true;
    c.reason = "sleepable kprobe/uprobe programs with bpf_copy_from_user load";
  } else if (l.err == EINVAL) {
    c.reason = absl::StrCat("sleepable kprobe/uprobe programs refused: ", l.log,
                            "; the non-sleepable program is used (pages the target has not "
                            "touched yet cannot be read)");
  } else {
    Unknown(c, absl::StrCat(Errno(l.err), " ", l.log));
  }
  return c;
}

FeatureCheck ProbeUprobeMulti() {
  FeatureCheck c = Make(KernelFeature::kUprobeMulti, "uprobe_multi", false,
                        "Linux 6.6.35+, 6.9.5+ or 6.10+");
  const char* fallback = "; one perf-event uprobe per probe is used (slower attach and detach)";
  Loaded l = LoadKprobe({MovImm(0, 0), Exit()}, 0, kAttachUprobeMulti);
  if (l.fd < 0) {
    if (l.err == EINVAL) {
      c.reason = absl::StrCat("the kernel refuses uprobe_multi programs", fallback);
    } else {
      Unknown(c, Errno(l.err));
    }
    return c;
  }
  // A directory as the binary: a kernel that knows uprobe_multi links gets
  // as far as the path and refuses it (EBADF); one that does not stops at
  // the attach type (EINVAL).
  const uint64_t offset = 0;
  int fd = RawUprobeMultiLinkCreate(l.fd, "/", absl::MakeConstSpan(&offset, 1), {}, 0);
  if (fd >= 0) {
    close(fd);
    close(l.fd);
    Unknown(c, "a uprobe_multi link on \"/\" was accepted");
    return c;
  }
  if (-fd != EBADF) {
    close(l.fd);
    c.reason = absl::StrCat("no uprobe_multi links (BPF_LINK_CREATE: ", Errno(-fd), ")", fallback);
    return c;
  }
  // The first uprobe_multi kernels filtered by thread, not process: the
  // other threads of a Go program were not probed. The fix also made a
  // negative pid EINVAL before the path is looked at.
  fd = RawUprobeMultiLinkCreate(l.fd, "/", absl::MakeConstSpan(&offset, 1), {}, -1);
  close(l.fd);
  if (fd >= 0) close(fd);
  if (fd < 0 && -fd == EINVAL) {
    c.supported = true;
    c.reason = "uprobe_multi links with per-process filtering";
  } else {
    c.reason = absl::StrCat("uprobe_multi links filter by thread, not process (kernel without ",
                            "the 6.10 fix)", fallback);
  }
  return c;
}

std::vector<FeatureCheck> ProbeAll() {
  std::vector<FeatureCheck> all = {ProbePrivileges(), ProbeBtf(), ProbeLockdown()};
  std::vector<FeatureCheck> bpf = {
      ProbeRingBuffer(),
      ProbeHelper(KernelFeature::kBpfLoop, "bpf_loop", "Linux 5.17+", BPF_FUNC_loop, "bpf_loop"),
      ProbeHelper(KernelFeature::kAttachCookie, "attach_cookie", "Linux 5.15+",
                  BPF_FUNC_get_attach_cookie, "bpf_get_attach_cookie"),
      ProbeAtomics(),
      ProbeSleepable(),
      ProbeUprobeMulti(),
  };
  // Unprivileged loads fail whatever the kernel supports (and libbpf's
  // helper probe then says "supported"): the answers mean nothing.
  const bool privileged = all[0].supported;
  for (FeatureCheck& c : bpf) {
    if (!privileged) Unknown(c, "no BPF privileges");
    all.push_back(std::move(c));
  }
  return all;
}

}  // namespace

const std::vector<FeatureCheck>& KernelFeatures() {
  static const std::vector<FeatureCheck>* all = new std::vector<FeatureCheck>(ProbeAll());
  return *all;
}

const FeatureCheck& KernelFeatureCheck(KernelFeature feature) {
  for (const FeatureCheck& c : KernelFeatures()) {
    if (c.feature == feature) return c;
  }
  return KernelFeatures().front();  // unreachable: every feature is probed
}

std::optional<std::string> MissingRequiredFeature(absl::Span<const FeatureCheck> checks) {
  std::vector<std::string> lacks;
  std::string locked;
  for (const FeatureCheck& c : checks) {
    // Unprivileged, nothing could be probed: the loaders say so themselves.
    if (c.feature == KernelFeature::kPrivileges && !c.supported) return std::nullopt;
    if (c.feature == KernelFeature::kPrivileges || c.feature == KernelFeature::kBtf) continue;
    if (!c.required || c.supported || c.unknown) continue;
    if (c.feature == KernelFeature::kLockdown) {
      locked = "this kernel is locked down (confidentiality): BPF may not read kernel memory";
    } else {
      lacks.push_back(absl::StrCat(c.name, " (needs ", c.needs, ")"));
    }
  }
  if (!lacks.empty()) return absl::StrCat("this kernel lacks ", absl::StrJoin(lacks, ", "));
  if (!locked.empty()) return locked;
  return std::nullopt;
}

std::optional<std::string> MissingRequiredFeature() {
  return MissingRequiredFeature(KernelFeatures());
}

absl::Status ExplainLoadFailure(absl::Status load_error) {
  if (load_error.ok()) return load_error;
  return ExplainLoadFailure(std::move(load_error), KernelFeatures());
}

absl::Status ExplainLoadFailure(absl::Status load_error, absl::Span<const FeatureCheck> checks) {
  if (load_error.ok()) return load_error;
  std::optional<std::string> missing = MissingRequiredFeature(checks);
  if (!missing) return load_error;
  absl::Status s(load_error.code(), absl::StrCat(*missing, "; see `goerrprof doctor`"));
  s.SetPayload(kPayloadUrl, absl::Cord(load_error.message()));
  return s;
}

bool IsMissingKernelFeature(const absl::Status& status) {
  return status.GetPayload(kPayloadUrl).has_value();
}

int RawUprobeMultiLinkCreate(int prog_fd, const char* path, absl::Span<const uint64_t> offsets,
                             absl::Span<const uint64_t> cookies, pid_t pid) {
  UprobeMultiAttr attr;
  std::memset(&attr, 0, sizeof(attr));
  attr.prog_fd = static_cast<uint32_t>(prog_fd);
  attr.attach_type = kAttachUprobeMulti;
  attr.path = reinterpret_cast<uintptr_t>(path);
  attr.offsets = reinterpret_cast<uintptr_t>(offsets.data());
  attr.cookies = cookies.empty() ? 0 : reinterpret_cast<uintptr_t>(cookies.data());
  attr.cnt = static_cast<uint32_t>(offsets.size());
  attr.pid = static_cast<uint32_t>(pid);
  int fd = static_cast<int>(syscall(__NR_bpf, kBpfLinkCreate, &attr, sizeof(attr)));
  return fd < 0 ? -errno : fd;
}

absl::Status LoadFailure(int err, absl::string_view what, absl::string_view log_tail) {
  if (err < 0) err = -err;
  if ((err == EPERM || err == EACCES) && !HaveBpfPrivileges()) {
    return absl::PermissionDeniedError(
        absl::StrCat("loading BPF was refused (EPERM): needs ", MissingBpfCapabilities(),
                     " (goerrprof loads BPF with CAP_BPF and CAP_PERFMON, or as root)"));
  }
  return ExplainLoadFailure(
      absl::InternalError(absl::StrCat(what, ": ", Errno(err), "; libbpf: ", log_tail)));
}

}  // namespace goerrprof::profiler
