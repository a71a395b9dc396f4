// record's overhead budget (--max-overhead) on errgen -storm: one site
// creating errors as fast as it can, then a calm site. The storm's site
// goes off and its count is estimated (within 10% of the truth, with
// `-- COMMAND` and with --pid on a process whose storm starts later) and
// marked; the calm site and the observed counts stay exact; 0 turns the
// budget off.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <regex>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "pprof/profile_file.h"
#include "tests/e2e/record_cli_fixture.h"
#include "tests/test_support.h"

namespace goerrprof::testing {
namespace {

namespace pp = perftools::profiles;

class RecordBudgetTest : public RecordCliTest {
 protected:
  void SetUp() override {
    errgen_ = NewestErrgen();
    ASSERT_FALSE(errgen_.path.empty());
  }
  // `record --max-overhead=BUDGET -o OUT -- errgen -storm N -calm 4`: it
  // must have run, and recorded errgen (not refused it).
  CommandResult RecordStorm(const std::string& budget, const std::string& out, int n) {
    CommandResult r = RunCommand({GoerrprofPath(), "record", "--max-overhead=" + budget, "-o", out,
                                  "--", errgen_.path, "-storm", std::to_string(n), "-calm", "4"},
                                 kTimeout);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    // A kernel that cannot record says so in its first line: shown as is.
    EXPECT_TRUE(absl::StrContains(r.err, " 0 failed not recorded")) << r.err;
    return r;
  }
  CorpusBinary errgen_;
};

struct Totals {
  int64_t errors = 0, observed = 0;
  bool estimated = false, unmarked = false;  // samples with and without the label
};

// By message: the errors and errors_observed values, and the marking.
std::map<std::string, Totals> ByMessage(const pp::Profile& p, int observed_index) {
  std::map<std::string, Totals> out;
  for (const pp::Sample& s : p.sample()) {
    std::string message;
    bool estimated = false;
    for (const pp::Label& l : s.label()) {
      const std::string& key = p.string_table(l.key());
      if (key == "error.message") message = p.string_table(l.str());
      if (key == "errors.estimated") estimated = p.string_table(l.str()) == "true";
    }
    Totals& t = out[message];
    t.errors += s.value(0);
    t.observed += observed_index >= 0 ? s.value(observed_index) : s.value(0);
    (estimated ? t.estimated : t.unmarked) = true;
  }
  return out;
}

TEST_F(RecordBudgetTest, StormSiteGoesOffAndIsEstimated) {
  // 2 000 000 creations take ~0.3 s unprobed, and over 20 s with every
  // one trapped: the budget must take the site off to finish in time.
  std::string out = OutPath("storm");
  CommandResult r = RecordStorm("1%", out, 2000000);
  ASSERT_FALSE(HasFailure());
  auto truth = ParseJson(r.out);
  ASSERT_TRUE(truth.ok()) << truth.status() << ": " << r.out;
  ASSERT_EQ(GetInt(*truth, "storm"), 2000000);
  EXPECT_TRUE(absl::StrContains(r.err, "overhead budget: 1% of one CPU per process")) << r.err;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(r.err, m, std::regex("command exited with 0: ([0-9]+) errors")))
      << r.err;
  const int64_t summary_errors = std::stoll(m[1]);

  auto profile = profiler::ReadProfile(out);
  ASSERT_TRUE(profile.ok()) << profile.status();
  ExpectValidProfile(*profile);
  ASSERT_EQ(profile->sample_type_size(), 3);
  EXPECT_EQ(profile->string_table(profile->sample_type(2).type()), "errors_observed");
  auto by = ByMessage(*profile, 2);
  const Totals& storm = by["retry: dependency down"];
  EXPECT_TRUE(storm.estimated);
  EXPECT_FALSE(storm.unmarked);
  EXPECT_GT(storm.observed, 0);
  EXPECT_LT(storm.observed, 2000000);  // it went off
  EXPECT_GT(storm.errors, storm.observed);
  // Priced by allocations (the runtime's counts, read from outside), the
  // estimate holds to the truth: within 10%.
  EXPECT_NEAR(static_cast<double>(storm.errors), 2000000.0, 200000.0);
  EXPECT_TRUE(std::regex_search(r.err, std::regex(" [1-9][0-9]* off periods? priced by "
                                                  "allocations, 0 by CPU time")))
      << r.err;
  // The calm site ran after the storm, on its own: exact and unmarked.
  for (const char* calm : {"calm 0", "calm 1"}) {
    EXPECT_EQ(by[calm].errors, 2) << calm;
    EXPECT_EQ(by[calm].observed, 2) << calm;
    EXPECT_FALSE(by[calm].estimated) << calm;
  }
  // The summary counts what the probes saw: the observed values.
  int64_t observed = 0;
  for (const auto& [message, t] : by) observed += t.observed;
  EXPECT_EQ(observed, summary_errors);
  bool said = false;
  for (const std::string& c : Comments(*profile)) {
    said = said || absl::StartsWith(c, "overhead budget: 1% of one CPU per process");
  }
  EXPECT_TRUE(said);
}

TEST_F(RecordBudgetTest, StormStartingAfterTheAttachIsEstimated) {
  // record --pid on an errgen already running, whose storm starts once the
  // probes are in: the site is new mid-recording, its first window must
  // start inside the storm (not at the process's start), and the estimate
  // hold as well.
  auto target = Child::Spawn({errgen_.path, "-wait", "-storm", "2000000", "-calm", "4"});
  ASSERT_TRUE(target.ok()) << target.status();
  auto ready = (*target)->ReadLine(false, kTimeout);
  ASSERT_TRUE(ready.ok() && absl::StartsWith(*ready, "ready ")) << ready.status();
  std::string out = OutPath("pid-storm");
  std::unique_ptr<Child> rec = StartRecord((*target)->pid(), out, {"--max-overhead=1%"});
  ASSERT_NE(rec, nullptr);
  ASSERT_TRUE((*target)->Write("go\n").ok());
  auto truth_line = (*target)->ReadLine(false, kTimeout);
  ASSERT_TRUE(truth_line.ok()) << truth_line.status();
  auto truth = ParseJson(*truth_line);
  ASSERT_TRUE(truth.ok()) << truth.status() << ": " << *truth_line;
  ASSERT_EQ(GetInt(*truth, "storm"), 2000000);
  auto done = (*target)->Finish(kTimeout);
  ASSERT_TRUE(done.ok()) << done.status();
  Summary summary;
  std::string said;
  ASSERT_NO_FATAL_FAILURE(FinishRecord(*rec, "target exited", &summary, &said));
  EXPECT_TRUE(std::regex_search(said, std::regex(" [1-9][0-9]* off periods? priced by "
                                                 "allocations, 0 by CPU time")))
      << said;
  auto profile = profiler::ReadProfile(out);
  ASSERT_TRUE(profile.ok()) << profile.status();
  auto by = ByMessage(*profile, 2);
  const Totals& storm = by["retry: dependency down"];
  EXPECT_TRUE(storm.estimated);
  EXPECT_LT(storm.observed, 2000000);
  EXPECT_NEAR(static_cast<double>(storm.errors), 2000000.0, 200000.0);
  EXPECT_EQ(by["calm 0"].errors, 2);
}

// CPU time of a process (user + system), in ms; -1 when gone.
int64_t CpuMs(pid_t pid) {
  std::string stat = ReadFileOrEmpty(absl::StrCat("/proc/", pid, "/stat"));
  size_t close = stat.rfind(')');
  if (close == std::string::npos) return -1;
  std::vector<std::string> f = absl::StrSplit(stat.substr(close + 2), ' ');
  if (f.size() < 13) return -1;
  // Fields 14 and 15 (utime, stime), counted from the state (field 3).
  return (std::stoll(f[11]) + std::stoll(f[12])) * 1000 / sysconf(_SC_CLK_TCK);
}

// `record -- COMMAND` runs two errgens, replicas sharing one program and
// its links (session/error_program.h). B creates 400 errors at the storm
// site, 2 M rounds of work apart: within its own budget. Once it has been
// at it a while, A storms at the same site, and A's budget takes the site
// off, in B too. B's budget follows: its creations while the site is off
// are estimated from its own rate, so B's count holds to its truth (a
// follower that is not told loses those made while A's site was off).
TEST_F(RecordBudgetTest, AReplicaFollowsASiteAnotherTookOff) {
  const std::string dir = OutPath("fifos");
  std::filesystem::create_directories(dir);
  const std::string go_a = dir + "/a", go_b = dir + "/b";
  // Held open read-write here, so the shell's redirections open at once
  // (a FIFO's reader otherwise waits for a writer).
  std::map<std::string, int> fds;
  for (const std::string& f : {go_a, go_b}) {
    std::filesystem::remove(f);
    ASSERT_EQ(mkfifo(f.c_str(), 0600), 0) << f;
    fds[f] = open(f.c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(fds[f], 0) << f;
  }
  const std::string out = OutPath("replicas");
  auto rec = Child::Spawn(
      {GoerrprofPath(), "record", "--max-overhead=1%", "-o", out, "--", "/bin/sh", "-c",
       "\"$0\" -wait -storm 400 -storm_work 2000000 -calm 0 <\"$2\" & "
       "\"$0\" -wait -storm 2000000 -calm 0 <\"$1\"; wait",
       errgen_.path, go_a, go_b});
  ASSERT_TRUE(rec.ok()) << rec.status();
  // Each says "ready" once recorded (record holds a process at its exec
  // until its probes are in).
  pid_t a = 0, b = 0;
  for (int i = 0; i < 2; ++i) {
    auto line = (*rec)->ReadLine(false, kTimeout);
    ASSERT_TRUE(line.ok() && absl::StartsWith(*line, "ready ")) << line.status();
    const pid_t pid = std::stoi(line->substr(6));
    const bool is_b =
        absl::StrContains(ReadFileOrEmpty(absl::StrCat("/proc/", pid, "/cmdline")), "storm_work");
    (is_b ? b : a) = pid;
  }
  ASSERT_TRUE(a != 0 && b != 0);
  auto go = [&](const std::string& fifo) {
    ASSERT_EQ(write(fds[fifo], "go\n", 3), 3) << fifo;
  };
  go(go_b);
  // B's rate is known before A storms: polled, bounded.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(kTimeout);
  while (CpuMs(b) >= 0 && CpuMs(b) < 200 && std::chrono::steady_clock::now() < deadline) {
    usleep(5 * 1000);
  }
  ASSERT_GE(CpuMs(b), 200) << "errgen B ended early";
  go(go_a);
  std::map<int64_t, int64_t> truth;  // storm size
  for (int i = 0; i < 2; ++i) {
    auto line = (*rec)->ReadLine(false, kTimeout);
    ASSERT_TRUE(line.ok()) << line.status();
    auto json = ParseJson(*line);
    ASSERT_TRUE(json.ok()) << json.status() << ": " << *line;
    ++truth[GetInt(*json, "storm")];
  }
  ASSERT_EQ(truth, (std::map<int64_t, int64_t>{{400, 1}, {2000000, 1}}));
  auto done = (*rec)->Finish(kTimeout);
  ASSERT_TRUE(done.ok()) << done.status();
  ASSERT_EQ(done->exit_code, 0) << done->err;
  auto profile = profiler::ReadProfile(out);
  ASSERT_TRUE(profile.ok()) << profile.status();
  std::map<int64_t, Totals> by_pid;  // the storm site's
  for (const pp::Sample& s : profile->sample()) {
    int64_t pid = 0;
    std::string message;
    bool estimated = false;
    for (const pp::Label& l : s.label()) {
      const std::string& key = profile->string_table(l.key());
      if (key == "process.pid") pid = l.num();
      if (key == "error.message") message = profile->string_table(l.str());
      if (key == "errors.estimated") estimated = profile->string_table(l.str()) == "true";
    }
    if (message != "retry: dependency down") continue;
    Totals& t = by_pid[pid];
    t.errors += s.value(0);
    t.observed += s.value_size() > 2 ? s.value(2) : s.value(0);
    (estimated ? t.estimated : t.unmarked) = true;
  }
  const Totals& tb = by_pid[b];
  const Totals& ta = by_pid[a];
  std::printf("record_budget_test: A %lld observed, %lld with estimates; B %lld observed, %lld "
              "with estimates (truth 2000000 and 400)\n",
              static_cast<long long>(ta.observed), static_cast<long long>(ta.errors),
              static_cast<long long>(tb.observed), static_cast<long long>(tb.errors));
  EXPECT_NEAR(static_cast<double>(ta.errors), 2000000.0, 200000.0);
  // B lost creations to A's detach, and has them back as estimates.
  EXPECT_TRUE(tb.estimated) << done->err;
  EXPECT_LT(tb.observed, 400);
  EXPECT_NEAR(static_cast<double>(tb.errors), 400.0, 40.0) << done->err;
  for (const auto& [f, fd] : fds) close(fd);
  std::filesystem::remove_all(dir);
}

TEST_F(RecordBudgetTest, ZeroObservesEverything) {
  std::string out = OutPath("unlimited");
  CommandResult r = RecordStorm("0", out, 3000);
  ASSERT_FALSE(HasFailure());
  EXPECT_FALSE(absl::StrContains(r.err, "overhead budget")) << r.err;
  auto profile = profiler::ReadProfile(out);
  ASSERT_TRUE(profile.ok()) << profile.status();
  EXPECT_EQ(profile->sample_type_size(), 2);
  auto by = ByMessage(*profile, -1);
  EXPECT_EQ(by["retry: dependency down"].errors, 3000);
  EXPECT_FALSE(by["retry: dependency down"].estimated);
  EXPECT_EQ(by["calm 0"].errors, 2);
}

TEST_F(RecordBudgetTest, BadBudgetIsOneLine) {
  for (const char* bad : {"--max-overhead=abc", "--max-overhead=-1", "--max-overhead=101%"}) {
    CommandResult r = RunCommand({GoerrprofPath(), "record", bad, "-o", OutPath("bad"), "--",
                                  errgen_.path, "-storm", "1"},
                                 kTimeout);
    EXPECT_NE(r.exit_code, 0) << bad;
    EXPECT_TRUE(absl::StrContains(r.err, "--max-overhead must be a percentage")) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

}  // namespace
}  // namespace goerrprof::testing
