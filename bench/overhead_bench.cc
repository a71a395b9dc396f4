// bench/overhead_bench: the measurements behind bench/overhead, side by side
// in one run, each repeated and reported as its median:
//  1. raw uprobe trap: overheadtarget times M calls of a noinline function,
//     without a probe and with an empty BPF program at its entry (and, for
//     comparison, at its RET, which x86 emulates instead of single-stepping);
//  2. errgen at -n N released from stdin and timed to its JSON line: alone,
//     with a counting (near-empty) uprobe at every planned site, and under
//     `goerrprof record`; per captured error vs the raw trap;
//  3. `goerrprof record` on an esbuild blocked on stdin: probes, attach time,
//     SIGINT-to-exit time, and whether the breakpoints left the target.
// Every child dies with us (PDEATHSIG, signal handlers, a global alarm);
// probes are fd-owned links, so they go with their owner.
#include <signal.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <bpf/libbpf.h>

#include "bench/overhead_runs.h"
#include "bench/overhead_util.h"

namespace goerrprof::bench {
namespace {

// ---- reporting
double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n == 0 ? 0 : n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}
std::string Spread(const std::vector<double>& v, double scale, const char* fmt) {
  auto [lo, hi] = std::minmax_element(v.begin(), v.end());
  char buf[96];
  std::string f = std::string("[") + fmt + " .. " + fmt + "]";
  snprintf(buf, sizeof(buf), f.c_str(), *lo * scale, *hi * scale);
  return buf;
}
std::string LoadAvg() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

struct Args {
  std::string target, errgen, goerrprof, plan_tool, esbuild, tmp = "/tmp";
  std::string errgen_label, esbuild_label;
  // 3b: a large server binary (Debian's prometheus), started with these
  // arguments (space-separated) and stopped with SIGTERM.
  std::string large, large_label, large_args;
  long m = 200000, n = 2000;
  int trap_reps = 5, errgen_reps = 5, attach_reps = 5, storm_reps = 8;
  long storm_n = 40000000;
  // The storm again with work before each error (a retry that dials or
  // parses first): errgen -storm_work rounds, and its own count.
  long storm_work = 10000, storm_work_n = 300000;
  std::string storm_budget = "1";
  int budget_s = 1800;
  int64_t ringbuf = 0;  // goerrprof record --ringbuf_bytes to start with; 0: its default
};

Args Parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) Die("%s needs a value", k.c_str());
      return argv[++i];
    };
    if (k == "--target") a.target = val();
    else if (k == "--errgen") a.errgen = val();
    else if (k == "--errgen_label") a.errgen_label = val();
    else if (k == "--goerrprof") a.goerrprof = val();
    else if (k == "--plan_tool") a.plan_tool = val();
    else if (k == "--esbuild") a.esbuild = val();
    else if (k == "--esbuild_label") a.esbuild_label = val();
    else if (k == "--large") a.large = val();
    else if (k == "--large_label") a.large_label = val();
    else if (k == "--large_args") a.large_args = val();
    else if (k == "--tmp") a.tmp = val();
    else if (k == "--m") a.m = atol(val().c_str());
    else if (k == "--n") a.n = atol(val().c_str());
    else if (k == "--trap_reps") a.trap_reps = atoi(val().c_str());
    else if (k == "--errgen_reps") a.errgen_reps = atoi(val().c_str());
    else if (k == "--attach_reps") a.attach_reps = atoi(val().c_str());
    else if (k == "--storm_reps") a.storm_reps = atoi(val().c_str());
    else if (k == "--storm_n") a.storm_n = atol(val().c_str());
    else if (k == "--storm_work") a.storm_work = atol(val().c_str());
    else if (k == "--storm_work_n") a.storm_work_n = atol(val().c_str());
    else if (k == "--max_overhead") a.storm_budget = val();
    else if (k == "--budget") a.budget_s = atoi(val().c_str());
    else if (k == "--ringbuf") a.ringbuf = atoll(val().c_str());
    else Die("unknown argument %s", k.c_str());
  }
  if (a.target.empty() || a.errgen.empty() || a.goerrprof.empty() || a.plan_tool.empty() ||
      a.esbuild.empty() || a.trap_reps < 1 || a.errgen_reps < 1 || a.attach_reps < 1 ||
      a.m < 1 || a.n < 1)
    Die("usage: overhead_bench --target T --errgen E --goerrprof G --plan_tool P --esbuild B "
        "[--m M] [--n N] [--trap_reps R] [--errgen_reps R] [--attach_reps R] [--budget S] "
        "[--ringbuf BYTES]");
  return a;
}

// One storm's runs: two alone and one budgeted per rep; each budgeted
// run's estimate against the truth and the budget's charge.
struct StormSeries {
  std::vector<double> alone, budgeted, est, charged_ms;
};

// A storm's rows: its loop alone and under the budget (the slowdown against
// the budget + 0.5 points), `between` them, then the estimate against the
// truth and the budget's own line.
void PrintStorm(const std::string& budget, const StormSeries& st, const StormRun& last, long n,
                const std::function<void()>& between) {
  const std::vector<double>& alone = st.alone;
  const std::vector<double>& budgeted = st.budgeted;
  const std::vector<double>& est = st.est;
  // Each rep's budgeted run against the mean of its two runs alone; the
  // two runs alone against each other are the machine's own noise.
  std::vector<double> slow, noise, charged;
  for (size_t i = 0; i < budgeted.size() && 2 * i + 1 < alone.size(); ++i) {
    const double a0 = alone[2 * i], a1 = alone[2 * i + 1];
    slow.push_back((budgeted[i] / ((a0 + a1) / 2) - 1) * 100);
    noise.push_back((a1 / a0 - 1) * 100);
  }
  for (size_t i = 0; i < st.charged_ms.size(); ++i) {
    if (st.charged_ms[i] >= 0) charged.push_back(st.charged_ms[i] / 10 / budgeted[i]);
  }
  const double pct = atof(budget.c_str());
  std::printf("   %-44s %10.3f s %s\n", "alone (two runs a rep)", Median(alone),
              Spread(alone, 1, "%.3f").c_str());
  std::printf("   %-44s %10.3f s %s\n", ("goerrprof record --max-overhead=" + budget + "%").c_str(),
              Median(budgeted), Spread(budgeted, 1, "%.3f").c_str());
  std::printf("   %-44s %+9.2f %% %s  (goal <= %.1f%%: %s)\n",
              "slowdown, each rep against its runs alone", Median(slow),
              Spread(slow, 1, "%+.2f").c_str(), pct + 0.5, Median(slow) <= pct + 0.5 ? "met" : "NOT met");
  std::printf("   %-44s %+9.2f %% %s\n", "noise: the second run alone vs the first",
              Median(noise), Spread(noise, 1, "%+.2f").c_str());
  if (!charged.empty()) {
    std::printf("   %-44s %9.2f %% %s  (the hits' charge at the budget's price, of the loop time)\n",
                "probes' cost as the budget counted it", Median(charged),
                Spread(charged, 1, "%.2f").c_str());
  }
  between();
  std::printf("   estimated / true count: median %.3f %s (goal within 10%%: %s); last run: "
              "%llu observed + %llu estimated of %ld\n",
              Median(est), Spread(est, 1, "%.3f").c_str(),
              std::abs(Median(est) - 1) <= 0.1 ? "met" : "NOT met",
              (unsigned long long)last.observed, (unsigned long long)last.estimated, n);
  std::printf("   %s\n", last.budget_line.c_str());
}

// Section 3: attach and detach times, cold (planned every time) and warm
// (from a cache one run filled), interleaved.
struct AttachStats {
  size_t sites = 0;
  unsigned long long unplanned = 0;
  std::vector<double> attach, ready, detach, warm_attach, warm_ready;
  AttachRun last;
  size_t max_left = 0, min_armed = SIZE_MAX;
};

AttachStats MeasureAttach(const Args& a, const AttachTarget& target, const std::string& cache) {
  const std::string& binary = target.argv[0];
  ElfImage elf = ElfImage::Open(binary, false);
  std::vector<uint64_t> sites = PlannedProbes(a.plan_tool, binary);
  std::vector<uint8_t> bytes;
  for (uint64_t s : sites) bytes.push_back(elf.Bytes(s, 1)[0]);
  AttachStats st;
  st.sites = sites.size();
  const std::string out = a.tmp + "/attach.pb.gz";
  Attach(target, a.goerrprof, elf, sites, bytes, out, cache);
  for (int i = 0; i < a.attach_reps; ++i) {
    st.last = Attach(target, a.goerrprof, elf, sites, bytes, out, "off");
    st.attach.push_back(st.last.attach_s), st.ready.push_back(st.last.ready_s);
    st.detach.push_back(st.last.detach_s);
    st.max_left = std::max(st.max_left, st.last.left);
    st.min_armed = std::min(st.min_armed, st.last.armed);
    AttachRun warm = Attach(target, a.goerrprof, elf, sites, bytes, out, cache);
    st.warm_attach.push_back(warm.attach_s), st.warm_ready.push_back(warm.ready_s);
  }
  if (const char* p = strstr(st.last.summary.c_str(), " references unplanned)")) {
      while (p > st.last.summary.c_str() && p[-1] != '(') --p;
    st.unplanned = strtoull(p, nullptr, 10);
  }
  return st;
}

void PrintAttach(const std::string& title, const AttachStats& st) {
  std::printf("%s, goerrprof record, SIGINT\n", title.c_str());
  std::printf("   probes planned / attached: %zu / %zu (%llu references unplanned)\n", st.sites,
              st.last.probes, st.unplanned);
  std::printf("   %-44s %10.1f ms %s\n", "attach (goerrprof's \"recording\" line)",
              Median(st.attach) * 1e3, Spread(st.attach, 1e3, "%.1f").c_str());
  std::printf("   %-44s %10.1f ms %s  (goal < 300 ms: %s)\n",
              "start -> recording (plan + load + attach)", Median(st.ready) * 1e3,
              Spread(st.ready, 1e3, "%.1f").c_str(), Median(st.ready) < 0.3 ? "met" : "NOT met");
  std::printf("   %-44s %10.1f ms %s\n", "attach, plan from the cache",
              Median(st.warm_attach) * 1e3, Spread(st.warm_attach, 1e3, "%.1f").c_str());
  std::printf("   %-44s %10.1f ms %s  (%.1fx faster; goal < 300 ms: %s)\n",
              "start -> recording, plan from the cache", Median(st.warm_ready) * 1e3,
              Spread(st.warm_ready, 1e3, "%.1f").c_str(), Median(st.ready) / Median(st.warm_ready),
              Median(st.warm_ready) < 0.3 ? "met" : "NOT met");
  std::printf("   %-44s %10.1f ms %s\n", "SIGINT -> exit (detach + write profile)",
              Median(st.detach) * 1e3, Spread(st.detach, 1e3, "%.1f").c_str());
  if (st.min_armed == SIZE_MAX)
    std::printf("   breakpoint check skipped (PIE binary)\n");
  else
    std::printf("   breakpoints in the text: >= %zu of %zu while recording, <= %zu after exit\n",
                st.min_armed, st.sites, st.max_left);
}

// Words of a space-separated argument list.
std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = s.find(' ', i);
    if (j == std::string::npos) j = s.size();
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

// main's body: the runs in order, then the table.
int Run(int argc, char** argv) {
  Args a = Parse(argc, argv);
  struct sigaction sa = {};
  sa.sa_handler = OnSignal;
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGALRM}) sigaction(s, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  alarm(static_cast<unsigned>(a.budget_s));
  libbpf_set_print(nullptr);
  std::string load_before = LoadAvg();
  auto t_all = Clock::now();

  // 1. Raw trap: entry (LEA, single-stepped) and RET (emulated).
  ElfImage tgt = ElfImage::Open(a.target, true);
  auto sym = tgt.syms.find("main.probeTarget");
  if (sym == tgt.syms.end()) Die("%s: no main.probeTarget", a.target.c_str());
  uint64_t entry = sym->second.first;
  std::vector<uint8_t> body = tgt.Bytes(entry, std::max<uint64_t>(sym->second.second, 1));
  auto ret = std::find(body.begin(), body.end(), 0xC3);
  if (ret == body.end()) Die("main.probeTarget: no RET found");
  uint64_t ret_addr = entry + (ret - body.begin());

  // 2. errgen: alone, empty probes at the planned sites, goerrprof record.
  ElfImage eg = ElfImage::Open(a.errgen, false);
  std::vector<uint64_t> sites = PlannedProbes(a.plan_tool, a.errgen), site_offsets;
  for (uint64_t s : sites) site_offsets.push_back(eg.FileOffset(s));
  std::string out_file = a.tmp + "/errgen.pb.gz";
  int64_t ringbuf = a.ringbuf;
  std::vector<double> none, at_entry, at_ret;
  std::vector<double> alone, empty_sites, recorded, errors, hits, ratios;
  uint64_t dropped = 0;
  std::string raised;
  // 1 and 2 interleaved, so both medians sample the same machine state; a
  // rep with both gives one ratio of neighbours.
  for (int i = 0; i < std::max(a.trap_reps, a.errgen_reps); ++i) {
    double t0 = 0, t1 = 0;
    if (i < a.trap_reps) {
      none.push_back(t0 = TrapRun(a.target, a.m, {}));
      at_entry.push_back(t1 = TrapRun(a.target, a.m, {tgt.FileOffset(entry)}));
      at_ret.push_back(TrapRun(a.target, a.m, {tgt.FileOffset(ret_addr)}));
    }
    if (i >= a.errgen_reps) continue;
    ErrgenRun r0 = Errgen(a.errgen, a.n, Mode::kAlone, "", {}, "", 0);
    ErrgenRun r1 = Errgen(a.errgen, a.n, Mode::kEmptySites, "", site_offsets, "", 0);
    ErrgenRun r2 = Errgen(a.errgen, a.n, Mode::kRecord, a.goerrprof, {}, out_file, ringbuf);
    if (r2.dropped > 0 && ringbuf < (int64_t{1} << 30)) {
      // Drops make per-error cost meaningless: raise the ring and start over.
      ringbuf = std::max(ringbuf * 8, int64_t{32} << 20);
      raised += (raised.empty() ? "" : ", ") + std::to_string(r2.dropped) +
                " dropped -> --ringbuf_bytes=" + std::to_string(ringbuf);
      for (auto* v : {&none, &at_entry, &at_ret, &alone, &empty_sites, &recorded, &errors, &hits,
                      &ratios})
        v->clear();
      i = -1;
      continue;
    }
    dropped += r2.dropped;
    alone.push_back(r0.seconds), empty_sites.push_back(r1.seconds), recorded.push_back(r2.seconds);
    errors.push_back(static_cast<double>(r2.errors)), hits.push_back(static_cast<double>(r1.hits));
    if (i < a.trap_reps && r2.errors > 0)
      ratios.push_back((r2.seconds - r0.seconds) * 1e9 / static_cast<double>(r2.errors) / (t1 - t0));
  }
  double raw_entry_ns = Median(at_entry) - Median(none);
  double raw_ret_ns = Median(at_ret) - Median(none);
  double n_errors = Median(errors), n_hits = Median(hits);
  double per_error_ns = (Median(recorded) - Median(alone)) / n_errors * 1e9;
  double per_hit_ns = (Median(empty_sites) - Median(alone)) / n_hits * 1e9;

  // 3. Attach / detach on the largest esbuild; 3b. on the large binary.
  AttachTarget es_target{{a.esbuild, "--bundle", "--log-level=silent"}, true};
  AttachStats es = MeasureAttach(a, es_target, a.tmp + "/plans");
  AttachStats large;
  if (!a.large.empty()) {
    AttachTarget t{{a.large}, false};
    for (const std::string& arg : Split(a.large_args)) t.argv.push_back(arg);
    large = MeasureAttach(a, t, a.tmp + "/plans-large");
  }
  // 4. The error storm: alone and under the budget, interleaved; without
  // the budget on a storm 200 times shorter (every creation trapped).
  StormSeries storm, work;
  std::vector<double> small_alone, small_full;
  StormRun storm_last, work_last;
  const long small_n = std::max(1L, a.storm_n / 200);
  // Each rep: two runs alone and one budgeted, in an order that rotates
  // (the budgeted run first, between and last), so drift in the machine's
  // speed falls on both sides.
  auto rep = [&](int i, long n, long rounds, StormSeries& out, StormRun& last) {
    double a0 = 0, a1 = 0;
    for (int k = 0; k < 3; ++k) {
      if (k == i % 3) {
        last = Storm(a.errgen, n, a.storm_budget, a.goerrprof, out_file, rounds);
        out.budgeted.push_back(last.seconds);
        out.charged_ms.push_back(last.charged_ms);
        out.est.push_back(static_cast<double>(last.observed + last.estimated) /
                          static_cast<double>(n));
      } else {
        (a0 == 0 ? a0 : a1) = Storm(a.errgen, n, "", a.goerrprof, out_file, rounds).seconds;
      }
    }
    out.alone.push_back(a0);
    out.alone.push_back(a1);
  };
  for (int i = 0; a.storm_reps > 0 && i < a.storm_reps; ++i) {
    rep(i, a.storm_n, 0, storm, storm_last);
    small_alone.push_back(Storm(a.errgen, small_n, "", a.goerrprof, out_file).seconds);
    small_full.push_back(Storm(a.errgen, small_n, "0", a.goerrprof, out_file).seconds);
    rep(i, a.storm_work_n, a.storm_work, work, work_last);
  }

  // ---- table
  utsname u;
  uname(&u);
  std::printf("bench/overhead: %ld CPUs, kernel %s; load avg before %s, after %s; %.0fs\n",
              sysconf(_SC_NPROCESSORS_ONLN), u.release, load_before.c_str(), LoadAvg().c_str(),
              Since(t_all));
  std::printf("medians [min .. max] of %d trap / %d errgen / %d attach runs; traps and errgen "
              "interleaved\n\n",
              a.trap_reps, a.errgen_reps, a.attach_reps);
  std::printf("1. raw trap: overheadtarget, %ld calls of main.probeTarget (ret at +%llu)\n", a.m,
              (unsigned long long)(ret_addr - entry));
  std::printf("   %-44s %10.1f ns/call %s\n", "no probe", Median(none), Spread(none, 1, "%.1f").c_str());
  char entry_label[96];
  if (body.size() >= 2 && body[0] == 0x48 && body[1] == 0x8d)
    snprintf(entry_label, sizeof(entry_label), "empty uprobe at entry (lea: single-stepped)");
  else
    snprintf(entry_label, sizeof(entry_label), "empty uprobe at entry (insn %02x %02x ...)",
             body[0], body.size() > 1 ? body[1] : 0);
  std::printf("   %-44s %10.1f ns/call %s\n", entry_label, Median(at_entry),
              Spread(at_entry, 1, "%.0f").c_str());
  std::printf("   %-44s %10.1f ns/call %s\n", "empty uprobe at its ret (emulated)", Median(at_ret),
              Spread(at_ret, 1, "%.0f").c_str());
  std::printf("   raw trap = with - without: entry %.2f us, ret %.2f us\n\n", raw_entry_ns / 1e3,
              raw_ret_ns / 1e3);
  std::printf("2. errgen %s -n %ld, release -> JSON line\n", a.errgen_label.c_str(), a.n);
  std::printf("   %-44s %10.3f s %s\n", "no probes", Median(alone), Spread(alone, 1, "%.3f").c_str());
  char what[96];
  snprintf(what, sizeof(what), "empty uprobes at the %zu planned sites", sites.size());
  std::printf("   %-44s %10.3f s %s  %.0f hits\n", what, Median(empty_sites),
              Spread(empty_sites, 1, "%.3f").c_str(), n_hits);
  std::printf("   %-44s %10.3f s %s  %.0f errors, %llu dropped\n", "goerrprof record",
              Median(recorded), Spread(recorded, 1, "%.3f").c_str(), n_errors,
              (unsigned long long)dropped);
  if (!raised.empty()) std::printf("   ring buffer raised: %s\n", raised.c_str());
  else if (ringbuf == 0) std::printf("   ring buffer: goerrprof's default, no drops\n");
  else std::printf("   ring buffer: --ringbuf_bytes=%lld\n", (long long)ringbuf);
  std::printf("   per trap at the planned sites (empty program): %.2f us, %.2f hits per error\n",
              per_hit_ns / 1e3, n_hits / n_errors);
  std::printf("   per captured error (goerrprof record):      %.2f us = %.2fx raw trap at entry "
              "(goal <= 1.1x: %s), %.2fx at ret, %.2fx an empty trap at the same sites\n",
              per_error_ns / 1e3, per_error_ns / raw_entry_ns,
              per_error_ns <= 1.1 * raw_entry_ns ? "met" : "NOT met", per_error_ns / raw_ret_ns,
              per_error_ns / per_hit_ns);
  if (!ratios.empty())
    std::printf("   per-rep ratio (errgen rep vs the trap rep beside it): median %.2fx %s\n\n",
                Median(ratios), Spread(ratios, 1, "%.2f").c_str());
  PrintAttach("3. attach: esbuild " + a.esbuild_label + " (" + a.esbuild + ")", es);
  if (!a.large.empty()) {
    std::printf("\n");
    PrintAttach("3b. attach: " + a.large_label + " (" + a.large + ")", large);
  }
  const double slow_full = Median(small_full) / Median(small_alone) - 1;
  std::printf("\n4. error storm: errgen -storm (one site, fmt.Errorf in a loop), its own loop time\n");
  PrintStorm(a.storm_budget, storm, storm_last, a.storm_n, [&] {
    std::printf("   %-44s %10.3f s vs %.3f s alone: slowdown %+.0f%% (%ld creations)\n",
                "without a budget (--max-overhead=0)", Median(small_full), Median(small_alone),
                slow_full * 100, small_n);
  });
  std::printf("\n4b. the storm with work before each error (-storm_work %ld: %.2f us per error "
              "alone), %ld errors\n",
              a.storm_work, Median(work.alone) / static_cast<double>(a.storm_work_n) * 1e6,
              a.storm_work_n);
  PrintStorm(a.storm_budget, work, work_last, a.storm_work_n, [] {});
  bool ok = true;
  for (const AttachStats* st : {&es, &large}) {
    if (st->sites == 0) continue;  // no large binary
    ok = ok && st->max_left == 0 && (st->min_armed == SIZE_MAX || st->min_armed > 0);
  }
  if (!ok) std::printf("   WARNING: breakpoints not as expected\n");
  KillAllKids();
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace goerrprof::bench

int main(int argc, char** argv) { return goerrprof::bench::Run(argc, argv); }
