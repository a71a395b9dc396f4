// The agent and containers, end to end (real BPF): an errgen put into a
// cgroup v2 directory named as docker names a container's must show that
// container's ID on every sample of a window profile, and
// --exclude-cgroup must keep it out; and /debug/pprof/goroutines?pid=P,
// fetched by `go tool pprof`, must show the parked program's goroutines.
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "pprof/labels.h"
#include "pprof/profile_file.h"
#include "gtest/gtest.h"
#include "tests/agent/agent_fixture.h"

namespace goerrprof::testing {
namespace {

// The first cgroup2 mount we may create directories in ("" when none):
// /sys/fs/cgroup on a unified host, /sys/fs/cgroup/unified on a hybrid one.
std::string WritableCgroup2() {
  std::ifstream mounts("/proc/self/mounts");
  std::string line;
  while (std::getline(mounts, line)) {
    std::vector<std::string> f = absl::StrSplit(line, ' ');
    if (f.size() < 4 || f[2] != "cgroup2" || !absl::StartsWith(f[3], "rw")) continue;
    std::string probe = absl::StrCat(f[1], "/goerrprof-probe-", getpid());
    if (mkdir(probe.c_str(), 0755) == 0) {
      rmdir(probe.c_str());
      return f[1];
    }
  }
  return "";
}

// A cgroup named like a docker container's, removed (innermost first) on
// every way out; its processes must be gone by then.
struct ContainerCgroup {
  std::string slice, scope, id;
  bool Create(const std::string& root) {
    std::mt19937_64 rng(std::random_device{}());
    for (int i = 0; i < 4; ++i) id += absl::StrFormat("%016x", rng());
    slice = absl::StrCat(root, "/goerrprof-test-", getpid(), ".slice");
    scope = absl::StrCat(slice, "/docker-", id, ".scope");
    return mkdir(slice.c_str(), 0755) == 0 && mkdir(scope.c_str(), 0755) == 0;
  }
  // What a launcher runs first: the shell moves itself in, then execs
  // errgen (its "$0", arguments "$@"), which stays there.
  std::vector<std::string> Launcher() const {
    return {"sh", "-c", absl::StrCat("echo $$ > '", scope, "/cgroup.procs' && exec \"$0\" \"$@\"")};
  }
  ~ContainerCgroup() {
    if (!scope.empty()) rmdir(scope.c_str());
    if (!slice.empty()) rmdir(slice.c_str());
  }
};

class AgentContainerTest : public AgentTest {
 protected:
  void SetUp() override {
    AgentTest::SetUp();
    root_ = WritableCgroup2();
  }
  std::string root_;
};

TEST_F(AgentContainerTest, WindowSamplesCarryTheContainerId) {
  if (root_.empty()) GTEST_SKIP() << "no cgroup v2 hierarchy mounted writable here";
  ContainerCgroup cg;  // before the process: removed after it is gone
  ASSERT_TRUE(cg.Create(root_)) << cg.scope << ": " << std::strerror(errno);
  StartAgent();
  ASSERT_NE(agent_, nullptr);
  auto inside = StartStorm(30, 2, cg.Launcher());
  ASSERT_TRUE(inside);
  ASSERT_TRUE(absl::StrContains(ReadFileOrEmpty(absl::StrCat("/proc/", inside->pid(), "/cgroup")),
                                absl::StrCat("docker-", cg.id, ".scope")));
  const pid_t pid = inside->pid();  // -1 once reaped
  WaitAttached({pid});

  WindowRequest window(address_, 3);
  WaitGauge("goerrprof_pprof_windows", 1);
  SiteCounts truth;
  FinishStorms({inside.get()}, &truth);
  WaitAttachedGauge(0);
  absl::StatusOr<std::string> body = window.Body();
  ASSERT_TRUE(body.ok()) << body.status();
  auto profile = profiler::ParseProfile(*body, "window");
  ASSERT_TRUE(profile.ok()) << profile.status();
  auto str = [&](int64_t i) { return profile->string_table(static_cast<int>(i)); };
  int64_t total = 0, want = 0;
  for (const auto& [site, n] : truth) want += n;
  for (const auto& s : profile->sample()) {
    std::map<std::string, std::string> labels;
    int64_t labelled_pid = 0;
    for (const auto& l : s.label()) {
      if (l.str() != 0) labels[str(l.key())] = str(l.str());
      if (str(l.key()) == profiler::kLabelPid) labelled_pid = l.num();
    }
    EXPECT_EQ(labelled_pid, pid);
    EXPECT_EQ(labels[profiler::kLabelContainerId], cg.id);
    EXPECT_EQ(labels.count(profiler::kLabelPodUid), 0u) << "no pod in a docker path";
    total += s.value(0);
  }
  EXPECT_EQ(total, want);
  EXPECT_EQ(want, 32);
  // The metric keeps its four labels (no container: series stay per
  // binary), and the same counts.
  EXPECT_EQ(ScrapeErrors(), truth);
  StopAgent();
}

TEST_F(AgentContainerTest, ExcludeCgroupKeepsTheContainerOut) {
  if (root_.empty()) GTEST_SKIP() << "no cgroup v2 hierarchy mounted writable here";
  ContainerCgroup cg;
  ASSERT_TRUE(cg.Create(root_)) << cg.scope << ": " << std::strerror(errno);
  StartAgent({"--exclude-cgroup=.*/docker-[0-9a-f]{64}\\.scope"});
  ASSERT_NE(agent_, nullptr);
  // The one inside first: when the other is attached, the scan that found
  // it had seen this one as errgen already (it was ready before).
  auto inside = StartStorm(40, 1, cg.Launcher());
  auto outside = StartStorm(25, 3);
  ASSERT_TRUE(inside && outside);
  WaitAttached({outside->pid()});
  WaitAttachedGauge(1);
  SiteCounts ignored, want;
  FinishStorms({inside.get()}, &ignored);
  FinishStorms({outside.get()}, &want);
  WaitAttachedGauge(0);
  EXPECT_EQ(ScrapeErrors(), want);
  StopAgent();
}

TEST_F(AgentContainerTest, GoroutinesPageServesASnapshot) {
  auto corpus = NewestCorpusBinary(false, "parked", "default");
  if (!corpus) GTEST_SKIP() << "no parked in the corpus: run scripts/build_go_corpus.sh";
  // A private copy, so --include takes it and nothing else.
  const std::string name = absl::StrCat("parked-agent-", getpid());
  const std::string parked = absl::StrCat(::testing::TempDir(), name);
  std::filesystem::copy_file(CorpusBinaryPath(*corpus), parked,
                             std::filesystem::copy_options::overwrite_existing);
  ASSERT_EQ(chmod(parked.c_str(), 0755), 0);
  struct Remove {
    std::string path;
    ~Remove() { std::remove(path.c_str()); }
  } remove{parked};
  StartAgent({"--include=" + name, "--goroutines=sample"});
  ASSERT_NE(agent_, nullptr);

  auto child = Child::Spawn({parked});
  ASSERT_TRUE(child.ok()) << child.status();
  auto ready = (*child)->ReadLine(false, kTimeout);
  ASSERT_TRUE(ready.ok() && absl::StartsWith(*ready, "ready ")) << ready.status();
  // The truth: its own debug=2 dump, goroutines separated by blank lines,
  // then a JSON line. Counted: goroutines with these functions on stack.
  // And by wait reason, from the headers ("goroutine 12 [select]:", "[chan
  // receive, 2 minutes]"), but for the goroutine that dumps (running).
  std::map<std::string, int64_t> want = {{"main.selectWaiter", 0}, {"main.sleeper", 0}};
  std::map<std::string, double> waiting;
  for (;;) {
    auto line = (*child)->ReadLine(false, kTimeout);
    ASSERT_TRUE(line.ok()) << line.status();
    if (absl::StartsWith(*line, "{\"labels\"")) break;
    for (auto& [function, n] : want) n += absl::StartsWith(*line, function + "(");
    size_t open = line->find(" [");
    if (absl::StartsWith(*line, "goroutine ") && open != std::string::npos) {
      std::string reason = line->substr(open + 2, line->find_first_of(",]", open) - open - 2);
      if (reason != "running") ++waiting[reason];
    }
  }
  EXPECT_EQ(waiting["select"], 4);
  EXPECT_EQ(want["main.selectWaiter"], 4);
  EXPECT_EQ(want["main.sleeper"], 2);
  const pid_t pid = (*child)->pid();
  WaitAttached({pid});

  // goerrprof_goroutines (--goroutines=sample): its waiting goroutines by
  // reason, as its dump has them.
  auto page = HttpGet(address_, "/metrics");
  ASSERT_TRUE(page.ok()) << page.status();
  auto samples = ParseMetrics(*page);
  ASSERT_TRUE(samples.ok()) << samples.status();
  std::map<std::string, double> got;
  for (const MetricSample& s : *samples) {
    if (s.name != "goerrprof_goroutines") continue;
    EXPECT_EQ(s.labels.at("binary"), name);
    if (s.labels.at("state") == "waiting") got[s.labels.at("wait_reason")] += s.value;
  }
  EXPECT_EQ(got, waiting) << *page;
  EXPECT_EQ(*MetricValue(*samples, "goerrprof_goroutine_snapshots_total"), 1) << *page;
  EXPECT_EQ(*MetricValue(*samples, "goerrprof_goroutine_snapshots_failed_total"), 0);

  CommandResult top = PprofTop(absl::StrCat("/debug/pprof/goroutines?pid=", pid));
  ASSERT_EQ(top.exit_code, 0) << top.err;
  for (const auto& [function, n] : want) EXPECT_EQ(CumOf(top.out, function), n) << top.out;

  // A bad pid is refused; one the agent has not attached is not served.
  auto bad = HttpGet(address_, "/debug/pprof/goroutines?pid=x");
  EXPECT_TRUE(absl::StrContains(bad.status().message(), " 400 ")) << bad.status();
  auto other = HttpGet(address_, absl::StrCat("/debug/pprof/goroutines?pid=", getpid()));
  EXPECT_TRUE(absl::StrContains(other.status().message(), " 404 ")) << other.status();

  ASSERT_TRUE((*child)->Write("quit\n").ok());
  auto done = (*child)->Finish(kTimeout);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->exit_code, 0) << done->err;
  WaitAttachedGauge(0);
  StopAgent();
}

}  // namespace
}  // namespace goerrprof::testing
