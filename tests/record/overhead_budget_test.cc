// OverheadBudget's decisions and estimates, driven by hand: a storm's site
// goes off at the first tick that empties the bucket, comes back after its
// back-off (doubled when it has to go again at once), calm sites are never
// touched, and the estimate for the time off is the site's rate per
// nanosecond of the target's own work times the CPU time it used while off.
#include "record/overhead_budget.h"

#include <gtest/gtest.h>

#include <vector>

namespace goerrprof::profiler {
namespace {

constexpr int64_t kMs = 1000000;
constexpr int64_t kS = 1000000000;
constexpr uint64_t kStorm = 0x1000, kCalm = 0x2000;
using Action = OverheadBudget::Action;

BudgetOptions OnePercent() {
  BudgetOptions o;
  o.cpu_fraction = 0.01;  // 10 ms a second, 10 ms in the bucket
  return o;
}

TEST(OverheadBudgetTest, CalmSitesStayOn) {
  // 500 hits a second at 10 us: 0.5% of a CPU, within the 1%.
  OverheadBudget b(OnePercent(), 10000, 0, 0);
  for (int64_t t = 10 * kMs; t <= 10 * kS; t += 10 * kMs) {
    b.Count(kCalm, 5);
    EXPECT_TRUE(b.Tick(t, t).empty()) << "at " << t;
  }
  EXPECT_EQ(b.stats().detaches, 0u);
  EXPECT_TRUE(b.Missed(10 * kS, 10 * kS).empty());
}

TEST(OverheadBudgetTest, StormGoesOffComesBackAndBacksOff) {
  OverheadBudget b(OnePercent(), 10000, 0, 0);
  // 600 hits in 5 ms cost 6 ms: within the 10 ms burst.
  b.Count(kStorm, 600);
  b.Count(kCalm, 1);
  EXPECT_TRUE(b.Tick(5 * kMs, 5 * kMs).empty());
  // 600 more: the bucket is empty; the storm goes, the calm site stays.
  b.Count(kStorm, 600);
  b.Count(kCalm, 1);
  EXPECT_EQ(b.Tick(10 * kMs, 10 * kMs), (std::vector<Action>{{kStorm, false}}));
  EXPECT_TRUE(b.off(kStorm));
  EXPECT_FALSE(b.off(kCalm));
  // Its events still in flight are no one else's debt.
  b.Count(kStorm, 300);
  b.Count(kCalm, 1);
  EXPECT_TRUE(b.Tick(15 * kMs, 15 * kMs).empty());
  // Not back before its back-off (1 s), back right after.
  EXPECT_TRUE(b.Tick(kS, kS).empty());
  EXPECT_EQ(b.Tick(kS + 10 * kMs, kS + 10 * kMs), (std::vector<Action>{{kStorm, true}}));
  // Still storming: off again at the first tick over its share, though the
  // bucket is not empty (600 hits: 6 of its 10 ms), for twice as long.
  b.Count(kStorm, 600);
  auto again = kS + 20 * kMs;
  EXPECT_EQ(b.Tick(again, again), (std::vector<Action>{{kStorm, false}}));
  EXPECT_TRUE(b.Tick(again + 2 * kS - kMs, again + 2 * kS - kMs).empty());
  EXPECT_EQ(b.Tick(again + 2 * kS, again + 2 * kS), (std::vector<Action>{{kStorm, true}}));
  OverheadBudget::Stats st = b.stats();
  EXPECT_EQ(st.detaches, 2u);
  EXPECT_EQ(st.reattaches, 2u);
  EXPECT_EQ(st.sites_ever_off, 1u);
  EXPECT_EQ(st.sites_off_now, 0u);
}

TEST(OverheadBudgetTest, ASiteBackAndCalmLeavesProbation) {
  OverheadBudget b(OnePercent(), 10000, 0, 0);
  b.Count(kStorm, 2000);
  ASSERT_EQ(b.Tick(10 * kMs, 10 * kMs), (std::vector<Action>{{kStorm, false}}));
  ASSERT_EQ(b.Tick(kS + 10 * kMs, kS + 10 * kMs), (std::vector<Action>{{kStorm, true}}));
  // Calm now (2 hits a tick): on, and after a back-off off probation...
  for (int64_t t = kS + 20 * kMs; t <= 2 * kS + 20 * kMs; t += 10 * kMs) {
    b.Count(kStorm, 2);
    ASSERT_TRUE(b.Tick(t, t).empty()) << t;
  }
  // ...so a burst of 600 hits (6 ms, within the bucket) keeps it on.
  b.Count(kStorm, 600);
  EXPECT_TRUE(b.Tick(2 * kS + 30 * kMs, 2 * kS + 30 * kMs).empty());
  EXPECT_FALSE(b.off(kStorm));
}

TEST(OverheadBudgetTest, EstimatesFromTheRatePerCpuOfWork) {
  // Hit cost 10 us. In its window on (from 0 to 12 ms) the storm made 1100
  // hits while the target used 12 ms of CPU: 11 ms of traps, 1 ms of work,
  // so 1.1 creations per us of work.
  OverheadBudget b(OnePercent(), 10000, 0, 0);
  b.Count(kStorm, 1100);
  b.Count(kCalm, 2);
  ASSERT_EQ(b.Tick(12 * kMs, 12 * kMs), (std::vector<Action>{{kStorm, false}}));
  // Off for 1 s of wall time in which the target used 500 ms of CPU.
  auto missed = b.Missed(12 * kMs + kS, 12 * kMs + 500 * kMs);
  ASSERT_EQ(missed.size(), 1u);
  EXPECT_DOUBLE_EQ(missed[kStorm], 550000.0);
  // Back on at 1.012 s; what it missed is kept, nothing more accrues.
  ASSERT_EQ(b.Tick(12 * kMs + kS, 12 * kMs + 500 * kMs),
            (std::vector<Action>{{kStorm, true}}));
  auto after = b.Missed(12 * kMs + 2 * kS, 12 * kMs + 2 * kS);
  EXPECT_DOUBLE_EQ(after[kStorm], 550000.0);
}

TEST(OverheadBudgetTest, WithoutCpuTimeTheWallRateIsUsed) {
  OverheadBudget b(OnePercent(), 10000, 0, -1);
  b.Count(kStorm, 1500);
  ASSERT_EQ(b.Tick(20 * kMs, -1), (std::vector<Action>{{kStorm, false}}));
  // 1500 in 20 ms: 75 per ms, for 100 ms off.
  EXPECT_DOUBLE_EQ(b.Missed(120 * kMs, -1)[kStorm], 7500.0);
}

TEST(OverheadBudgetTest, FailedActionsKeepTheOldState) {
  OverheadBudget b(OnePercent(), 10000, 0, 0);
  b.Count(kStorm, 2000);
  std::vector<Action> off = b.Tick(10 * kMs, 10 * kMs);
  ASSERT_EQ(off, (std::vector<Action>{{kStorm, false}}));
  b.Failed(off[0], 10 * kMs, 10 * kMs);
  EXPECT_FALSE(b.off(kStorm));
  EXPECT_EQ(b.stats().detaches, 0u);
  EXPECT_EQ(b.stats().sites_ever_off, 0u);
  EXPECT_TRUE(b.Missed(20 * kMs, 20 * kMs).empty());
  // Not tried again before its back-off, even while it storms on.
  b.Count(kStorm, 2000);
  EXPECT_TRUE(b.Tick(20 * kMs, 20 * kMs).empty());
  b.Count(kStorm, 2000);
  EXPECT_EQ(b.Tick(kS + 20 * kMs, kS + 20 * kMs), (std::vector<Action>{{kStorm, false}}));
}

TEST(OverheadBudgetTest, ZeroMeansNoLimit) {
  BudgetOptions o;
  o.cpu_fraction = 0;
  OverheadBudget b(o, 10000, 0, 0);
  b.Count(kStorm, 1000000);
  EXPECT_TRUE(b.Tick(kMs, kMs).empty());
  EXPECT_EQ(b.stats().detaches, 0u);
}

}  // namespace
}  // namespace goerrprof::profiler
