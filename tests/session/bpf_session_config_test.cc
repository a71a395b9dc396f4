// BpfSession's knobs against errgen: detaching (the session's end), a ring
// buffer too small, a chain depth cut, the goroutine read from TLS. Needs
// root.
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "session/bpf_session.h"
#include "tests/session/bpf_session_fixture.h"
#include "tests/test_support.h"

namespace goerrprof::testing {
namespace {

using profiler::BpfSession;
using profiler::CapturedError;

// Destroying the session must take every probe out: the target then runs
// to completion as if never traced.
TEST(BpfSession, DetachLeavesTargetIntact) {
  if (!IsRoot()) GTEST_SKIP() << "needs root for BPF";
  Target t;
  std::unique_ptr<Child> child;
  ASSERT_NO_FATAL_FAILURE(StartNewestErrgen(&t, &child));
  std::vector<uint32_t> ids;
  {
    auto session = BpfSession::Start(t.config);
    ASSERT_TRUE(session.ok()) << session.status();
    ids = (*session)->prog_ids();
  }
  ExpectNothingLeft(ids, t.path);
  auto run = Release(*child).get();
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->exit_code, 0) << run->err;
  EXPECT_NE(run->out.find("\"scenarios\""), std::string::npos);
}

// A ring buffer too small to hold everything: losses are counted, and
// delivered + dropped == hits.
TEST(BpfSession, RingBufferOverflowIsCounted) {
  if (!IsRoot()) GTEST_SKIP() << "needs root for BPF";
  Target t;
  std::unique_ptr<Child> child;
  ASSERT_NO_FATAL_FAILURE(StartNewestErrgen(&t, &child, 50));
  t.config.ringbuf_bytes = 4096;
  auto session = BpfSession::Start(t.config);
  ASSERT_TRUE(session.ok()) << session.status();
  auto run = Release(*child).get();  // no polling while it runs: the ring fills
  ASSERT_TRUE(run.ok()) << run.status();
  ASSERT_EQ(run->exit_code, 0);
  std::vector<CapturedError> events;
  ASSERT_NO_FATAL_FAILURE(Drain(**session, &events));
  profiler::SessionCounters c = (*session)->Counters();
  EXPECT_GT(c[GEP_CTR_DROP_RINGBUF], 0u);
  EXPECT_EQ(c[GEP_CTR_EVENTS], events.size());
  EXPECT_EQ(c[GEP_CTR_EVENTS] + c[GEP_CTR_DROP_RINGBUF], c[GEP_CTR_HITS]);
  // errgen's scenario counts are 1..19, each times -n.
  EXPECT_EQ(c[GEP_CTR_HITS], 50u * (19 * 20 / 2));
}

// --max-chain cuts deep chains visibly.
TEST(BpfSession, MaxChainCutIsCounted) {
  if (!IsRoot()) GTEST_SKIP() << "needs root for BPF";
  Target t;
  ASSERT_NO_FATAL_FAILURE(PrepareNewestErrgen(&t));
  t.config.max_chain = 2;
  std::unique_ptr<BpfSession> session;
  std::vector<CapturedError> events;
  ASSERT_NO_FATAL_FAILURE(CaptureErrgen(&t, &session, &events));
  int wrap = 0;
  for (const CapturedError& e : events) {
    if (t.probe_func[e.ip] != "main.siteWrapChain") continue;
    ++wrap;
    ASSERT_EQ(e.links.size(), 2u);  // outer, middle; inner + root cut
    EXPECT_TRUE(e.links[1].flags & GEP_LINK_DEPTH_CUT);
    EXPECT_FALSE(e.complete());
  }
  EXPECT_EQ(wrap, 4);
  EXPECT_GE(session->Counters()[GEP_CTR_CHAIN_DEPTH], 4u);
}

// The TLS slot gives the same goroutine as R14 (internally linked binary).
TEST(BpfSession, GoroutineIdFromTls) {
  if (!IsRoot()) GTEST_SKIP() << "needs root for BPF";
  Target t;
  ASSERT_NO_FATAL_FAILURE(PrepareNewestErrgen(&t));
  t.config.g_source = profiler::GSource::kTls;
  std::unique_ptr<BpfSession> session;
  std::vector<CapturedError> events;
  ASSERT_NO_FATAL_FAILURE(CaptureErrgen(&t, &session, &events));
  ASSERT_FALSE(events.empty());
  for (const CapturedError& e : events) {
    // Only errgen's goroutine scenarios run under labels, off goroutine 1.
    if (e.labels.empty()) {
      EXPECT_EQ(e.goid, 1u);
    } else {
      EXPECT_GT(e.goid, 1u);
    }
  }
  EXPECT_EQ(session->Counters()[GEP_CTR_GOID_READ], 0u);
}

}  // namespace
}  // namespace goerrprof::testing
