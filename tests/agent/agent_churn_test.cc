// `goerrprof agent` under process churn: hundreds of errgen lifetimes, a
// batch at a time, some exiting cleanly after a known number of errors,
// some SIGKILLed while creating errors, some killed before they did
// anything (maybe while being attached). The agent forgets exited
// processes (Recorder::EvictClosed), so it must keep: the clean ones'
// series exact and never decreasing, a profile window exact across
// evictions, its memory flat after warm-up, and no BPF object behind.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "diff/profile_diff.h"
#include "gtest/gtest.h"
#include "pprof/profile_file.h"
#include "tests/agent/agent_fixture.h"

// Under ASan the agent's freed memory waits in a quarantine (256 MiB by
// default) before reuse, which the RSS bound would measure instead.
#if defined(__SANITIZE_ADDRESS__)
#define GEP_CHURN_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define GEP_CHURN_ASAN 1
#endif
#endif

namespace goerrprof::testing {
namespace {

constexpr int kLifetimes = 500;
// One batch runs together: kClean exit after -storm/-calm, kChurn are
// killed while creating errors, kEarly are killed before being released.
constexpr int kClean = 6, kChurn = 3, kEarly = 1;
constexpr int kBatch = kClean + kChurn + kEarly;
constexpr int kWarmup = 100;  // lifetimes before the first RSS reading
// Growth of the agent's VmRSS allowed from warm-up to the end. Without
// eviction each lifetime keeps its samples and session counters (a few
// KiB); a leaked session (ring buffer, maps) would cost far more. Not
// checked under ASan, whose allocator keeps freed memory resident (how much
// depends on how many sessions overlapped at the peak).
constexpr int64_t kMaxRssGrowthKiB = 4 * 1024;
// Growth of the heap in use (goerrprof_heap_bytes, malloc's own count):
// any lifetime's state left behind shows here, allocator effects do not.
constexpr int64_t kMaxHeapGrowthKiB = 1024;

const std::pair<std::string, std::string> kStorm{"*fmt.wrapError", "main.stormSite"};
const std::pair<std::string, std::string> kCalm{"*errors.errorString", "main.calmSite"};
const std::pair<std::string, std::string> kChurnSite{"*fmt.wrapError", "main.churnSite"};

int64_t VmRssKiB(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (!absl::StartsWith(line, "VmRSS:")) continue;
    int64_t kib = 0;
    std::string digits;
    for (char c : line) {
      if (c >= '0' && c <= '9') digits += c;
    }
    if (absl::SimpleAtoi(digits, &kib)) return kib;
  }
  return -1;
}

class AgentChurnTest : public AgentTest {
 protected:
  static void Kill(Child* c) {
    ASSERT_EQ(kill(c->pid(), SIGKILL), 0);
    auto done = c->Finish(kTimeout);
    ASSERT_TRUE(done.ok()) << done.status();
  }

  // One batch's lifetimes; the clean ones' truth is added to *truth.
  void RunBatch(int n, SiteCounts* truth) {
    std::vector<std::unique_ptr<Child>> clean, churn, early;
    for (int i = 0; i < kClean; ++i) {
      const int k = n * kClean + i;
      clean.push_back(StartErrgen({"-storm", std::to_string(20 + k % 37), "-calm",
                             std::to_string(1 + k % 3)}));
      ASSERT_NE(clean.back(), nullptr);
    }
    for (int i = 0; i < kChurn; ++i) {
      churn.push_back(StartErrgen({"-churn"}));
      ASSERT_NE(churn.back(), nullptr);
    }
    for (int i = 0; i < kEarly; ++i) {
      early.push_back(StartErrgen({"-churn"}));
      ASSERT_NE(early.back(), nullptr);
    }
    // Gone before (or while) the agent looks at them: never released.
    for (auto& c : early) Kill(c.get());
    std::vector<pid_t> pids;
    for (auto& c : clean) pids.push_back(c->pid());
    for (auto& c : churn) pids.push_back(c->pid());
    WaitAttached(pids);
    for (auto& c : clean) ASSERT_TRUE(c->Write("go\n").ok());
    for (auto& c : churn) ASSERT_TRUE(c->Write("go\n").ok());
    for (auto& c : churn) {
      // Its first error made: killed in the middle of its stream.
      auto line = c->ReadLine(false, kTimeout);
      ASSERT_TRUE(line.ok()) << line.status();
      ASSERT_EQ(*line, absl::StrCat("churning ", c->pid()));
      Kill(c.get());
    }
    std::vector<Child*> released;
    for (auto& c : clean) released.push_back(c.get());
    ASSERT_NO_FATAL_FAILURE(CollectStorms(released, truth));
  }

  // goerrprof_errors_total for our binary, by its labels; each must be at
  // least what it was at the last scrape.
  void CheckNeverDecreasing() {
    auto page = HttpGet(address_, "/metrics");
    ASSERT_TRUE(page.ok()) << page.status();
    auto samples = ParseMetrics(*page);
    ASSERT_TRUE(samples.ok()) << samples.status();
    for (const MetricSample& s : *samples) {
      if (s.name != "goerrprof_errors_total") continue;
      double& last = series_[s.labels];
      EXPECT_GE(s.value, last) << "a series decreased:\n" << *page;
      last = s.value;
    }
  }

  // Polls /metrics (bounded) until the counter `name` is at least n.
  void WaitAtLeast(const std::string& name, double n) {
    auto deadline = Clock::now() + std::chrono::seconds(kTimeout);
    double v = -1;
    while (Clock::now() < deadline) {
      v = Gauge(name);
      if (v >= n) return;
      usleep(20 * 1000);  // scrapes are the poll; not a wait for anything
    }
    FAIL() << name << " stayed at " << v << ", below " << n;
  }

  std::map<std::map<std::string, std::string>, double> series_;
};

TEST_F(AgentChurnTest, ForgetsExitedProcessesKeepingCountsExact) {
  const auto started = Clock::now();
#ifdef GEP_CHURN_ASAN
  {
    // Read by the agent (a child) only: this process's ASan started long ago.
    const char* had = getenv("ASAN_OPTIONS");
    std::string asan = had ? std::string(had) + ":" : "";
    setenv("ASAN_OPTIONS", (asan + "quarantine_size_mb=1").c_str(), 1);
    StartAgent();
    if (had) {
      setenv("ASAN_OPTIONS", had, 1);
    } else {
      unsetenv("ASAN_OPTIONS");
    }
  }
#else
  StartAgent();
#endif
  ASSERT_NE(agent_, nullptr);
  WaitAttachedGauge(0);

  SiteCounts truth;  // of the clean processes
  int lifetimes = 0, batches = 0, churned = 0;
  int64_t warm_kib = -1, peak_kib = 0, warm_heap_kib = -1;
  // The BPF maps and programs the agent holds, and the maps' kernel memory.
  auto bpf_held = [&] {
    return std::vector<double>{Gauge("goerrprof_bpf_objects", {{"kind", "maps"}}),
                               Gauge("goerrprof_bpf_objects", {{"kind", "programs"}}),
                               Gauge("goerrprof_bpf_memory_bytes", {{"kind", "maps"}})};
  };
  std::vector<double> warm_bpf;
  SiteCounts window_want;
  std::optional<WindowRequest> window;
  absl::StatusOr<std::string> window_body = absl::UnknownError("no answer");

  while (lifetimes < kLifetimes) {
    if (batches == 20) {
      // A window over two batches whose processes all exit, and are
      // evicted, while it is open. Opened with nothing undrained: no
      // earlier process's errors can land in it.
      WaitAttachedGauge(0);
      const double evicted = Gauge("goerrprof_evicted_processes_total");
      window.emplace(address_, 10);
      WaitGauge("goerrprof_pprof_windows", 1);
      for (int i = 0; i < 2; ++i) {
        ASSERT_NO_FATAL_FAILURE(RunBatch(batches, &window_want));
        ++batches;
        lifetimes += kBatch;
        churned += kChurn;
      }
      WaitAttachedGauge(0);
      WaitAtLeast("goerrprof_evicted_processes_total", evicted + 2 * (kClean + kChurn));
      // Still open: the evictions above happened inside the window.
      ASSERT_EQ(Gauge("goerrprof_pprof_windows"), 1)
          << "the window closed before its processes were evicted: too slow a machine for 10 s";
      window_body = window->Body();
      for (const auto& [site, n] : window_want) truth[site] += n;
      continue;
    }
    ASSERT_NO_FATAL_FAILURE(RunBatch(batches, &truth));
    ++batches;
    lifetimes += kBatch;
    churned += kChurn;
    ASSERT_NO_FATAL_FAILURE(CheckNeverDecreasing());
    if (warm_kib < 0 && lifetimes >= kWarmup) {
      WaitAttachedGauge(0);  // measured with no session open, as at the end
      WaitGauge("goerrprof_detaching_processes", 0);
      warm_kib = VmRssKiB(agent_->pid());
      warm_heap_kib = static_cast<int64_t>(Gauge("goerrprof_heap_bytes")) / 1024;
      warm_bpf = bpf_held();
    }
    peak_kib = std::max(peak_kib, VmRssKiB(agent_->pid()));
  }

  // The window: exactly the clean errors of its two batches (the churned
  // ones' site too, at least one per process).
  ASSERT_TRUE(window_body.ok()) << window_body.status();
  auto profile = profiler::ParseProfile(*window_body, "window");
  ASSERT_TRUE(profile.ok()) << profile.status();
  auto sites = profiler::SummarizeProfile(*profile);
  ASSERT_TRUE(sites.ok()) << sites.status();
  SiteCounts in_window;
  for (const auto& [key, stats] : sites->sites) {
    in_window[{key.type, key.origin.empty() ? key.function : key.origin}] += stats.count;
    EXPECT_EQ(stats.binaries, std::set<std::string>{errgen_name_});
  }
  EXPECT_EQ(in_window[kStorm], window_want[kStorm]);
  EXPECT_EQ(in_window[kCalm], window_want[kCalm]);
  EXPECT_GE(in_window[kChurnSite], 2 * kChurn);
  EXPECT_EQ(in_window.size(), 3u);

  // Every process gone: the clean ones' series exact, the killed ones'
  // at least one error each, nothing else.
  WaitAttachedGauge(0);
  ASSERT_NO_FATAL_FAILURE(CheckNeverDecreasing());
  SiteCounts got = ScrapeErrors();
  EXPECT_EQ(got[kStorm], truth[kStorm]);
  EXPECT_EQ(got[kCalm], truth[kCalm]);
  EXPECT_GE(got[kChurnSite], churned);
  EXPECT_EQ(got.size(), 3u);
  const int attached = batches * (kClean + kChurn);
  WaitAtLeast("goerrprof_evicted_processes_total", attached);
  WaitGauge("goerrprof_detaching_processes", 0);
  const int64_t end_kib = VmRssKiB(agent_->pid());
  const int64_t end_heap_kib = static_cast<int64_t>(Gauge("goerrprof_heap_bytes")) / 1024;
  std::printf("agent VmRSS: %lld KiB after %d lifetimes, %lld KiB after %d (peak %lld KiB)\n",
              static_cast<long long>(warm_kib), kWarmup, static_cast<long long>(end_kib),
              lifetimes, static_cast<long long>(peak_kib));
  std::printf("agent heap in use: %lld KiB after %d lifetimes, %lld KiB after %d\n",
              static_cast<long long>(warm_heap_kib), kWarmup,
              static_cast<long long>(end_heap_kib), lifetimes);
  ASSERT_GT(warm_kib, 0);
  ASSERT_GT(warm_heap_kib, 0);
  // Kernel objects: with no session open, exactly what was held after
  // warm-up (the shared ring and scratch, the exec follower's), however
  // many lifetimes came and went.
  EXPECT_EQ(bpf_held(), warm_bpf) << "maps, programs, map bytes";
  EXPECT_LE(end_heap_kib - warm_heap_kib, kMaxHeapGrowthKiB) << "the agent's heap grows with churn";
#ifndef GEP_CHURN_ASAN
  EXPECT_LE(end_kib - warm_kib, kMaxRssGrowthKiB) << "the agent's memory grows with churn";
#endif

  // The live ones: all attached.
  std::vector<std::unique_ptr<Child>> last;
  std::vector<pid_t> pids;
  for (int i = 0; i < 4; ++i) {
    last.push_back(StartErrgen({"-storm", "10", "-calm", "1"}));
    ASSERT_NE(last.back(), nullptr);
    pids.push_back(last.back()->pid());
  }
  WaitAttached(pids);
  WaitAttachedGauge(4);
  {
    auto page = HttpGet(address_, "/metrics");
    ASSERT_TRUE(page.ok()) << page.status();
    auto samples = ParseMetrics(*page);
    ASSERT_TRUE(samples.ok()) << samples.status();
    EXPECT_EQ(*MetricValue(*samples, "goerrprof_processes", {{"status", "attached"}}), 4);
    EXPECT_EQ(*MetricValue(*samples, "goerrprof_processes", {{"status", "over_limit"}}), 0);
  }
  std::vector<Child*> finish;
  for (auto& c : last) finish.push_back(c.get());
  FinishStorms(finish, &truth);
  WaitAttachedGauge(0);
  got = ScrapeErrors();
  EXPECT_EQ(got[kStorm], truth[kStorm]);
  EXPECT_EQ(got[kCalm], truth[kCalm]);
  StopAgent();  // TearDown: no program or link of ours left
  std::printf("%d lifetimes in %lld s\n", lifetimes,
              static_cast<long long>(std::chrono::duration_cast<std::chrono::seconds>(
                                         Clock::now() - started)
                                         .count()));
}

}  // namespace
}  // namespace goerrprof::testing
