// Park tracing of the esbuild releases (stripped, by Go 1.16 to 1.26),
// registered as ParkEsbuild in park_test.cc. Needs root.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <future>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "plan/park_probes.h"
#include "pprof/labels.h"
#include "session/park_session.h"
#include "symbolizer/go_binary.h"
#include "tests/session/park_fixture.h"
#include "tests/test_support.h"

namespace goerrprof::testing {
namespace {

namespace pp = perftools::profiles;
using profiler::ParkTracer;

// True once pid runs `path` with its segments mapped (exec switches
// /proc/PID/exe before it maps the ELF), false after a few seconds.
bool WaitForExec(pid_t pid, const std::string& path) {
  struct stat want;
  if (stat(path.c_str(), &want) != 0) return false;
  const std::string exe = absl::StrCat("/proc/", pid, "/exe");
  const std::string maps = absl::StrCat("/proc/", pid, "/maps");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  do {
    struct stat got;
    if (stat(exe.c_str(), &got) == 0 && got.st_ino == want.st_ino && got.st_dev == want.st_dev) {
      std::ifstream in(maps);
      std::string line;
      while (std::getline(in, line)) {
        if (line.find(" r-xp ") != std::string::npos &&
            absl::EndsWith(line, absl::StrCat(" ", path))) {
          return true;
        }
      }
    }
    std::this_thread::yield();
  } while (std::chrono::steady_clock::now() < deadline);
  return false;
}

}  // namespace

// esbuild release builds (stripped, by Go 1.16 to 1.26): the only Go 1.16
// (stack ABI: g in TLS, ready's argument on the stack) and 1.17 binaries
// here. esbuild bundles a generated module from stdin while traced; there
// is no truth of its parks, so this checks what must hold of any run: parks
// paired with resumes, woken goroutines matched to their parks (the
// argument read right), wait reasons the runtime's words, stacks in
// esbuild's own code, nothing dropped.
void CheckEsbuild(const CorpusBinary& b) {
  auto binary = symbolizer::GoBinary::Open(b.path);
  ASSERT_TRUE(binary.ok()) << binary.status();
  auto probes = profiler::FindParkProbes(**binary);
  ASSERT_TRUE(probes.ok()) << probes.status();
  if (geteuid() != 0) GTEST_SKIP() << "park tracing needs root (BPF uprobes)";

  auto child = Child::Spawn({b.path, "--bundle", "--log-level=silent"});
  ASSERT_TRUE(child.ok()) << child.status();
  // esbuild reads stdin to EOF before doing anything: attach first, once
  // the child has exec'd it (it says nothing before).
  ASSERT_TRUE(WaitForExec((*child)->pid(), b.path)) << "child never ran " << b.path;
  auto tracer = ParkTracer::Start((*child)->pid(), **binary, {});
  ASSERT_TRUE(tracer.ok()) << tracer.status();
  ParkTracer& t = **tracer;
  std::string js;
  for (int i = 0; i < 3000; ++i) {
    absl::StrAppend(&js, "export function f", i, "(x) { return [x, `", i,
                    "`].map((y) => y + 1).join(','); }\n");
  }
  // esbuild reads all of stdin before it writes anything: no deadlock.
  ASSERT_TRUE((*child)->Write(js).ok());
  (*child)->CloseStdin();
  auto done = std::async(std::launch::async, [&] { return (*child)->Finish(120); });
  while (done.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
    ASSERT_TRUE(t.Poll(20).ok());
  }
  auto r = done.get();
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->exit_code, 0) << r->err;
  EXPECT_NE(r->out.find("f2999"), std::string::npos);
  t.Stop();

  profiler::ParkCounters c = t.counters();
  ExpectCleanRun(c);
  EXPECT_EQ(c[GPK_CTR_G_READ], 0u);
  EXPECT_GT(c.totals.resumes, 0u);
  auto p = t.BuildProfile();
  ASSERT_TRUE(p.ok()) << p.status();
  int64_t woken_by_esbuild = 0, in_esbuild = 0;
  for (const pp::Sample& smp : p->sample()) {
    if (smp.value(kParks) == 0) continue;
    std::string reason = LabelOf(*p, smp, profiler::kLabelWaitReason);
    EXPECT_FALSE(reason.empty() || absl::StartsWith(reason, "waitReason(")) << reason;
    bool ours = false;
    for (const std::string& fn : FunctionsOf(*p, smp)) {
      ours |= absl::StartsWith(fn, "github.com/evanw/esbuild/");
    }
    if (ours) in_esbuild += smp.value(kParks);
    if (absl::StartsWith(LabelOf(*p, smp, profiler::kLabelWaker), "github.com/evanw/esbuild/")) {
      woken_by_esbuild += smp.value(kParks);
    }
  }
  EXPECT_GT(in_esbuild, 0);
  EXPECT_GT(woken_by_esbuild, 0);
  std::printf("park_test: %s parks=%llu resumes=%llu wakeups=%llu in_esbuild=%lld "
              "woken_by_esbuild=%lld before_start=%llu orphan_wakeups=%llu\n",
              b.Label().c_str(), static_cast<unsigned long long>(c.totals.parks),
              static_cast<unsigned long long>(c.totals.resumes),
              static_cast<unsigned long long>(c.totals.wakeups),
              static_cast<long long>(in_esbuild), static_cast<long long>(woken_by_esbuild),
              static_cast<unsigned long long>(c.totals.resumed_before_start),
              static_cast<unsigned long long>(c.totals.orphan_wakeups));
}

}  // namespace goerrprof::testing
