// WaitSampler (record --goroutines=sample) on a live `parked` (newest Go
// release, default and PIE), no BPF: every goroutine parked for the whole
// run is sampled in every snapshot, so each (function, wait reason) has
// exactly goroutines x snapshots samples; the schedule never runs ahead of
// 1/hz; Stop is prompt; the sampler ends by itself when the target exits.
#include <chrono>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "record/wait_sampler.h"
#include "tests/goroutines/goroutines_test_util.h"
#include "tests/goroutines/wait_truth.h"
#include "tests/test_support.h"

namespace goerrprof::testing {
namespace {

using Clock = std::chrono::steady_clock;

// Waits (yielding, bounded) until the sampler has taken `n` snapshots.
bool AwaitSnapshots(const profiler::WaitSampler& s, uint64_t n, std::chrono::seconds limit) {
  auto deadline = Clock::now() + limit;
  while (s.totals().snapshots < n) {
    if (Clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

void CheckFlavour(const std::string& flavour) {
  auto corpus = NewestCorpusBinary(false, "parked", flavour);
  if (!corpus) GTEST_SKIP() << "no parked in the corpus: run scripts/build_go_corpus.sh";
  std::string path = CorpusBinaryPath(*corpus);
  Truth truth;
  auto child = StartParked(path, &truth);
  ASSERT_NE(child, nullptr);
  auto bin = symbolizer::GoBinary::Open(path);
  ASSERT_TRUE(bin.ok()) << bin.status();

  profiler::WaitSamplerOptions o;
  o.hz = 100;
  auto start = Clock::now();
  auto sampler = profiler::WaitSampler::Start(child->pid(), **bin, o);
  ASSERT_TRUE(sampler.ok()) << sampler.status();
  ASSERT_TRUE(AwaitSnapshots(**sampler, 8, std::chrono::seconds(60)));
  (*sampler)->Stop();
  auto elapsed = Clock::now() - start;
  profiler::WaitSampleTotals t = (*sampler)->totals();
  // Tick k is at start + k/hz: never more than elapsed*hz + 1 of them.
  uint64_t ticks = static_cast<uint64_t>(elapsed / std::chrono::milliseconds(10)) + 1;
  EXPECT_LE(t.snapshots + t.snapshots_failed, ticks);
  EXPECT_GE(t.snapshots, 8u);
  EXPECT_EQ(t.snapshots_failed, 0u);
  EXPECT_FALSE((*sampler)->target_gone());

  auto p = (*sampler)->BuildProfile();
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(CommentCounter(*p, "snapshots"), static_cast<int64_t>(t.snapshots));
  EXPECT_EQ(CommentCounter(*p, "hz"), 100);
  int64_t main_samples = 0;
  WaitKeys got = ProfileWaitKeys(*p, &main_samples);
  ExpectExactShares(TruthWaitKeys(truth), got, static_cast<int64_t>(t.snapshots),
                    static_cast<int64_t>(t.torn_skipped));
  // blocked = samples x period, per sample.
  for (const auto& s : p->sample()) EXPECT_EQ(s.value(1), s.value(0) * p->period());

  // A slow rate still stops at once: Stop does not wait out the period.
  o.hz = 1;
  auto slow = profiler::WaitSampler::Start(child->pid(), **bin, o);
  ASSERT_TRUE(slow.ok()) << slow.status();
  ASSERT_TRUE(AwaitSnapshots(**slow, 1, std::chrono::seconds(60)));
  auto stop_start = Clock::now();
  (*slow)->Stop();
  EXPECT_LT(Clock::now() - stop_start, std::chrono::milliseconds(500));

  // The target exits: the sampler ends by itself, with nothing failed.
  auto last = profiler::WaitSampler::Start(child->pid(), **bin, {});
  ASSERT_TRUE(last.ok()) << last.status();
  ASSERT_TRUE(AwaitSnapshots(**last, 1, std::chrono::seconds(60)));
  child->CloseStdin();
  auto done = child->Finish();
  ASSERT_TRUE(done.ok()) << done.status();
  auto deadline = Clock::now() + std::chrono::seconds(60);
  while (!(*last)->target_gone() && Clock::now() < deadline) std::this_thread::yield();
  EXPECT_TRUE((*last)->target_gone());
  EXPECT_EQ((*last)->totals().snapshots_failed, 0u);
}

TEST(WaitSampler, ParkedDefault) { CheckFlavour("default"); }
TEST(WaitSampler, ParkedPie) { CheckFlavour("pie"); }

TEST(WaitSampler, RefusesDeadPidAndBadRate) {
  auto corpus = NewestCorpusBinary(false, "parked", "default");
  if (!corpus) GTEST_SKIP() << "no parked in the corpus";
  auto bin = symbolizer::GoBinary::Open(CorpusBinaryPath(*corpus));
  ASSERT_TRUE(bin.ok()) << bin.status();
  profiler::WaitSamplerOptions o;
  o.hz = 0;
  EXPECT_FALSE(profiler::WaitSampler::Start(getpid(), **bin, o).ok());
  // A pid that cannot exist (past pid_max).
  EXPECT_FALSE(profiler::WaitSampler::Start(1 << 30, **bin, {}).ok());
}

}  // namespace
}  // namespace goerrprof::testing
