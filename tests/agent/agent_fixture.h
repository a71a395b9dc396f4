// What the agent's end-to-end tests share: a private copy of errgen (so
// the agent, told to --include only it, never touches another test's Go
// processes), the agent started and ready, a bounded HTTP GET, and the
// Prometheus text format parsed.
#ifndef GOERRPROF_TESTS_AGENT_AGENT_FIXTURE_H_
#define GOERRPROF_TESTS_AGENT_AGENT_FIXTURE_H_

#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "google/protobuf/struct.pb.h"
#include "tests/e2e/record_cli_fixture.h"
#include "tests/test_support.h"

namespace goerrprof::testing {

// The body of `GET http://address/path`; an error unless the status is 200.
absl::StatusOr<std::string> HttpGet(const std::string& address, const std::string& path,
                                    int timeout_seconds = 10);

struct MetricSample {
  std::string name;
  std::map<std::string, std::string> labels;  // unescaped
  double value = 0;
};
// Every sample line of a text-format page; comments skipped.
absl::StatusOr<std::vector<MetricSample>> ParseMetrics(const std::string& page);
// The value of the one sample of `name` without labels (or with exactly
// `labels`); NotFound when absent.
absl::StatusOr<double> MetricValue(const std::vector<MetricSample>& samples,
                                   const std::string& name,
                                   const std::map<std::string, std::string>& labels = {});

// errgen -storm's truth: (error type, creating function) -> count. Types
// are those of the two sites' expressions (storm.go): fmt.Errorf with %w
// makes a *fmt.wrapError, without it an *errors.errorString.
using SiteCounts = std::map<std::pair<std::string, std::string>, int64_t>;
void AddStormTruth(const google::protobuf::Value& truth, SiteCounts* counts);
// The truth line an `errgen -storm N -hold` prints once its storm is over.
void AddHeldTruth(Child& errgen, SiteCounts* counts);

// A /debug/pprof/errors?seconds=N request in flight on a thread of its
// own, joined on every way out (a failed assertion's too).
class WindowRequest {
 public:
  WindowRequest(const std::string& address, int seconds);
  ~WindowRequest();
  // Waits for the answer: the gzipped profile.
  absl::StatusOr<std::string> Body();

 private:
  absl::StatusOr<std::string> body_ = absl::UnknownError("no answer");
  std::thread thread_;
};

// `go tool pprof -top -cum` of the agent's `page` on a thread of its own
// (a window the test fills meanwhile), joined on every way out.
class PprofTopRequest {
 public:
  explicit PprofTopRequest(std::function<CommandResult()> fetch)
      : thread_([this, fetch = std::move(fetch)] { result_ = fetch(); }) {}
  ~PprofTopRequest() {
    if (thread_.joinable()) thread_.join();
  }
  // Waits for pprof's answer.
  CommandResult Result() {
    if (thread_.joinable()) thread_.join();
    return result_;
  }

 private:
  CommandResult result_;  // before thread_: set by it
  std::thread thread_;
};

// The cum column of `function` in `go tool pprof -top` output (fields:
// flat flat% sum% cum cum% name); -1 when absent.
int64_t CumOf(const std::string& top, const std::string& function);

class AgentTest : public RecordCliTest {
 protected:
  void SetUp() override;
  // The agent and errgen copy gone, then RecordCliTest's check that no
  // BPF program or link of ours is left.
  void TearDown() override;
  // Starts `goerrprof agent --listen 127.0.0.1:0 --include <the copy>` and
  // waits for its "listening on ADDRESS" line.
  void StartAgent(const std::vector<std::string>& extra = {});
  // `errgen -wait -storm N -calm M` (the copy), ready: it creates nothing
  // until a line on its stdin.
  // `launcher` runs first when given (e.g. unshare ... sh -c SCRIPT, whose
  // last word must exec the errgen arguments it is passed as "$@").
  // *host_pid: errgen's pid here, which is not the child's when the
  // launcher forks it into a PID namespace (unshare -p -f).
  std::unique_ptr<Child> StartStorm(int storm, int calm,
                                    const std::vector<std::string>& launcher = {},
                                    pid_t* host_pid = nullptr);
  // `errgen -wait ARGS...` (the copy), ready; null after a failure.
  std::unique_ptr<Child> StartErrgen(const std::vector<std::string>& args,
                                     const std::vector<std::string>& launcher = {},
                                     pid_t* host_pid = nullptr);
  // Releases each errgen, waits for its exit 0 and adds its truth.
  void FinishStorms(const std::vector<Child*>& errgens, SiteCounts* truth);
  // The same for errgens already released.
  void CollectStorms(const std::vector<Child*>& errgens, SiteCounts* truth);
  // Reads the agent's stderr until it said "attached pid P" for each pid.
  void WaitAttached(const std::vector<pid_t>& pids);
  // Polls /metrics (bounded) until the unlabelled gauge `name` is `n`.
  void WaitGauge(const std::string& name, int n);
  void WaitAttachedGauge(int n) { WaitGauge("goerrprof_attached_processes", n); }
  // One scrape's value of `name` with exactly `labels`; -1 (and a failure
  // recorded) when the page or the sample is missing.
  double Gauge(const std::string& name, const std::map<std::string, std::string>& labels = {});
  // goerrprof_errors_total of the copy's binary by (error_type, origin, or
  // function when there is no origin). Only errgen's own functions (main.)
  // but its init error: a replica attached by its exec event (its program
  // already loaded) may be a member before it starts up, or not.
  // bound_startup: at most 4 errors per errgen made while it started (a
  // replica that joins a shared program as it execs records its runtime's
  // and packages' init errors, dozens on Go 1.19: false there).
  SiteCounts ScrapeErrors(bool bound_startup = true);
  // ScrapeErrors()[site] once it reaches at_least (polled, bounded), or
  // its last value.
  int64_t WaitForCount(const SiteCounts::key_type& site, int64_t at_least);
  // SIGTERM, and the agent must say it detached and exit 0.
  void StopAgent();
  // `go tool pprof -top -cum` of the agent's `page` (fetched by pprof).
  CommandResult PprofTop(const std::string& page);
  // The same, started now on a thread of its own.
  std::unique_ptr<PprofTopRequest> StartPprofTop(const std::string& page) {
    return std::make_unique<PprofTopRequest>([this, page] { return PprofTop(page); });
  }

  std::string errgen_;       // the private copy
  std::string errgen_name_;  // its base name: the metrics' binary label
  int errgens_started_ = 0;
  std::unique_ptr<Child> agent_;
  std::string address_;  // where the agent listens
};

}  // namespace goerrprof::testing

#endif  // GOERRPROF_TESTS_AGENT_AGENT_FIXTURE_H_
