#include "agent/goroutine_counts.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/metrics.h"
#include "goabi/g_layout.h"
#include "goroutines/goroutine_snapshot.h"

namespace goerrprof::profiler {

void GoroutineCounts::Refresh(const Recorder& rec, bool force) {
  const absl::Time now = absl::Now();
  if (!force && now - last_ < kMinInterval) return;
  last_ = now;
  const std::vector<Recorder::TracedProcess> traced = rec.traced();  // a copy: held here
  std::map<pid_t, const Recorder::TracedProcess*> live;
  for (const Recorder::TracedProcess& t : traced) {
    if (t.live) live[t.pid] = &t;
  }
  for (auto it = processes_.begin(); it != processes_.end();) {
    it = live.contains(it->first) ? std::next(it) : processes_.erase(it);
  }
  // The stalest first, so a budget cut reaches the others next time.
  std::vector<std::pair<absl::Time, pid_t>> order;
  for (const auto& [pid, t] : live) {
    auto p = processes_.find(pid);
    order.emplace_back(p == processes_.end() ? absl::InfinitePast() : p->second.taken, pid);
  }
  std::sort(order.begin(), order.end());
  for (const auto& [when, pid] : order) {
    if (absl::Now() - now >= kBudget) break;
    const ExecutablePlan& plan = *live[pid]->plan;
    auto layout = goabi::GLayoutFor(plan.binary->version());
    SnapshotOptions options;
    options.threads = 1;  // the agent's own cost stays one core at most
    auto snap = layout.ok() ? TakeSnapshot(pid, *plan.binary, options)
                            : absl::StatusOr<Snapshot>(layout.status());
    ++snapshots_;
    if (!snap.ok()) {
      ++failed_;
      continue;  // the last counts stand (or none); an exited one goes next time
    }
    Process& p = processes_[pid];
    p.binary = plan.path.substr(plan.path.rfind('/') + 1);
    p.taken = now;
    p.counts.clear();
    for (const Goroutine& g : snap->goroutines) {
      std::string state(layout->StatusName(g.status));
      if (state.empty()) state = absl::StrCat("status ", g.status);
      ++p.counts[{state, std::string(g.wait_reason)}];
    }
  }
}

void GoroutineCounts::Render(std::string* out) const {
  std::map<std::tuple<std::string, std::string, std::string>, uint64_t> sums;
  for (const auto& [pid, p] : processes_) {
    for (const auto& [key, n] : p.counts) sums[{p.binary, key.first, key.second}] += n;
  }
  absl::StrAppend(out,
                  "# HELP goerrprof_goroutines Goroutines of the attached processes (system ones "
                  "left out) by state and wait reason, summed by binary, from the last outside "
                  "snapshot of each.\n# TYPE goerrprof_goroutines gauge\n");
  for (const auto& [key, n] : sums) {
    absl::StrAppend(out, "goerrprof_goroutines{binary=\"", EscapeLabelValue(std::get<0>(key)),
                    "\",state=\"", EscapeLabelValue(std::get<1>(key)), "\",wait_reason=\"",
                    EscapeLabelValue(std::get<2>(key)), "\"} ", n, "\n");
  }
  absl::StrAppend(out,
                  "# HELP goerrprof_goroutine_snapshots_total Outside goroutine snapshots taken "
                  "for goerrprof_goroutines.\n# TYPE goerrprof_goroutine_snapshots_total counter\n"
                  "goerrprof_goroutine_snapshots_total ", snapshots_, "\n",
                  "# HELP goerrprof_goroutine_snapshots_failed_total Of those, the ones that "
                  "failed (the process exited meanwhile, or its memory was unreadable).\n"
                  "# TYPE goerrprof_goroutine_snapshots_failed_total counter\n"
                  "goerrprof_goroutine_snapshots_failed_total ", failed_, "\n");
}

}  // namespace goerrprof::profiler
