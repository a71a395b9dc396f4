// The agent scraped by a real Prometheus server (Debian's `prometheus`):
// what Prometheus stores and answers must be errgen's truth. Skipped, and
// said so, only when no prometheus binary is installed.
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "tests/agent/agent_fixture.h"

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

TEST_F(AgentPrometheusTest, PrometheusSeesErrgenTruth) {
  std::string prometheus = FindPrometheus();
  if (prometheus.empty()) {
    GTEST_SKIP() << "no prometheus binary (scripts/setup.sh unpacks Debian's into .cache/prometheus)";
  }
  StartAgent();
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

  auto a = StartStorm(300, 5);
  auto b = StartStorm(200, 3);
  ASSERT_TRUE(a && b);
  WaitAttached({a->pid(), b->pid()});
  // Prometheus has a scrape with both attached, before any error.
  WaitQuery("goerrprof_attached_processes", 2);

  SiteCounts want;
  for (Child* c : {a.get(), b.get()}) ASSERT_TRUE(c->Write("go\n").ok());
  for (Child* c : {a.get(), b.get()}) {
    auto run = c->Finish(kTimeout);
    ASSERT_TRUE(run.ok()) << run.status();
    ASSERT_EQ(run->exit_code, 0) << run->err;
    auto truth = ParseJson(run->out);
    ASSERT_TRUE(truth.ok()) << truth.status() << run->out;
    AddStormTruth(*truth, &want);
  }
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
  StopAgent();
  ASSERT_EQ(kill(prometheus_->pid(), SIGTERM), 0);
  auto done = prometheus_->Finish(kTimeout);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->exit_code, 0) << done->err;
}

}  // namespace
}  // namespace goerrprof::testing
