// Park tracing against parktrace (testdata/go_binaries/parktrace) of every
// Go release in the corpus: the tracer attaches while parktrace waits on
// stdin, parktrace runs blocking patterns whose park counts are exact and
// prints its truth (counts, the runtime's wait reason words, the waker
// function, its own measured blocked times). The profile must have exactly
// those parks per (function, wait reason), blocked times no longer than
// parktrace measured and at most a bounded margin shorter, the right
// waker, the goroutine parked forever marked still parked, the one parked
// before we attached counted from the start, open with `go tool pprof`, and
// leave no program of ours behind; likewise through perf uprobes (the
// fallback). Also probe placement on every corpus binary. Elsewhere: live
// tracing of the esbuild releases (park_esbuild_test.cc); ring drops,
// pairing on made-up records, bad pids and binaries (park_tracer_test.cc).
// The live tests need root.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <future>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "plan/park_probes.h"
#include "pprof/labels.h"
#include "pprof/profile_file.h"
#include "session/kernel_features.h"
#include "session/park_session.h"
#include "symbolizer/go_binary.h"
#include "tests/session/park_fixture.h"
#include "tests/test_support.h"

namespace goerrprof::testing {
namespace {

namespace pp = perftools::profiles;
using profiler::ParkTracer;

constexpr char kGo[] = "/usr/local/go/bin/go";

// Blocked time must lie between two bounds parktrace measures itself:
// held_ns, how long each waker held off after the runtime showed the
// goroutine parked (so the park began before and the resume came after),
// and total_ns, its clock around each blocking call (the park lies
// inside). Both are strict, so no margin of ours is needed; the window
// between them is parktrace's own uncertainty: its code before the park
// and after the resume, measured 10-600 us per park on a loaded 2-CPU
// machine (more when its stop-the-world polls keep preempting the
// goroutine before it parks). Each park is held >= 2 ms, so a lost,
// mispaired or mis-timed resume falls outside.

struct Sums {
  int64_t parks = 0, blocked = 0, runnable = 0, wakeups = 0;
  std::set<std::string> wakers, states, reasons;
};

// Park samples (parks > 0) with `fn` on the stack and the given reason.
Sums ParkSums(const pp::Profile& p, const std::string& fn, const std::string& reason) {
  Sums s;
  for (const pp::Sample& smp : p.sample()) {
    if (smp.value(kParks) == 0 || !FunctionsOf(p, smp).contains(fn)) continue;
    std::string r = LabelOf(p, smp, profiler::kLabelWaitReason);
    s.reasons.insert(r);
    if (r != reason) continue;
    s.parks += smp.value(kParks);
    s.blocked += smp.value(kBlocked);
    s.runnable += smp.value(kRunnable);
    s.wakers.insert(LabelOf(p, smp, profiler::kLabelWaker));
    s.states.insert(LabelOf(p, smp, profiler::kLabelParkState));
  }
  return s;
}

// Wakeup samples whose woken park was in `fn`.
Sums WakeSums(const pp::Profile& p, const std::string& fn, const std::string& waker) {
  Sums s;
  for (const pp::Sample& smp : p.sample()) {
    if (smp.value(kWakeups) == 0 || LabelOf(p, smp, profiler::kLabelWoken) != fn) continue;
    s.wakeups += smp.value(kWakeups);
    if (FunctionsOf(p, smp).contains(waker)) s.wakers.insert(waker);
    s.reasons.insert(LabelOf(p, smp, profiler::kLabelWaitReason));
  }
  return s;
}

// `bpftool prog show id N` fails once the program is gone; the kernel
// frees it after an RCU grace period, so ask until a deadline (each
// bpftool run paces the next).
bool ProgGone(uint32_t id) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  do {
    CommandResult r = RunCommand({"/usr/sbin/bpftool", "prog", "show", "id", absl::StrCat(id)});
    if (r.exit_code != 0) return true;
  } while (std::chrono::steady_clock::now() < deadline);
  return false;
}

void CheckParkTrace(const CorpusBinary& b, const profiler::ParkOptions& options) {
  if (geteuid() != 0) GTEST_SKIP() << "park tracing needs root (BPF uprobes)";
  std::unique_ptr<symbolizer::GoBinary> binary;
  std::unique_ptr<Child> child;
  std::string ready;
  ASSERT_NO_FATAL_FAILURE(StartParktrace(CorpusBinaryPath(b), &binary, &child, &ready));
  ASSERT_TRUE(absl::StartsWith(ready, "ready ")) << ready;

  auto tracer = ParkTracer::Start(child->pid(), *binary, options);
  ASSERT_TRUE(tracer.ok()) << tracer.status();
  ParkTracer& t = **tracer;
  std::vector<uint32_t> ids = t.prog_ids();
  ASSERT_EQ(ids.size(), 1u);
  // Where the kernel has no (process-filtering) uprobe_multi links, the
  // per-probe fallback is the one under test.
  EXPECT_EQ(t.uprobe_multi(),
            options.uprobe_multi && profiler::KernelSupports(profiler::KernelFeature::kUprobeMulti));

  ASSERT_TRUE(child->Write("\n").ok());
  // The truth line arrives while we keep draining the ring.
  auto truth_line = std::async(std::launch::async, [&] { return child->ReadLine(false, 90); });
  while (truth_line.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
    auto n = t.Poll(20);
    ASSERT_TRUE(n.ok()) << n.status();
  }
  auto line = truth_line.get();
  ASSERT_TRUE(line.ok()) << line.status();
  // parktrace is blocked on stdin again, its forever goroutine parked.
  t.Stop();
  EXPECT_LT(t.fd(), 0);
  for (uint32_t id : ids) EXPECT_TRUE(ProgGone(id)) << "gpk_on_event program " << id << " left";

  ASSERT_TRUE(child->Write("\n").ok());
  auto done = child->Finish(60);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->exit_code, 0) << done->err;

  auto truth = ParseJson(*line);
  ASSERT_TRUE(truth.ok()) << truth.status() << ": " << *line;
  profiler::ParkCounters c = t.counters();
  ExpectCleanRun(c);
  EXPECT_EQ(c[GPK_CTR_FOREIGN], 0u);
  EXPECT_EQ(c.totals.parks, c[GPK_CTR_PARK_HITS]);

  std::string summary = t.Summary();
  EXPECT_TRUE(absl::StartsWith(summary, absl::StrCat("parks=", c.totals.parks, " blocked=")))
      << summary;
  EXPECT_NE(summary.find(" still_parked=1 "), std::string::npos) << summary;
  EXPECT_NE(summary.find(" drops=0"), std::string::npos) << summary;

  auto prof = t.BuildProfile();
  ASSERT_TRUE(prof.ok()) << prof.status();
  const pp::Profile& p = *prof;
  if (const char* dir = getenv("GOERRPROF_PARK_KEEP")) {  // for a look with go tool pprof
    EXPECT_TRUE(t.WriteProfile(absl::StrCat(dir, "/park-", b.Label(), ".pb.gz")).ok());
  }

  for (const auto& pat : Get(*truth, "patterns").list_value().values()) {
    const std::string name = GetString(pat, "name");
    const std::string fn = GetString(pat, "function");
    const std::string reason = GetString(pat, "wait_reason");
    const std::string waker = GetString(pat, "waker");
    const int64_t count = GetInt(pat, "count");
    const int64_t total = GetInt(pat, "total_ns");
    const int64_t held = GetInt(pat, "held_ns");
    SCOPED_TRACE(absl::StrCat(name, " ", fn, " [", reason, "]"));
    ASSERT_FALSE(reason.empty()) << "parktrace saw inconsistent wait reasons";
    Sums s = ParkSums(p, fn, reason);
    EXPECT_EQ(s.parks, count) << "reasons seen: " << absl::StrJoin(s.reasons, ", ");
    EXPECT_EQ(s.states, std::set<std::string>{"resumed"});
    EXPECT_LE(s.blocked, total);
    EXPECT_GE(s.blocked, held);
    // The wakeup came after the hold, so the runnable part fits in what
    // the hold leaves of the blocked time.
    EXPECT_GT(s.runnable, 0);
    EXPECT_LE(s.runnable, s.blocked - held);
    std::printf("park_test: %s %-9s parks=%lld held=%lld ours=%lld theirs=%lld "
                "theirs-ours/park=%.1fus ours-held/park=%.1fus runnable/park=%.1fus\n",
                b.Label().c_str(), name.c_str(), static_cast<long long>(s.parks),
                static_cast<long long>(held), static_cast<long long>(s.blocked),
                static_cast<long long>(total), count ? (total - s.blocked) / 1e3 / count : 0.0,
                count ? (s.blocked - held) / 1e3 / count : 0.0,
                count ? s.runnable / 1e3 / count : 0.0);
    if (waker.empty()) {  // woken by the runtime (timers): no main.* waker
      for (const std::string& w : s.wakers) {
        EXPECT_FALSE(absl::StartsWith(w, "main.")) << w;
        EXPECT_NE(w, "(none)");
      }
      std::printf("park_test: sleep wakers: %s\n", absl::StrJoin(s.wakers, ", ").c_str());
    } else {
      EXPECT_EQ(s.wakers, std::set<std::string>{waker});
      Sums w = WakeSums(p, fn, waker);
      EXPECT_EQ(w.wakeups, count);
      EXPECT_EQ(w.wakers, std::set<std::string>{waker});
      EXPECT_EQ(w.reasons, std::set<std::string>{reason});
    }
  }

  const auto& forever = Get(*truth, "forever");
  Sums f = ParkSums(p, GetString(forever, "function"), GetString(forever, "wait_reason"));
  EXPECT_EQ(f.parks, 1);
  EXPECT_EQ(f.states, std::set<std::string>{"still_parked"});
  EXPECT_EQ(f.wakers, std::set<std::string>{"(none)"});
  EXPECT_GT(f.blocked, 0);

  // Parked before we attached, woken after: counted from the start, with
  // the stack and reason read at its resume, and its waker.
  const auto& early = Get(*truth, "early");
  Sums e = ParkSums(p, GetString(early, "function"), GetString(early, "wait_reason"));
  EXPECT_EQ(e.parks, 1);
  EXPECT_EQ(e.states, std::set<std::string>{"parked_before_start"});
  EXPECT_EQ(e.wakers, std::set<std::string>{GetString(early, "waker")});
  EXPECT_GT(e.blocked, 0);
  EXPECT_GE(c[GPK_CTR_UNTRACKED], 1u);
  EXPECT_EQ(c.totals.resumed_before_start, c[GPK_CTR_UNTRACKED]);

  // The written profile opens with go tool pprof.
  if (b.flavour != "default") return;
  std::string out = absl::StrCat(::testing::TempDir(), "/park-", b.Label(), ".pb.gz");
  ASSERT_TRUE(t.WriteProfile(out).ok());
  auto reread = profiler::ReadProfile(out);
  ASSERT_TRUE(reread.ok()) << reread.status();
  EXPECT_EQ(reread->sample_size(), p.sample_size());
  struct Want {
    std::vector<std::string> args;
    std::vector<std::string> has;
  };
  for (const Want& w : std::vector<Want>{
           {{"-top", "-sample_index=parks"}, {"runtime.gopark", "main.chanReceiver"}},
           {{"-tags"}, {"goroutine.wait_reason", "chan receive", "still_parked", "main.chanSender"}},
           {{"-traces", "-sample_index=wakeups"}, {"main.mutexUnlocker", "goroutine.woken"}},
           {{"-traces"}, {"main.parkedForever", "still_parked"}},
       }) {
    std::vector<std::string> argv = {"env", "GOTOOLCHAIN=local", kGo, "tool", "pprof"};
    argv.insert(argv.end(), w.args.begin(), w.args.end());
    argv.push_back(out);
    CommandResult r = RunCommand(argv, 120);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    for (const std::string& h : w.has) {
      EXPECT_NE(r.out.find(h), std::string::npos) << absl::StrJoin(w.args, " ") << " lacks " << h
                                                   << ":\n" << r.out;
    }
  }
  unlink(out.c_str());
}

// Probe placement on every binary of the corpus (no BPF, no root).
void CheckProbes(const CorpusBinary& b) {
  auto binary = symbolizer::GoBinary::Open(CorpusBinaryPath(b));
  ASSERT_TRUE(binary.ok()) << binary.status();
  auto probes = profiler::FindParkProbes(**binary);
  ASSERT_TRUE(probes.ok()) << probes.status();
  auto at = [&](uint64_t pc) {
    auto f = (*binary)->Symbolize(pc);
    return f.ok() && !f->empty() ? std::string(f->back().function) : std::string("?");
  };
  EXPECT_EQ(at(probes->park_call), "runtime.gopark");
  EXPECT_EQ(at(probes->resume), "runtime.gopark");
  EXPECT_EQ(at(probes->ready), "runtime.ready");
  EXPECT_GT(probes->resume, probes->park_call);
  EXPECT_LE(probes->resume - probes->park_call, 5u);  // CALL rel32
}

[[maybe_unused]] const bool registered = [] {
  RegisterCorpusTests("ParkEsbuild", "esbuild", true, CheckEsbuild);
  RegisterCorpusTests("ParkTrace", "parktrace", false,
                      [](const CorpusBinary& b) { CheckParkTrace(b, {}); });
  // Kernels before 6.6 get one perf uprobe per probe instead of the link.
  RegisterCorpusTests("ParkTracePerfUprobes", "parktrace-default", false,
                      [](const CorpusBinary& b) {
                        profiler::ParkOptions o;
                        o.uprobe_multi = false;
                        CheckParkTrace(b, o);
                      });
  RegisterCorpusTests("ParkProbes", "*", false, CheckProbes);
  return true;
}();

}  // namespace
}  // namespace goerrprof::testing
