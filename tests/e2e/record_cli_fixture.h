// What the record_cli_test sources share: the fixture that checks nothing
// of ours stays attached after each test, starting and finishing
// `goerrprof record`, its closing line, and the written profile's checks.
#ifndef GOERRPROF_TESTS_E2E_RECORD_CLI_FIXTURE_H_
#define GOERRPROF_TESTS_E2E_RECORD_CLI_FIXTURE_H_

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "github.com/google/pprof/proto/profile.pb.h"
#include "gtest/gtest.h"
#include "tests/test_support.h"

namespace goerrprof::testing {

using Clock = std::chrono::steady_clock;

constexpr int kTimeout = 60;  // seconds, for every single wait

// The newest default errgen; an empty one after a failure.
CorpusBinary NewestErrgen();

// The closing line: "goerrprof: <reason>: N errors and K panics at S sites,
// D dropped, P probes attached in T (U references unplanned) -> FILE".
struct Summary {
  std::string reason;
  uint64_t errors = 0, panics = 0, sites = 0, dropped = 0, probes = 0;
  std::string file;
};
std::optional<Summary> ParseSummary(const std::string& stderr_text);

// Structural validity: every reference resolves, every function is named.
void ExpectValidProfile(const perftools::profiles::Profile& p);
std::vector<std::string> Comments(const perftools::profiles::Profile& p);

class RecordCliTest : public ::testing::Test {
 protected:
  // Other sessions may be recording on this machine at the same time, so
  // "left behind" means: listed by bpftool, yet held by no process. The
  // kernel frees a uprobe_multi link's program only after an RCU tasks-trace
  // grace period, so an orphan must persist through every listing for
  // kOrphanSeconds (bpftool's own run time paces the listings).
  void TearDown() override;

  // A fresh profile path for this test.
  std::string OutPath(const std::string& what) const;
};

// Spawns `goerrprof record --pid PID extra...` and waits for its
// "recording pid" line (all probes attached), past --goroutines' warning.
std::unique_ptr<Child> StartRecord(pid_t pid, const std::string& out,
                                   const std::vector<std::string>& extra = {});

// Waits for `goerrprof record` to exit 0 and reads its closing line, which
// must give `want_reason`; *stderr_text keeps all it said, for messages.
void FinishRecord(Child& rec, const std::string& want_reason, Summary* summary,
                  std::string* stderr_text = nullptr);

}  // namespace goerrprof::testing

#endif  // GOERRPROF_TESTS_E2E_RECORD_CLI_FIXTURE_H_
