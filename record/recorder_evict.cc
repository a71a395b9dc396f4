// The Recorder's eviction: a long-running caller (goerrprof agent) forgets
// processes that exited, so its memory follows the processes alive, not
// every process it ever attached.
#include <algorithm>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "record/recorder.h"

namespace goerrprof::profiler {

Recorder::Evicted Recorder::EvictClosed() {
  Evicted out;
  out.renumber.resize(processes_.size(), ErrorProfile::kRemoved);
  uint32_t next = 0;
  for (size_t i = 0; i < processes_.size(); ++i) {
    Traced& t = processes_[i];
    if (t.session) {
      out.renumber[i] = next++;
      continue;
    }
    // Closed: drained and detached (Close), so nothing more can come.
    out.processes.push_back({t.pid, t.plan, static_cast<uint32_t>(i)});
    for (int k = 0; k < GEP_CTR__COUNT; ++k) evicted_counters_.bpf[k] += t.final_counters.bpf[k];
    evicted_counters_.decode_errors += t.final_counters.decode_errors;
    evicted_counters_.delivered += t.final_counters.delivered;
    evicted_budget_.detaches += t.budget_stats.detaches;
    evicted_budget_.reattaches += t.budget_stats.reattaches;
    evicted_budget_.spent_ns += t.budget_stats.spent_ns;
    evicted_budget_.sites_ever_off += t.budget_stats.sites_ever_off;
    evicted_budget_.by_work += t.budget_stats.by_work;
    evicted_budget_.by_time += t.budget_stats.by_time;
  }
  if (out.processes.empty()) return out;
  out.samples = profile_.RemoveProcesses(out.renumber);
  evicted_ += out.processes.size();
  processes_.erase(std::remove_if(processes_.begin(), processes_.end(),
                                  [](const Traced& t) { return t.session == nullptr; }),
                   processes_.end());
  DropIdlePlans();
  return out;
}

void Recorder::DropIdlePlans() {
  absl::flat_hash_set<const ExecutablePlan*> running;
  for (const Traced& t : processes_) running.insert(t.plan.get());
  std::vector<std::pair<uint64_t, std::string>> idle;  // (last used, key)
  for (const auto& [key, entry] : plans_) {
    if (!running.contains(entry.plan.get())) idle.emplace_back(entry.used, key);
  }
  if (idle.size() <= kMaxIdlePlans) return;
  // The least recently used go; a plan still held elsewhere (a profile
  // window's processes) lives on there and is freed with it.
  std::sort(idle.begin(), idle.end());
  for (size_t i = 0; i + kMaxIdlePlans < idle.size(); ++i) plans_.erase(idle[i].second);
}

}  // namespace goerrprof::profiler
