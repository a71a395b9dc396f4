// `goerrprof record` given bad input (no pid, a dead one, not a number, not
// a Go process, no privileges, a target gone mid-attach) fails with one
// clear line and leaves the target alone. Needs root.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "tests/e2e/record_cli_fixture.h"
#include "tests/test_support.h"

namespace goerrprof::testing {
namespace {

// A bad-input failure: non-zero exit without a crash, nothing on stdout,
// exactly one stderr line "goerrprof: ..." that contains one of `wanted`.
void ExpectOneLineError(const CommandResult& r, const std::vector<std::string>& wanted) {
  EXPECT_NE(r.exit_code, 0) << r.err;
  EXPECT_LT(r.exit_code, 128) << "killed by a signal: " << r.err;
  EXPECT_EQ(r.out, "");
  ASSERT_TRUE(absl::EndsWith(r.err, "\n")) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_TRUE(absl::StartsWith(r.err, "goerrprof: ")) << r.err;
  bool found = false;
  for (const std::string& w : wanted) found |= absl::StrContains(r.err, w);
  EXPECT_TRUE(found) << "none of [" << absl::StrJoin(wanted, "; ") << "] in: " << r.err;
}

// fork+exec with a close-on-exec pipe: read() returning EOF means exec has
// happened, so /proc/PID/exe is the new program. stdio is /dev/null.
pid_t SpawnExeced(const std::vector<std::string>& argv) {
  int sync[2];
  if (pipe2(sync, O_CLOEXEC) != 0) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    int devnull = open("/dev/null", O_RDWR);
    dup2(devnull, 0);
    dup2(devnull, 1);
    dup2(devnull, 2);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    char failed = 1;
    (void)!write(sync[1], &failed, 1);
    _exit(127);
  }
  close(sync[1]);
  char c;
  ssize_t n = read(sync[0], &c, 1);  // 0: exec'd; 1: exec failed
  close(sync[0]);
  if (n != 0) {
    waitpid(pid, nullptr, 0);
    return -1;
  }
  return pid;
}

TEST_F(RecordCliTest, NoPid) {
  ExpectOneLineError(RunCommand({GoerrprofPath(), "record", "--max_overhead=0",
                                 "-o", OutPath("x")}, kTimeout),
                     {"--pid"});
}

TEST_F(RecordCliTest, DeadPid) {
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  ASSERT_GT(pid, 0);
  ASSERT_EQ(waitpid(pid, nullptr, 0), pid);  // reaped: the pid is free
  ExpectOneLineError(
      RunCommand({GoerrprofPath(), "record", "--max_overhead=0",
                  absl::StrCat("--pid=", pid), "-o", OutPath("x")},
                 kTimeout),
      {absl::StrCat("no process with pid ", pid)});
}

TEST_F(RecordCliTest, NotAGoProcess) {
  pid_t pid = SpawnExeced({"sleep", "600"});
  ASSERT_GT(pid, 0);
  CommandResult r = RunCommand(
      {GoerrprofPath(), "record", "--max_overhead=0",
       absl::StrCat("--pid=", pid), "-o", OutPath("x")}, kTimeout);
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  ExpectOneLineError(r, {"not a Go binary"});
}

TEST_F(RecordCliTest, PidNotANumber) {
  ExpectOneLineError(
      RunCommand({GoerrprofPath(), "record", "--max_overhead=0",
                  "--pid=abc", "-o", OutPath("x")}, kTimeout),
      {"invalid pid \"abc\""});
}

// --goroutines is sample, trace or off (a bare one: sample); --hz 1-1000.
TEST_F(RecordCliTest, BadGoroutinesMode) {
  ExpectOneLineError(RunCommand({GoerrprofPath(), "record", "--max_overhead=0",
                                 "--goroutines=always", "--pid=1",
                                 "-o", OutPath("x")},
                                kTimeout),
                     {"--goroutines must be sample, trace or off, not \"always\""});
  ExpectOneLineError(RunCommand({GoerrprofPath(), "record", "--max_overhead=0",
                                 "--goroutines", "--hz=0", "--pid=1",
                                 "-o", OutPath("x")},
                                kTimeout),
                     {"--hz must be between 1 and 1000, not 0"});
}

TEST_F(RecordCliTest, WithoutPrivileges) {
  CorpusBinary b = NewestErrgen();
  ASSERT_FALSE(b.path.empty());
  auto errgen = StartErrgen(b.path, 1, nullptr, kTimeout);  // root's, blocked on stdin
  ASSERT_NE(errgen, nullptr);
  CommandResult r = RunCommand({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                GoerrprofPath(), "record", "--max_overhead=0",
                                    absl::StrCat("--pid=", errgen->pid()),
                                "-o", OutPath("x")},
                               kTimeout);
  // Root's process, to nobody: the capability that would allow it, named.
  EXPECT_EQ(r.err, absl::StrCat("goerrprof: process ", errgen->pid(),
                                " is another user's or more privileged: reading it needs "
                                "CAP_SYS_PTRACE\n"));
  ExpectOneLineError(r, {"CAP_SYS_PTRACE"});
  // The failed attempt left the target alone.
  ASSERT_TRUE(errgen->Write("go\n").ok());
  auto run = errgen->Finish(kTimeout);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->exit_code, 0) << run->err;
}

TEST_F(RecordCliTest, TargetExitsDuringAttach) {
  CorpusBinary b = NewestErrgen();
  ASSERT_FALSE(b.path.empty());
  // No -wait: errgen works and exits at once (a few ms), long before an
  // attach (tens of ms) completes. It stays unreaped until Finish.
  auto errgen = Child::Spawn({b.path, "-n", "1"});
  ASSERT_TRUE(errgen.ok()) << errgen.status();
  CommandResult r = RunCommand(
      {GoerrprofPath(), "record", "--max_overhead=0",
       absl::StrCat("--pid=", (*errgen)->pid()), "-o", OutPath("x")},
      kTimeout);
  ExpectOneLineError(r, {"no process", "exited"});
  auto run = (*errgen)->Finish(kTimeout);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->exit_code, 0) << run->err;
}

}  // namespace
}  // namespace goerrprof::testing
