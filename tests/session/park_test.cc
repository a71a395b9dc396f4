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
// fallback). Also: probe placement on every corpus binary, live tracing of
// the esbuild releases (the only Go 1.16/1.17 binaries here), ring drops
// counted, pairing on made-up records, bad pids and binaries. The live
// tests need root.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <future>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "goabi/go_version.h"
#include "gtest/gtest.h"
#include "session/kernel_features.h"
#include "plan/park_probes.h"
#include "session/park_session.h"
#include "pprof/pprof_writer.h"
#include "symbolizer/go_binary.h"
#include "tests/test_support.h"
#include "pprof/labels.h"
#include "pprof/profile_file.h"

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

std::string BinaryPath(const CorpusBinary& b) {
  if (access(b.path.c_str(), X_OK) == 0) return b.path;
  return absl::StrCat(CorpusDir(), "/", b.go_version, "/", b.program, "-", b.flavour);
}

// Function names on a sample's stack (every inlined frame).
std::set<std::string> FunctionsOf(const pp::Profile& p, const pp::Sample& s) {
  std::set<std::string> out;
  for (uint64_t id : s.location_id()) {
    const pp::Location& loc = p.location(static_cast<int>(id - 1));
    for (const pp::Line& l : loc.line()) {
      const pp::Function& f = p.function(static_cast<int>(l.function_id() - 1));
      out.insert(p.string_table(static_cast<int>(f.name())));
    }
  }
  return out;
}

std::string Label(const pp::Profile& p, const pp::Sample& s, absl::string_view key) {
  for (const pp::Label& l : s.label()) {
    if (p.string_table(static_cast<int>(l.key())) == key) {
      return p.string_table(static_cast<int>(l.str()));
    }
  }
  return "";
}

// Sample value indexes: parks, blocked, runnable, wakeups.
constexpr int kParks = 0, kBlocked = 1, kRunnable = 2, kWakeups = 3;

struct Sums {
  int64_t parks = 0, blocked = 0, runnable = 0, wakeups = 0;
  std::set<std::string> wakers, states, reasons;
};

// Park samples (parks > 0) with `fn` on the stack and the given reason.
Sums ParkSums(const pp::Profile& p, const std::string& fn, const std::string& reason) {
  Sums s;
  for (const pp::Sample& smp : p.sample()) {
    if (smp.value(kParks) == 0 || !FunctionsOf(p, smp).contains(fn)) continue;
    std::string r = Label(p, smp, profiler::kLabelWaitReason);
    s.reasons.insert(r);
    if (r != reason) continue;
    s.parks += smp.value(kParks);
    s.blocked += smp.value(kBlocked);
    s.runnable += smp.value(kRunnable);
    s.wakers.insert(Label(p, smp, profiler::kLabelWaker));
    s.states.insert(Label(p, smp, profiler::kLabelParkState));
  }
  return s;
}

// Wakeup samples whose woken park was in `fn`.
Sums WakeSums(const pp::Profile& p, const std::string& fn, const std::string& waker) {
  Sums s;
  for (const pp::Sample& smp : p.sample()) {
    if (smp.value(kWakeups) == 0 || Label(p, smp, profiler::kLabelWoken) != fn) continue;
    s.wakeups += smp.value(kWakeups);
    if (FunctionsOf(p, smp).contains(waker)) s.wakers.insert(waker);
    s.reasons.insert(Label(p, smp, profiler::kLabelWaitReason));
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
  const std::string path = BinaryPath(b);
  auto binary = symbolizer::GoBinary::Open(path);
  ASSERT_TRUE(binary.ok()) << binary.status();

  auto child = Child::Spawn({path});
  ASSERT_TRUE(child.ok()) << child.status();
  auto ready = (*child)->ReadLine(false, 30);
  ASSERT_TRUE(ready.ok()) << ready.status();
  ASSERT_TRUE(absl::StartsWith(*ready, "ready ")) << *ready;

  auto tracer = ParkTracer::Start((*child)->pid(), **binary, options);
  ASSERT_TRUE(tracer.ok()) << tracer.status();
  ParkTracer& t = **tracer;
  std::vector<uint32_t> ids = t.prog_ids();
  ASSERT_EQ(ids.size(), 1u);
  // Where the kernel has no (process-filtering) uprobe_multi links, the
  // per-probe fallback is the one under test.
  EXPECT_EQ(t.uprobe_multi(),
            options.uprobe_multi && profiler::KernelSupports(profiler::KernelFeature::kUprobeMulti));

  ASSERT_TRUE((*child)->Write("\n").ok());
  // The truth line arrives while we keep draining the ring.
  auto truth_line = std::async(std::launch::async, [&] { return (*child)->ReadLine(false, 90); });
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

  ASSERT_TRUE((*child)->Write("\n").ok());
  auto done = (*child)->Finish(60);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->exit_code, 0) << done->err;

  auto truth = ParseJson(*line);
  ASSERT_TRUE(truth.ok()) << truth.status() << ": " << *line;
  profiler::ParkCounters c = t.counters();
  EXPECT_EQ(c.dropped(), 0u);
  EXPECT_EQ(c.totals.lost_parks, 0u);
  EXPECT_EQ(c.totals.lost_resumes, 0u);
  EXPECT_EQ(c.totals.unknown_goid, 0u);
  EXPECT_EQ(c[GPK_CTR_FOREIGN], 0u);
  EXPECT_EQ(c[GPK_CTR_STACK_FAILED], 0u);
  EXPECT_GT(c.totals.parks, 0u);
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
  auto binary = symbolizer::GoBinary::Open(BinaryPath(b));
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
  EXPECT_EQ(c.dropped(), 0u);
  EXPECT_EQ(c.totals.unknown_goid, 0u);
  EXPECT_EQ(c.totals.lost_parks, 0u);
  EXPECT_EQ(c.totals.lost_resumes, 0u);
  EXPECT_EQ(c[GPK_CTR_G_READ], 0u);
  EXPECT_EQ(c[GPK_CTR_STACK_FAILED], 0u);
  EXPECT_GT(c.totals.parks, 0u);
  EXPECT_GT(c.totals.resumes, 0u);
  auto p = t.BuildProfile();
  ASSERT_TRUE(p.ok()) << p.status();
  int64_t woken_by_esbuild = 0, in_esbuild = 0;
  for (const pp::Sample& smp : p->sample()) {
    if (smp.value(kParks) == 0) continue;
    std::string reason = Label(*p, smp, profiler::kLabelWaitReason);
    EXPECT_FALSE(reason.empty() || absl::StartsWith(reason, "waitReason(")) << reason;
    bool ours = false;
    for (const std::string& fn : FunctionsOf(*p, smp)) {
      ours |= absl::StartsWith(fn, "github.com/evanw/esbuild/");
    }
    if (ours) in_esbuild += smp.value(kParks);
    if (absl::StartsWith(Label(*p, smp, profiler::kLabelWaker), "github.com/evanw/esbuild/")) {
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

// The newest default parktrace of the corpus, or "" (the corpus test says why).
std::string NewestParktrace() {
  auto corpus = LoadCorpus(false);
  if (!corpus.ok()) return "";
  std::string best, path;
  for (const CorpusBinary& b : *corpus) {
    if (b.program != "parktrace" || b.flavour != "default") continue;
    auto v = goabi::GoVersion::Parse(b.go_version);
    auto bv = goabi::GoVersion::Parse(best);
    if (v && (!bv || *bv < *v)) {
      best = b.go_version;
      path = BinaryPath(b);
    }
  }
  return path;
}

// A ring too small for the records, drained only at the end: the lost
// records are counted, reported in the profile, and pairing stays sane.
TEST(ParkTracerDrops, TinyRingCountsDrops) {
  if (geteuid() != 0) GTEST_SKIP() << "park tracing needs root (BPF uprobes)";
  const std::string path = NewestParktrace();
  ASSERT_FALSE(path.empty()) << "no parktrace in the corpus";
  auto binary = symbolizer::GoBinary::Open(path);
  ASSERT_TRUE(binary.ok()) << binary.status();
  auto child = Child::Spawn({path});
  ASSERT_TRUE(child.ok()) << child.status();
  auto ready = (*child)->ReadLine(false, 30);
  ASSERT_TRUE(ready.ok()) << ready.status();
  profiler::ParkOptions o;
  o.ringbuf_bytes = 4096;  // one page: a few dozen records
  auto tracer = ParkTracer::Start((*child)->pid(), **binary, o);
  ASSERT_TRUE(tracer.ok()) << tracer.status();
  ASSERT_TRUE((*child)->Write("\n").ok());
  auto line = (*child)->ReadLine(false, 90);  // no draining meanwhile
  ASSERT_TRUE(line.ok()) << line.status();
  (*tracer)->Stop();
  ASSERT_TRUE((*child)->Write("\n").ok());
  auto done = (*child)->Finish(60);
  ASSERT_TRUE(done.ok()) << done.status();

  profiler::ParkCounters c = (*tracer)->counters();
  EXPECT_GT(c[GPK_CTR_DROP_RINGBUF], 0u);
  EXPECT_EQ(c.dropped(), c[GPK_CTR_DROP_RINGBUF] + c[GPK_CTR_DROP_BUSY] + c.decode_errors);
  // Every probe hit became a record or a counted drop.
  EXPECT_EQ(c[GPK_CTR_EVENTS] + c[GPK_CTR_DROP_RINGBUF] + c[GPK_CTR_DROP_BUSY],
            c[GPK_CTR_PARK_HITS] + c[GPK_CTR_RESUME_HITS] + c[GPK_CTR_READY_HITS]);
  EXPECT_EQ(c.records + c.decode_errors, c[GPK_CTR_EVENTS]);
  EXPECT_LT(c.totals.parks, c[GPK_CTR_PARK_HITS]);
  auto p = (*tracer)->BuildProfile();
  ASSERT_TRUE(p.ok()) << p.status();
  std::string comments;
  for (int64_t i : p->comment()) absl::StrAppend(&comments, p->string_table(i), "\n");
  EXPECT_NE(comments.find(absl::StrCat("drop_ringbuf=", c[GPK_CTR_DROP_RINGBUF])),
            std::string::npos)
      << comments;
}

// A pid running another executable than the binary given.
TEST(ParkTracerStart, WrongBinary) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to read /proc/PID/exe of any process";
  const std::string path = NewestParktrace();
  ASSERT_FALSE(path.empty()) << "no parktrace in the corpus";
  auto corpus = LoadCorpus(false);
  ASSERT_TRUE(corpus.ok());
  std::string other;
  for (const CorpusBinary& b : *corpus) {
    if (b.program == "errgen" && b.flavour == "default") other = BinaryPath(b);
  }
  ASSERT_FALSE(other.empty());
  auto binary = symbolizer::GoBinary::Open(other);
  ASSERT_TRUE(binary.ok()) << binary.status();
  auto child = Child::Spawn({path});
  ASSERT_TRUE(child.ok()) << child.status();
  ASSERT_TRUE((*child)->ReadLine(false, 30).ok());
  auto t = ParkTracer::Start((*child)->pid(), **binary, {});
  ASSERT_FALSE(t.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(t.status())) << t.status();
  EXPECT_NE(t.status().message().find("does not run"), std::string::npos) << t.status();
}

// Pairing on its own, from made-up records: every way a record can be
// missing is counted, and each park lands in the right state.
TEST(ParkAggregator, PairsAndCountsLosses) {
  const std::string path = NewestParktrace();
  ASSERT_FALSE(path.empty()) << "no parktrace in the corpus";
  auto binary = symbolizer::GoBinary::Open(path);
  ASSERT_TRUE(binary.ok()) << binary.status();
  auto probes = profiler::FindParkProbes(**binary);
  ASSERT_TRUE(probes.ok()) << probes.status();
  auto layout = goabi::GLayoutFor((*binary)->version());
  ASSERT_TRUE(layout.ok());
  uint64_t chan_receive = 0;
  for (size_t i = 0; i < layout->wait_reasons.size(); ++i) {
    if (layout->wait_reasons[i] == "chan receive") chan_receive = i;
  }
  ASSERT_NE(chan_receive, 0u);
  using R = profiler::ParkRecord;
  auto rec = [&](R::Kind k, uint64_t ts, uint64_t goid, uint64_t other, bool untracked = false) {
    R r;
    r.kind = k;
    r.ts_ns = ts;
    r.goid = goid;
    r.other = other;
    r.untracked = untracked;
    r.wait_reason = static_cast<uint8_t>(chan_receive);
    r.stack = {probes->park_call};
    return r;
  };
  profiler::ParkAggregator agg(**binary, *layout, /*start_ns=*/1000);
  agg.Add(rec(R::kPark, 2000, 7, 0));
  agg.Add(rec(R::kReady, 2500, 7, 9));
  agg.Add(rec(R::kResume, 3000, 7, 2000));                 // paired: 1000 ns, woken
  agg.Add(rec(R::kResume, 4000, 8, 3500));                 // its park record was lost
  agg.Add(rec(R::kReady, 4500, 10, 9));                    // parked before start ...
  agg.Add(rec(R::kResume, 5000, 10, 0, /*untracked=*/true));  // ... 4000 ns since start
  agg.Add(rec(R::kPark, 6000, 11, 0));
  agg.Add(rec(R::kPark, 6500, 11, 0));                     // the resume between was lost
  agg.Add(rec(R::kReady, 6600, 12, 9));                    // woke something never resumed
  agg.Add(rec(R::kPark, 7000, 0, 0));                      // goid unreadable
  agg.Close(/*stop_ns=*/9000);                             // 11 still parked: 2500 ns
  agg.Add(rec(R::kPark, 9500, 13, 0));                     // after Close: ignored

  const profiler::ParkTotals& t = agg.totals();
  EXPECT_EQ(t.parks, 3u);
  EXPECT_EQ(t.resumes, 1u);
  EXPECT_EQ(t.wakeups, 3u);
  EXPECT_EQ(t.lost_parks, 1u);
  EXPECT_EQ(t.lost_resumes, 1u);
  EXPECT_EQ(t.resumed_before_start, 1u);
  EXPECT_EQ(t.orphan_wakeups, 1u);
  EXPECT_EQ(t.unknown_goid, 1u);
  EXPECT_EQ(t.still_parked, 1u);
  std::map<profiler::ParkState, std::pair<uint64_t, uint64_t>> by_state;  // parks, blocked
  uint64_t runnable = 0;
  for (const auto& [k, v] : agg.parks()) {
    by_state[k.state].first += v.parks;
    by_state[k.state].second += v.blocked_ns;
    runnable += v.runnable_ns;
  }
  using S = profiler::ParkState;
  EXPECT_EQ(by_state[S::kResumed], std::make_pair(uint64_t{1}, uint64_t{1000}));
  EXPECT_EQ(by_state[S::kParkedBeforeStart], std::make_pair(uint64_t{1}, uint64_t{4000}));
  EXPECT_EQ(by_state[S::kStillParked], std::make_pair(uint64_t{1}, uint64_t{2500}));
  EXPECT_EQ(runnable, 500u + 500u);  // ready -> resume of goroutines 7 and 10
  uint64_t wakeups = 0;
  for (const auto& [k, n] : agg.wakeups()) wakeups += n;
  EXPECT_EQ(wakeups, 2u);  // the two wakeups whose goroutine resumed
}

TEST(ParkCorpus, HasParktrace) {
  auto corpus = LoadCorpus(false);
  ASSERT_TRUE(corpus.ok()) << corpus.status();
  std::set<std::string> versions;
  for (const CorpusBinary& b : *corpus) {
    if (b.program == "parktrace") versions.insert(b.go_version);
  }
  EXPECT_FALSE(versions.empty())
      << "no parktrace in the corpus: run bash scripts/build_go_corpus.sh";
}

TEST(ParkWarning, StatesCost) {
  std::string w = ParkTracer::OverheadWarning(3.25);
  EXPECT_NE(w.find("3.2 us"), std::string::npos) << w;
  EXPECT_NE(w.find("--goroutines"), std::string::npos) << w;
}

TEST(ParkTracerStart, DeadPid) {
  auto corpus = LoadCorpus(false);
  ASSERT_TRUE(corpus.ok()) << corpus.status();
  ASSERT_FALSE(corpus->empty());
  auto binary = symbolizer::GoBinary::Open(BinaryPath(corpus->front()));
  ASSERT_TRUE(binary.ok()) << binary.status();
  auto t = ParkTracer::Start(0x3ffffff0, **binary, {});
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().message().find("no process"), std::string::npos) << t.status();
}

}  // namespace
}  // namespace goerrprof::testing
