// The overhead budget (`record --max-overhead PCT`): what goerrprof's probes
// may cost one target process, as a fraction of one CPU. Each hit of an
// error probe costs the target a trap plus the program's run (measured:
// BpfSession::MeasureTrapNs and the kernel's run-time stats). The budget is
// a token bucket refilled at that fraction of wall time and holding one
// burst's worth. When a tick finds it empty, the sites that cost most in
// that tick are taken off (detaching is the only way to stop paying for a
// trap) until the rest fits; each comes back after a back-off, doubled each
// time it has to go again (1 s up to 64 s), reset once it stays in budget.
// A site that comes back is on probation: as soon as its hits since it
// came back (judged over 5 ms at a time) cost more than its share of the
// refill, it goes off again, so a storm that goes on pays a few ms per
// back-off, not a bucket.
// Their debt is forgiven (the bucket is set to half full): the sites left
// on do not pay for a storm elsewhere.
//
// Creations at a site while it is off are estimated. Best, when the
// target's allocation count can be read (goroutines/alloc_counter.h): the
// site's creations per allocation while on, times the allocations made
// while off. A count of work, not time, it does not depend on what a trap
// costs, which varies several-fold with what the target does between hits.
// A storm's windows on are short, so its on-windows and off periods are
// pooled while it keeps coming back (an episode), and the whole episode's
// ratio prices all of its off periods. Its windows must hold the storm
// alone: those after a re-attach in mid-storm do; the first one may hold
// work from before, so it prices the episode only alone, and a storm's
// first tick over the bucket keeps it on a little longer (nothing else goes
// in its place) so that one starts inside the storm too: it goes off as
// soon as that costs more than its share, or after 5 ms if it cost more
// than the whole budget's rate; else it calmed down, and stays on. Without the
// count, or without a window whose count is known: the site's rate
// per nanosecond of the target's own CPU work (its CPU time less the traps
// paid, at the measured price) in its last window on, times the target's
// CPU time while off. Either way the estimate is marked as such in the
// profile, beside the observed count.
//
// Replicas of one executable may share one program and its links (the
// agent, `record -- COMMAND`; session/error_program.h): a site taken off
// then goes off in all of them. Each replica keeps a budget of its own,
// charged with its own hits; any of them may take a site off (it owns that
// off period and decides when the site comes back), and the others follow
// (Follow): the site is off for them too, estimated from their own rates,
// until the owner puts it back. An owner that goes away hands its sites
// to another (Adopt).
//
// Pure bookkeeping: no BPF, no clocks of its own (tests drive it).
#ifndef GOERRPROF_RECORD_OVERHEAD_BUDGET_H_
#define GOERRPROF_RECORD_OVERHEAD_BUDGET_H_

#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"

namespace goerrprof::profiler {

struct BudgetOptions {
  double cpu_fraction = 0.01;  // of one CPU, per target process; 0: no budget
  int64_t burst_ns = 1000000000;  // the bucket holds this much wall time's budget
  int64_t min_backoff_ns = 1000000000;
  int64_t max_backoff_ns = 64000000000;
  // Window of a site's rate for estimates: its last this much time on.
  int64_t window_ns = 1000000000;
  // A site on probation, or a storm kept on for a clean window, is judged
  // on its hits over at least this long (the caller's normal tick).
  int64_t judge_ns = 5000000;
};

class OverheadBudget {
 public:
  // `cpu_ns`: the target's CPU time now (all threads), < 0 when unknown
  // (estimates then use wall time). `work`: its allocation count now, < 0
  // when unknown (estimates then use CPU time). `hit_cost_ns`: one hit's
  // cost. Every call below takes the same three readings.
  OverheadBudget(BudgetOptions options, double hit_cost_ns, int64_t now_ns, int64_t cpu_ns,
                 int64_t work = -1);

  void set_hit_cost_ns(double c) { hit_cost_ns_ = c; }
  double hit_cost_ns() const { return hit_cost_ns_; }
  // Events seen from `site` since the last Tick; `ts_ns`: when they
  // happened (the clock of now_ns), < 0 when unknown.
  void Count(uint64_t site, uint64_t n = 1, int64_t ts_ns = -1);

  struct Action {
    uint64_t site = 0;
    bool probe = false;  // true: put back; false: take off
    bool operator==(const Action& o) const { return site == o.site && probe == o.probe; }
  };
  // Whether a Tick at now_ns needs the work reading: some site has hits
  // since the last tick, is off, or rolls its window on probation. Other
  // ticks may pass -1 (a reading is several system calls into the target).
  bool NeedsWork(int64_t now_ns) const;
  // Whether some site has hits to charge at the next Tick (only then does
  // the hit cost matter).
  bool HasHits() const;
  // Whether a site is under watch: kept on one tick for a clean window,
  // or just put back on probation. Each tick it stays on, a storm there
  // pays traps, so the caller ticks sooner (a tick's fair share is priced
  // over at least 50 ms, so short ticks take nothing calm off).
  bool Watching() const;
  // Charges the hits counted since the last tick and says which sites go
  // off or come back. Apply every action (Failed() for one that could not).
  std::vector<Action> Tick(int64_t now_ns, int64_t cpu_ns, int64_t work = -1);
  // An action that took, with the readings after it did. An attach: the
  // window on starts there (a storm's untrapped work between the tick and
  // the attach would otherwise count against it). A detach changes
  // nothing: the off period began at the tick's reading, since the probe
  // goes before the detach returns, and creations in between are unseen.
  void Applied(const Action& a, int64_t now_ns, int64_t cpu_ns, int64_t work = -1);
  // An action that could not be applied: the site is taken as still in its
  // old state (a failed detach keeps it on and is not retried before its
  // back-off; a failed re-attach leaves it off, still estimated).
  void Failed(const Action& a, int64_t now_ns, int64_t cpu_ns, int64_t work = -1);

  // Another process sharing this one's probes took `site` off (probed
  // false) or put it back: so did this one, by the readings given (taken
  // before the detach, after the attach). Off, it is estimated like a
  // site of its own, and comes back only by Follow. Nothing happens for a
  // site this budget has not seen: it has no rate to estimate from.
  void Follow(uint64_t site, bool probed, int64_t now_ns, int64_t cpu_ns, int64_t work = -1);
  // The site's owner went away: this budget decides from now on, and puts
  // it back at its next tick with budget to spare.
  void Adopt(uint64_t site, int64_t now_ns);
  // Whether `site` has been counted here.
  bool Knows(uint64_t site) const { return sites_.contains(site); }
  // The sites off by this budget's own choice (not followed).
  std::vector<uint64_t> OwnedOff() const;
  // Sites on here, and sites off because another process took them off.
  std::vector<uint64_t> SitesOn() const;
  std::vector<uint64_t> FollowedOff() const;

  // Estimated creations missed while off, by site, until now.
  absl::flat_hash_map<uint64_t, double> Missed(int64_t now_ns, int64_t cpu_ns,
                                               int64_t work = -1) const;
  bool off(uint64_t site) const;

  struct Stats {
    uint64_t detaches = 0, reattaches = 0;
    double spent_ns = 0;  // charged to the target: hits x hit cost
    size_t sites_off_now = 0, sites_ever_off = 0;
    // Off periods estimated from allocations, and from CPU or wall time.
    uint64_t by_work = 0, by_time = 0;
  };
  Stats stats() const;

 private:
  struct Site {
    uint64_t tick_hits = 0;
    bool off = false;
    bool ever_off = false;
    uint32_t times_off = 0;  // detaches that took
    bool probation = false;  // back on, not yet calm for a back-off
    int64_t backoff_ns = 0;
    int64_t back_at_ns = 0;   // when off: when it comes back
    int64_t on_since_ns = 0;  // when on: since when
    int64_t hold_until_ns = 0;  // a detach failed: not tried again before
    // The rate window while on: hits and the target's CPU, wall time and
    // work since its start (work < 0: unknown); `prev_*` the window before
    // (when this one is short).
    uint64_t win_hits = 0, prev_hits = 0;
    int64_t win_cpu0 = 0, win_wall0 = 0, prev_cpu = 0, prev_wall = 0;
    int64_t win_work0 = -1, prev_work = -1;
    // Hits since the work window's start (a new site's starts a tick later).
    uint64_t win_work_hits = 0, prev_work_hits = 0;
    int64_t work_since_ns = 0;  // when win_work0 was read
    int64_t prev_work_since_ns = 0;  // and the window before's start
    // The last windows closed by take-offs in this episode, whose late
    // hits still count: a reader behind the ring (a busy agent, a sanitizer
    // build) delivers them up to seconds later, after the next take-off.
    struct Closed {
      int64_t t0 = -1, t1 = -1;  // t1 -1: none
      bool first = false;        // the episode's first window
    };
    static constexpr size_t kClosedKept = 4;
    Closed closed[kClosedKept];
    uint32_t closed_next = 0;
    bool fresh = false;  // counted since the last tick, first time
    bool deferred = false;  // kept on for a clean work window
    // Its judgment on probation or deferred: hits since it began.
    uint64_t judge_hits = 0;
    int64_t judge_since_ns = 0;
    bool followed = false;  // off because another process sharing it took it off
    // While off: the rate (creations per ns of CPU, or of wall time) and
    // the off period's start.
    double rate = 0;
    bool rate_per_cpu = true;
    int64_t off_cpu0 = 0, off_wall0 = 0, off_work0 = -1;
    int64_t off_end_work = -1;  // the reading that ended the last off period
    // The last off period, by the clock of hits: from the reading that
    // took it off to the one after its re-attach took (INT64_MAX while
    // off; off_since -1: none).
    int64_t off_since_ns = -1, off_until_ns = -1;
    double missed = 0;  // episodes before the current one
    // The current episode (off periods in a row, see TakeOff): hits and
    // work of its windows on, work of its closed off periods, and what time
    // estimates for those periods (used when the work is unknown).
    double ep_first_hits = 0, ep_first_work = 0;  // its first window on
    double ep_hits = 0, ep_work = 0;              // the later ones
    double ep_off_work = 0, ep_time_missed = 0;
    double ep_off_hits = 0;  // hits seen in its off periods (Count)
    bool ep_by_work = false;
    uint32_t ep_periods = 0;
    uint32_t periods_by_work = 0, periods_by_time = 0;  // earlier episodes
  };
  void TakeOff(Site& s, int64_t now_ns, int64_t cpu_ns, int64_t work);
  // The closed window a late hit at ts_ns belongs to, if any is kept.
  static const Site::Closed* ClosedWindowOf(const Site& s, int64_t ts_ns);
  void PutBack(Site& s, int64_t now_ns, int64_t cpu_ns, int64_t work);
  // The time-based estimate of the open off period.
  double OpenTimeMissed(const Site& s, int64_t now_ns, int64_t cpu_ns) const;
  // The current episode's estimate, its open off period included.
  double EpisodeMissed(const Site& s, int64_t now_ns, int64_t cpu_ns, int64_t work) const;
  // Whether the current episode is priced by work.
  static bool ByWork(const Site& s) {
    return s.ep_by_work && (s.ep_work > 0 || s.ep_first_work > 0);
  }

  BudgetOptions options_;
  double hit_cost_ns_;
  double tokens_;  // ns of target CPU the probes may still spend
  int64_t last_ns_, last_cpu_ns_, last_work_;  // the last tick's readings
  bool cpu_known_;
  absl::flat_hash_map<uint64_t, Site> sites_;
  Stats stats_;
};

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_RECORD_OVERHEAD_BUDGET_H_
