// The follower's every-exec mode (the agent's discovery): every exec in the
// PID namespace is reported, followed or not, and none is stopped. Needs
// root.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <memory>

#include "gtest/gtest.h"
#include "session/process_follower.h"

namespace goerrprof::testing {
namespace {

using profiler::ExecEvent;
using profiler::ProcessFollower;

TEST(ExecWatch, EveryExecIsReportedAndNoneStopped) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (CAP_BPF, CAP_PERFMON)";
  auto watch = ProcessFollower::Start(ProcessFollower::Mode::kEveryExec);
  ASSERT_TRUE(watch.ok()) << watch.status();
  // Three children nobody follows, each exec'ing a program that exits 0.
  pid_t kids[3];
  for (pid_t& kid : kids) {
    kid = fork();
    ASSERT_GE(kid, 0);
    if (kid == 0) {
      execl("/bin/true", "true", static_cast<char*>(nullptr));
      _exit(127);
    }
  }
  // They ran to the end on their own: nothing stopped them (a stopped one
  // is reported, then killed, so the test cannot hang).
  for (pid_t kid : kids) {
    int status = 0;
    ASSERT_EQ(waitpid(kid, &status, WUNTRACED), kid);
    if (WIFSTOPPED(status)) {
      ADD_FAILURE() << "pid " << kid << " was stopped at exec";
      kill(kid, SIGKILL);
      waitpid(kid, &status, 0);
      continue;
    }
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  }
  int seen = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (seen < 3 && std::chrono::steady_clock::now() < deadline) {
    auto n = (*watch)->Poll(100, [&](const ExecEvent& e) {
      for (pid_t kid : kids) {
        if (e.pid == kid) {
          EXPECT_FALSE(e.stopped);
          EXPECT_EQ(e.ppid, getpid());
          ++seen;
        }
      }
    });
    ASSERT_TRUE(n.ok()) << n.status();
  }
  EXPECT_EQ(seen, 3);
  EXPECT_GE((*watch)->Counters()[GEF_CTR_EXECS], 3u);
}

}  // namespace
}  // namespace goerrprof::testing
