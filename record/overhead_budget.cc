#include "record/overhead_budget.h"

#include <algorithm>
#include <limits>
#include <utility>

namespace goerrprof::profiler {

OverheadBudget::OverheadBudget(BudgetOptions options, double hit_cost_ns, int64_t now_ns,
                               int64_t cpu_ns, int64_t work)
    : options_(options),
      hit_cost_ns_(hit_cost_ns),
      tokens_(options.cpu_fraction * static_cast<double>(options.burst_ns)),
      last_ns_(now_ns),
      last_cpu_ns_(cpu_ns),
      last_work_(work),
      cpu_known_(cpu_ns >= 0) {}

bool OverheadBudget::NeedsWork(int64_t now_ns) const {
  if (options_.cpu_fraction <= 0) return false;
  for (const auto& [site, s] : sites_) {
    // Hits to charge (a take-off, a window's start); a site of its own off
    // (a recent count for its off period, whenever it ends: the process's
    // exit leaves none to read); a site on probation whose window rolls
    // (its next window's start). A followed site's readings are taken when
    // it changes (Follow).
    if (s.tick_hits > 0 || s.deferred) return true;
    if (s.off && !s.followed) return true;
    if (!s.off && s.probation && now_ns - s.win_wall0 >= options_.window_ns) return true;
  }
  return false;
}

bool OverheadBudget::HasHits() const {
  for (const auto& [site, s] : sites_) {
    if (s.tick_hits > 0) return true;
  }
  return false;
}

bool OverheadBudget::Watching() const {
  // A site back on is watched this long: a storm still going shows in its
  // first millisecond; one that starts later waits for a normal tick.
  constexpr int64_t kWatchNs = 50000000;
  if (options_.cpu_fraction <= 0) return false;
  for (const auto& [site, s] : sites_) {
    if (s.off) continue;
    if (s.deferred || (s.probation && last_ns_ - s.on_since_ns < kWatchNs)) return true;
  }
  return false;
}

void OverheadBudget::Count(uint64_t site, uint64_t n, int64_t ts_ns) {
  auto [it, fresh] = sites_.try_emplace(site);
  Site& s = it->second;
  if (fresh) {
    // Its hits came after the last tick: its first window starts there
    // (not at the process's start, which for an old process would make
    // hours of work look like this site's). Its work window starts at the
    // end of this tick: the work before its first hit in this one is not
    // its own.
    s.win_wall0 = last_ns_;
    s.win_cpu0 = cpu_known_ ? last_cpu_ns_ : 0;
    s.fresh = true;
  }
  s.tick_hits += n;
  s.win_hits += n;
  if (ts_ns < 0) {
    s.win_work_hits += n;
    return;
  }
  // By when they happened, not when they arrived: a reader behind the
  // ring delivers a window's last hits after it closed, and hits from
  // before it began inside it.
  if (!s.off && s.win_work0 >= 0 && ts_ns >= s.work_since_ns) {
    s.win_work_hits += n;
  } else if (!s.off && s.prev_work >= 0 && ts_ns >= s.prev_work_since_ns &&
             ts_ns < s.work_since_ns) {
    s.prev_work_hits += n;
  } else if (const Site::Closed* c = ClosedWindowOf(s, ts_ns)) {
    (c->first ? s.ep_first_hits : s.ep_hits) += static_cast<double>(n);
  } else if (s.off_since_ns >= 0 && ts_ns >= s.off_since_ns && ts_ns < s.off_until_ns) {
    // Seen inside an off period (before the detach took, after the attach
    // did): already in the profile, so not estimated as well.
    s.ep_off_hits += static_cast<double>(n);
  }
}

const OverheadBudget::Site::Closed* OverheadBudget::ClosedWindowOf(const Site& s,
                                                                   int64_t ts_ns) {
  for (const Site::Closed& c : s.closed) {
    if (c.t1 >= 0 && ts_ns >= c.t0 && ts_ns < c.t1) return &c;
  }
  return nullptr;
}

bool OverheadBudget::off(uint64_t site) const {
  auto it = sites_.find(site);
  return it != sites_.end() && it->second.off;
}

void OverheadBudget::TakeOff(Site& s, int64_t now_ns, int64_t cpu_ns, int64_t work) {
  // The rate: this window when it holds enough hits, else with the one before.
  const bool short_window = s.win_hits < 32;
  double hits = static_cast<double>(s.win_hits);
  double cpu = cpu_known_ ? static_cast<double>(cpu_ns - s.win_cpu0) : 0;
  double wall = static_cast<double>(now_ns - s.win_wall0);
  bool work_known = work >= 0 && s.win_work0 >= 0 && work >= s.win_work0;
  double work_done = work_known ? static_cast<double>(work - s.win_work0) : 0;
  double work_hits = static_cast<double>(s.win_work_hits);
  int64_t work_t0 = s.work_since_ns;
  if (short_window) {
    hits += static_cast<double>(s.prev_hits);
    cpu += static_cast<double>(s.prev_cpu);
    wall += static_cast<double>(s.prev_wall);
    if (s.prev_work >= 0) {
      work_done += static_cast<double>(s.prev_work);
      work_hits += static_cast<double>(s.prev_work_hits);
      work_t0 = s.prev_work_since_ns;
    }
  }
  work_known = work_known && work_done > 0;
  s.rate_per_cpu = cpu_known_ && cpu > 0;
  if (s.rate_per_cpu) {
    // The target's own work: its CPU time less the traps it paid, at least
    // a twentieth of it (a hit cost measured a little high must not make
    // the work, and the estimate, explode).
    double own = std::max(cpu - hits * hit_cost_ns_, cpu / 20);
    s.rate = hits / own;
  } else {
    s.rate = wall > 0 ? hits / wall : 0;
  }
  // Back-off: doubled when it had to go again soon after coming back.
  bool again = s.ever_off && now_ns - s.on_since_ns < 2 * s.backoff_ns;
  s.backoff_ns = again ? std::min(2 * s.backoff_ns, options_.max_backoff_ns)
                       : options_.min_backoff_ns;
  // An episode is the off periods of one storm: a site that goes again
  // soon after coming back continues it; otherwise the last one's estimate
  // is final and a new one starts.
  if (!again) {
    s.missed += EpisodeMissed(s, now_ns, cpu_ns, work);
    (ByWork(s) ? s.periods_by_work : s.periods_by_time) += s.ep_periods;
    s.ep_hits = s.ep_work = s.ep_first_hits = s.ep_first_work = 0;
    s.ep_off_work = s.ep_time_missed = s.ep_off_hits = 0;
    s.ep_periods = 0;
    s.ep_by_work = true;
    for (Site::Closed& c : s.closed) c = Site::Closed{};  // the old episode's are final
  }
  // The window just closed, for its hits still to arrive (see Count).
  s.closed[s.closed_next++ % Site::kClosedKept] =
      Site::Closed{work_t0, work_known ? now_ns : -1, s.ep_periods == 0};
  // The first window began before the storm did (at a tick, or a window's
  // roll), so it holds work of another kind; later ones, from a re-attach
  // in mid-storm, hold the storm alone and price it when there are any. A
  // window whose work is unknown (no reading at its start) adds nothing.
  if (work_known && s.ep_periods == 0) {
    s.ep_first_hits = work_hits;
    s.ep_first_work = work_done;
  } else if (work_known) {
    s.ep_hits += work_hits;
    s.ep_work += work_done;
  }
  ++s.ep_periods;
  s.back_at_ns = now_ns + s.backoff_ns;
  s.off = true;
  s.ever_off = true;
  ++s.times_off;
  s.probation = false;
  s.deferred = false;
  // The off period starts at this reading, not when the detach took: a
  // detach takes effect before it returns (a uprobe is gone, then RCU is
  // waited for), and the storm runs untrapped, fast, in between. The hits
  // seen meanwhile are subtracted (Count).
  s.off_cpu0 = cpu_ns;
  s.off_wall0 = now_ns;
  s.off_work0 = work;
  s.off_since_ns = now_ns;
  s.off_until_ns = std::numeric_limits<int64_t>::max();
  ++stats_.detaches;
}

double OverheadBudget::OpenTimeMissed(const Site& s, int64_t now_ns, int64_t cpu_ns) const {
  if (!s.off) return 0;
  double span = s.rate_per_cpu ? static_cast<double>(cpu_ns - s.off_cpu0)
                               : static_cast<double>(now_ns - s.off_wall0);
  return std::max(0.0, span) * s.rate;
}

double OverheadBudget::EpisodeMissed(const Site& s, int64_t now_ns, int64_t cpu_ns,
                                     int64_t work) const {
  const bool open_known = !s.off || (work >= 0 && s.off_work0 >= 0 && work >= s.off_work0);
  const bool later = s.ep_work > 0;
  double total;
  if (s.ep_by_work && open_known && (later || s.ep_first_work > 0)) {
    double off_work = s.ep_off_work;
    if (s.off) off_work += static_cast<double>(work - s.off_work0);
    total = later ? s.ep_hits / s.ep_work * off_work : s.ep_first_hits / s.ep_first_work * off_work;
  } else {
    total = s.ep_time_missed + OpenTimeMissed(s, now_ns, cpu_ns);
  }
  // The creations of its off periods less those seen in them.
  return std::max(0.0, total - s.ep_off_hits);
}

void OverheadBudget::PutBack(Site& s, int64_t now_ns, int64_t cpu_ns, int64_t work) {
  s.ep_time_missed += OpenTimeMissed(s, now_ns, cpu_ns);
  if (work >= 0 && s.off_work0 >= 0 && work >= s.off_work0) {
    s.ep_off_work += static_cast<double>(work - s.off_work0);
  } else {
    s.ep_by_work = false;
  }
  s.off_end_work = work;
  s.off = false;
  s.probation = true;
  s.on_since_ns = now_ns;
  s.judge_hits = 0;
  s.judge_since_ns = now_ns;
  s.win_hits = s.prev_hits = s.win_work_hits = s.prev_work_hits = 0;
  s.prev_cpu = s.prev_wall = 0;
  s.prev_work = -1;
  s.win_cpu0 = cpu_ns;
  s.win_wall0 = now_ns;
  s.win_work0 = work;
  s.work_since_ns = now_ns;
  s.off_until_ns = now_ns;  // until Applied says when the attach took
  ++stats_.reattaches;
}

std::vector<OverheadBudget::Action> OverheadBudget::Tick(int64_t now_ns, int64_t cpu_ns,
                                                        int64_t work) {
  std::vector<Action> actions;
  if (options_.cpu_fraction <= 0) {
    for (auto& [site, s] : sites_) s.tick_hits = 0;
    return actions;
  }
  const double dt = static_cast<double>(std::max<int64_t>(0, now_ns - last_ns_));
  const int64_t prev_tick_ns = last_ns_;
  last_ns_ = now_ns;
  last_cpu_ns_ = cpu_ns;
  if (work >= 0) last_work_ = work;  // Missed's fallback: the last count known
  const double refill = options_.cpu_fraction * dt;
  const double cap = options_.cpu_fraction * static_cast<double>(options_.burst_ns);
  tokens_ = std::min(cap, tokens_ + refill);

  std::vector<std::pair<uint64_t, uint64_t>> heavy;  // (hits this tick, site)
  double cost = 0, in_flight = 0;
  for (auto& [site, s] : sites_) {
    if (s.tick_hits == 0) continue;
    const double c = static_cast<double>(s.tick_hits) * hit_cost_ns_;
    // Events of a site already off were paid before it went: its debt,
    // forgiven with it.
    if (s.off) {
      in_flight += c;
      continue;
    }
    cost += c;
    heavy.emplace_back(s.tick_hits, site);
  }
  tokens_ -= cost;
  stats_.spent_ns += cost + in_flight;

  // A site's fair share of one tick: half the refill of at least 50 ms (a
  // tick that came early must not make one hit look like a storm).
  const double fair = options_.cpu_fraction * std::max(dt, 50e6) / 2;
  std::sort(heavy.begin(), heavy.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second < b.second;
  });
  double rest = cost;
  auto take_off = [&](uint64_t site, Site& s, uint64_t hits) {
    TakeOff(s, now_ns, cpu_ns, work);
    actions.push_back({site, false});
    rest -= static_cast<double>(hits) * hit_cost_ns_;
  };
  // A site back on probation goes again as soon as it costs more than its
  // share: its window on need only measure its rate, not spend the bucket.
  // So does a storm kept on for a clean window. Each is judged on its hits
  // since its judgment began, which lasts at least judge_ns, however short
  // the caller's ticks (a watched site's are short).
  for (const auto& [hits, site] : heavy) {
    Site& s = sites_[site];
    const bool waited = s.deferred && s.work_since_ns < now_ns;
    if (!s.probation && !waited) continue;
    s.judge_hits += hits;
    if (static_cast<double>(s.judge_hits) * hit_cost_ns_ > fair) take_off(site, s, hits);
  }
  if (tokens_ < 0) {
    // Off with the costliest sites of this tick until the rest would be
    // paid by the refill alone.
    for (const auto& [hits, site] : heavy) {
      if (rest <= fair) break;
      Site& s = sites_[site];
      if (s.off || now_ns < s.hold_until_ns) continue;  // a detach failed: not before its back-off
      if (s.deferred) continue;  // decided above
      if (work >= 0 && (s.win_work0 < 0 || s.work_since_ns < prev_tick_ns)) {
        // A storm's first tick over: its work window began before the
        // storm (or is unknown), so its rate would be of other work too.
        // One more tick on, from a window starting now, measures the storm
        // alone; the sites left on do not pay for it meanwhile.
        s.deferred = true;
        s.judge_hits = 0;
        s.judge_since_ns = now_ns;
        s.win_work0 = work;
        s.work_since_ns = now_ns;
        s.win_work_hits = 0;
        s.prev_work = -1;
        rest -= static_cast<double>(hits) * hit_cost_ns_;
        continue;
      }
      take_off(site, s, hits);
    }
  }
  // A judgment that has run its course: a storm kept on goes off if its
  // clean window cost more than the whole budget's rate; one that calmed
  // down meanwhile stays on, its debt forgiven all the same. A site on
  // probation starts its next judgment.
  bool calmed = false;
  for (auto& [site, s] : sites_) {
    if (s.off || !(s.probation || s.deferred) || s.judge_since_ns + options_.judge_ns > now_ns) {
      continue;
    }
    if (s.deferred && s.work_since_ns < now_ns) {
      const double span = static_cast<double>(now_ns - s.judge_since_ns);
      if (static_cast<double>(s.judge_hits) * hit_cost_ns_ > options_.cpu_fraction * span) {
        TakeOff(s, now_ns, cpu_ns, work);
        actions.push_back({site, false});
        continue;
      }
      s.deferred = false;
      calmed = true;
    }
    s.judge_hits = 0;
    s.judge_since_ns = now_ns;
  }
  if (!actions.empty() || calmed) {
    // The debt was the sites just taken off; the others are not made to
    // repay it (a calm site would go off for a storm elsewhere).
    tokens_ = std::max(tokens_, cap / 2);
  }
  if (actions.empty() && tokens_ >= 0) {
    // Back on, when due and there is budget to spend on them.
    std::vector<uint64_t> due;
    for (auto& [site, s] : sites_) {
      if (s.off && now_ns >= s.back_at_ns) due.push_back(site);
    }
    std::sort(due.begin(), due.end());
    for (uint64_t site : due) {
      PutBack(sites_[site], now_ns, cpu_ns, work);
      actions.push_back({site, true});
    }
  }

  for (auto& [site, s] : sites_) {
    s.tick_hits = 0;
    if (s.fresh) {
      s.fresh = false;
      if (!s.off && !s.deferred) {
        s.win_work0 = work;
        s.work_since_ns = now_ns;
        s.win_work_hits = 0;
      }
    }
    // Calm for a whole back-off since it came back: off probation.
    if (s.probation && now_ns - s.on_since_ns >= s.backoff_ns) s.probation = false;
    // Roll a site's rate window once it is full.
    if (!s.off && now_ns - s.win_wall0 >= options_.window_ns) {
      s.prev_hits = s.win_hits;
      s.prev_work_hits = s.win_work_hits;
      s.prev_work_since_ns = s.work_since_ns;
      s.prev_cpu = cpu_known_ ? cpu_ns - s.win_cpu0 : 0;
      s.prev_wall = now_ns - s.win_wall0;
      s.prev_work = work >= 0 && s.win_work0 >= 0 && work >= s.win_work0 ? work - s.win_work0 : -1;
      s.win_hits = s.win_work_hits = 0;
      s.win_cpu0 = cpu_ns;
      s.win_wall0 = now_ns;
      s.win_work0 = work;
      s.work_since_ns = now_ns;
    }
  }
  return actions;
}

void OverheadBudget::Applied(const Action& a, int64_t now_ns, int64_t cpu_ns, int64_t work) {
  auto it = sites_.find(a.site);
  if (it == sites_.end()) return;
  Site& s = it->second;
  if (a.probe && !s.off) {
    // Until the attach took, the site was still off.
    if (work >= 0 && s.off_end_work >= 0 && work >= s.off_end_work) {
      s.ep_off_work += static_cast<double>(work - s.off_end_work);
    }
    s.win_cpu0 = cpu_ns;
    s.win_wall0 = now_ns;
    s.win_work0 = work;
    s.work_since_ns = now_ns;
    s.win_work_hits = 0;
    s.off_until_ns = now_ns;
    s.judge_hits = 0;
    s.judge_since_ns = now_ns;
  }
  // A detach: its off period began at the tick's reading (TakeOff).
}

void OverheadBudget::Failed(const Action& a, int64_t now_ns, int64_t cpu_ns, int64_t work) {
  Site& s = sites_[a.site];
  if (a.probe) {
    // Still off: estimated on, retried after another back-off.
    s.off = true;
    s.probation = false;
    s.off_cpu0 = cpu_ns;
    s.off_wall0 = now_ns;
    s.off_work0 = work;
    s.off_until_ns = std::numeric_limits<int64_t>::max();
    s.back_at_ns = now_ns + s.backoff_ns;
    --stats_.reattaches;
  } else {
    s.off = false;
    s.off_since_ns = s.off_until_ns = -1;
    s.hold_until_ns = s.back_at_ns;
    s.ever_off = --s.times_off > 0;
    if (s.ep_periods > 0) --s.ep_periods;
    // Its window so far is in the episode already: a new one starts.
    s.win_work0 = work;
    s.work_since_ns = now_ns;
    s.win_work_hits = 0;
    s.prev_work = -1;
    s.on_since_ns = now_ns;
    --stats_.detaches;
  }
}

void OverheadBudget::Follow(uint64_t site, bool probed, int64_t now_ns, int64_t cpu_ns,
                            int64_t work) {
  auto it = sites_.find(site);
  if (it == sites_.end()) return;
  Site& s = it->second;
  if (!probed && !s.off) {
    TakeOff(s, now_ns, cpu_ns, work);
    s.followed = true;
    s.back_at_ns = std::numeric_limits<int64_t>::max();  // the owner decides
    --stats_.detaches;  // not this process's choice
  } else if (probed && s.off && s.followed) {
    // The readings are from after the attach took: the window on starts
    // there, and the site is not on probation here (it stormed elsewhere).
    PutBack(s, now_ns, cpu_ns, work);
    s.followed = false;
    s.probation = false;
    --stats_.reattaches;
  }
}

void OverheadBudget::Adopt(uint64_t site, int64_t now_ns) {
  auto [it, fresh] = sites_.try_emplace(site);
  Site& s = it->second;
  if (fresh) {
    // Never seen here: off with nothing to estimate; back at once.
    s.off = true;
    s.win_wall0 = last_ns_;
    s.win_cpu0 = cpu_known_ ? last_cpu_ns_ : 0;
    s.backoff_ns = options_.min_backoff_ns;
  }
  if (!s.off) return;
  s.followed = false;
  s.back_at_ns = now_ns;
}

std::vector<uint64_t> OverheadBudget::OwnedOff() const {
  std::vector<uint64_t> out;
  for (const auto& [site, s] : sites_) {
    if (s.off && !s.followed) out.push_back(site);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<uint64_t> OverheadBudget::SitesOn() const {
  std::vector<uint64_t> out;
  for (const auto& [site, s] : sites_) {
    if (!s.off) out.push_back(site);
  }
  return out;
}

std::vector<uint64_t> OverheadBudget::FollowedOff() const {
  std::vector<uint64_t> out;
  for (const auto& [site, s] : sites_) {
    if (s.off && s.followed) out.push_back(site);
  }
  return out;
}

absl::flat_hash_map<uint64_t, double> OverheadBudget::Missed(int64_t now_ns, int64_t cpu_ns,
                                                              int64_t work) const {
  // No reading now (a process just gone): the last tick's, at most a tick
  // old while any site is off.
  if (work < 0) work = last_work_;
  absl::flat_hash_map<uint64_t, double> out;
  for (const auto& [site, s] : sites_) {
    if (!s.ever_off) continue;
    out[site] = s.missed + EpisodeMissed(s, now_ns, cpu_ns, work);
  }
  return out;
}

OverheadBudget::Stats OverheadBudget::stats() const {
  Stats st = stats_;
  for (const auto& [site, s] : sites_) {
    st.sites_off_now += s.off;
    st.sites_ever_off += s.ever_off;
    const bool by_work = ByWork(s);
    st.by_work += s.periods_by_work + (by_work ? s.ep_periods : 0);
    st.by_time += s.periods_by_time + (by_work ? 0 : s.ep_periods);
  }
  return st;
}

}  // namespace goerrprof::profiler
