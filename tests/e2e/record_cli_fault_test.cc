// goerrprof killed (SIGKILL) at the moments that matter, through the
// GOERRPROF_FAULT points (base/fault_point.h) and at random moments: the
// targets run on and finish normally, no process is left stopped, nothing
// of ours stays attached (the fixture's TearDown) and the previous output
// file stays whole.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "pprof/profile_file.h"
#include "tests/e2e/record_cli_fixture.h"
#include "tests/test_support.h"

namespace goerrprof::testing {
namespace {

constexpr char kPrevious[] = "the previous profile, which must survive\n";

// GOERRPROF_FAULT for the goerrprof spawned while it lives.
class FaultEnv {
 public:
  explicit FaultEnv(const char* point) { setenv("GOERRPROF_FAULT", point, 1); }
  ~FaultEnv() { unsetenv("GOERRPROF_FAULT"); }
};


void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// The processes whose parent died come to us (PR_SET_CHILD_SUBREAPER), so
// the test sees the end of the command and of goerrprof's guardian.
std::vector<pid_t> OwnChildren() {
  std::vector<pid_t> out;
  std::string line =
      ReadFileOrEmpty(absl::StrCat("/proc/", getpid(), "/task/", getpid(), "/children"));
  for (absl::string_view s : absl::StrSplit(line, ' ', absl::SkipEmpty())) {
    int pid;
    if (absl::SimpleAtoi(s, &pid)) out.push_back(pid);
  }
  return out;
}

// Waits (bounded, on pidfds) for every child of ours to exit and reaps it;
// returns each one's exit code by its command name.
std::vector<std::pair<std::string, int>> ReapAll(int timeout_seconds) {
  std::vector<std::pair<std::string, int>> out;
  auto deadline = Clock::now() + std::chrono::seconds(timeout_seconds);
  for (;;) {
    std::vector<pid_t> kids = OwnChildren();
    if (kids.empty()) break;
    pid_t pid = kids.front();
    std::string comm = ReadFileOrEmpty(absl::StrCat("/proc/", pid, "/comm"));
    std::string state = ReadFileOrEmpty(absl::StrCat("/proc/", pid, "/stat"));
    int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
    if (fd >= 0) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      pollfd p = {fd, POLLIN, 0};
      int ready = left.count() > 0 ? poll(&p, 1, static_cast<int>(left.count())) : 0;
      close(fd);
      if (ready <= 0) {
        ADD_FAILURE() << "pid " << pid << " (" << comm << ") still there: " << state;
        kill(pid, SIGKILL);
        kill(pid, SIGCONT);
      }
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) break;
    if (!comm.empty() && comm.back() == '\n') comm.pop_back();
    out.push_back({comm, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status)});
  }
  return out;
}

class RecordFaultTest : public RecordCliTest {
 protected:
  void SetUp() override {
    ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    errgen_ = NewestErrgen();
    ASSERT_FALSE(errgen_.path.empty());
  }
  void TearDown() override {
    ReapAll(kTimeout);
    RecordCliTest::TearDown();
  }
  CorpusBinary errgen_;
};

// Killed while the command's exec is stopped, waiting for its probes: the
// guardian continues it, and it runs to its end.
TEST_F(RecordFaultTest, KilledWhileExecStopped) {
  std::string out = OutPath("exec_stopped");
  WriteFile(out, kPrevious);
  FaultEnv fault("exec-stopped");
  auto rec = Child::Spawn({GoerrprofPath(), "record", "--max_overhead=0",
                           "-o", out, "--", errgen_.path, "-n", "1"});
  ASSERT_TRUE(rec.ok()) << rec.status();
  // Ends when every holder of goerrprof's stdout has exited: errgen too.
  auto done = (*rec)->Finish(kTimeout);
  ASSERT_TRUE(done.ok()) << done.status() << ": a process stayed stopped";
  EXPECT_EQ(done->exit_code, 128 + SIGKILL) << done->err;
  // errgen ran every scenario: its truth is whole.
  auto truth = ParseJson(done->out);
  EXPECT_TRUE(truth.ok()) << truth.status();
  bool errgen_seen = false;
  for (const auto& [comm, code] : ReapAll(kTimeout)) {
    EXPECT_EQ(code, 0) << comm;
    errgen_seen = errgen_seen || comm.rfind("errgen", 0) == 0;
  }
  EXPECT_TRUE(errgen_seen) << "errgen was not reparented to the test";
  EXPECT_EQ(ReadFileOrEmpty(out), kPrevious);
}

// Killed once its probes are attached (errors and goroutine waits): the
// target runs on unharmed and its probes are gone.
TEST_F(RecordFaultTest, KilledOnceAttached) {
  std::unique_ptr<Child> errgen = StartErrgen(errgen_.path, 1);
  ASSERT_TRUE(errgen);
  std::string out = OutPath("attached");
  WriteFile(out, kPrevious);
  FaultEnv fault("attached");
  auto rec = StartRecord(errgen->pid(), out, {"--goroutines=trace"});
  ASSERT_TRUE(rec);
  auto rec_done = rec->Finish(kTimeout);
  ASSERT_TRUE(rec_done.ok()) << rec_done.status();
  EXPECT_EQ(rec_done->exit_code, 128 + SIGKILL) << rec_done->err;
  ASSERT_TRUE(errgen->Write("go\n").ok());
  auto run = errgen->Finish(kTimeout);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->exit_code, 0) << run->err;
  EXPECT_TRUE(ParseJson(run->out).ok());
  EXPECT_EQ(ReadFileOrEmpty(out), kPrevious);
}

// Killed between writing the new profile and renaming it over the old one.
TEST_F(RecordFaultTest, KilledWhileWriting) {
  std::unique_ptr<Child> errgen = StartErrgen(errgen_.path, 1);
  ASSERT_TRUE(errgen);
  std::string out = OutPath("writing");
  WriteFile(out, kPrevious);
  FaultEnv fault("writing");
  auto rec = StartRecord(errgen->pid(), out);
  ASSERT_TRUE(rec);
  ASSERT_TRUE(errgen->Write("go\n").ok());
  auto run = errgen->Finish(kTimeout);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->exit_code, 0) << run->err;
  auto rec_done = rec->Finish(kTimeout);  // the target exited: it writes, and dies there
  ASSERT_TRUE(rec_done.ok()) << rec_done.status();
  EXPECT_EQ(rec_done->exit_code, 128 + SIGKILL) << rec_done->err;
  EXPECT_EQ(ReadFileOrEmpty(out), kPrevious);
}

// Killed at random moments of `record -- COMMAND` whose command execs
// twice: nothing is left stopped whenever the kill lands. The delays only
// place the kill; no result depends on them.
TEST_F(RecordFaultTest, KilledAtRandomMoments) {
  std::mt19937 rng(20261204);
  std::string script = absl::StrCat(errgen_.path, " -n 1 >/dev/null && exec ", errgen_.path,
                                     " -n 1");
  for (int round = 0; round < 6; ++round) {
    int delay_ms = std::uniform_int_distribution<int>(0, 400)(rng);
    SCOPED_TRACE(absl::StrCat("kill after ", delay_ms, " ms"));
    std::string out = OutPath(absl::StrCat("random", round));
    WriteFile(out, kPrevious);
    auto rec = Child::Spawn({GoerrprofPath(), "record", "--max_overhead=0",
                             "-o", out, "--", "/bin/sh", "-c", script});
    ASSERT_TRUE(rec.ok()) << rec.status();
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    kill((*rec)->pid(), SIGKILL);
    auto done = (*rec)->Finish(kTimeout);
    ASSERT_TRUE(done.ok()) << done.status() << ": a process stayed stopped";
    for (const auto& [comm, code] : ReapAll(kTimeout)) EXPECT_EQ(code, 0) << comm;
    // Killed or finished first, the output is the old one or a whole new one.
    std::string now = ReadFileOrEmpty(out);
    if (now != kPrevious) {
      EXPECT_TRUE(profiler::ReadProfile(out).ok());
    }
  }
}

// Two recorders on one target: each has its own probes and ring, and each
// sees every error, with the same samples.
TEST_F(RecordFaultTest, TwoRecordersOnOneTarget) {
  std::unique_ptr<Child> errgen = StartErrgen(errgen_.path, 2);
  ASSERT_TRUE(errgen);
  std::string out[2] = {OutPath("first"), OutPath("second")};
  std::unique_ptr<Child> rec[2];
  for (int i = 0; i < 2; ++i) {
    rec[i] = StartRecord(errgen->pid(), out[i]);
    ASSERT_TRUE(rec[i]);
  }
  ASSERT_TRUE(errgen->Write("go\n").ok());
  auto run = errgen->Finish(kTimeout);
  ASSERT_TRUE(run.ok()) << run.status();
  ASSERT_EQ(run->exit_code, 0) << run->err;
  std::map<std::string, int64_t> counts[2];
  for (int i = 0; i < 2; ++i) {
    Summary summary;
    ASSERT_NO_FATAL_FAILURE(FinishRecord(*rec[i], "target exited", &summary));
    EXPECT_EQ(summary.dropped, 0u);
    auto profile = profiler::ReadProfile(out[i]);
    ASSERT_TRUE(profile.ok()) << profile.status();
    for (const ProfileSample& p : ProfileSamples(*profile)) {
      std::string key = absl::StrJoin(p.functions, "<");
      for (const auto& [k, v] : p.labels) absl::StrAppend(&key, "|", k, "=", v);
      for (int64_t v : p.values) counts[i][key] += v;  // errors and panics
    }
  }
  EXPECT_GT(counts[0].size(), 20u);
  EXPECT_EQ(counts[0], counts[1]);
}

// An output that cannot be written fails the recording at its start, in
// one line, before anything is attached.
TEST_F(RecordFaultTest, OutputDirectoryMissing) {
  std::unique_ptr<Child> errgen = StartErrgen(errgen_.path, 1);
  ASSERT_TRUE(errgen);
  std::string out = absl::StrCat(::testing::TempDir(), "/no_such_dir_", getpid(), "/x.pb.gz");
  CommandResult r = RunCommand(
      {GoerrprofPath(), "record", "--max_overhead=0",
       absl::StrCat("--pid=", errgen->pid()), "-o", out}, kTimeout);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(r.err, absl::StrCat("goerrprof: cannot write ", out,
                                ": No such file or directory (errno 2); nothing recorded\n"));
  ASSERT_TRUE(errgen->Write("go\n").ok());
  auto run = errgen->Finish(kTimeout);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->exit_code, 0) << run->err;
}

// The disk fills during the recording: the profile is saved to $TMPDIR
// instead, said in one line, and the exit status says it failed.
TEST_F(RecordFaultTest, DiskFull) {
  std::string dir = absl::StrCat(::testing::TempDir(), "/full_", getpid());
  std::string rescue_dir = absl::StrCat(::testing::TempDir(), "/rescue_", getpid());
  ASSERT_EQ(RunCommand({"/bin/mkdir", "-p", dir, rescue_dir}).exit_code, 0);
  // One page: room to start, not for the profile.
  CommandResult m = RunCommand({"/bin/mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", dir});
  if (m.exit_code != 0) GTEST_SKIP() << "cannot mount a small tmpfs here: " << m.err;
  std::string out = dir + "/errors.pb.gz";
  setenv("TMPDIR", rescue_dir.c_str(), 1);
  CommandResult r =
      RunCommand({GoerrprofPath(), "record", "--max_overhead=0",
                  "-o", out, "--", errgen_.path, "-n", "1"}, kTimeout);
  unsetenv("TMPDIR");
  RunCommand({"/bin/umount", dir});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  std::string rescue = absl::StrCat(rescue_dir, "/goerrprof-");
  size_t at = r.err.find("; the profile was saved to " + rescue);
  ASSERT_NE(at, std::string::npos) << r.err;
  EXPECT_NE(r.err.find("No space left on device"), std::string::npos) << r.err;
  size_t from = at + std::string("; the profile was saved to ").size();
  std::string saved = r.err.substr(from, r.err.find(' ', from) - from);
  auto profile = profiler::ReadProfile(saved);
  ASSERT_TRUE(profile.ok()) << profile.status();
  EXPECT_GT(profile->sample_size(), 0);
  std::remove(saved.c_str());
}

}  // namespace
}  // namespace goerrprof::testing
