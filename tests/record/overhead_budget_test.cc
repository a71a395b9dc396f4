// OverheadBudget's decisions and estimates, driven by hand: a storm's site
// goes off at the first tick that empties the bucket, comes back after its
// back-off (doubled when it has to go again at once), calm sites are never
// touched, and the estimate for the time off is the site's rate per
// nanosecond of the target's own work times the CPU time it used while off,
// or, with the target's allocation count, its creations per allocation
// (pooled over a storm's episode, from clean windows) times the
// allocations made while off.
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

TEST(OverheadBudgetTest, WatchesAStormKeptOnAndASiteJustBack) {
  // The caller ticks sooner while a site is watched: each tick a storm
  // stays on costs the target its traps.
  OverheadBudget b(OnePercent(), 10000, 0, 0, 0);
  b.Count(kCalm, 1);
  ASSERT_TRUE(b.Tick(5 * kMs, 5 * kMs, 100).empty());
  EXPECT_FALSE(b.Watching());
  // A storm's first tick over the bucket, its work window from before it:
  // kept on one tick for a clean window, and watched.
  b.Count(kStorm, 2000);
  ASSERT_TRUE(b.Tick(10 * kMs, 10 * kMs, 200).empty());
  EXPECT_TRUE(b.Watching());
  // A millisecond later (a fair share is priced over 50 ms, not over the
  // tick): off, and no longer watched.
  b.Count(kStorm, 300);
  ASSERT_EQ(b.Tick(11 * kMs, 11 * kMs, 500), (std::vector<Action>{{kStorm, false}}));
  EXPECT_FALSE(b.Watching());
  // Back after its back-off: watched for its first 50 ms on probation.
  ASSERT_EQ(b.Tick(kS + 11 * kMs, kS + 11 * kMs, 600), (std::vector<Action>{{kStorm, true}}));
  EXPECT_TRUE(b.Watching());
  ASSERT_TRUE(b.Tick(kS + 40 * kMs, kS + 40 * kMs, 700).empty());
  EXPECT_TRUE(b.Watching());
  ASSERT_TRUE(b.Tick(kS + 61 * kMs, kS + 61 * kMs, 800).empty());
  EXPECT_FALSE(b.Watching());
  // A few hits in a short tick are no storm: a calm site stays on.
  b.Count(kStorm, 3);
  EXPECT_TRUE(b.Tick(kS + 62 * kMs, kS + 62 * kMs, 900).empty());
}

TEST(OverheadBudgetTest, AStormKeptOnIsJudgedOverFiveMsNotOneTick) {
  // The caller ticks every 1 ms while the storm is watched. A storm at 10%
  // of a CPU (10 hits a ms at 10 us) costs 100 us a tick, under the 250 us
  // share of one tick; over 5 ms it costs more than the 1% budget's rate.
  // A storm kept on at 5 ms, then `per_ms` hits a millisecond: when it
  // goes off (the tick, in ms; -1: not within 30 ms).
  auto off_at = [](uint64_t per_ms) -> int64_t {
    OverheadBudget b(OnePercent(), 10000, 0, 0, 0);
    b.Count(kStorm, 1100);
    if (!b.Tick(5 * kMs, 5 * kMs, 5000).empty() || !b.Watching()) return -2;
    for (int64_t t = 6 * kMs; t < 30 * kMs; t += kMs) {
      b.Count(kStorm, per_ms);
      std::vector<Action> got = b.Tick(t, t, 5000 + (t / kMs) * 100);
      if (!got.empty()) return got == std::vector<Action>{{kStorm, false}} ? t / kMs : -3;
    }
    return -1;
  };
  // Off at its third millisecond: 30 hits cost 300 us, more than its share.
  EXPECT_EQ(off_at(10), 8);
  // At 4% (4 hits a ms: 200 us in 5 ms) it stays under its share, but over
  // the budget's rate (50 us in 5 ms): off once 5 ms are judged.
  EXPECT_EQ(off_at(4), 10);
  // At 0.5% (one hit every 2 ms) it calmed down: on, and no longer watched.
  OverheadBudget d(OnePercent(), 10000, 0, 0, 0);
  d.Count(kStorm, 1100);
  ASSERT_TRUE(d.Tick(5 * kMs, 5 * kMs, 5000).empty());
  for (int64_t t = 6 * kMs; t <= 12 * kMs; t += kMs) {
    if (t % (2 * kMs) == 0) d.Count(kStorm, 1);
    EXPECT_TRUE(d.Tick(t, t, 5000 + (t / kMs) * 100).empty()) << "at " << t;
  }
  EXPECT_FALSE(d.off(kStorm));
  EXPECT_FALSE(d.Watching());
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

// A new site's work window starts at the end of its first tick (the work
// before its first hit in that tick is not its own): 500 creations and
// 9000 allocations there, of which only the creations are its.
void FirstTick(OverheadBudget& b) {
  b.Count(kStorm, 500);
  ASSERT_TRUE(b.Tick(5 * kMs, 5 * kMs, 9000).empty());
}

TEST(OverheadBudgetTest, EstimatesFromCreationsPerAllocation) {
  // In its window on the storm made 1100 creations and the target 2200
  // allocations: half a creation per allocation, whatever a hit costs and
  // however much CPU time the window took (that rate would say 550 000).
  OverheadBudget b(OnePercent(), 10000, 0, 0, 0);
  FirstTick(b);
  b.Count(kStorm, 1100);
  ASSERT_EQ(b.Tick(12 * kMs, 12 * kMs, 9000 + 2200), (std::vector<Action>{{kStorm, false}}));
  // Off for 1 s in which the target allocated 900 000 objects.
  auto missed = b.Missed(12 * kMs + kS, 12 * kMs + 500 * kMs, 11200 + 900000);
  ASSERT_EQ(missed.size(), 1u);
  EXPECT_DOUBLE_EQ(missed[kStorm], 450000.0);
  EXPECT_EQ(b.stats().by_work, 1u);
  EXPECT_EQ(b.stats().by_time, 0u);
}

TEST(OverheadBudgetTest, AStormsFirstTickOverWaitsOneTickForACleanWindow) {
  // Over the bucket at its first tick, whose work began before the storm:
  // it stays on one more tick (nothing else goes in its place), measured
  // from here; then off, priced by that tick alone.
  OverheadBudget b(OnePercent(), 10000, 0, 0, 0);
  b.Count(kStorm, 1100);
  b.Count(kCalm, 10);
  EXPECT_TRUE(b.Tick(5 * kMs, 5 * kMs, 5000).empty());
  b.Count(kStorm, 1100);
  b.Count(kCalm, 10);
  ASSERT_EQ(b.Tick(10 * kMs, 10 * kMs, 5000 + 2200), (std::vector<Action>{{kStorm, false}}));
  EXPECT_DOUBLE_EQ(b.Missed(10 * kMs + kS, 10 * kMs + kS, 7200 + 900000)[kStorm], 450000.0);
  // Without allocation counts there is nothing to wait for: off at once.
  OverheadBudget c(OnePercent(), 10000, 0, 0);
  c.Count(kStorm, 1100);
  EXPECT_EQ(c.Tick(5 * kMs, 5 * kMs), (std::vector<Action>{{kStorm, false}}));
}

TEST(OverheadBudgetTest, AStormKeptOnThatCalmsStaysOnAndItsDebtIsForgiven) {
  OverheadBudget b(OnePercent(), 10000, 0, 0, 0);
  b.Count(kStorm, 1100);  // 11 ms of a 10 ms bucket: kept on a tick
  EXPECT_TRUE(b.Tick(5 * kMs, 5 * kMs, 5000).empty());
  b.Count(kStorm, 2);  // calm now: stays on
  EXPECT_TRUE(b.Tick(10 * kMs, 10 * kMs, 5100).empty());
  EXPECT_FALSE(b.off(kStorm));
  // Its debt is not the calm site's: 3 ms of hits in a bucket forgiven to
  // half full leave it on (unforgiven, the bucket would be 4 ms short).
  b.Count(kCalm, 300);
  EXPECT_TRUE(b.Tick(15 * kMs, 15 * kMs, 5200).empty());
  EXPECT_FALSE(b.off(kCalm));
}

TEST(OverheadBudgetTest, AnOffPeriodRunsFromTheTickToWhenTheAttachTook) {
  OverheadBudget b(OnePercent(), 10000, 0, 0, 0);
  FirstTick(b);
  b.Count(kStorm, 1100, 8 * kMs);
  const Action off{kStorm, false}, on{kStorm, true};
  ASSERT_EQ(b.Tick(10 * kMs, 10 * kMs, 9000 + 2200), (std::vector<Action>{off}));
  // The detach took 20 ms: its uprobe went early, the storm ran on
  // untrapped (400 000 allocations by its end), and 30 hits were seen
  // before it went. The off period starts at the tick all the same.
  b.Count(kStorm, 30, 10 * kMs + 300000);
  b.Applied(off, 30 * kMs, 30 * kMs, 411200);
  ASSERT_EQ(b.Tick(kS + 10 * kMs, kS + 10 * kMs, 1111200), (std::vector<Action>{on}));
  // The attach took 10 ms: its 100 000 allocations were still off, and 20
  // hits were seen in it (after the probe went in; read after it).
  b.Applied(on, kS + 20 * kMs, kS + 20 * kMs, 1211200);
  b.Count(kStorm, 20, kS + 19 * kMs);
  b.Count(kStorm, 5, kS + 25 * kMs);  // the new window's
  // 0.5 per allocation of 1 200 000 off, less the 50 seen meanwhile.
  EXPECT_DOUBLE_EQ(b.Missed(kS + 30 * kMs, kS + 30 * kMs, 1300000)[kStorm], 600000.0 - 50);
}

TEST(OverheadBudgetTest, HitsAfterTheReattachTookAreNotOffHits) {
  OverheadBudget b(OnePercent(), 10000, 0, 0, 0);
  FirstTick(b);
  b.Count(kStorm, 1100, 8 * kMs);
  const Action on{kStorm, true};
  ASSERT_EQ(b.Tick(10 * kMs, 10 * kMs, 9000 + 2200), (std::vector<Action>{{kStorm, false}}));
  ASSERT_EQ(b.Tick(kS + 10 * kMs, kS + 10 * kMs, 1011200), (std::vector<Action>{on}));
  b.Applied(on, kS + 20 * kMs, kS + 20 * kMs, 1111200);
  // Calm after; its window rolls at a tick without a reading. A hit from
  // before the roll, read after it, is in no window, but it was seen while
  // on: not one of the off period's to subtract.
  ASSERT_TRUE(b.Tick(2 * kS + 30 * kMs, 2 * kS + 30 * kMs, -1).empty());
  b.Count(kStorm, 7, 2 * kS);
  EXPECT_DOUBLE_EQ(b.Missed(3 * kS, 3 * kS, 1200000)[kStorm], 0.5 * 1100000);
}

TEST(OverheadBudgetTest, HitsCountForTheWindowTheyHappenedIn) {
  // A reader behind the ring: hits arrive after the tick that ended their
  // window, and hits from before a window inside it.
  OverheadBudget b(OnePercent(), 10000, 0, 0, 0);
  b.Count(kStorm, 500, 1 * kMs);
  ASSERT_TRUE(b.Tick(5 * kMs, 5 * kMs, 9000).empty());  // its window starts here
  b.Count(kStorm, 300, 4 * kMs);  // before it: not the window's
  b.Count(kStorm, 900, 8 * kMs);
  ASSERT_EQ(b.Tick(12 * kMs, 12 * kMs, 9000 + 2200), (std::vector<Action>{{kStorm, false}}));
  b.Count(kStorm, 200, 11 * kMs);  // the window's, late
  b.Count(kStorm, 50, 13 * kMs);   // while it was being detached: seen off
  // 1100 creations in the window's 2200 allocations (by arrival it would
  // have been 1200), less the 50 seen while off.
  EXPECT_DOUBLE_EQ(b.Missed(kS, kS, 11200 + 900000)[kStorm], 450000.0 - 50);
}

TEST(OverheadBudgetTest, AnEpisodePricesAllItsOffPeriodsByItsLaterWindows) {
  OverheadBudget b(OnePercent(), 10000, 0, 0, 0);
  FirstTick(b);
  // Window 1, the first of its episode, may hold other work: 1100
  // creations, 3300 allocations. Off for 1 s: 1 000 000 allocations.
  b.Count(kStorm, 1100);
  ASSERT_EQ(b.Tick(10 * kMs, 10 * kMs, 9000 + 3300), (std::vector<Action>{{kStorm, false}}));
  int64_t t = 10 * kMs + kS, allocs = 1012300;
  ASSERT_EQ(b.Tick(t, t, allocs), (std::vector<Action>{{kStorm, true}}));
  // Alone, it prices the period so far: a third of a creation each.
  EXPECT_NEAR(b.Missed(t, t, allocs)[kStorm], 1000000.0 / 3, 1e-6);
  // Windows 2 and 3, in mid-storm: 900 and 1100 creations, 2000
  // allocations each; off 2 s (2 000 000) and 4 s (4 000 000). Their pooled
  // ratio, 2000 per 4000, prices all three periods: 0.5 x 7 000 000.
  for (auto [hits, seconds] : {std::pair{900, 2}, std::pair{1100, 4}}) {
    b.Count(kStorm, hits);
    t += 10 * kMs, allocs += 2000;
    ASSERT_EQ(b.Tick(t, t, allocs), (std::vector<Action>{{kStorm, false}}));
    t += seconds * kS, allocs += seconds * 1000000;
    ASSERT_EQ(b.Tick(t, t, allocs), (std::vector<Action>{{kStorm, true}}));
  }
  EXPECT_DOUBLE_EQ(b.Missed(t, t, allocs)[kStorm], 3500000.0);
  EXPECT_EQ(b.stats().by_work, 3u);
}

TEST(OverheadBudgetTest, AnEpisodeWithoutItsWorkFallsBackToCpuTime) {
  // The allocation count went missing at the take-off: CPU time prices it.
  OverheadBudget b(OnePercent(), 10000, 0, 0, 0);
  FirstTick(b);
  b.Count(kStorm, 1100);
  ASSERT_EQ(b.Tick(12 * kMs, 12 * kMs, -1), (std::vector<Action>{{kStorm, false}}));
  // 1600 hits in 12 ms of CPU, 16 ms of it traps: the work floor (a
  // twentieth, 0.6 ms) rules; 500 ms off.
  EXPECT_NEAR(b.Missed(12 * kMs + kS, 12 * kMs + 500 * kMs, 5000000)[kStorm],
              1600.0 / (12 * kMs / 20) * 500 * kMs, 1e-6);
  EXPECT_EQ(b.stats().by_time, 1u);
}

TEST(OverheadBudgetTest, ANewSiteWindowStartsAtTheLastTick) {
  // Ten calm seconds with no hits (1 000 allocations and 10 ms of CPU a
  // tick), then a storm: its rate is of its own ticks, not of the
  // process's life. The calm ticks need no allocation count; the storm's do.
  OverheadBudget b(OnePercent(), 10000, 0, 0, 0);
  int64_t t = 0, allocs = 0;
  for (int i = 0; i < 1000; ++i) {
    t += 10 * kMs, allocs += 1000;
    ASSERT_FALSE(b.NeedsWork(t));
    ASSERT_TRUE(b.Tick(t, t, -1).empty());
  }
  b.Count(kStorm, 500);
  EXPECT_TRUE(b.NeedsWork(t));
  t += 5 * kMs, allocs += 1500;
  ASSERT_TRUE(b.Tick(t, t, allocs).empty());
  b.Count(kStorm, 1500);
  t += 5 * kMs, allocs += 3000;
  ASSERT_EQ(b.Tick(t, t, allocs), (std::vector<Action>{{kStorm, false}}));
  // Off: a reading every tick (its off period may end with the process).
  EXPECT_TRUE(b.NeedsWork(t + kS / 2));
  EXPECT_DOUBLE_EQ(b.Missed(t + kS, t + kS, allocs + 1000000)[kStorm], 500000.0);
}

TEST(OverheadBudgetTest, ZeroMeansNoLimit) {
  BudgetOptions o;
  o.cpu_fraction = 0;
  OverheadBudget b(o, 10000, 0, 0);
  b.Count(kStorm, 1000000);
  EXPECT_TRUE(b.Tick(kMs, kMs).empty());
  EXPECT_EQ(b.stats().detaches, 0u);
}

// A replica sharing the probes (session/error_program.h) took the site off:
// this budget follows, estimates its own creations from its own rate (0.5
// per allocation here) for the time off, never puts the site back itself,
// and counts no detach of its own.
TEST(OverheadBudgetTest, AFollowedSiteIsEstimatedAndComesBackOnlyWhenTold) {
  OverheadBudget b(OnePercent(), 10000, 0, 0, 0);
  // 5 hits per 10 ms (0.5% of a CPU: calm here), one allocation per ms.
  for (int64_t t = 10 * kMs; t <= kS; t += 10 * kMs) {
    b.Count(kStorm, 5, t - 5 * kMs);
    ASSERT_TRUE(b.Tick(t, t, t / kMs).empty()) << "at " << t;
  }
  EXPECT_TRUE(b.OwnedOff().empty());
  b.Follow(kStorm, false, kS, kS, kS / kMs);
  EXPECT_TRUE(b.off(kStorm));
  EXPECT_TRUE(b.OwnedOff().empty());
  // However long: its back-off is not this budget's to keep.
  for (int64_t t = kS + 10 * kMs; t <= 2 * kS; t += 10 * kMs) {
    ASSERT_TRUE(b.Tick(t, t, t / kMs).empty()) << "at " << t;
  }
  b.Follow(kStorm, true, 2 * kS, 2 * kS, 2 * kS / kMs);
  EXPECT_FALSE(b.off(kStorm));
  // 495 creations over 990 allocations on; 1000 allocations off.
  auto missed = b.Missed(2 * kS, 2 * kS, 2 * kS / kMs);
  ASSERT_EQ(missed.size(), 1u);
  EXPECT_DOUBLE_EQ(missed[kStorm], 500);
  OverheadBudget::Stats st = b.stats();
  EXPECT_EQ(st.detaches, 0u);
  EXPECT_EQ(st.reattaches, 0u);
  EXPECT_EQ(st.sites_off_now, 0u);
  EXPECT_EQ(st.sites_ever_off, 1u);
  // Back on and calm: not on probation (it stormed elsewhere), so it stays.
  for (int64_t t = 2 * kS + 10 * kMs; t <= 3 * kS; t += 10 * kMs) {
    b.Count(kStorm, 5, t - 5 * kMs);
    ASSERT_TRUE(b.Tick(t, t, t / kMs).empty()) << "at " << t;
  }
}

// A site this budget never saw has no rate: following it changes nothing.
TEST(OverheadBudgetTest, FollowingAnUnseenSiteDoesNothing) {
  OverheadBudget b(OnePercent(), 10000, 0, 0, 0);
  b.Follow(kCalm, false, kS, kS, 1000);
  EXPECT_FALSE(b.Knows(kCalm));
  EXPECT_FALSE(b.off(kCalm));
  EXPECT_TRUE(b.Tick(2 * kS, 2 * kS, 2000).empty());
}

// The owner of an off site went away: the heir puts it back at its next
// tick, whether it followed the site (its estimate stays) or never saw it
// (nothing to estimate).
TEST(OverheadBudgetTest, AnAdoptedSiteComesBackAtTheNextTick) {
  OverheadBudget b(OnePercent(), 10000, 0, 0, 0);
  for (int64_t t = 10 * kMs; t <= kS; t += 10 * kMs) {
    b.Count(kStorm, 5, t - 5 * kMs);
    ASSERT_TRUE(b.Tick(t, t, t / kMs).empty());
  }
  b.Follow(kStorm, false, kS, kS, kS / kMs);
  ASSERT_TRUE(b.Tick(kS + 10 * kMs, kS + 10 * kMs, 1010).empty());
  b.Adopt(kStorm, kS + 500 * kMs);
  b.Adopt(kCalm, kS + 500 * kMs);
  EXPECT_EQ(b.OwnedOff(), (std::vector<uint64_t>{kStorm, kCalm}));
  EXPECT_EQ(b.Tick(kS + 510 * kMs, kS + 510 * kMs, 1510),
            (std::vector<Action>{{kStorm, true}, {kCalm, true}}));
  EXPECT_TRUE(b.OwnedOff().empty());
  auto missed = b.Missed(kS + 510 * kMs, kS + 510 * kMs, 1510);
  ASSERT_EQ(missed.size(), 1u);
  EXPECT_DOUBLE_EQ(missed[kStorm], 255);  // 0.5 per allocation, 510 off
}

}  // namespace
}  // namespace goerrprof::profiler
