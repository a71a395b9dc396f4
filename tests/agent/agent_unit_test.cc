// The agent's parts without BPF: /proc parsing, label escaping, the
// include/exclude filters on a fake /proc, and the HTTP server's bounds.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "agent/agent.h"
#include "agent/error_window.h"
#include "agent/http_server.h"
#include "agent/metrics.h"
#include "agent/proc_scan.h"
#include "gtest/gtest.h"
#include "tests/agent/agent_fixture.h"

namespace goerrprof::profiler {
namespace {

TEST(ProcStat, CommandWithSpacesAndParens) {
  // Field 2 may hold ") (" itself; the fields after it are counted from
  // the last ')'. ppid is field 4, start time field 22.
  std::string stat = "4242 (we ird) (x) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 "
                     "987654 1000000 100 18446744073709551615";
  pid_t ppid = 0;
  uint64_t start = 0;
  ASSERT_TRUE(ParseProcStat(stat, &ppid, &start));
  EXPECT_EQ(ppid, 17);
  EXPECT_EQ(start, 987654u);
  EXPECT_FALSE(ParseProcStat("4242 (short) S 1 2", &ppid, &start));
  EXPECT_FALSE(ParseProcStat("no parenthesis", &ppid, &start));
}

TEST(ProcScan, SeesOurselves) {
  auto self = ReadProcEntry("/proc", getpid());
  ASSERT_TRUE(self.has_value());
  EXPECT_EQ(self->ppid, getppid());
  EXPECT_GT(self->start_time, 0u);
  EXPECT_FALSE(self->exe_key.empty());
  bool found = false;
  for (const ProcEntry& e : ScanProcesses()) found |= e.pid == getpid();
  EXPECT_TRUE(found);
  EXPECT_FALSE(ExecutablePath("/proc", getpid()).empty());
}

TEST(Metrics, EscapesLabelValues) {
  EXPECT_EQ(EscapeLabelValue("plain"), "plain");
  EXPECT_EQ(EscapeLabelValue("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
  // And the test's own parser reads it back.
  auto parsed = testing::ParseMetrics(
      absl::StrCat("m{l=\"", EscapeLabelValue("x\\\"\ny"), "\"} 3\n"));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_EQ(parsed->size(), 1u);
  EXPECT_EQ((*parsed)[0].labels.at("l"), "x\\\"\ny");
  EXPECT_EQ((*parsed)[0].value, 3);
}

// A fake /proc: two processes whose executables are files of ours. With
// an include nothing matches, both are excluded without ever being opened
// (their "binaries" are not even ELF).
class FakeProc : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(::testing::TempDir(), "fakeproc-", getpid());
    std::filesystem::remove_all(dir_);
    Add(100, "/srv/api-server");
    Add(101, "/opt/tools/batch");
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void Add(int pid, const std::string& exe) {
    std::string d = absl::StrCat(dir_, "/", pid);
    std::filesystem::create_directories(d + exe.substr(0, exe.rfind('/')));
    std::ofstream(d + exe) << "not an ELF";
    std::ofstream(d + "/stat") << pid << " (x) S 1 " << pid
                               << " 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5000 0 0";
    std::filesystem::create_symlink(d + exe, d + "/exe");
  }
  size_t Count(const Agent& a, ProcessStatus s) {
    return a.StatusCounts()[static_cast<size_t>(s)];
  }
  std::string dir_;
};

TEST_F(FakeProc, IncludeMatchesBaseNameOrPathInFull) {
  AgentOptions o;
  o.proc_dir = dir_;
  o.include = "api";  // in full: neither "api-server" nor the path
  auto a = Agent::Create(o);
  ASSERT_TRUE(a.ok()) << a.status();
  (*a)->Rescan();
  EXPECT_EQ(Count(**a, ProcessStatus::kExcluded), 2u);
  EXPECT_EQ(Count(**a, ProcessStatus::kAttached), 0u);
}

TEST_F(FakeProc, ExcludeWinsOverInclude) {
  AgentOptions o;
  o.proc_dir = dir_;
  o.include = ".*";
  o.exclude = ".*/api-server|batch";  // one by path, one by base name
  auto a = Agent::Create(o);
  ASSERT_TRUE(a.ok()) << a.status();
  (*a)->Rescan();
  EXPECT_EQ(Count(**a, ProcessStatus::kExcluded), 2u);
  // Gone from /proc: forgotten.
  std::filesystem::remove_all(absl::StrCat(dir_, "/100"));
  (*a)->Rescan();
  EXPECT_EQ(Count(**a, ProcessStatus::kExcluded), 1u);
}

TEST(ErrorWindow, SecondsAreBounded) {
  EXPECT_EQ(*WindowSeconds("/debug/pprof/errors"), 30);
  EXPECT_EQ(*WindowSeconds("/debug/pprof/errors?seconds=5"), 5);
  EXPECT_EQ(*WindowSeconds("/debug/pprof/errors?x=1&seconds=300"), 300);
  for (const char* bad : {"?seconds=0", "?seconds=301", "?seconds=", "?seconds=1x"}) {
    EXPECT_TRUE(absl::IsInvalidArgument(WindowSeconds(bad).status())) << bad;
  }
}

TEST(AgentOptions, BadRegexIsRefused) {
  AgentOptions o;
  o.include = "(";
  auto a = Agent::Create(o);
  EXPECT_TRUE(absl::IsInvalidArgument(a.status())) << a.status();
}

// The server, driven from a thread of the test as the agent's loop drives it.
class Server : public ::testing::Test {
 protected:
  void SetUp() override {
    auto s = HttpServer::Listen("127.0.0.1:0");
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    loop_ = std::thread([this] {
      while (!stop_) {
        server_->Poll(20, [](const std::string& method, const std::string& target, uint64_t) {
          HttpResponse r;
          r.body = absl::StrCat(method, " ", target);
          return r;
        });
      }
    });
  }
  void TearDown() override {
    stop_ = true;
    if (loop_.joinable()) loop_.join();
  }
  // Raw bytes in, everything the server answered out.
  std::string Exchange(const std::string& request) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a = {};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(
        std::stoi(server_->address().substr(server_->address().rfind(':') + 1))));
    timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    (void)!send(fd, request.data(), request.size(), MSG_NOSIGNAL);
    std::string out;
    char buf[4096];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
    if (n < 0) out += absl::StrCat("read failed: ", strerror(errno));
    close(fd);
    return out;
  }
  std::unique_ptr<HttpServer> server_;
  std::thread loop_;
  std::atomic<bool> stop_{false};
};

TEST_F(Server, AnswersGet) {
  auto body = testing::HttpGet(server_->address(), "/metrics?x=1");
  ASSERT_TRUE(body.ok()) << body.status();
  EXPECT_EQ(*body, "GET /metrics?x=1");
}

TEST_F(Server, RefusesOtherMethodsAndGarbage) {
  std::string post = Exchange("POST /metrics HTTP/1.1\r\n\r\n");
  EXPECT_TRUE(absl::StartsWith(post, "HTTP/1.1 405 ")) << post;
  EXPECT_TRUE(absl::StartsWith(Exchange("hello\r\n\r\n"), "HTTP/1.1 400 "));
}

TEST_F(Server, BoundsRequestSize) {
  std::string big = "GET /metrics HTTP/1.1\r\nX: " + std::string(HttpServer::kMaxRequestBytes, 'a');
  EXPECT_TRUE(absl::StartsWith(Exchange(big), "HTTP/1.1 431 "));
  // Still serving.
  EXPECT_TRUE(testing::HttpGet(server_->address(), "/").ok());
}

}  // namespace
}  // namespace goerrprof::profiler
