#include "session/exec_guardian.h"

#include <bpf/bpf.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cstdint>

#include "absl/strings/str_cat.h"

namespace goerrprof::profiler {
namespace {

// Continues every process in the followed map (SIGCONT to one that runs
// does nothing). Bounded by the map's size.
void ContinueFollowed(int map_fd) {
  uint32_t key = 0, next = 0;
  const void* prev = nullptr;
  for (int n = 0; n < (1 << 20) && bpf_map_get_next_key(map_fd, prev, &next) == 0; ++n) {
    if (next != 0) kill(static_cast<pid_t>(next), SIGCONT);
    key = next;
    prev = &key;
  }
}

[[noreturn]] void Guard(int pipe_fd, int map_fd) {
  // Only these two descriptors: the probes' links must not outlive
  // goerrprof through the guardian's copies.
  for (int fd = 3; fd < 1024; ++fd) {
    if (fd != pipe_fd && fd != map_fd) close(fd);
  }
  // Nor goerrprof's output pipes: a reader of them must not wait for us.
  int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null_fd >= 0) {
    for (int fd = 0; fd <= 2; ++fd) dup2(null_fd, fd);
    if (null_fd > 2 && null_fd != pipe_fd && null_fd != map_fd) close(null_fd);
  }
  setpgid(0, 0);
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE, SIGTSTP, SIGTTIN, SIGTTOU}) {
    signal(sig, SIG_IGN);
  }
  prctl(PR_SET_NAME, "goerrprof-guard");
  char c = 0;
  ssize_t n;
  while ((n = read(pipe_fd, &c, 1)) < 0 && errno == EINTR) {
  }
  if (n == 1) _exit(0);  // disarmed: a clean end
  // goerrprof is gone. An exec caught by the probe as it died may still be
  // about to stop itself: look again after a moment, then once more.
  ContinueFollowed(map_fd);
  for (long ms : {100L, 1000L}) {
    struct timespec ts = {0, ms * 1000000L};
    if (ms >= 1000) ts = {ms / 1000, 0};
    nanosleep(&ts, nullptr);
    ContinueFollowed(map_fd);
  }
  _exit(0);
}

}  // namespace

absl::StatusOr<ExecGuardian> ExecGuardian::Start(int followed_map_fd) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("cannot start the exec guardian: pipe2: ",
                                            strerror(errno)));
  }
  pid_t pid = fork();
  if (pid < 0) {
    int err = errno;
    close(p[0]);
    close(p[1]);
    return absl::InternalError(absl::StrCat("cannot start the exec guardian: fork: ",
                                            strerror(err)));
  }
  if (pid == 0) {
    close(p[1]);
    Guard(p[0], followed_map_fd);
  }
  close(p[0]);
  return ExecGuardian(p[1], pid);
}

void ExecGuardian::Disarm() {
  if (pipe_ < 0) return;
  char c = 'd';
  while (write(pipe_, &c, 1) < 0 && errno == EINTR) {
  }
  close(pipe_);
  pipe_ = -1;
}

ExecGuardian::~ExecGuardian() { Disarm(); }

}  // namespace goerrprof::profiler
