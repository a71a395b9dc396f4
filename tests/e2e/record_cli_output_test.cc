// Every way of stopping `goerrprof record` (--duration, SIGTERM, SIGINT)
// writes a valid profile and leaves the target running intact; go tool
// pprof's web UI serves a recorded profile. Needs root.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "pprof/profile_file.h"
#include "tests/e2e/record_cli_fixture.h"
#include "tests/test_support.h"

namespace goerrprof::testing {
namespace {

// Records a blocked errgen until `stop` (a signal, or 0 for --duration=1s),
// then checks the reason, the profile, and that the target runs on intact.
void StopAndCheck(const std::string& out, int stop, const std::string& want_reason) {
  CorpusBinary b = NewestErrgen();
  ASSERT_FALSE(b.path.empty());
  auto errgen = StartErrgen(b.path, 1, nullptr, kTimeout);  // never released while recorded
  ASSERT_NE(errgen, nullptr);
  auto started = Clock::now();
  auto rec = StartRecord(errgen->pid(), out,
                         stop == 0 ? std::vector<std::string>{"--duration=1s"}
                                   : std::vector<std::string>{});
  ASSERT_NE(rec, nullptr);
  auto attached = Clock::now();
  if (stop != 0) {
    ASSERT_EQ(kill(rec->pid(), stop), 0);
  }
  Summary summary;
  ASSERT_NO_FATAL_FAILURE(FinishRecord(*rec, want_reason, &summary));
  double took = std::chrono::duration<double>(Clock::now() - started).count();
  EXPECT_EQ(summary.file, out);
  EXPECT_GT(summary.probes, 0u);
  if (stop == 0) {
    // Recording starts after the attach line, so at least 1s from there.
    EXPECT_GE(std::chrono::duration<double>(Clock::now() - attached).count(), 1.0);
    EXPECT_LT(took, 20.0);
  } else {
    EXPECT_LT(took, 20.0);
  }
  auto profile = profiler::ReadProfile(out);
  ASSERT_TRUE(profile.ok()) << profile.status();
  ExpectValidProfile(*profile);
  int64_t sampled = 0;
  for (const auto& s : profile->sample()) sampled += s.value(0);
  EXPECT_EQ(static_cast<uint64_t>(sampled), summary.errors);

  // Detached: the target still works normally.
  ASSERT_TRUE(errgen->Write("go\n").ok());
  auto run = errgen->Finish(kTimeout);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->exit_code, 0) << run->err;
  EXPECT_TRUE(ParseJson(run->out).ok()) << run->out.substr(0, 200);
  std::remove(out.c_str());
}

TEST_F(RecordCliTest, DurationElapses) { StopAndCheck(OutPath("p"), 0, "duration elapsed"); }
TEST_F(RecordCliTest, Sigterm) { StopAndCheck(OutPath("p"), SIGTERM, "terminated"); }
TEST_F(RecordCliTest, Sigint) { StopAndCheck(OutPath("p"), SIGINT, "interrupted"); }

// go tool pprof's web UI serves a recorded profile: its top view names the
// creating sites.
TEST_F(RecordCliTest, PprofWebUiServesTheProfile) {
  CorpusBinary eg = NewestErrgen();
  std::string ready;
  auto errgen = StartErrgen(eg.path, 1, &ready, kTimeout);
  ASSERT_NE(errgen, nullptr);
  std::string out = OutPath("http");
  auto rec = StartRecord(errgen->pid(), out);
  ASSERT_NE(rec, nullptr);
  ASSERT_TRUE(errgen->Write("go\n").ok());
  ASSERT_TRUE(errgen->Finish(kTimeout).ok());
  auto recorded = rec->Finish(kTimeout);
  ASSERT_TRUE(recorded.ok() && recorded->exit_code == 0) << recorded->err;

  int port = FreeLoopbackPort();
  ASSERT_GT(port, 0);
  std::string addr = absl::StrCat("127.0.0.1:", port);
  auto pprof = Child::Spawn({"env", "GOTOOLCHAIN=local", "/usr/local/go/bin/go", "tool", "pprof",
                             "-no_browser", absl::StrCat("-http=", addr), out});
  ASSERT_TRUE(pprof.ok()) << pprof.status();
  auto line = (*pprof)->ReadLine(true, kTimeout);  // "Serving web UI on http://…"
  ASSERT_TRUE(line.ok()) << line.status();
  ASSERT_TRUE(absl::StrContains(*line, addr)) << *line;
  CommandResult top = RunCommand({"curl", "-sS", "--max-time", "30", "-o", "-", "-w",
                                  "\nHTTP %{http_code}", absl::StrCat("http://", addr, "/ui/top")});
  EXPECT_EQ(top.exit_code, 0) << top.err;
  EXPECT_TRUE(absl::EndsWith(top.out, "HTTP 200")) << top.out.substr(0, 300);
  EXPECT_TRUE(absl::StrContains(top.out, "main.siteQueryPtr")) << "top view lacks errgen's sites";
  // The Child destructor stops the server.
}

}  // namespace
}  // namespace goerrprof::testing
