#include "tests/bounded_child.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>

#include "absl/strings/str_format.h"

// ASan reserves terabytes of address space: no RLIMIT_AS under it.
#if defined(__SANITIZE_ADDRESS__)
#define GEP_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define GEP_UNDER_ASAN 1
#endif
#endif

namespace goerrprof::testing {
namespace {

#ifndef GEP_UNDER_ASAN
constexpr rlim_t kAddressSpaceCap = rlim_t{4} << 30;
#endif

double Now() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

}  // namespace

std::string BoundedRun::Describe() const {
  if (!finished) return absl::StrFormat("killed after %.1f s (time limit)", seconds);
  return absl::StrFormat("exit %d after %.2f s, peak RSS +%d MB", exit_code, seconds,
                         rss_growth_kb / 1024);
}

BoundedRun RunInChild(const std::function<int()>& fn, int timeout_seconds) {
  BoundedRun run;
  int fds[2];
  if (pipe(fds) != 0) return run;
  std::fflush(nullptr);  // else the child's exit could print the parent's buffered output
  double start = Now();
  pid_t pid = fork();
  if (pid < 0) return run;
  if (pid == 0) {
    close(fds[0]);
    // The peak starts at the parent's; bring it down to what is resident.
    int clear = open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC);
    if (clear >= 0) {
      if (write(clear, "5", 1) != 1) _exit(125);
      close(clear);
    }
#ifndef GEP_UNDER_ASAN
    rlimit cap{kAddressSpaceCap, kAddressSpaceCap};
    setrlimit(RLIMIT_AS, &cap);  // a runaway child fails instead of taking the machine
#endif
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    int64_t before = ru.ru_maxrss;
    if (write(fds[1], &before, sizeof(before)) != sizeof(before)) _exit(125);
    int code = 125;
    // An exception (bad_alloc at the address-space cap) must not reach the
    // test framework in the child, which would go on running tests there.
    try {
      code = fn();
    } catch (...) {
      code = 124;
    }
    _exit(code);
  }
  close(fds[1]);
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  pollfd p{pidfd, POLLIN, 0};
  bool exited = pidfd >= 0 && poll(&p, 1, timeout_seconds * 1000) == 1;
  if (!exited) kill(pid, SIGKILL);
  int status = 0;
  rusage ru{};
  wait4(pid, &status, 0, &ru);
  run.seconds = Now() - start;
  if (pidfd >= 0) close(pidfd);
  int64_t before = 0;
  if (read(fds[0], &before, sizeof(before)) != sizeof(before)) before = 0;
  close(fds[0]);
  run.finished = exited && WIFEXITED(status);
  if (run.finished) run.exit_code = WEXITSTATUS(status);
  if (exited && WIFSIGNALED(status)) run.exit_code = 128 + WTERMSIG(status);
  run.rss_growth_kb = ru.ru_maxrss - before;
  return run;
}

}  // namespace goerrprof::testing
