// BpfSession::Start's failures, each one clear and leaving nothing behind:
// a dead pid, another binary, a probe outside the text, no privileges, a
// target exiting mid-attach. Needs root.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "session/bpf_session.h"
#include "tests/session/bpf_session_fixture.h"
#include "tests/test_support.h"

namespace goerrprof::testing {
namespace {

using profiler::BpfSession;
using profiler::SessionConfig;

// argv spawned, or null after a failure.
std::unique_ptr<Child> SpawnOrNull(const std::vector<std::string>& argv) {
  auto c = Child::Spawn(argv);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? std::move(*c) : nullptr;
}

// The first stdout line (errgen's "ready <pid>"), or why there is none.
std::string FirstLine(Child& c) {
  auto line = c.ReadLine(/*from_stderr=*/false, kReadySeconds);
  return line.ok() ? *line : line.status().ToString();
}

TEST(BpfSession, ClearErrors) {
  if (!IsRoot()) GTEST_SKIP() << "needs root for BPF";
  std::string other = NewestPath("inlframes");
  Target t;
  ASSERT_NO_FATAL_FAILURE(PrepareNewestErrgen(&t));

  // A pid that no longer exists.
  auto gone = SpawnOrNull({"/bin/true"});
  ASSERT_NE(gone, nullptr);
  pid_t dead = gone->pid();
  (void)gone->Finish();
  t.config.pid = dead;
  auto s = BpfSession::Start(t.config);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kNotFound) << s.status();
  EXPECT_NE(s.status().message().find("no process"), std::string::npos) << s.status();

  std::unique_ptr<Child> child;
  ASSERT_NO_FATAL_FAILURE(StartTarget(&t, &child));

  // Not the binary the process runs.
  if (!other.empty()) {
    SessionConfig c = t.config;
    c.executable = other;
    auto r = BpfSession::Start(c);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("runs"), std::string::npos) << r.status();
  }
  // A probe outside the text.
  {
    SessionConfig c = t.config;
    c.probes.push_back({0x10, ResultCookie(), 0, 0});
    auto r = BpfSession::Start(c);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  }
  // Failed Starts leave nothing behind; a good one still works.
  auto ok = BpfSession::Start(t.config);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->get()->attach_stats().probes, t.config.probes.size());
}

// Without privileges: a one-line PermissionDenied, whether it is the
// target's /proc entry (root-owned target) or the BPF load (own target)
// that is refused. Runs Start as `nobody` in a forked child.
TEST(BpfSession, UnprivilegedIsPermissionDenied) {
  if (!IsRoot()) GTEST_SKIP() << "needs root to drop privileges";
  Target t;
  std::unique_ptr<Child> root_child;
  ASSERT_NO_FATAL_FAILURE(StartNewestErrgen(&t, &root_child));
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  pid_t pid = fork();
  if (pid == 0) {
    close(p[0]);
    std::string report;
    if (setgid(65534) != 0 || setuid(65534) != 0) _exit(2);
    SessionConfig c = t.config;
    c.pid = root_child->pid();
    auto r1 = BpfSession::Start(c);
    auto own = Child::Spawn({t.path, "-wait"});
    std::string ready = own.ok() ? FirstLine(**own) : "";
    c.pid = own.ok() ? (*own)->pid() : -1;
    auto r2 = BpfSession::Start(c);
    for (const auto* r : {&r1, &r2}) {
      absl::StrAppend(&report, absl::StatusCodeToString(r->status().code()), "\t",
                      r->status().message(), "\n");
    }
    (void)!write(p[1], report.data(), report.size());
    _exit(0);
  }
  close(p[1]);
  std::string report;
  char buf[4096];
  for (ssize_t n; (n = read(p[0], buf, sizeof(buf))) > 0;) report.append(buf, n);
  close(p[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  std::cout << report;
  std::vector<std::string> lines = absl::StrSplit(report, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u) << report;
  for (const std::string& l : lines) {
    EXPECT_TRUE(absl::StartsWith(l, "PERMISSION_DENIED\t")) << l;
    EXPECT_EQ(l.find('\n'), std::string::npos);
  }
  EXPECT_NE(lines[1].find("loading BPF was refused"), std::string::npos) << lines[1];
}

// Whether uprobes have written a breakpoint into pid's text yet: the
// written page becomes an anonymous copy in the executable mapping.
bool TextHasBreakpoint(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/smaps"));
  std::string line;
  bool in_text = false;
  while (std::getline(in, line)) {
    if (!line.empty() && std::isxdigit(static_cast<unsigned char>(line[0])) &&
        line.find(' ') != std::string::npos && line.find(':') > line.find(' ')) {
      in_text = line.find(" r-xp ") != std::string::npos;
    } else if (in_text && absl::StartsWith(line, "Anonymous:")) {
      if (line.find(" 0 kB") == std::string::npos) return true;
    }
  }
  return false;
}

// A target that dies once attaching has begun: a one-line "exited during
// attach" error, and nothing left behind. Per-probe mode, where attach is
// many syscalls (uprobe_multi is one).
TEST(BpfSession, TargetExitingDuringAttach) {
  if (!IsRoot()) GTEST_SKIP() << "needs root for BPF";
  Target t;
  std::unique_ptr<Child> child;
  ASSERT_NO_FATAL_FAILURE(StartNewestErrgen(&t, &child));
  std::vector<profiler::ProbeSpec> many;
  for (int i = 0; i < 20; ++i) many.insert(many.end(), t.config.probes.begin(), t.config.probes.end());
  t.config.probes = many;
  t.config.uprobe_multi = false;
  std::atomic<bool> stop{false};
  std::thread killer([&] {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!stop && std::chrono::steady_clock::now() < deadline) {
      if (TextHasBreakpoint(child->pid())) {
        kill(child->pid(), SIGKILL);
        return;
      }
    }
  });
  auto s = BpfSession::Start(t.config);
  stop = true;
  killer.join();
  std::vector<uint32_t> ids;
  ASSERT_FALSE(s.ok()) << "attach finished before the kill landed";
  EXPECT_EQ(s.status().code(), absl::StatusCode::kUnavailable) << s.status();
  EXPECT_NE(s.status().message().find("exited during attach"), std::string::npos) << s.status();
  std::cout << s.status() << "\n";
  (void)child->Finish();
  ExpectNothingLeft(ids, t.path);
}

}  // namespace
}  // namespace goerrprof::testing
