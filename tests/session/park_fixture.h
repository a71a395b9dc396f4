// What the park_test sources share: reading a park profile's samples, and
// the counters every live tracing run must show clean.
#ifndef GOERRPROF_TESTS_SESSION_PARK_FIXTURE_H_
#define GOERRPROF_TESTS_SESSION_PARK_FIXTURE_H_

#include <memory>
#include <set>
#include <string>

#include "absl/strings/string_view.h"
#include "github.com/google/pprof/proto/profile.pb.h"
#include "gtest/gtest.h"
#include "session/park_session.h"
#include "symbolizer/go_binary.h"
#include "tests/test_support.h"

namespace goerrprof::testing {

// Sample value indexes: parks, blocked, runnable, wakeups.
constexpr int kParks = 0, kBlocked = 1, kRunnable = 2, kWakeups = 3;

// Function names on a sample's stack (every inlined frame).
inline std::set<std::string> FunctionsOf(const perftools::profiles::Profile& p,
                                         const perftools::profiles::Sample& s) {
  std::set<std::string> out;
  for (uint64_t id : s.location_id()) {
    const auto& loc = p.location(static_cast<int>(id - 1));
    for (const auto& l : loc.line()) {
      const auto& f = p.function(static_cast<int>(l.function_id() - 1));
      out.insert(p.string_table(static_cast<int>(f.name())));
    }
  }
  return out;
}

// The sample's string label `key`, or "".
inline std::string LabelOf(const perftools::profiles::Profile& p,
                           const perftools::profiles::Sample& s, absl::string_view key) {
  for (const auto& l : s.label()) {
    if (p.string_table(static_cast<int>(l.key())) == key) {
      return p.string_table(static_cast<int>(l.str()));
    }
  }
  return "";
}

// Nothing dropped or lost, every goroutine and stack read, some parks.
inline void ExpectCleanRun(const profiler::ParkCounters& c) {
  EXPECT_EQ(c.dropped(), 0u);
  EXPECT_EQ(c.totals.lost_parks, 0u);
  EXPECT_EQ(c.totals.lost_resumes, 0u);
  EXPECT_EQ(c.totals.unknown_goid, 0u);
  EXPECT_EQ(c[GPK_CTR_STACK_FAILED], 0u);
  EXPECT_GT(c.totals.parks, 0u);
}

// The parktrace at `path`: its binary opened, and it started and past its
// first line (its "ready" line, kept in *ready when given).
inline void StartParktrace(const std::string& path,
                           std::unique_ptr<symbolizer::GoBinary>* binary,
                           std::unique_ptr<Child>* child, std::string* ready = nullptr) {
  auto opened = symbolizer::GoBinary::Open(path);
  ASSERT_TRUE(opened.ok()) << opened.status();
  *binary = std::move(*opened);
  auto spawned = Child::Spawn({path});
  ASSERT_TRUE(spawned.ok()) << spawned.status();
  *child = std::move(*spawned);
  auto line = (*child)->ReadLine(false, 30);
  ASSERT_TRUE(line.ok()) << line.status();
  if (ready) *ready = *line;
}

// Live tracing of an esbuild release (park_esbuild_test.cc); registered
// with the other corpus suites in park_test.cc.
void CheckEsbuild(const CorpusBinary& b);

}  // namespace goerrprof::testing

#endif  // GOERRPROF_TESTS_SESSION_PARK_FIXTURE_H_
