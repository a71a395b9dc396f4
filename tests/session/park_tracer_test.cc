// ParkTracer and ParkAggregator on their own: ring drops counted, pairing
// on made-up records, bad pids and binaries, the overhead warning. The
// ones that trace need root.
#include <unistd.h>

#include <map>
#include <memory>
#include <set>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "goabi/g_layout.h"
#include "gtest/gtest.h"
#include "plan/park_probes.h"
#include "session/park_session.h"
#include "symbolizer/go_binary.h"
#include "tests/session/park_fixture.h"
#include "tests/test_support.h"

namespace goerrprof::testing {
namespace {

using profiler::ParkTracer;

// The newest default parktrace of the corpus, or "" (the corpus test says why).
std::string NewestParktrace() {
  auto b = NewestCorpusBinary(false, "parktrace", "default");
  return b ? CorpusBinaryPath(*b) : "";
}

// A ring too small for the records, drained only at the end: the lost
// records are counted, reported in the profile, and pairing stays sane.
TEST(ParkTracerDrops, TinyRingCountsDrops) {
  if (geteuid() != 0) GTEST_SKIP() << "park tracing needs root (BPF uprobes)";
  const std::string path = NewestParktrace();
  ASSERT_FALSE(path.empty()) << "no parktrace in the corpus";
  std::unique_ptr<symbolizer::GoBinary> binary;
  std::unique_ptr<Child> child;
  ASSERT_NO_FATAL_FAILURE(StartParktrace(path, &binary, &child));
  profiler::ParkOptions o;
  o.ringbuf_bytes = 4096;  // one page: a few dozen records
  auto tracer = ParkTracer::Start(child->pid(), *binary, o);
  ASSERT_TRUE(tracer.ok()) << tracer.status();
  ASSERT_TRUE(child->Write("\n").ok());
  auto line = child->ReadLine(false, 90);  // no draining meanwhile
  ASSERT_TRUE(line.ok()) << line.status();
  (*tracer)->Stop();
  ASSERT_TRUE(child->Write("\n").ok());
  auto done = child->Finish(60);
  ASSERT_TRUE(done.ok()) << done.status();

  profiler::ParkCounters c = (*tracer)->counters();
  EXPECT_GT(c[GPK_CTR_DROP_RINGBUF], 0u);
  EXPECT_EQ(c.dropped(), c[GPK_CTR_DROP_RINGBUF] + c[GPK_CTR_DROP_BUSY] + c.decode_errors);
  // Every probe hit became a record or a counted drop.
  EXPECT_EQ(c[GPK_CTR_EVENTS] + c[GPK_CTR_DROP_RINGBUF] + c[GPK_CTR_DROP_BUSY],
            c[GPK_CTR_PARK_HITS] + c[GPK_CTR_RESUME_HITS] + c[GPK_CTR_READY_HITS]);
  EXPECT_EQ(c.records + c.decode_errors, c[GPK_CTR_EVENTS]);
  EXPECT_LT(c.totals.parks, c[GPK_CTR_PARK_HITS]);
  auto p = (*tracer)->BuildProfile();
  ASSERT_TRUE(p.ok()) << p.status();
  std::string comments;
  for (int64_t i : p->comment()) absl::StrAppend(&comments, p->string_table(i), "\n");
  EXPECT_NE(comments.find(absl::StrCat("drop_ringbuf=", c[GPK_CTR_DROP_RINGBUF])),
            std::string::npos)
      << comments;
}

// A pid running another executable than the binary given.
TEST(ParkTracerStart, WrongBinary) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to read /proc/PID/exe of any process";
  const std::string path = NewestParktrace();
  ASSERT_FALSE(path.empty()) << "no parktrace in the corpus";
  auto corpus = LoadCorpus(false);
  ASSERT_TRUE(corpus.ok());
  std::string other;
  for (const CorpusBinary& b : *corpus) {
    if (b.program == "errgen" && b.flavour == "default") other = CorpusBinaryPath(b);
  }
  ASSERT_FALSE(other.empty());
  auto binary = symbolizer::GoBinary::Open(other);
  ASSERT_TRUE(binary.ok()) << binary.status();
  auto child = Child::Spawn({path});
  ASSERT_TRUE(child.ok()) << child.status();
  ASSERT_TRUE((*child)->ReadLine(false, 30).ok());
  auto t = ParkTracer::Start((*child)->pid(), **binary, {});
  ASSERT_FALSE(t.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(t.status())) << t.status();
  EXPECT_NE(t.status().message().find("does not run"), std::string::npos) << t.status();
}

// Pairing on its own, from made-up records: every way a record can be
// missing is counted, and each park lands in the right state.
TEST(ParkAggregator, PairsAndCountsLosses) {
  const std::string path = NewestParktrace();
  ASSERT_FALSE(path.empty()) << "no parktrace in the corpus";
  auto binary = symbolizer::GoBinary::Open(path);
  ASSERT_TRUE(binary.ok()) << binary.status();
  auto probes = profiler::FindParkProbes(**binary);
  ASSERT_TRUE(probes.ok()) << probes.status();
  auto layout = goabi::GLayoutFor((*binary)->version());
  ASSERT_TRUE(layout.ok());
  uint64_t chan_receive = 0;
  for (size_t i = 0; i < layout->wait_reasons.size(); ++i) {
    if (layout->wait_reasons[i] == "chan receive") chan_receive = i;
  }
  ASSERT_NE(chan_receive, 0u);
  using R = profiler::ParkRecord;
  auto rec = [&](R::Kind k, uint64_t ts, uint64_t goid, uint64_t other, bool untracked = false) {
    R r;
    r.kind = k;
    r.ts_ns = ts;
    r.goid = goid;
    r.other = other;
    r.untracked = untracked;
    r.wait_reason = static_cast<uint8_t>(chan_receive);
    r.stack = {probes->park_call};
    return r;
  };
  profiler::ParkAggregator agg(**binary, *layout, /*start_ns=*/1000);
  agg.Add(rec(R::kPark, 2000, 7, 0));
  agg.Add(rec(R::kReady, 2500, 7, 9));
  agg.Add(rec(R::kResume, 3000, 7, 2000));                 // paired: 1000 ns, woken
  agg.Add(rec(R::kResume, 4000, 8, 3500));                 // its park record was lost
  agg.Add(rec(R::kReady, 4500, 10, 9));                    // parked before start ...
  agg.Add(rec(R::kResume, 5000, 10, 0, /*untracked=*/true));  // ... 4000 ns since start
  agg.Add(rec(R::kPark, 6000, 11, 0));
  agg.Add(rec(R::kPark, 6500, 11, 0));                     // the resume between was lost
  agg.Add(rec(R::kReady, 6600, 12, 9));                    // woke something never resumed
  agg.Add(rec(R::kPark, 7000, 0, 0));                      // goid unreadable
  agg.Close(/*stop_ns=*/9000);                             // 11 still parked: 2500 ns
  agg.Add(rec(R::kPark, 9500, 13, 0));                     // after Close: ignored

  const profiler::ParkTotals& t = agg.totals();
  EXPECT_EQ(t.parks, 3u);
  EXPECT_EQ(t.resumes, 1u);
  EXPECT_EQ(t.wakeups, 3u);
  EXPECT_EQ(t.lost_parks, 1u);
  EXPECT_EQ(t.lost_resumes, 1u);
  EXPECT_EQ(t.resumed_before_start, 1u);
  EXPECT_EQ(t.orphan_wakeups, 1u);
  EXPECT_EQ(t.unknown_goid, 1u);
  EXPECT_EQ(t.still_parked, 1u);
  std::map<profiler::ParkState, std::pair<uint64_t, uint64_t>> by_state;  // parks, blocked
  uint64_t runnable = 0;
  for (const auto& [k, v] : agg.parks()) {
    by_state[k.state].first += v.parks;
    by_state[k.state].second += v.blocked_ns;
    runnable += v.runnable_ns;
  }
  using S = profiler::ParkState;
  EXPECT_EQ(by_state[S::kResumed], std::make_pair(uint64_t{1}, uint64_t{1000}));
  EXPECT_EQ(by_state[S::kParkedBeforeStart], std::make_pair(uint64_t{1}, uint64_t{4000}));
  EXPECT_EQ(by_state[S::kStillParked], std::make_pair(uint64_t{1}, uint64_t{2500}));
  EXPECT_EQ(runnable, 500u + 500u);  // ready -> resume of goroutines 7 and 10
  uint64_t wakeups = 0;
  for (const auto& [k, n] : agg.wakeups()) wakeups += n;
  EXPECT_EQ(wakeups, 2u);  // the two wakeups whose goroutine resumed
}

TEST(ParkCorpus, HasParktrace) {
  auto corpus = LoadCorpus(false);
  ASSERT_TRUE(corpus.ok()) << corpus.status();
  std::set<std::string> versions;
  for (const CorpusBinary& b : *corpus) {
    if (b.program == "parktrace") versions.insert(b.go_version);
  }
  EXPECT_FALSE(versions.empty())
      << "no parktrace in the corpus: run bash scripts/build_go_corpus.sh";
}

TEST(ParkWarning, StatesCost) {
  std::string w = ParkTracer::OverheadWarning(3.25);
  EXPECT_NE(w.find("3.2 us"), std::string::npos) << w;
  EXPECT_NE(w.find("--goroutines"), std::string::npos) << w;
}

TEST(ParkTracerStart, DeadPid) {
  auto corpus = LoadCorpus(false);
  ASSERT_TRUE(corpus.ok()) << corpus.status();
  ASSERT_FALSE(corpus->empty());
  auto binary = symbolizer::GoBinary::Open(CorpusBinaryPath(corpus->front()));
  ASSERT_TRUE(binary.ok()) << binary.status();
  auto t = ParkTracer::Start(0x3ffffff0, **binary, {});
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("no process"), std::string::npos) << t.status();
}

}  // namespace
}  // namespace goerrprof::testing
