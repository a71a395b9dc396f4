#include "session/bpf_session.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "bpf/errors.skel.h"
#include "session/kernel_features.h"
#include "session/libbpf_log.h"
#include "session/pid_namespace.h"
#include "session/uprobe_attach.h"
#include "symbolizer/go_binary.h"
#include "base/status_macros.h"
#include "symbolizer/load_bias.h"
#include "base/errno.h"
#include "base/read_file.h"

namespace goerrprof::profiler {
namespace {

constexpr char kBtfPath[] = "/sys/kernel/btf/vmlinux";

bool ProcessGone(int pidfd, pid_t pid) {
  if (pidfd >= 0) {
    pollfd p = {pidfd, POLLIN, 0};
    if (poll(&p, 1, 0) > 0 && (p.revents & POLLIN)) return true;
  }
  if (kill(pid, 0) != 0 && errno == ESRCH) return true;
  // Killed but not yet reaped: attach fails (ENOENT/ESRCH) before the pidfd
  // says so, while the kernel already marks the task PF_EXITING (flags,
  // the 9th field of /proc/PID/stat, after the parenthesised name).
  absl::StatusOr<std::string> stat = ReadWholeFile(absl::StrCat("/proc/", pid, "/stat"));
  if (!stat.ok()) return absl::IsNotFound(stat.status());
  size_t close = stat->rfind(')');
  if (close == std::string::npos) return false;
  std::istringstream rest(stat->substr(close + 1));
  std::string state;
  uint64_t field = 0, flags = 0;
  rest >> state;
  if (state == "Z" || state == "X") return true;
  for (int i = 4; i <= 9 && rest >> field; ++i) flags = field;  // fields 4..9
  constexpr uint64_t kPfExiting = 0x4;
  return (flags & kPfExiting) != 0;
}


}  // namespace

void ApplyGLayout(const goabi::GLayout& g, SessionConfig* c) {
  c->g_source = g.g_in_r14 ? GSource::kR14 : GSource::kTls;
  c->tls_g_offset = g.tls_g_offset;
  c->goid_offset = g.goid;
  c->gopc_offset = g.gopc;
  c->labels_offset = g.labels;
  c->label_storage = g.label_storage;
}

absl::Status ConfigureErrorProbe(errors_bpf* skel, const SessionConfig& config,
                                 const ErrorProbeLoad& load) {
  skel->rodata->target_tgid = load.target.pid;
  skel->rodata->pidns_dev = load.target.dev;
  skel->rodata->pidns_ino = load.target.ino;
  skel->rodata->max_chain = std::clamp<uint32_t>(config.max_chain, 1, GEP_MAX_CHAIN);
  skel->rodata->goid_offset = config.goid_offset;
  skel->rodata->tls_g_offset = config.tls_g_offset;
  skel->rodata->g_source = config.goid_offset < 0             ? GEP_G_NONE
                           : config.g_source == GSource::kR14 ? GEP_G_R14
                           : config.g_source == GSource::kTls ? GEP_G_TLS
                                                              : GEP_G_NONE;
  skel->rodata->capture_stack = config.capture_stack ? 1 : 0;
  skel->rodata->gopc_offset = config.gopc_offset;
  skel->rodata->labels_offset = config.labels_offset;
  skel->rodata->label_storage = config.labels_offset < 0 ? GEP_LABELS_NONE
                                : config.label_storage == goabi::LabelStorage::kMapPointer
                                    ? GEP_LABELS_MAP
                                    : GEP_LABELS_SLICE;
  int ncpus = libbpf_num_possible_cpus();
  if (ncpus <= 0) return absl::InternalError("cannot count possible CPUs");
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  const uint32_t ring_bytes = RoundUpPow2(config.ringbuf_bytes, page);
  skel->rodata->wakeup_bytes =
      static_cast<uint32_t>(std::clamp(config.wakeup_fraction, 0.0, 1.0) * ring_bytes);
  bool ok = bpf_map__set_max_entries(skel->maps.layouts,
                                     std::max<size_t>(1, load.n_layouts)) == 0 &&
            bpf_map__set_max_entries(skel->maps.addr_types,
                                     std::max<size_t>(1, load.n_addr_types)) == 0 &&
            bpf_map__set_max_entries(skel->maps.sites, std::max<size_t>(1, load.n_sites)) == 0 &&
            bpf_map__set_max_entries(skel->maps.scratch, ncpus) == 0 &&
            bpf_map__set_max_entries(skel->maps.events, ring_bytes) == 0;
  if (!ok) return absl::InternalError(absl::StrCat("cannot size BPF maps: ", Errno(errno)));
  // Set either way: libbpf (1.1 too) adds BPF_F_SLEEPABLE itself to an
  // SEC("uprobe.s") program whatever its flags say, so only a plain
  // SEC("uprobe") program can be both.
  const bool sleepable = load.sleepable;
  skel->rodata->sleepable = sleepable ? 1 : 0;
  const uint32_t flags = bpf_program__flags(skel->progs.gep_on_error);
  if (bpf_program__set_flags(skel->progs.gep_on_error,
                             sleepable ? flags | BPF_F_SLEEPABLE
                                       : flags & ~static_cast<uint32_t>(BPF_F_SLEEPABLE)) != 0) {
    return absl::InternalError(absl::StrCat("cannot set the probe's flags: ", Errno(errno)));
  }
  if (load.multi &&
      bpf_program__set_expected_attach_type(skel->progs.gep_on_error,
                                            static_cast<bpf_attach_type>(kTraceUprobeMulti)) != 0) {
    return absl::InternalError(absl::StrCat("cannot set attach type: ", Errno(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<BpfSession>> BpfSession::Start(const SessionConfig& config) {
  std::unique_ptr<BpfSession> s(new BpfSession());
  // On failure `s` is destroyed here: the destructor is the one cleanup path.
  RETURN_IF_ERROR(s->Init(config));
  return s;
}

BpfSession::~BpfSession() {
  if (ring_) ring_buffer__free(ring_);
  if (multi_link_fd_ >= 0) close(multi_link_fd_);   // removes every uprobe
  for (bpf_link* l : links_) bpf_link__destroy(l);  // removes its uprobe
  if (skel_) errors_bpf__destroy(skel_);
  if (pidfd_ >= 0) close(pidfd_);
}

absl::Status BpfSession::Init(const SessionConfig& config) {
  pid_ = config.pid;
  if (pid_ <= 0) return absl::InvalidArgumentError(absl::StrCat("bad pid ", pid_));
  if (access(kBtfPath, R_OK) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "kernel BTF not available (", kBtfPath, ": ", Errno(errno),
        "); goerrprof needs a kernel built with CONFIG_DEBUG_INFO_BTF"));
  }
  pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, pid_, 0));
  if (pidfd_ < 0) {
    int err = errno;
    if (err == ESRCH) return absl::NotFoundError(absl::StrCat("no process with pid ", pid_));
    if (err == EPERM || err == EACCES) {
      return absl::PermissionDeniedError(absl::StrCat("not allowed to watch pid ", pid_, ": ",
                                                      Errno(err)));
    }
    return absl::InternalError(absl::StrCat("pidfd_open(", pid_, "): ", Errno(err)));
  }

  // Attach through /proc/PID/exe: names the exact inode the process runs,
  // even if it was deleted or lives in another mount namespace.
  attach_path_ = absl::StrCat("/proc/", pid_, "/exe");
  struct stat exe_st;
  if (stat(attach_path_.c_str(), &exe_st) != 0) {
    int err = errno;
    if (err == ENOENT || err == ESRCH) {
      return absl::NotFoundError(absl::StrCat("process ", pid_, " has exited"));
    }
    if (err == EACCES || err == EPERM) {
      return absl::PermissionDeniedError(absl::StrCat("cannot read ", attach_path_, ": ",
                                                      Errno(err), "; run as root"));
    }
    return absl::InternalError(absl::StrCat("stat ", attach_path_, ": ", Errno(err)));
  }
  char link_buf[4096];
  ssize_t link_len = readlink(attach_path_.c_str(), link_buf, sizeof(link_buf) - 1);
  std::string exe_link(link_buf, link_len > 0 ? link_len : 0);
  exe_link = std::string(absl::StripSuffix(exe_link, " (deleted)"));
  if (!config.executable.empty()) {
    struct stat given;
    if (stat(config.executable.c_str(), &given) != 0) {
      return absl::NotFoundError(absl::StrCat("cannot stat ", config.executable, ": ",
                                              Errno(errno)));
    }
    if (given.st_dev != exe_st.st_dev || given.st_ino != exe_st.st_ino) {
      return absl::InvalidArgumentError(absl::StrCat("process ", pid_, " runs ", exe_link,
                                                     ", not ", config.executable));
    }
  }
  ASSIGN_OR_RETURN(std::unique_ptr<symbolizer::ElfFile> elf,
                   symbolizer::ElfFile::Open(config.executable.empty() ? attach_path_
                                                                       : config.executable));
  ASSIGN_OR_RETURN(bias_, symbolizer::LoadBias(pid_, exe_st, exe_link, *elf));

  // Probe file offsets before loading anything, so bad input fails cheaply.
  std::vector<uint64_t> offsets;
  size_t n_sites = 0;
  for (const ProbeSpec& p : config.probes) {
    auto off = elf->FileOffsetOf(p.vaddr);
    if (!off.ok()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "probe address 0x%x is not in an executable segment of %s", p.vaddr, exe_link));
    }
    offsets.push_back(*off);
    if (GEP_LOC_KIND(GEP_COOKIE_TAB(p.cookie)) == GEP_LOC_CONST ||
        GEP_LOC_KIND(GEP_COOKIE_DATA(p.cookie)) == GEP_LOC_CONST) {
      ++n_sites;
    }
  }

  auto t0 = std::chrono::steady_clock::now();
  // Chosen by probing: a uprobe_multi kernel whose pid filter is per thread
  // would load and attach fine, then miss every other thread's errors.
  absl::Status loaded = Load(config, n_sites, config.uprobe_multi && UprobeMultiSupported());
  if (!loaded.ok() && config.uprobe_multi && absl::IsUnimplemented(loaded)) {
    loaded = Load(config, n_sites, false);  // kernel before 6.6
  }
  RETURN_IF_ERROR(loaded);
  stats_.load = std::chrono::steady_clock::now() - t0;

  // Layouts, keyed by runtime type address.
  int layouts_fd = bpf_map__fd(skel_->maps.layouts);
  int addr_types_fd = bpf_map__fd(skel_->maps.addr_types);
  for (const ErrorLayout& l : config.layouts) {
    if (l.addr_type) {
      const AddrTypeLayout& a = *l.addr_type;
      gep_addr_layout v;
      std::memset(&v, 0, sizeof(v));
      v.kind = a.kind;
      v.ip_off = a.ip;
      v.port_off = a.port;
      TypeNames info;
      info.name = l.name;
      for (const auto& [name, offset] : a.strings) {
        if (v.n_str == GEP_MAX_ADDR_STR) {
          ++stats_.fields_dropped;
          break;
        }
        info.strings.emplace_back(name, offset);
        v.str_off[v.n_str++] = offset;
      }
      uint64_t key = l.type_addr + bias_;
      if (bpf_map_update_elem(addr_types_fd, &key, &v, BPF_ANY) != 0) {
        return absl::InternalError(absl::StrCat("filling the address map: ", Errno(errno)));
      }
      names_.addr_types[key] = std::move(info);
      continue;
    }
    gep_type_layout v;
    std::memset(&v, 0, sizeof(v));
    v.flags = l.deref ? GEP_TYPE_DEREF : 0;
    v.value_size = std::min<uint8_t>(l.value_size, 8);
    TypeNames info;
    info.name = l.name;
    for (const ErrorLayout::Field& f : l.fields) {
      switch (f.kind) {
        case LayoutFieldKind::kString:
          if (v.n_str == GEP_MAX_STR_FIELDS) {
            ++stats_.fields_dropped;
            break;
          }
          info.strings.emplace_back(f.name, f.offset);
          v.str_off[v.n_str++] = f.offset;
          break;
        case LayoutFieldKind::kError:
          if (v.n_err == GEP_MAX_ERR_FIELDS) {
            ++stats_.fields_dropped;
            break;
          }
          v.err_off[v.n_err++] = f.offset;
          break;
        case LayoutFieldKind::kErrorSlice:
          if (v.n_slice == GEP_MAX_SLICE_FIELDS) {
            ++stats_.fields_dropped;
            break;
          }
          v.slice_off[v.n_slice++] = f.offset;
          break;
        case LayoutFieldKind::kAddr:
          if (v.n_addr == GEP_MAX_ADDR_FIELDS) {
            ++stats_.fields_dropped;
            break;
          }
          info.addrs.push_back(f.name);
          v.addr_off[v.n_addr++] = f.offset;
          break;
      }
    }
    uint64_t key = l.type_addr + bias_;
    if (bpf_map_update_elem(layouts_fd, &key, &v, BPF_ANY) != 0) {
      return absl::InternalError(absl::StrCat("filling the layout map: ", Errno(errno)));
    }
    names_.types[key] = std::move(info);
  }
  int sites_fd = bpf_map__fd(skel_->maps.sites);
  for (const ProbeSpec& p : config.probes) {
    bool tconst = GEP_LOC_KIND(GEP_COOKIE_TAB(p.cookie)) == GEP_LOC_CONST;
    bool dconst = GEP_LOC_KIND(GEP_COOKIE_DATA(p.cookie)) == GEP_LOC_CONST;
    if (!tconst && !dconst) continue;
    uint64_t key = p.vaddr + bias_;
    gep_site v = {tconst ? p.const_type + bias_ : 0, dconst ? p.const_data + bias_ : 0};
    if (bpf_map_update_elem(sites_fd, &key, &v, BPF_ANY) != 0) {
      return absl::InternalError(absl::StrCat("filling the site map: ", Errno(errno)));
    }
  }

  ring_ = ring_buffer__new(bpf_map__fd(skel_->maps.events), &BpfSession::OnSample, this,
                           nullptr);
  if (!ring_) return absl::InternalError(absl::StrCat("ring buffer setup: ", Errno(errno)));

  auto t1 = std::chrono::steady_clock::now();
  if (!config.probes.empty()) {
    RETURN_IF_ERROR(stats_.multi ? AttachMulti(config, offsets) : AttachEach(config, offsets));
  }
  stats_.attach = std::chrono::steady_clock::now() - t1;
  stats_.probes = config.probes.size();
  return absl::OkStatus();
}

// Opens and loads the skeleton. Unimplemented when the kernel does not know
// uprobe_multi programs (the caller then retries without).
absl::Status BpfSession::Load(const SessionConfig& config, size_t n_sites, bool multi) {
  if (skel_) {
    errors_bpf__destroy(skel_);
    skel_ = nullptr;
  }
  ScopedLibbpfLog log;
  skel_ = errors_bpf__open();
  if (!skel_) {
    return absl::InternalError(absl::StrCat("cannot open the BPF object: ", Errno(errno), " ",
                                            log.Tail(2)));
  }
  ErrorProbeLoad load;
  // The target as its threads' BPF sees it (inside a container: its PID namespace).
  ASSIGN_OR_RETURN(load.target, PidNamespaceOf(pid_));
  load.n_layouts = config.layouts.size();
  load.n_addr_types = 0;
  for (const ErrorLayout& l : config.layouts) load.n_addr_types += l.addr_type.has_value();
  load.n_sites = n_sites;
  load.multi = multi;
  // Without sleepable uprobes (before 6.0) the same program loads plain.
  load.sleepable = config.sleepable && KernelSupports(KernelFeature::kSleepableUprobe);
  RETURN_IF_ERROR(ConfigureErrorProbe(skel_, config, load));

  if (int err = errors_bpf__load(skel_); err != 0) {
    if (multi && -err == EINVAL && !UprobeMultiSupported()) {
      return absl::UnimplementedError("kernel without uprobe_multi");
    }
    return LoadFailure(err, "BPF program failed to load", log.Tail(8));
  }
  stats_.multi = multi;
  return absl::OkStatus();
}

absl::Status BpfSession::AttachMulti(const SessionConfig& config,
                                     const std::vector<uint64_t>& offsets) {
  std::vector<uint64_t> cookies;
  cookies.reserve(config.probes.size());
  for (const ProbeSpec& p : config.probes) cookies.push_back(p.cookie);
  int fd = CreateUprobeMultiLink(bpf_program__fd(skel_->progs.gep_on_error), attach_path_,
                                 offsets, cookies, pid_);
  if (fd < 0) {
    int err = -fd;
    if (err == ESRCH || ProcessGone(pidfd_, pid_)) {
      return absl::UnavailableError(absl::StrCat("process ", pid_, " exited during attach"));
    }
    if (err == EPERM || err == EACCES) {
      return absl::PermissionDeniedError(
          "attaching uprobes was refused (EPERM): run as root or with CAP_PERFMON");
    }
    return absl::InternalError(absl::StrCat("attaching ", offsets.size(), " uprobes to ",
                                            attach_path_, ": ", Errno(err)));
  }
  multi_link_fd_ = fd;
  return absl::OkStatus();
}

absl::Status BpfSession::AttachEach(const SessionConfig& config,
                                    const std::vector<uint64_t>& offsets) {
  links_.reserve(config.probes.size());
  for (size_t i = 0; i < config.probes.size(); ++i) {
    LIBBPF_OPTS(bpf_uprobe_opts, opts, .bpf_cookie = config.probes[i].cookie,
                .retprobe = false);
    bpf_link* link = bpf_program__attach_uprobe_opts(skel_->progs.gep_on_error, pid_,
                                                     attach_path_.c_str(), offsets[i], &opts);
    if (!link) {
      int err = errno;
      if (ProcessGone(pidfd_, pid_)) {
        return absl::UnavailableError(absl::StrCat("process ", pid_,
                                                   " exited during attach (after ", i, " of ",
                                                   config.probes.size(), " probes)"));
      }
      if (err == EPERM || err == EACCES) {
        return absl::PermissionDeniedError(
            "attaching uprobes was refused (EPERM): run as root or with CAP_PERFMON");
      }
      return absl::InternalError(absl::StrFormat("uprobe at 0x%x (file offset 0x%x): %s",
                                                 config.probes[i].vaddr, offsets[i],
                                                 Errno(err)));
    }
    links_.push_back(link);
    // Attaching to a dead process can succeed; do not go on for thousands.
    if (i % 64 == 63 && ProcessGone(pidfd_, pid_)) {
      return absl::UnavailableError(absl::StrCat("process ", pid_,
                                                 " exited during attach (after ", i + 1, " of ",
                                                 config.probes.size(), " probes)"));
    }
  }
  return absl::OkStatus();
}

bool BpfSession::target_exited() {
  if (!exited_ && ProcessGone(pidfd_, pid_)) exited_ = true;
  return exited_;
}

absl::StatusOr<int> BpfSession::Poll(int timeout_ms,
                                     absl::FunctionRef<void(const CapturedError&)> callback) {
  pollfd fds[2] = {{ring_buffer__epoll_fd(ring_), POLLIN, 0}, {pidfd_, POLLIN, 0}};
  // Once the target is gone only its last events are left: no waiting.
  int n = poll(fds, exited_ ? 1 : 2, exited_ ? 0 : timeout_ms);
  if (n < 0 && errno != EINTR) return absl::InternalError(absl::StrCat("poll: ", Errno(errno)));
  if (!exited_ && n > 0 && (fds[1].revents & POLLIN)) exited_ = true;
  callback_ = &callback;
  uint64_t before = delivered_;
  int r = ring_buffer__consume(ring_);
  callback_ = nullptr;
  if (r < 0) return absl::InternalError(absl::StrCat("ring buffer: ", Errno(-r)));
  return static_cast<int>(delivered_ - before);
}

int BpfSession::OnSample(void* ctx, void* data, size_t size) {
  auto* self = static_cast<BpfSession*>(ctx);
  CapturedError ev;
  if (!DecodeErrorRecord(static_cast<const uint8_t*>(data), size, self->names_, self->bias_,
                         &ev)) {
    ++self->decode_errors_;
    return 0;
  }
  ++self->delivered_;
  if (self->callback_) (*self->callback_)(ev);
  return 0;
}

SessionCounters BpfSession::Counters() const {
  SessionCounters c;
  c.decode_errors = decode_errors_;
  c.delivered = delivered_;
  if (!skel_) return c;
  for (uint32_t k = 0; k < GEP_CTR__COUNT; ++k) c.bpf[k] = SumPerCpu(skel_->maps.counters, k);
  return c;
}

std::vector<uint32_t> BpfSession::prog_ids() const {
  std::vector<uint32_t> ids;
  if (uint32_t id = skel_ ? ProgramId(skel_->progs.gep_on_error) : 0) ids.push_back(id);
  return ids;
}

}  // namespace goerrprof::profiler
