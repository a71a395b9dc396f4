#include "tests/agent/agent_fixture.h"

#include <netdb.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/strings/ascii.h"
#include "gtest/gtest.h"

namespace goerrprof::testing {

absl::StatusOr<std::string> HttpGet(const std::string& address, const std::string& path,
                                    int timeout_seconds) {
  size_t colon = address.rfind(':');
  if (colon == std::string::npos) return absl::InvalidArgumentError("no port in " + address);
  addrinfo hints = {};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(address.substr(0, colon).c_str(), address.substr(colon + 1).c_str(), &hints,
                  &res) != 0) {
    return absl::InvalidArgumentError("cannot resolve " + address);
  }
  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv = {timeout_seconds, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  int rc = connect(fd, res->ai_addr, res->ai_addrlen);
  freeaddrinfo(res);
  if (rc != 0) {
    close(fd);
    return absl::UnavailableError("cannot connect to " + address);
  }
  std::string req = absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: ", address,
                                 "\r\nConnection: close\r\n\r\n");
  if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    close(fd);
    return absl::UnavailableError("send failed");
  }
  std::string resp;
  char buf[8192];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) resp.append(buf, static_cast<size_t>(n));
  close(fd);
  if (n < 0) return absl::DeadlineExceededError("no whole answer from " + address + path);
  size_t end = resp.find("\r\n\r\n");
  if (end == std::string::npos) return absl::DataLossError("no HTTP header: " + resp);
  if (!absl::StartsWith(resp, "HTTP/1.1 200 ")) {
    return absl::FailedPreconditionError(resp.substr(0, resp.find("\r\n")));
  }
  return resp.substr(end + 4);
}

absl::StatusOr<std::vector<MetricSample>> ParseMetrics(const std::string& page) {
  std::vector<MetricSample> out;
  for (absl::string_view line : absl::StrSplit(page, '\n', absl::SkipEmpty())) {
    if (line[0] == '#') continue;
    MetricSample s;
    size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    s.name = std::string(line.substr(0, i));
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (i < line.size() && line[i] != '}') {
        size_t eq = line.find("=\"", i);
        if (eq == absl::string_view::npos) return absl::InvalidArgumentError(std::string(line));
        std::string key(line.substr(i, eq - i)), value;
        i = eq + 2;
        for (; i < line.size() && line[i] != '"'; ++i) {
          if (line[i] == '\\' && i + 1 < line.size()) {
            char c = line[++i];
            value += c == 'n' ? '\n' : c;
          } else {
            value += line[i];
          }
        }
        if (i >= line.size()) return absl::InvalidArgumentError(std::string(line));
        ++i;  // the closing quote
        if (i < line.size() && line[i] == ',') ++i;
        s.labels[key] = value;
      }
      ++i;  // '}'
    }
    std::vector<absl::string_view> rest =
        absl::StrSplit(line.substr(std::min(i, line.size())), ' ', absl::SkipEmpty());
    if (rest.empty() || !absl::SimpleAtod(rest[0], &s.value)) {
      return absl::InvalidArgumentError(absl::StrCat("no value: ", line));
    }
    out.push_back(std::move(s));
  }
  return out;
}

absl::StatusOr<double> MetricValue(const std::vector<MetricSample>& samples,
                                   const std::string& name,
                                   const std::map<std::string, std::string>& labels) {
  for (const MetricSample& s : samples) {
    if (s.name == name && s.labels == labels) return s.value;
  }
  return absl::NotFoundError(name);
}

void AddStormTruth(const google::protobuf::Value& truth, SiteCounts* counts) {
  (*counts)[{"*fmt.wrapError", GetString(truth, "storm_function")}] += GetInt(truth, "storm");
  (*counts)[{"*errors.errorString", GetString(truth, "calm_function")}] += GetInt(truth, "calm");
}

void AgentTest::SetUp() {
  CorpusBinary b = NewestErrgen();
  ASSERT_FALSE(b.path.empty());
  // A name of this run only: another test's errgen is never ours to count.
  errgen_name_ = absl::StrCat("errgen-agent-", getpid());
  errgen_ = absl::StrCat(::testing::TempDir(), errgen_name_);
  std::error_code ec;
  std::filesystem::copy_file(CorpusBinaryPath(b), errgen_,
                             std::filesystem::copy_options::overwrite_existing, ec);
  ASSERT_FALSE(ec) << ec.message();
  ASSERT_EQ(chmod(errgen_.c_str(), 0755), 0);
}

void AgentTest::TearDown() {
  agent_.reset();  // killed and reaped if a test stopped short
  if (!errgen_.empty()) std::remove(errgen_.c_str());
  RecordCliTest::TearDown();
}

void AgentTest::StartAgent(const std::vector<std::string>& extra) {
  std::vector<std::string> argv = {GoerrprofPath(), "agent", "--listen=127.0.0.1:0",
                                   "--max-overhead=0", "--include=" + errgen_name_};
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto agent = Child::Spawn(argv);
  ASSERT_TRUE(agent.ok()) << agent.status();
  agent_ = std::move(*agent);
  // Warnings may come first (no exec events on this kernel, say).
  const std::string kListening = "goerrprof: agent: listening on ";
  absl::StatusOr<std::string> line;
  for (int i = 0; i < 16; ++i) {
    line = agent_->ReadLine(true, kTimeout);
    ASSERT_TRUE(line.ok()) << line.status();
    if (absl::StartsWith(*line, kListening)) break;
  }
  ASSERT_TRUE(absl::StartsWith(*line, kListening)) << *line;
  address_ = line->substr(kListening.size());
  address_ = address_.substr(0, address_.find(' '));
}

std::unique_ptr<Child> AgentTest::StartStorm(int storm, int calm,
                                             const std::vector<std::string>& launcher,
                                             pid_t* host_pid) {
  return StartErrgen({"-storm", std::to_string(storm), "-calm", std::to_string(calm)}, launcher,
                     host_pid);
}

std::unique_ptr<Child> AgentTest::StartErrgen(const std::vector<std::string>& args,
                                              const std::vector<std::string>& launcher,
                                              pid_t* host_pid) {
  std::vector<std::string> argv = launcher;
  argv.push_back(errgen_);
  argv.push_back("-wait");
  argv.insert(argv.end(), args.begin(), args.end());
  auto errgen = Child::Spawn(argv);
  if (!errgen.ok()) {
    ADD_FAILURE() << errgen.status();
    return nullptr;
  }
  auto ready = (*errgen)->ReadLine(false, kTimeout);
  pid_t said = 0;
  if (!ready.ok() || !absl::StartsWith(*ready, "ready ") ||
      !absl::SimpleAtoi(absl::string_view(*ready).substr(6), &said)) {
    ADD_FAILURE() << "errgen not ready: " << (ready.ok() ? *ready : ready.status().ToString());
    return nullptr;
  }
  ++errgens_started_;
  pid_t pid = (*errgen)->pid();
  if (said != pid) {
    // In a PID namespace of its own (unshare -p -f): the launcher's one
    // child, whose innermost pid is the one errgen said.
    std::string children = ReadFileOrEmpty(absl::StrCat("/proc/", pid, "/task/", pid, "/children"));
    pid_t child = 0;
    std::string nspid;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(children), &child)) {
      for (absl::string_view line :
           absl::StrSplit(ReadFileOrEmpty(absl::StrCat("/proc/", child, "/status")), '\n')) {
        if (absl::ConsumePrefix(&line, "NSpid:")) nspid = std::string(line);
      }
    }
    std::vector<std::string> ids = absl::StrSplit(nspid, '\t', absl::SkipEmpty());
    if (child == 0 || ids.size() < 2 || ids.back() != std::to_string(said)) {
      ADD_FAILURE() << "errgen said pid " << said << ", launcher " << pid << " has children \""
                    << children << "\", NSpid \"" << nspid << "\"";
      return nullptr;
    }
    pid = child;
  }
  if (host_pid) *host_pid = pid;
  return std::move(*errgen);
}

void AgentTest::FinishStorms(const std::vector<Child*>& errgens, SiteCounts* truth) {
  for (Child* c : errgens) ASSERT_TRUE(c->Write("go\n").ok());
  CollectStorms(errgens, truth);
}

void AgentTest::CollectStorms(const std::vector<Child*>& errgens, SiteCounts* truth) {
  for (Child* c : errgens) {
    auto run = c->Finish(kTimeout);
    ASSERT_TRUE(run.ok()) << run.status();
    ASSERT_EQ(run->exit_code, 0) << run->err;
    auto parsed = ParseJson(run->out);
    ASSERT_TRUE(parsed.ok()) << parsed.status() << run->out;
    AddStormTruth(*parsed, truth);
  }
}

void AgentTest::WaitAttached(const std::vector<pid_t>& pids) {
  std::set<pid_t> waiting(pids.begin(), pids.end());
  auto deadline = Clock::now() + std::chrono::seconds(kTimeout);
  while (!waiting.empty()) {
    int left = static_cast<int>(
        std::chrono::duration_cast<std::chrono::seconds>(deadline - Clock::now()).count());
    ASSERT_GT(left, 0) << "the agent did not attach in time";
    auto line = agent_->ReadLine(true, left);
    ASSERT_TRUE(line.ok()) << line.status();
    for (pid_t pid : pids) {
      std::string p = absl::StrCat("pid ", pid, " (");
      if (!absl::StrContains(*line, p)) continue;
      ASSERT_TRUE(absl::StrContains(*line, "attached " + p)) << *line;
      waiting.erase(pid);
    }
  }
}

double AgentTest::Gauge(const std::string& name,
                        const std::map<std::string, std::string>& labels) {
  auto page = HttpGet(address_, "/metrics");
  EXPECT_TRUE(page.ok()) << page.status();
  if (!page.ok()) return -1;
  auto samples = ParseMetrics(*page);
  EXPECT_TRUE(samples.ok()) << samples.status();
  if (!samples.ok()) return -1;
  auto v = MetricValue(*samples, name, labels);
  EXPECT_TRUE(v.ok()) << name << " missing:\n" << *page;
  return v.ok() ? *v : -1;
}

void AgentTest::WaitGauge(const std::string& name, int n) {
  auto deadline = Clock::now() + std::chrono::seconds(kTimeout);
  std::string last;
  while (Clock::now() < deadline) {
    auto page = HttpGet(address_, "/metrics");
    ASSERT_TRUE(page.ok()) << page.status();
    auto samples = ParseMetrics(*page);
    ASSERT_TRUE(samples.ok()) << samples.status();
    auto v = MetricValue(*samples, name);
    ASSERT_TRUE(v.ok()) << *page;
    if (*v == n) return;
    last = *page;
    // Scrapes are the poll; a short pause keeps them from spinning.
    usleep(20 * 1000);
  }
  FAIL() << name << " never became " << n << ":\n" << last;
}

SiteCounts AgentTest::ScrapeErrors(bool bound_startup) {
  SiteCounts out;
  auto page = HttpGet(address_, "/metrics");
  EXPECT_TRUE(page.ok()) << page.status();
  if (!page.ok()) return out;
  auto samples = ParseMetrics(*page);
  EXPECT_TRUE(samples.ok()) << samples.status();
  if (!samples.ok()) return out;
  for (const MetricSample& s : *samples) {
    if (s.name != "goerrprof_errors_total") continue;
    EXPECT_EQ(s.labels.size(), 4u) << *page;
    if (s.labels.at("binary") != errgen_name_) continue;
    const std::string& origin = s.labels.at("origin");
    out[{s.labels.at("error_type"), origin.empty() ? s.labels.at("function") : origin}] +=
        static_cast<int64_t>(s.value);
  }
  // Errors errgen makes while it starts (its package init, the runtime's
  // and libraries' own: an strconv.ParseInt error has been seen) are
  // recorded when its exec event attached it first, or not: no truth
  // counts them. A handful each at most.
  int64_t startup = 0;
  for (auto it = out.begin(); it != out.end();) {
    const std::string& function = it->first.second;
    if (!absl::StartsWith(function, "main.") || function == "main.makeInitError" ||
        function == "main.init") {
      startup += it->second;
      it = out.erase(it);
    } else {
      ++it;
    }
  }
  if (bound_startup) {
    EXPECT_LE(startup, 4 * errgens_started_) << "errors made while errgen started";
  }
  return out;
}

int64_t AgentTest::WaitForCount(const SiteCounts::key_type& site, int64_t at_least) {
  auto deadline = Clock::now() + std::chrono::seconds(kTimeout);
  int64_t seen = 0;
  while (Clock::now() < deadline) {
    seen = ScrapeErrors()[site];
    if (seen >= at_least) break;
    usleep(50 * 1000);
  }
  return seen;
}

void AddHeldTruth(Child& errgen, SiteCounts* counts) {
  auto line = errgen.ReadLine(false, kTimeout);
  ASSERT_TRUE(line.ok()) << line.status();
  auto truth = ParseJson(*line);
  ASSERT_TRUE(truth.ok()) << truth.status() << *line;
  AddStormTruth(*truth, counts);
}

void AgentTest::StopAgent() {
  ASSERT_NE(agent_, nullptr);
  ASSERT_EQ(kill(agent_->pid(), SIGTERM), 0);
  auto done = agent_->Finish(kTimeout);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->exit_code, 0) << done->err;
  EXPECT_TRUE(absl::StrContains(done->err, "goerrprof: agent: terminated after")) << done->err;
  agent_.reset();
}

int64_t CumOf(const std::string& top, const std::string& function) {
  for (absl::string_view line : absl::StrSplit(top, '\n')) {
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
    int64_t cum = 0;
    if (f.size() == 6 && f[5] == function && absl::SimpleAtoi(f[3], &cum)) return cum;
  }
  return -1;
}

CommandResult AgentTest::PprofTop(const std::string& page) {
  const std::string tmp = absl::StrCat(::testing::TempDir(), "pprof-", getpid());
  std::filesystem::create_directories(tmp);
  CommandResult top =
      RunCommand({"env", "GOTOOLCHAIN=local", "PPROF_TMPDIR=" + tmp, "/usr/local/go/bin/go",
                  "tool", "pprof", "-top", "-cum", "-nodecount=100000", "-nodefraction=0",
                  absl::StrCat("http://", address_, page)},
                 kTimeout);
  std::filesystem::remove_all(tmp);  // pprof keeps a copy of what it fetched
  return top;
}

WindowRequest::WindowRequest(const std::string& address, int seconds)
    : thread_([this, address, seconds] {
        body_ = HttpGet(address, absl::StrCat("/debug/pprof/errors?seconds=", seconds), kTimeout);
      }) {}

WindowRequest::~WindowRequest() {
  if (thread_.joinable()) thread_.join();
}

absl::StatusOr<std::string> WindowRequest::Body() {
  if (thread_.joinable()) thread_.join();
  return body_;
}

}  // namespace goerrprof::testing
