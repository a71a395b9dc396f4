// The Recorder's overhead budget (record/overhead_budget.h): charging each
// process's probe hits, taking sites off and putting them back through its
// session, and the estimates the profile carries for the time they were off.
#include <bpf/bpf.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>

#include "base/clock.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "record/recorder.h"

namespace goerrprof::profiler {
namespace {

int64_t NowNs() { return MonotonicNs(); }

int64_t CpuNs(clockid_t clock) {
  if (clock == -1) return -1;
  timespec ts;
  if (clock_gettime(clock, &ts) != 0) return -1;
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// The budget reacts within one tick: a storm pays at most this much
// beyond its budget before its site goes off.
constexpr int kTickMs = 5;
// While a site is under watch (a storm kept on for a clean window, or one
// back on probation): a storm's window on lasts about this long, not a
// whole tick. At least one hit of a storm lands in it.
constexpr int kWatchTickMs = 1;
// While a site is off, the allocation count is read at least this often.
constexpr int64_t kOffReadNs = 20000000;

}  // namespace

// The process's CPU time now, else its last reading: a process that exited
// (and was reaped) has no clock left, but its time off still counts.
int64_t Recorder::TargetCpuNs(Traced& t) {
  int64_t cpu = CpuNs(t.cpu_clock);
  if (cpu >= 0) t.last_cpu_ns = cpu;
  return t.last_cpu_ns;
}

// The allocation count now; once the process has exited, its last one
// (as for the CPU time). -1: unknown. `at_ns`: when it was taken (now, for
// a last one).
int64_t Recorder::TargetAllocs(Traced& t, int64_t* at_ns) {
  if (at_ns) *at_ns = NowNs();
  if (!t.allocs) return -1;
  auto n = t.allocs->Read();
  if (n.ok()) {
    const int64_t objects = static_cast<int64_t>(n->objects);
    const int64_t cpu = TargetCpuNs(t);
    // Over at least 10 ms of CPU since the span began: counts move by
    // whole spans.
    if (t.rate_allocs0 < 0 || objects < t.rate_allocs0 || cpu < t.rate_cpu0) {
      t.rate_allocs0 = objects;
      t.rate_cpu0 = cpu;
    } else if (cpu >= t.rate_cpu0 + 10000000) {
      t.allocs_per_cpu_ns = static_cast<double>(objects - t.rate_allocs0) /
                            static_cast<double>(cpu - t.rate_cpu0);
      t.rate_allocs0 = objects;
      t.rate_cpu0 = cpu;
    }
    t.last_allocs = objects;
    t.allocs_cpu_ns = cpu;
    t.allocs_read_ns = NowNs();
    // The middle of the reads its values came from: hits are counted for
    // the window their timestamps fall in, so the count must say when.
    if (at_ns && n->from_ns > 0 && n->to_ns >= n->from_ns) {
      *at_ns = n->from_ns + (n->to_ns - n->from_ns) / 2;
    }
    return t.last_allocs;
  }
  if (!t.session || !t.session->target_exited()) return -1;
  // Gone: its last reading, plus what it allocated in the CPU time it ran
  // after it, at the rate between the last two readings (a budget reads
  // only every so often while its sites are off; the final off period
  // would otherwise lose its tail).
  const int64_t cpu = TargetCpuNs(t);
  if (t.last_allocs < 0 || t.allocs_cpu_ns < 0 || t.allocs_per_cpu_ns < 0 ||
      cpu <= t.allocs_cpu_ns) {
    return t.last_allocs;
  }
  return t.last_allocs + static_cast<int64_t>(t.allocs_per_cpu_ns *
                                              static_cast<double>(cpu - t.allocs_cpu_ns));
}

int Recorder::max_wait_ms(int wanted) const {
  if (options_.max_overhead <= 0) return wanted;
  int tick = kTickMs;
  for (const Traced& t : processes_) {
    if (t.budget && t.budget->Watching()) tick = kWatchTickMs;
  }
  return wanted < 0 ? tick : std::min(wanted, tick);
}

void Recorder::StartBudget(Traced& t) {
  if (options_.max_overhead <= 0 || !t.session) return;
  if (trap_ns_ < 0) {
    auto trap = t.session->MeasureTrapNs();
    if (!trap.ok()) {
      warnings_.push_back(absl::StrCat("overhead budget off: the cost of a hit is unknown (",
                                       trap.status().message(), ")"));
      options_.max_overhead = 0;
      return;
    }
    trap_ns_ = *trap;
    // The program's run time, counted by the kernel while this fd is open.
    run_stats_fd_ = bpf_enable_stats(BPF_STATS_RUN_TIME);
  }
  clockid_t clock;
  if (clock_getcpuclockid(t.pid, &clock) == 0 && CpuNs(clock) >= 0) t.cpu_clock = clock;
  // Estimates count work in allocations when the runtime's counts can be
  // read; otherwise in CPU time.
  if (t.plan && t.plan->binary) {
    auto counter = AllocCounter::Open(t.pid, *t.plan->binary, t.session->load_bias());
    if (counter.ok()) {
      t.allocs = std::move(*counter);
    } else if (!t.plan->allocs_warned) {
      t.plan->allocs_warned = true;
      warnings_.push_back(absl::StrFormat(
          "pid %d: overhead budget estimates from CPU time: %s", t.pid, counter.status().message()));
    }
  }
  BudgetOptions o;
  o.cpu_fraction = options_.max_overhead;
  // Until the kernel has timed the program here: the trap and a quarter.
  t.budget = std::make_unique<OverheadBudget>(o, trap_ns_ * 1.25, NowNs(), TargetCpuNs(t),
                                              TargetAllocs(t));
}

void Recorder::TickBudget(Traced& t) {
  if (!t.budget || !t.session) return;
  // A tick with nothing to charge or decide costs the target next to
  // nothing: the program's run time only when there are hits to price,
  // the allocation count only when the budget has a use for it (a reading
  // is several reads of the target's memory).
  if (t.budget->HasHits()) {
    auto [run_ns, runs] = t.session->ProgramRunTime();
    if (runs > 0 && run_ns > 0) {
      t.budget->set_hit_cost_ns(trap_ns_ +
                                static_cast<double>(run_ns) / static_cast<double>(runs));
    }
  }
  int64_t now = NowNs();
  const int64_t cpu = TargetCpuNs(t);
  // While sites are off: a reading every so often too, so that the
  // process's last one is recent when it exits (TargetAllocs).
  const bool stale = now - t.allocs_read_ns >= kOffReadNs && t.budget->stats().sites_off_now > 0;
  const int64_t allocs = t.budget->NeedsWork(now) || stale ? TargetAllocs(t, &now) : -1;
  if (t.session->shares_program()) Reconcile(t);
  for (const OverheadBudget::Action& a : t.budget->Tick(now, cpu, allocs)) {
    if (!a.probe && t.session->shares_program() && t.session->SiteOff(a.site)) {
      // Another replica took it off meanwhile: follow it, not a second owner.
      t.budget->Failed(a, now, cpu, allocs);
      t.budget->Follow(a.site, false, now, cpu, allocs);
      continue;
    }
    // Replicas sharing the links lose the site too: their readings from
    // before the detach (the probes go before it returns).
    std::vector<MateReading> mates;
    if (!a.probe) mates = MatesOf(t, a.site);
    absl::Status s = t.session->SetSiteProbed(a.site, a.probe);
    if (s.ok()) {
      // A window on starts once the attach took; a detach's off period
      // began at the tick's reading (the budget's Applied).
      if (a.probe) {
        int64_t at;
        const int64_t work = TargetAllocs(t, &at);
        t.budget->Applied(a, at, TargetCpuNs(t), work);
        mates = MatesOf(t, a.site);
      }
      for (const MateReading& m : mates) {
        m.t->budget->Follow(a.site, a.probe, m.now_ns, m.cpu_ns, m.work);
      }
      continue;
    }
    t.budget->Failed(a, now, cpu, allocs);
    // Unavailable: its old link is still going (a slow machine); it comes
    // back after another back-off, nothing to warn about.
    if (!t.session->target_exited() && !absl::IsUnavailable(s)) {
      warnings_.push_back(absl::StrFormat("pid %d: overhead budget could not %s site 0x%x: %s",
                                          t.pid, a.probe ? "re-attach" : "detach", a.site,
                                          s.message()));
    }
  }
}

std::vector<Recorder::MateReading> Recorder::MatesOf(Traced& t, uint64_t site) {
  std::vector<MateReading> out;
  if (!t.session || !t.session->shares_program()) return out;
  for (Traced& u : processes_) {
    // An exited one's readings no longer move: nothing to follow.
    if (&u == &t || !u.session || !u.budget || u.close_by_ns >= 0 ||
        u.session->program_key() != t.session->program_key() || !u.budget->Knows(site)) {
      continue;
    }
    MateReading m;
    m.t = &u;
    m.cpu_ns = TargetCpuNs(u);
    m.work = TargetAllocs(u, &m.now_ns);
    out.push_back(m);
  }
  return out;
}

void Recorder::Reconcile(Traced& t) {
  t.session->RetryOrphanSites();
  // What the budget believes against what the shared links are: a site it
  // learnt of after another replica took it off (events still in the
  // ring), or one put back while it was not told.
  std::vector<std::pair<uint64_t, bool>> changed;
  for (uint64_t site : t.budget->SitesOn()) {
    if (t.session->SiteOff(site)) changed.emplace_back(site, false);
  }
  for (uint64_t site : t.budget->FollowedOff()) {
    if (!t.session->SiteOff(site)) changed.emplace_back(site, true);
  }
  if (changed.empty()) return;
  int64_t at;
  const int64_t cpu = TargetCpuNs(t);
  const int64_t work = TargetAllocs(t, &at);
  for (const auto& [site, probed] : changed) t.budget->Follow(site, probed, at, cpu, work);
}

void Recorder::HandOverSites(Traced& t) {
  if (!t.budget || !t.session || !t.session->shares_program()) return;
  for (uint64_t site : t.budget->OwnedOff()) {
    // Another live replica decides when it comes back: one that has seen
    // it, else any.
    Traced* heir = nullptr;
    for (Traced& u : processes_) {
      if (&u == &t || !u.session || !u.budget || u.close_by_ns >= 0 ||
          u.session->program_key() != t.session->program_key()) {
        continue;
      }
      if (heir == nullptr || (!heir->budget->Knows(site) && u.budget->Knows(site))) heir = &u;
    }
    if (heir != nullptr) {
      // First in line with the links (it may know the site only from
      // events drained just now), then its owner.
      Reconcile(*heir);
      heir->budget->Adopt(site, NowNs());
    } else {
      // None: back now (or once its old link is gone), for whoever joins
      // before the program goes.
      t.session->OrphanSite(site);
    }
  }
}

void Recorder::CloseBudget(Traced& t, uint32_t index) {
  if (!t.budget) return;
  HandOverSites(t);
  for (const auto& [site, missed] :
       t.budget->Missed(NowNs(), TargetCpuNs(t), TargetAllocs(t))) {
    profile_.SetEstimate(index, site, missed);
  }
  t.budget_stats = t.budget->stats();
  t.budget.reset();
  t.allocs.reset();
}

void Recorder::RefreshEstimates() {
  constexpr int64_t kEveryNs = 1000000000;
  if (options_.max_overhead <= 0) return;
  const int64_t now = NowNs();
  if (now - estimates_at_ns_ < kEveryNs) return;
  estimates_at_ns_ = now;
  for (size_t i = 0; i < processes_.size(); ++i) {
    Traced& t = processes_[i];
    if (!t.budget || !t.session || t.budget->stats().sites_ever_off == 0) continue;
    for (const auto& [site, missed] : t.budget->Missed(now, TargetCpuNs(t), TargetAllocs(t))) {
      profile_.SetEstimate(static_cast<uint32_t>(i), site, missed);
    }
  }
}

size_t Recorder::budget_sites_off() const {
  size_t n = evicted_budget_.sites_ever_off;
  for (const Traced& t : processes_) {
    n += (t.budget ? t.budget->stats() : t.budget_stats).sites_ever_off;
  }
  return n;
}

std::string Recorder::BudgetSummary() const {
  if (options_.max_overhead <= 0 && trap_ns_ < 0) return "";
  OverheadBudget::Stats total = evicted_budget_;
  for (const Traced& t : processes_) {
    OverheadBudget::Stats s = t.budget ? t.budget->stats() : t.budget_stats;
    total.detaches += s.detaches;
    total.reattaches += s.reattaches;
    total.sites_ever_off += s.sites_ever_off;
    total.spent_ns += s.spent_ns;
    total.by_work += s.by_work;
    total.by_time += s.by_time;
  }
  std::string out = absl::StrFormat(
      "overhead budget: %g%% of one CPU per process; a hit costs %.1f us here; %d site%s "
      "taken off (%d detaches, %d re-attaches)",
      options_.max_overhead * 100, trap_ns_ / 1000, total.sites_ever_off,
      total.sites_ever_off == 1 ? "" : "s", total.detaches, total.reattaches);
  // What the probes cost, at the price the budget charged for each hit.
  absl::StrAppendFormat(&out, "; hits charged %.1f ms", total.spent_ns / 1e6);
  if (profile_.estimated()) {
    absl::StrAppend(&out, "; ", profile_.estimated_total(),
                    " creations estimated while off (errors.estimated=true)");
  }
  if (total.by_work + total.by_time > 0) {
    // How the off periods were estimated: per allocation, or per CPU time.
    absl::StrAppendFormat(&out, ", %d off period%s priced by allocations, %d by CPU time",
                          total.by_work, total.by_work == 1 ? "" : "s", total.by_time);
  }
  return out;
}

}  // namespace goerrprof::profiler
