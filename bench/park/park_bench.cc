// bench/park driver: what park tracing costs a park-heavy Go program,
// measured side by side in one run, each configuration repeated
// (interleaved) and reported as its median:
//   1. parktrace -pingpong N (unbuffered channel round trips) alone;
//   2. the same with an empty BPF program at the three park-tracing sites
//      (gopark's CALL mcall, the instruction after it, runtime.ready) — the
//      bare traps at those sites;
//   3. the same under ParkTracer (what `record --goroutines` runs);
//   4. the raw uprobe trap: overheadtarget's noinline function alone vs with
//      an empty program at its entry (bench/overhead's measurement).
// Reported: parks per second, cost per park in microseconds (extra time
// over the untraced run divided by the parks the tracer counted) and that
// cost as a multiple of one raw trap.
// Then sampled waits (record --goroutines=sample) beside tracing, with
// --mix K goroutines waiting meanwhile (parktrace -mix: half sleeping, a
// quarter on a timer channel, a quarter in a select, 200-299ms at a time):
//   5. the ping-pong (--sample-n round trips, a few seconds) with the K
//      waiters alone vs under WaitSampler at --hz (interleaved, medians):
//      the target's slowdown, and goerrprof's CPU;
//   6. one run under ParkTracer (--trace-n round trips: tracing is slow)
//      and one under WaitSampler (--sample-n): each (first main.*
//      function, wait reason)'s share of the blocked time in both
//      profiles, and the difference in points.
//
// usage: park_bench --parktrace BIN --target OVERHEADTARGET [--n N] [--m M] [--reps R]
//                   [--mix K] [--hz HZ] [--sample-n N] [--trace-n N]
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <sys/resource.h>

#include <map>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "overhead_probe.skel.h"
#include "plan/park_probes.h"
#include "record/wait_sampler.h"
#include "session/park_session.h"
#include "symbolizer/go_binary.h"

namespace {

using goerrprof::profiler::ParkTracer;
using goerrprof::profiler::WaitSampler;
using Clock = std::chrono::steady_clock;

[[noreturn]] void Die(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::fprintf(stderr, "park_bench: ");
  std::vfprintf(stderr, fmt, ap);
  std::fprintf(stderr, "\n");
  va_end(ap);
  std::exit(1);
}

// A child with stdin and stdout pipes; dies with us (PDEATHSIG) and is
// killed by the destructor if still running.
struct Child {
  pid_t pid = -1;
  int in = -1, out = -1;
  std::string buf;
  explicit Child(const std::vector<std::string>& argv) {
    int i[2], o[2];
    if (pipe2(i, O_CLOEXEC) || pipe2(o, O_CLOEXEC)) Die("pipe: %s", strerror(errno));
    pid = fork();
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      dup2(i[0], 0);
      dup2(o[1], 1);
      std::vector<char*> args;
      for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
    close(i[0]);
    close(o[1]);
    in = i[1];
    out = o[0];
  }
  ~Child() {
    if (in >= 0) close(in);
    if (out >= 0) close(out);
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }
  void Say(const char* s) {
    if (write(in, s, strlen(s)) < 0) Die("write to child: %s", strerror(errno));
  }
  // One line, waiting at most timeout_s; `idle` runs between reads (the
  // tracer's drain, at least every 20 ms).
  template <typename F>
  std::string Line(double timeout_s, F idle) {
    auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
    for (;;) {
      size_t nl = buf.find('\n');
      if (nl != std::string::npos) {
        std::string line = buf.substr(0, nl);
        buf.erase(0, nl + 1);
        return line;
      }
      if (Clock::now() > deadline) Die("child %d: no output line in %.0fs", pid, timeout_s);
      pollfd p = {out, POLLIN, 0};
      int r = poll(&p, 1, 20);
      if (r > 0) {
        char tmp[4096];
        ssize_t n = read(out, tmp, sizeof(tmp));
        if (n <= 0) Die("child %d exited early", pid);
        buf.append(tmp, static_cast<size_t>(n));
      }
      idle();
    }
  }
  std::string Line(double timeout_s) {
    return Line(timeout_s, [] {});
  }
  void Finish() {
    close(in);
    in = -1;
    int st = 0;
    waitpid(pid, &st, 0);
    pid = -1;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) Die("child failed (status %d)", st);
  }
};

pid_t ReadyPid(Child& c) {
  std::string l = c.Line(30);
  if (l.rfind("ready ", 0) != 0) Die("expected 'ready <pid>', got '%s'", l.c_str());
  return static_cast<pid_t>(atoi(l.c_str() + 6));
}

// The empty program at file offsets of pid's executable, one uprobe_multi link.
class EmptyProbes {
 public:
  EmptyProbes(pid_t pid, const std::vector<uint64_t>& offsets) {
    skel_ = overhead_probe_bpf__open();
    if (!skel_) Die("open BPF skeleton: %s", strerror(errno));
    bpf_program__set_autoload(skel_->progs.overhead_count, false);
    bpf_program__set_expected_attach_type(skel_->progs.overhead_empty,
                                          static_cast<bpf_attach_type>(48));
    if (int e = overhead_probe_bpf__load(skel_)) Die("load BPF: %s", strerror(-e));
    std::string path = "/proc/" + std::to_string(pid) + "/exe";
    struct {
      uint32_t prog_fd, target_fd, attach_type, flags;
      uint64_t path, offsets, ref_ctr_offsets, cookies;
      uint32_t cnt, multi_flags, pid, pad;
      uint8_t tail[64];
    } a;
    memset(&a, 0, sizeof(a));
    a.prog_fd = static_cast<uint32_t>(bpf_program__fd(skel_->progs.overhead_empty));
    a.attach_type = 48;  // BPF_TRACE_UPROBE_MULTI
    a.path = reinterpret_cast<uintptr_t>(path.c_str());
    a.offsets = reinterpret_cast<uintptr_t>(offsets.data());
    a.cnt = static_cast<uint32_t>(offsets.size());
    a.pid = static_cast<uint32_t>(pid);
    link_ = static_cast<int>(syscall(__NR_bpf, 28 /* BPF_LINK_CREATE */, &a, sizeof(a)));
    if (link_ < 0) Die("uprobe_multi attach: %s", strerror(errno));
  }
  ~EmptyProbes() {
    if (link_ >= 0) close(link_);
    overhead_probe_bpf__destroy(skel_);
  }

 private:
  overhead_probe_bpf* skel_ = nullptr;
  int link_ = -1;
};

enum class Mode { kAlone, kEmpty, kTraced, kSampled };

struct PingResult {
  double ns = 0;       // parktrace's own time for the round trips
  uint64_t parks = 0;  // counted by the tracer (kTraced only)
  uint64_t drops = 0;
  uint64_t unpaired = 0;  // lost parks/resumes, orphan wakeups
  // kTraced / kSampled: the profile; kSampled: goerrprof's CPU time over
  // the run, snapshots, torn goroutines.
  perftools::profiles::Profile profile;
  double cpu_ns = 0;
  uint64_t snapshots = 0, torn = 0;
};

double SelfCpuNs() {
  rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e9 +
         (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1e3;
}

PingResult PingPong(const std::string& bin, const goerrprof::symbolizer::GoBinary& binary,
                    const std::vector<uint64_t>& offsets, long n, Mode mode, long mix = 0,
                    int hz = 19) {
  Child c({bin, "-pingpong", std::to_string(n), "-mix", std::to_string(mix)});
  pid_t pid = ReadyPid(c);
  std::unique_ptr<EmptyProbes> empty;
  std::unique_ptr<ParkTracer> tracer;
  std::unique_ptr<WaitSampler> sampler;
  if (mode == Mode::kEmpty) empty = std::make_unique<EmptyProbes>(pid, offsets);
  if (mode == Mode::kTraced) {
    auto t = ParkTracer::Start(pid, binary, {});
    if (!t.ok()) Die("%s", std::string(t.status().message()).c_str());
    tracer = std::move(*t);
  }
  double cpu0 = SelfCpuNs();
  if (mode == Mode::kSampled) {
    goerrprof::profiler::WaitSamplerOptions o;
    o.hz = hz;
    auto s = WaitSampler::Start(pid, binary, o);
    if (!s.ok()) Die("%s", std::string(s.status().message()).c_str());
    sampler = std::move(*s);
  }
  c.Say("go\n");
  std::string line = c.Line(600, [&] {
    if (tracer && !tracer->Poll(0).ok()) Die("tracer poll failed");
  });
  long got = 0;
  long long ns = 0;
  if (sscanf(line.c_str(), "pingpong %ld ns %lld", &got, &ns) != 2 || got != n) {
    Die("unexpected output '%s'", line.c_str());
  }
  PingResult r;
  r.ns = static_cast<double>(ns);
  if (tracer) {
    tracer->Stop();
    auto cnt = tracer->counters();
    r.parks = cnt.totals.parks;
    r.drops = cnt.dropped();
    r.unpaired = cnt.totals.lost_parks + cnt.totals.lost_resumes + cnt.totals.orphan_wakeups;
    if (mix > 0) {
      auto p = tracer->BuildProfile();
      if (!p.ok()) Die("%s", std::string(p.status().message()).c_str());
      r.profile = std::move(*p);
    }
  }
  if (sampler) {
    sampler->Stop();
    r.cpu_ns = SelfCpuNs() - cpu0;
    r.snapshots = sampler->totals().snapshots;
    r.torn = sampler->totals().torn_skipped;
    auto p = sampler->BuildProfile();
    if (!p.ok()) Die("%s", std::string(p.status().message()).c_str());
    r.profile = std::move(*p);
  }
  c.Finish();
  return r;
}

double TrapRun(const std::string& target, long m, const std::vector<uint64_t>& offsets) {
  Child c({target, "-wait", "-m", std::to_string(m)});
  pid_t pid = ReadyPid(c);
  std::unique_ptr<EmptyProbes> probe;
  if (!offsets.empty()) probe = std::make_unique<EmptyProbes>(pid, offsets);
  c.Say("go\n");
  std::string line = c.Line(120);
  if (line.rfind("ns/call ", 0) != 0) Die("overheadtarget: unexpected '%s'", line.c_str());
  c.Finish();
  return atof(line.c_str() + 8);
}

// Blocked time (sample value 1 in both profiles) by the first main.*
// function of the stack and the wait reason; stacks with no main.* frame
// (the runtime's own goroutines, which sampling leaves out) are skipped.
std::map<std::string, double> BlockedShares(const perftools::profiles::Profile& p) {
  std::map<uint64_t, std::string> fn;
  for (const auto& f : p.function()) fn[f.id()] = p.string_table(static_cast<int>(f.name()));
  std::map<uint64_t, const perftools::profiles::Location*> loc;
  for (const auto& l : p.location()) loc[l.id()] = &l;
  std::map<std::string, double> out;
  double total = 0;
  for (const auto& s : p.sample()) {
    std::string where, reason;
    for (uint64_t id : s.location_id()) {
      for (const auto& line : loc[id]->line()) {
        const std::string& name = fn[line.function_id()];
        if (where.empty() && name.rfind("main.", 0) == 0) where = name;
      }
    }
    for (const auto& l : s.label()) {
      if (p.string_table(static_cast<int>(l.key())) == "goroutine.wait_reason") {
        reason = p.string_table(static_cast<int>(l.str()));
      }
    }
    if (where.empty() || s.value_size() < 2) continue;
    out[where + " [" + reason + "]"] += static_cast<double>(s.value(1));
    total += static_cast<double>(s.value(1));
  }
  for (auto& [k, v] : out) v = total > 0 ? v / total : 0;
  return out;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::string parktrace, target;
  long n = 200000, m = 200000;
  int reps = 5;
  long mix = 10000, trace_n = 5000, sample_n = 5000000;
  int hz = 19;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--parktrace") parktrace = v;
    else if (k == "--target") target = v;
    else if (k == "--n") n = atol(v.c_str());
    else if (k == "--m") m = atol(v.c_str());
    else if (k == "--reps") reps = atoi(v.c_str());
    else if (k == "--mix") mix = atol(v.c_str());
    else if (k == "--hz") hz = atoi(v.c_str());
    else if (k == "--trace-n") trace_n = atol(v.c_str());
    else if (k == "--sample-n") sample_n = atol(v.c_str());
    else Die("unknown flag %s", k.c_str());
  }
  if (parktrace.empty() || target.empty() || n <= 0 || m <= 0 || reps <= 0) {
    Die("usage: park_bench --parktrace BIN --target OVERHEADTARGET [--n N] [--m M] [--reps R]");
  }
  if (geteuid() != 0) Die("needs root (BPF uprobes)");
  alarm(1800);  // a hang kills us, and PDEATHSIG our children

  auto binary = goerrprof::symbolizer::GoBinary::Open(parktrace);
  if (!binary.ok()) Die("%s", std::string(binary.status().message()).c_str());
  auto probes = goerrprof::profiler::FindParkProbes(**binary);
  if (!probes.ok()) Die("%s", std::string(probes.status().message()).c_str());
  std::vector<uint64_t> park_offsets;
  for (uint64_t va : {probes->park_call, probes->resume, probes->ready}) {
    auto off = (*binary)->elf().FileOffsetOf(va);
    if (!off.ok()) Die("no file offset for 0x%lx", va);
    park_offsets.push_back(*off);
  }
  auto target_bin = goerrprof::symbolizer::GoBinary::Open(target);
  if (!target_bin.ok()) Die("%s", std::string(target_bin.status().message()).c_str());
  uint64_t probe_target = 0;
  const auto& tab = (*target_bin)->pclntab();
  for (size_t i = 0; i < tab.num_functions(); ++i) {
    if (tab.FuncName(i) == "main.probeTarget") probe_target = tab.FuncEntry(i);
  }
  auto trap_off = (*target_bin)->elf().FileOffsetOf(probe_target);
  if (!probe_target || !trap_off.ok()) Die("no main.probeTarget in %s", target.c_str());

  std::vector<double> alone, empty, traced, traced_parks, trap_base, trap_probe;
  uint64_t drops = 0, unpaired = 0;
  for (int r = 0; r < reps; ++r) {
    alone.push_back(PingPong(parktrace, **binary, park_offsets, n, Mode::kAlone).ns);
    empty.push_back(PingPong(parktrace, **binary, park_offsets, n, Mode::kEmpty).ns);
    PingResult t = PingPong(parktrace, **binary, park_offsets, n, Mode::kTraced);
    traced.push_back(t.ns);
    traced_parks.push_back(static_cast<double>(t.parks));
    drops += t.drops;
    unpaired += t.unpaired;
    trap_base.push_back(TrapRun(target, m, {}));
    trap_probe.push_back(TrapRun(target, m, {*trap_off}));
  }
  const double a = Median(alone), e = Median(empty), t = Median(traced);
  const double parks = Median(traced_parks);
  const double trap_ns = Median(trap_probe) - Median(trap_base);
  const double per_park_ns = parks > 0 ? (t - a) / parks : 0;
  const double empty_per_park_ns = parks > 0 ? (e - a) / parks : 0;
  std::printf("park_bench: %s, %ld round trips x %d reps (medians), %ld CPUs\n",
              (*binary)->version().ToString().c_str(), n, reps, sysconf(_SC_NPROCESSORS_ONLN));
  std::printf("  parks per run (tracer's count)     %.0f (%.2f per round trip), "
              "drops %lu, unpaired %lu (all runs)\n",
              parks, parks / n, static_cast<unsigned long>(drops),
              static_cast<unsigned long>(unpaired));
  std::printf("  untraced                           %8.1f ms  %9.0f parks/s\n", a / 1e6,
              parks / (a / 1e9));
  std::printf("  empty uprobes at the 3 sites       %8.1f ms  %9.0f parks/s  +%.2f us/park\n",
              e / 1e6, parks / (e / 1e9), empty_per_park_ns / 1e3);
  std::printf("  ParkTracer                         %8.1f ms  %9.0f parks/s  +%.2f us/park\n",
              t / 1e6, parks / (t / 1e9), per_park_ns / 1e3);
  std::printf("  raw uprobe trap (overheadtarget)   %.2f us  (%.1f ns/call alone, %.1f probed)\n",
              trap_ns / 1e3, Median(trap_base), Median(trap_probe));
  if (trap_ns > 0) {
    std::printf("  cost per park / raw trap           %.1fx  (empty sites: %.1fx)\n",
                per_park_ns / trap_ns, empty_per_park_ns / trap_ns);
  }
  std::printf("  slowdown of the ping-pong          %.2fx traced, %.2fx empty probes\n", t / a,
              e / a);
  if (mix <= 0) return 0;

  // Sampled waits beside tracing, with `mix` goroutines waiting meanwhile.
  // Each rep: two runs alone and one sampled, the sampled one first,
  // between or last in turn (drift in the machine's speed falls on both
  // sides); the slowdown is each sampled run against its rep's two alone,
  // the second alone against the first the machine's own noise.
  std::vector<double> mix_alone, mix_sampled, mix_cpu, mix_snaps, mix_slow, mix_noise;
  uint64_t torn = 0;
  const int mix_reps = std::max(reps, 8);
  for (int r = 0; r < mix_reps; ++r) {
    double a0 = 0, a1 = 0;
    for (int k = 0; k < 3; ++k) {
      if (k != r % 3) {
        (a0 == 0 ? a0 : a1) =
            PingPong(parktrace, **binary, park_offsets, sample_n, Mode::kAlone, mix).ns;
        continue;
      }
      PingResult s =
          PingPong(parktrace, **binary, park_offsets, sample_n, Mode::kSampled, mix, hz);
      mix_sampled.push_back(s.ns);
      mix_cpu.push_back(s.cpu_ns / s.ns);
      mix_snaps.push_back(static_cast<double>(s.snapshots));
      torn += s.torn;
    }
    mix_alone.push_back(a0);
    mix_alone.push_back(a1);
    mix_slow.push_back((mix_sampled.back() / ((a0 + a1) / 2) - 1) * 100);
    mix_noise.push_back((a1 / a0 - 1) * 100);
  }
  PingResult traced_mix = PingPong(parktrace, **binary, park_offsets, trace_n, Mode::kTraced, mix);
  PingResult sampled_mix =
      PingPong(parktrace, **binary, park_offsets, sample_n, Mode::kSampled, mix, hz);
  const double ma = Median(mix_alone), ms = Median(mix_sampled);
  auto range = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    char buf[64];
    snprintf(buf, sizeof(buf), "[%+.2f .. %+.2f]", v.front(), v.back());
    return std::string(buf);
  };
  std::printf("sampled waits: %ld goroutines waiting, %d Hz, %ld round trips x %d reps (medians; "
              "each rep two runs alone and one sampled, in turn first, between and last)\n",
              mix, hz, sample_n, mix_reps);
  std::printf("  ping-pong alone                    %8.1f ms\n", ma / 1e6);
  std::printf("  under WaitSampler                  %8.1f ms  (%.0f snapshots, goerrprof CPU %.1f%% "
              "of one, %lu torn in all runs)\n",
              ms / 1e6, Median(mix_snaps), Median(mix_cpu) * 100, static_cast<unsigned long>(torn));
  std::printf("  slowdown, each rep against its runs alone  %+.2f%% %s  (goal <= 2%%: %s)\n",
              Median(mix_slow), range(mix_slow).c_str(), Median(mix_slow) <= 2 ? "met" : "NOT met");
  std::printf("  noise: the second run alone vs the first   %+.2f%% %s\n", Median(mix_noise),
              range(mix_noise).c_str());
  std::printf("  shares of blocked time: trace (%ld round trips, %.0f ms, %lu parks, %lu drops) vs "
              "sample (%.0f ms, %lu snapshots)\n",
              trace_n, traced_mix.ns / 1e6, static_cast<unsigned long>(traced_mix.parks),
              static_cast<unsigned long>(traced_mix.drops), sampled_mix.ns / 1e6,
              static_cast<unsigned long>(sampled_mix.snapshots));
  auto ts = BlockedShares(traced_mix.profile), ss = BlockedShares(sampled_mix.profile);
  std::map<std::string, int> keys;
  for (const auto& [k, v] : ts) keys[k] = 1;
  for (const auto& [k, v] : ss) keys[k] = 1;
  double worst = 0;
  for (const auto& [k, unused] : keys) {
    double tv = ts.count(k) ? ts[k] * 100 : 0, sv = ss.count(k) ? ss[k] * 100 : 0;
    worst = std::max(worst, std::abs(tv - sv));
    std::printf("    %-40s trace %6.2f%%  sample %6.2f%%  diff %+.2f points\n", k.c_str(), tv, sv,
                sv - tv);
  }
  std::printf("  largest share difference           %.2f points\n", worst);
  return 0;
}
