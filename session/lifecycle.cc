#include "session/lifecycle.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "base/errno.h"
#include "base/read_file.h"
#include "base/status_macros.h"
#include "session/backing_file.h"
#include "session/capabilities.h"
#include "session/uprobe_attach.h"
#include "symbolizer/elf_file.h"
#include "symbolizer/load_bias.h"

namespace goerrprof::profiler {

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

// ---- ProbeTarget ----

absl::StatusOr<ProbeTarget> ProbeTarget::Open(pid_t pid, const std::string& executable) {
  if (pid <= 0) return absl::InvalidArgumentError(absl::StrCat("bad pid ", pid));
  ProbeTarget t;
  t.pid_ = pid;
  t.pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (t.pidfd_ < 0) {
    int err = errno;
    if (err == ESRCH) return absl::NotFoundError(absl::StrCat("no process with pid ", pid));
    if (err == EPERM || err == EACCES) {
      return absl::PermissionDeniedError(absl::StrCat("not allowed to watch pid ", pid, ": ",
                                                      Errno(err)));
    }
    return absl::InternalError(absl::StrCat("pidfd_open(", pid, "): ", Errno(err)));
  }
  t.attach_path_ = absl::StrCat("/proc/", pid, "/exe");
  if (stat(t.attach_path_.c_str(), &t.exe_st_) != 0) {
    int err = errno;
    if (err == ENOENT || err == ESRCH) {
      return absl::NotFoundError(absl::StrCat("process ", pid, " has exited"));
    }
    if (err == EACCES || err == EPERM) {
      if (absl::Status named = CheckProcessReadable(pid); !named.ok()) return named;
      return absl::PermissionDeniedError(
          absl::StrCat("cannot read ", t.attach_path_, ": ", Errno(err)));
    }
    return absl::InternalError(absl::StrCat("stat ", t.attach_path_, ": ", Errno(err)));
  }
  char buf[4096];
  ssize_t n = readlink(t.attach_path_.c_str(), buf, sizeof(buf) - 1);
  t.exe_link_ = std::string(absl::StripSuffix(std::string(buf, n > 0 ? n : 0), " (deleted)"));
  if (!executable.empty()) {
    struct stat given;
    if (stat(executable.c_str(), &given) != 0) {
      return absl::NotFoundError(absl::StrCat("cannot stat ", executable, ": ", Errno(errno)));
    }
    if (given.st_dev != t.exe_st_.st_dev || given.st_ino != t.exe_st_.st_ino) {
      return absl::InvalidArgumentError(
          absl::StrCat("process ", pid, " does not run ", executable, " (it runs ", t.exe_link_,
                       ")"));
    }
  }
  return t;
}

absl::StatusOr<ProbeTarget> ProbeTarget::Everyone(const ProbeTarget& member) {
  ProbeTarget t;
  t.pid_ = -1;
  t.exe_fd_ = open(member.attach_path_.c_str(), O_PATH | O_CLOEXEC);
  if (t.exe_fd_ < 0) {
    return absl::NotFoundError(absl::StrCat("cannot open ", member.attach_path_, ": ",
                                            Errno(errno)));
  }
  struct stat st;
  if (fstat(t.exe_fd_, &st) != 0 || st.st_dev != member.exe_st_.st_dev ||
      st.st_ino != member.exe_st_.st_ino) {
    return absl::NotFoundError(absl::StrCat("process ", member.pid_, " has exited"));
  }
  // A magic link like /proc/PID/exe: the kernel's lookup reaches the file
  // itself, whatever mount namespace it lives in.
  t.attach_path_ = absl::StrCat("/proc/self/fd/", t.exe_fd_);
  t.exe_link_ = member.exe_link_;
  t.exe_st_ = member.exe_st_;
  t.file_key_ = member.file_key_;
  t.bias_ = member.bias_;
  return t;
}

ProbeTarget& ProbeTarget::operator=(ProbeTarget&& o) noexcept {
  if (this == &o) return *this;
  if (pidfd_ >= 0) close(pidfd_);
  if (exe_fd_ >= 0) close(exe_fd_);
  exe_fd_ = std::exchange(o.exe_fd_, -1);
  pid_ = o.pid_;
  pidfd_ = std::exchange(o.pidfd_, -1);
  attach_path_ = std::move(o.attach_path_);
  file_key_ = std::move(o.file_key_);
  exe_link_ = std::move(o.exe_link_);
  exe_st_ = o.exe_st_;
  bias_ = o.bias_;
  return *this;
}

ProbeTarget::~ProbeTarget() {
  if (pidfd_ >= 0) close(pidfd_);
  if (exe_fd_ >= 0) close(exe_fd_);
}

absl::Status ProbeTarget::FindLoadBias(const symbolizer::ElfFile& elf) {
  symbolizer::MappedFile mapped;
  ASSIGN_OR_RETURN(bias_, symbolizer::LoadBias(pid_, exe_st_, exe_link_, elf, &mapped));
  constexpr long kBtrfsMagic = 0x9123683E, kOverlayMagic = 0x794c7630;
  struct statfs fs;
  const long fs_type = statfs(attach_path_.c_str(), &fs) == 0 ? fs.f_type : 0;
  // overlayfs: uprobes attach to the layer's file underneath, shared by
  // every container of the image. The mappings named it before Linux 6.8;
  // since then they name the overlay's own inode, one per container, so
  // the kernel is asked what the mapping maps. When it cannot say (an
  // iterator refused), no key: containers keep a program each, since two
  // programs keyed apart on one layer file would each trap every process
  // running it (and stat()'s device cannot tell which kind of name the
  // mappings hold: without xino it is a layer's device).
  if (fs_type == kOverlayMagic) {
    absl::StatusOr<BackingFile> real = BackingFileAt(pid_, mapped.start);
    if (!real.ok()) {
      file_key_.clear();
      return absl::OkStatus();
    }
    mapped.major = real->major;
    mapped.minor = real->minor;
    mapped.ino = real->ino;
  }
  file_key_ = absl::StrFormat("%x:%x:%d:%d.%09d", mapped.major, mapped.minor, mapped.ino,
                              exe_st_.st_mtim.tv_sec, exe_st_.st_mtim.tv_nsec);
  // btrfs: the mappings name one device for every subvolume, while a
  // snapshot's files are inodes of their own (a container's rootfs under
  // Docker's btrfs driver): stat()'s device tells the subvolumes apart.
  if (fs_type == kBtrfsMagic) absl::StrAppendFormat(&file_key_, "/%d", exe_st_.st_dev);
  return absl::OkStatus();
}

// ---- ProbeLinks ----

absl::Status ProbeLinks::Attach(const bpf_program* prog, const ProbeTarget& target,
                                absl::Span<const uint64_t> offsets,
                                absl::Span<const uint64_t> cookies, bool multi) {
  // Everyone: no process filter (uprobe_multi's pid 0, a perf event's -1).
  const pid_t pid = target.pid();
  auto exited = [&](size_t done) {
    return absl::UnavailableError(absl::StrCat("process ", pid, " exited during attach (after ",
                                               done, " of ", offsets.size(), " probes)"));
  };
  auto refused = [&](int err, size_t done, std::string what) -> absl::Status {
    if (err == ESRCH || target.gone()) return exited(done);
    if (err == EPERM || err == EACCES) {
      std::string missing = MissingBpfCapabilities();
      return absl::PermissionDeniedError(absl::StrCat(
          "attaching uprobes was refused (EPERM): needs ",
          missing.empty() ? "CAP_SYS_PTRACE for another user's or a more privileged process"
                          : missing));
    }
    return absl::InternalError(absl::StrCat(what, ": ", Errno(err)));
  };
  if (multi) {
    int fd = CreateUprobeMultiLink(bpf_program__fd(prog), target.attach_path(), offsets,
                                   cookies, pid > 0 ? pid : 0);
    if (fd < 0) {
      int err = -fd;
      if (err == EINVAL || err == EOPNOTSUPP) return absl::UnimplementedError("no uprobe_multi");
      return refused(err, 0,
                     absl::StrCat("attaching ", offsets.size(), " uprobes to ",
                                  target.attach_path()));
    }
    multi_fd_ = fd;
    return absl::OkStatus();
  }
  links_.reserve(offsets.size());
  for (size_t i = 0; i < offsets.size(); ++i) {
    LIBBPF_OPTS(bpf_uprobe_opts, opts, .bpf_cookie = cookies[i], .retprobe = false);
    bpf_link* link = bpf_program__attach_uprobe_opts(prog, pid > 0 ? pid : -1,
                                                     target.attach_path().c_str(),
                                                     offsets[i], &opts);
    if (!link) {
      return refused(errno, i,
                     absl::StrFormat("uprobe at file offset 0x%x of %s", offsets[i],
                                     target.attach_path()));
    }
    links_.push_back(link);
    // Attaching to a dead process can succeed; do not go on for thousands.
    if (i % 64 == 63 && target.gone()) return exited(i + 1);
  }
  return absl::OkStatus();
}

void ProbeLinks::Remove() {
  if (multi_fd_ >= 0) close(multi_fd_);  // removes every uprobe of the link
  multi_fd_ = -1;
  for (bpf_link* l : links_) {
    if (l != nullptr) bpf_link__destroy(l);
  }
  links_.clear();
}

std::unique_ptr<ProbeLinks> ProbeLinks::Release(size_t i) {
  if (multi_fd_ >= 0 || i >= links_.size() || links_[i] == nullptr) return nullptr;
  auto one = std::make_unique<ProbeLinks>();
  one->links_.push_back(links_[i]);
  links_[i] = nullptr;
  return one;
}

// ---- EventRing ----

absl::Status EventRing::Open(const bpf_map* map, SampleFn fn, void* ctx) {
  return OpenFd(bpf_map__fd(map), fn, ctx);
}

absl::Status EventRing::OpenFd(int map_fd, SampleFn fn, void* ctx) {
  Close();
  ring_ = ring_buffer__new(map_fd, fn, ctx, nullptr);
  if (!ring_) return absl::InternalError(absl::StrCat("ring buffer setup: ", Errno(errno)));
  return absl::OkStatus();
}

void EventRing::Close() {
  if (ring_) ring_buffer__free(ring_);
  ring_ = nullptr;
}

int EventRing::fd() const { return ring_ ? ring_buffer__epoll_fd(ring_) : -1; }

absl::StatusOr<bool> EventRing::Wait(int timeout_ms, int also_fd) {
  if (!ring_) return false;
  bool also_ready = false;
  if (timeout_ms != 0 || also_fd >= 0) {
    pollfd fds[2] = {{ring_buffer__epoll_fd(ring_), POLLIN, 0}, {also_fd, POLLIN, 0}};
    int n = poll(fds, also_fd >= 0 ? 2 : 1, timeout_ms);
    if (n < 0 && errno != EINTR) return absl::InternalError(absl::StrCat("poll: ", Errno(errno)));
    also_ready = n > 0 && also_fd >= 0 && (fds[1].revents & POLLIN);
  }
  RETURN_IF_ERROR(Drain());
  return also_ready;
}

absl::Status EventRing::Drain() {
  if (!ring_) return absl::OkStatus();
  int r = ring_buffer__consume(ring_);
  if (r < 0 && r != -EINTR && r != kPauseDrain) {
    return absl::InternalError(absl::StrCat("ring buffer: ", Errno(-r)));
  }
  return absl::OkStatus();
}

}  // namespace goerrprof::profiler
