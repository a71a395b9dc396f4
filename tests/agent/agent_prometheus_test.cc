// The agent against the real tools: Debian's `prometheus` scraping it, `go
// tool pprof` reading its errors page, and an OpenTelemetry Collector
// (tests/agent/otelcol) receiving its OTLP pushes; what each answers must be
// errgen's truth. Skipped, and said so, only when a tool is not there.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "tests/agent/agent_fixture.h"
#include "tests/agent/otel_collector.h"

namespace goerrprof::testing {
namespace {

// scripts/setup.sh unpacks Debian's package into .cache (installing it would
// start a server); an installed one serves as well.
std::string FindPrometheus() {
  for (std::string dir : {RepoDir() + "/.cache/prometheus/usr/bin", std::string("/usr/bin"),
                          std::string("/usr/local/bin")}) {
    std::string p = absl::StrCat(dir, "/prometheus");
    if (access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

class AgentPrometheusTest : public AgentTest {
 protected:
  void TearDown() override {
    prometheus_.reset();  // killed and reaped if still running
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
    AgentTest::TearDown();
  }

  // One value of an instant query; NotFound when the result is empty.
  absl::StatusOr<double> Query(const std::string& promql) {
    std::string q;
    for (unsigned char c : promql) {  // URL-encoded
      if (isalnum(c) || c == '_' || c == '.' || c == '-') {
        q += static_cast<char>(c);
      } else {
        q += absl::StrFormat("%%%02X", c);
      }
    }
    auto body = HttpGet(prom_, "/api/v1/query?query=" + q);
    if (!body.ok()) return body.status();
    auto json = ParseJson(*body);
    if (!json.ok()) return json.status();
    if (GetString(*json, "status") != "success") return absl::InternalError(*body);
    const auto& result = Get(Get(*json, "data"), "result").list_value();
    if (result.values_size() == 0) return absl::NotFoundError(promql + ": no result");
    if (result.values_size() != 1) return absl::InternalError(promql + ": several: " + *body);
    // "value": [timestamp, "text"]
    const auto& v = Get(result.values(0), "value").list_value();
    double out = 0;
    if (v.values_size() != 2 || !absl::SimpleAtod(v.values(1).string_value(), &out)) {
      return absl::InternalError(*body);
    }
    return out;
  }

  // Polls the query (bounded) until it answers `want`.
  void WaitQuery(const std::string& promql, double want) {
    auto deadline = Clock::now() + std::chrono::seconds(kTimeout);
    std::string last;
    while (Clock::now() < deadline) {
      auto v = Query(promql);
      if (v.ok() && *v == want) return;
      last = v.ok() ? absl::StrCat(*v) : v.status().ToString();
      usleep(100 * 1000);  // Prometheus scrapes once a second
    }
    FAIL() << promql << " never answered " << want << "; last: " << last;
  }

  std::unique_ptr<Child> prometheus_;
  std::string dir_, prom_;
};

// The whole picture in one run: two Go targets started after the
// agent (one in mount and PID namespaces of its own, its binary on a tmpfs
// only it sees) attached by themselves; Prometheus' query API, `go tool
// pprof` on the errors page and a real OpenTelemetry Collector fed by the
// OTLP push each equal the targets' own truth.
TEST_F(AgentPrometheusTest, EveryExportSeesTwoLateTargets) {
  std::string prometheus = FindPrometheus();
  if (prometheus.empty()) {
    GTEST_SKIP() << "no prometheus binary (scripts/setup.sh unpacks Debian's into .cache/prometheus)";
  }
  if (FindOtelCollector().empty()) {
    GTEST_SKIP() << "no test collector (scripts/build_otelcol.sh builds .cache/otelcol/otelcol)";
  }
  if (access("/usr/bin/unshare", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/unshare";
  auto collector = OtelCollector::Start();
  ASSERT_TRUE(collector.ok()) << collector.status();
  // Pushes every second: the errors span several periods, and each must
  // be delivered once.
  StartAgent({"--otlp-endpoint=" + (*collector)->endpoint(), "--otlp-interval=1s"});
  ASSERT_NE(agent_, nullptr);
  dir_ = absl::StrCat(::testing::TempDir(), "prometheus-", getpid());
  std::filesystem::create_directories(dir_ + "/data");
  {
    std::ofstream config(dir_ + "/prometheus.yml");
    config << "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
           << "scrape_configs:\n  - job_name: goerrprof\n    static_configs:\n"
           << "      - targets: ['" << address_ << "']\n";
  }
  int port = FreeLoopbackPort();
  ASSERT_GT(port, 0);
  prom_ = absl::StrCat("127.0.0.1:", port);
  auto p = Child::Spawn({prometheus, "--config.file=" + dir_ + "/prometheus.yml",
                         "--storage.tsdb.path=" + dir_ + "/data",
                         "--web.listen-address=" + prom_, "--log.level=warn"});
  ASSERT_TRUE(p.ok()) << p.status();
  prometheus_ = std::move(*p);
  // Up, and scraping the agent.
  WaitQuery("up{job=\"goerrprof\"}", 1);

  const std::string mnt = dir_ + "/mnt";
  std::filesystem::create_directories(mnt);
  const std::string inside = absl::StrCat(mnt, "/", errgen_name_);
  auto a = StartStorm(300, 5);
  pid_t b_pid = 0;
  auto b = StartStorm(200, 3,
                      {"/usr/bin/unshare", "-m", "-p", "-f", "--propagation", "private", "sh", "-c",
                       absl::StrCat("mount -t tmpfs agenttest '", mnt, "' && cp \"$0\" '", inside,
                                    "' && exec '", inside, "' \"$@\"")},
                      &b_pid);
  ASSERT_TRUE(a && b);
  ASSERT_NE(b_pid, b->pid()) << "not in a PID namespace of its own";
  EXPECT_NE(access(inside.c_str(), F_OK), 0) << inside << " is visible outside its namespace";
  const pid_t a_pid = a->pid();  // Child forgets it once reaped
  WaitAttached({a_pid, b_pid});
  // Prometheus has a scrape with both attached, before any error.
  WaitQuery("goerrprof_attached_processes", 2);

  // `go tool pprof` fetches a window over the whole run.
  auto fetch = StartPprofTop("/debug/pprof/errors?seconds=8");
  WaitGauge("goerrprof_pprof_windows", 1);

  SiteCounts want;
  FinishStorms({a.get(), b.get()}, &want);
  std::map<std::string, int64_t> by_function;
  for (const auto& [site, n] : want) by_function[site.second] += n;
  // A scrape with both detached: their errors were all counted before it
  // (a session is drained before it closes; the page is made at once).
  WaitQuery("goerrprof_attached_processes", 0);
  int64_t total = 0;
  for (const auto& [site, n] : want) total += n;
  const std::string sel = absl::StrCat("goerrprof_errors_total{binary=\"", errgen_name_, "\"}");
  auto sum = Query(absl::StrCat("sum(", sel, ")"));
  ASSERT_TRUE(sum.ok()) << sum.status();
  EXPECT_EQ(*sum, static_cast<double>(total));
  for (const auto& [site, n] : want) {
    auto v = Query(absl::StrCat("sum(goerrprof_errors_total{binary=\"", errgen_name_,
                                "\",error_type=\"", site.first, "\",origin=\"", site.second,
                                "\"})"));
    ASSERT_TRUE(v.ok()) << v.status();
    EXPECT_EQ(*v, static_cast<double>(n)) << site.first << " " << site.second;
  }

  const CommandResult top = fetch->Result();
  ASSERT_EQ(top.exit_code, 0) << top.err;
  for (const auto& [function, n] : by_function) EXPECT_EQ(CumOf(top.out, function), n) << top.out;

  // Stopping pushes the last period; then everything has reached the
  // collector, each error once, labelled with the pid the agent sees.
  StopAgent();
  auto received = (*collector)->Received();
  ASSERT_TRUE(received.ok()) << received.status();
  std::vector<std::string> batches;
  auto samples = ParseOtlpSamples(*received, &batches);
  ASSERT_TRUE(samples.ok()) << samples.status();
  ASSERT_FALSE(batches.empty()) << "nothing reached the collector";
  std::map<std::string, int64_t> otlp_by_function;
  std::map<std::string, int64_t> by_pid;
  for (const OtlpSample& s : *samples) {
    ASSERT_EQ(s.kind, "errors/count") << *received;
    std::set<std::string> seen(s.frames.begin(), s.frames.end());
    for (const std::string& f : seen) {
      if (by_function.contains(f)) otlp_by_function[f] += s.value;
    }
    by_pid[s.attributes.at("process.pid")] += s.value;
    EXPECT_EQ(s.attributes.at("process.binary"), errgen_name_);
  }
  EXPECT_EQ(otlp_by_function, by_function) << *received;
  const std::map<std::string, int64_t> want_pids = {{std::to_string(a_pid), 305},
                                                    {std::to_string(b_pid), 203}};
  EXPECT_EQ(by_pid, want_pids) << *received;
  EXPECT_TRUE((*collector)->Stop().ok());

  ASSERT_EQ(kill(prometheus_->pid(), SIGTERM), 0);
  auto done = prometheus_->Finish(kTimeout);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->exit_code, 0) << done->err;
}

}  // namespace
}  // namespace goerrprof::testing
