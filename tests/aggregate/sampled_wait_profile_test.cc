// WaitSampleAggregator fed synthetic snapshots (exact samples per key,
// totals, the key cap's <other> buckets) and the profile built from it on
// real PCs of a corpus binary (sample types, period, values, stacks from
// runtime.gopark, labels, comments).
#include "aggregate/sampled_wait_profile.h"

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/test_support.h"

namespace goerrprof::testing {
namespace {

using profiler::Goroutine;
using profiler::Snapshot;
using profiler::WaitSampleAggregator;

Goroutine Waiting(uint64_t id, std::vector<uint64_t> stack, absl::string_view reason) {
  Goroutine g;
  g.id = id;
  g.status = 4;  // _Gwaiting
  g.state = reason;
  g.wait_reason = reason;
  g.wait_kind = profiler::WaitKnowledge::kUnknown;
  g.stack = std::move(stack);
  g.stack_kind = profiler::StackKind::kComplete;
  return g;
}

Goroutine Running(uint64_t id, std::vector<uint64_t> stack) {
  Goroutine g;
  g.id = id;
  g.status = 2;
  g.state = "running";
  g.stack = std::move(stack);
  return g;
}

uint64_t Count(const WaitSampleAggregator& agg, const std::vector<uint64_t>& stack,
               const std::string& reason) {
  auto it = agg.samples().find(WaitSampleAggregator::Key{stack, reason});
  return it == agg.samples().end() ? 0 : it->second;
}

TEST(SampledWaits, CountsEveryWaitingGoroutineOncePerSnapshot) {
  WaitSampleAggregator agg({/*period_ns=*/1000, /*max_keys=*/100});
  const std::vector<uint64_t> a = {0x10, 0x20, 0x30}, b = {0x10, 0x40}, c = {0x50};
  for (int i = 0; i < 7; ++i) {
    Snapshot s;
    s.goroutines.push_back(Waiting(1, a, "chan receive"));
    s.goroutines.push_back(Waiting(2, a, "chan receive"));
    s.goroutines.push_back(Waiting(3, a, "chan receive"));
    s.goroutines.push_back(Waiting(4, b, "select"));
    s.goroutines.push_back(Running(5, c));  // never counted
    // The same stack under another reason is another key.
    s.goroutines.push_back(Waiting(6, a, "sync.Mutex.Lock"));
    // Goroutine 7 waits in the odd snapshots only.
    if (i % 2 == 1) s.goroutines.push_back(Waiting(7, c, "sleep"));
    s.stats.skipped = static_cast<uint64_t>(i);  // torn
    agg.Add(s);
  }
  agg.AddFailure();
  agg.AddFailure();
  EXPECT_EQ(Count(agg, a, "chan receive"), 21u);
  EXPECT_EQ(Count(agg, b, "select"), 7u);
  EXPECT_EQ(Count(agg, a, "sync.Mutex.Lock"), 7u);
  EXPECT_EQ(Count(agg, c, "sleep"), 3u);
  EXPECT_EQ(Count(agg, c, ""), 0u);
  EXPECT_EQ(agg.samples().size(), 4u);
  const profiler::WaitSampleTotals& t = agg.totals();
  EXPECT_EQ(t.snapshots, 7u);
  EXPECT_EQ(t.snapshots_failed, 2u);
  EXPECT_EQ(t.torn_skipped, 0u + 1 + 2 + 3 + 4 + 5 + 6);
  EXPECT_EQ(t.waiting_samples, 21u + 7 + 7 + 3);
  EXPECT_EQ(t.other_samples, 0u);
}

TEST(SampledWaits, EmptyAndFailedSnapshots) {
  WaitSampleAggregator agg({1000, 100});
  agg.Add(Snapshot{});
  agg.AddFailure();
  EXPECT_TRUE(agg.samples().empty());
  EXPECT_EQ(agg.totals().snapshots, 1u);
  EXPECT_EQ(agg.totals().snapshots_failed, 1u);
  EXPECT_EQ(agg.totals().waiting_samples, 0u);
}

TEST(SampledWaits, KeysPastTheCapGoToOtherPerReason) {
  WaitSampleAggregator agg({1000, /*max_keys=*/2});
  Snapshot s;
  s.goroutines.push_back(Waiting(1, {1}, "chan receive"));  // kept
  s.goroutines.push_back(Waiting(2, {2}, "chan receive"));  // kept
  s.goroutines.push_back(Waiting(3, {3}, "chan receive"));  // other
  s.goroutines.push_back(Waiting(4, {4}, "chan receive"));  // other
  s.goroutines.push_back(Waiting(5, {5}, "select"));        // other, its own bucket
  agg.Add(s);
  agg.Add(s);
  EXPECT_EQ(Count(agg, {1}, "chan receive"), 2u);  // known keys keep counting
  EXPECT_EQ(Count(agg, {2}, "chan receive"), 2u);
  EXPECT_EQ(Count(agg, {3}, "chan receive"), 0u);
  EXPECT_EQ(Count(agg, {}, "chan receive"), 4u);
  EXPECT_EQ(Count(agg, {}, "select"), 2u);
  EXPECT_EQ(agg.samples().size(), 4u);  // the cap, plus one bucket per reason
  EXPECT_EQ(agg.totals().other_samples, 6u);
  EXPECT_EQ(agg.totals().waiting_samples, 10u);
}

TEST(SampledWaits, ProfileOnRealPcs) {
  auto corpus = NewestCorpusBinary(false, "parked", "default");
  if (!corpus) GTEST_SKIP() << "no parked in the corpus: run scripts/build_go_corpus.sh";
  auto bin = symbolizer::GoBinary::Open(CorpusBinaryPath(*corpus));
  ASSERT_TRUE(bin.ok()) << bin.status();
  auto any = [](uint64_t, const std::vector<symbolizer::SourceFrame>&) { return true; };
  uint64_t gopark = FindPcWhere(**bin, "runtime.gopark", any);
  uint64_t sleeper = FindPcWhere(**bin, "main.sleeper", any);
  uint64_t select_waiter = FindPcWhere(**bin, "main.selectWaiter", any);
  ASSERT_NE(gopark, 0u);
  ASSERT_NE(sleeper, 0u);
  ASSERT_NE(select_waiter, 0u);

  const int64_t period = 1000000000 / 19;
  WaitSampleAggregator agg({period, /*max_keys=*/2});
  for (int i = 0; i < 5; ++i) {
    Snapshot s;
    s.goroutines.push_back(Waiting(1, {gopark, sleeper}, "sleep"));
    s.goroutines.push_back(Waiting(2, {gopark, sleeper}, "sleep"));
    s.goroutines.push_back(Waiting(3, {gopark, select_waiter}, "select"));
    s.goroutines.push_back(Waiting(4, {gopark}, "chan receive"));  // past the cap
    s.stats.skipped = 1;
    agg.Add(s);
  }
  agg.AddFailure();
  profiler::SampledWaitInfo info;
  info.pid = 4242;
  info.hz = 19;
  info.duration_nanos = 5 * period;
  auto p = profiler::BuildSampledWaitProfile(agg, **bin, info);
  ASSERT_TRUE(p.ok()) << p.status();
  auto str = [&](int64_t i) { return p->string_table(static_cast<int>(i)); };
  ASSERT_EQ(p->sample_type_size(), 2);
  EXPECT_EQ(str(p->sample_type(0).type()), "samples");
  EXPECT_EQ(str(p->sample_type(0).unit()), "count");
  EXPECT_EQ(str(p->sample_type(1).type()), "blocked");
  EXPECT_EQ(str(p->sample_type(1).unit()), "nanoseconds");
  EXPECT_EQ(str(p->default_sample_type()), "blocked");
  EXPECT_EQ(str(p->period_type().type()), "blocked");
  EXPECT_EQ(p->period(), period);

  std::map<std::string, std::vector<int64_t>> by_leaf_caller;
  for (const ProfileSample& s : ProfileSamples(*p)) {
    ASSERT_FALSE(s.functions.empty());
    std::string where = s.functions.size() > 1 ? s.functions.back() : s.functions[0];
    by_leaf_caller[s.labels.at("goroutine.wait_reason") + " " + where] = s.values;
    if (s.functions.size() > 1) EXPECT_EQ(s.functions[0], "runtime.gopark");
  }
  EXPECT_EQ(by_leaf_caller.size(), 3u);
  EXPECT_EQ(by_leaf_caller["sleep main.sleeper"], (std::vector<int64_t>{10, 10 * period}));
  EXPECT_EQ(by_leaf_caller["select main.selectWaiter"], (std::vector<int64_t>{5, 5 * period}));
  EXPECT_EQ(by_leaf_caller["chan receive <other>"], (std::vector<int64_t>{5, 5 * period}));
  // Non-leaf PCs are return addresses: their locations sit at pc-1.
  for (const auto& loc : p->location()) {
    if (loc.address() != 0) EXPECT_TRUE(loc.address() + 1 == gopark ||
                                        loc.address() + 1 == sleeper ||
                                        loc.address() + 1 == select_waiter)
        << std::hex << loc.address();
  }
  std::string comments;
  for (int64_t c : p->comment()) absl::StrAppend(&comments, str(c), "\n");
  EXPECT_TRUE(absl::StrContains(
      comments,
      "mode=sample hz=19 snapshots=5 snapshots_failed=1 torn_skipped=5 waiting_samples=20 "
      "keys=3 other_samples=5"))
      << comments;
  EXPECT_TRUE(absl::StrContains(comments, "(pid 4242)")) << comments;
}

}  // namespace
}  // namespace goerrprof::testing
