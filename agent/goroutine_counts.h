// `agent --goroutines=sample`: goerrprof_goroutines{binary, state,
// wait_reason}, the goroutines of the attached processes by state, from
// outside snapshots (goroutines/goroutine_snapshot.h: memory reads, no
// probe, nothing stopped). Taken when /metrics is scraped, at most once per
// kMinInterval, within kBudget of reading per refresh (the processes not
// reached keep their last counts and come first next time), so a scrape
// stays cheap whatever the node runs.
#ifndef GOERRPROF_AGENT_GOROUTINE_COUNTS_H_
#define GOERRPROF_AGENT_GOROUTINE_COUNTS_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <string>
#include <tuple>

#include "absl/time/time.h"
#include "record/recorder.h"

namespace goerrprof::profiler {

class GoroutineCounts {
 public:
  static constexpr absl::Duration kMinInterval = absl::Seconds(5);
  static constexpr absl::Duration kBudget = absl::Milliseconds(500);

  // Snapshots the live processes of `rec` when kMinInterval has passed
  // since the last refresh (or `force`); forgets processes no longer live.
  void Refresh(const Recorder& rec, bool force = false);
  // goerrprof_goroutines, goerrprof_goroutine_snapshots_total and
  // goerrprof_goroutine_snapshots_failed_total, HELP and TYPE first.
  void Render(std::string* out) const;

 private:
  // (state, wait reason): state is "running", "runnable", "syscall",
  // "waiting", ...; the wait reason only for waiting goroutines.
  using Counts = std::map<std::pair<std::string, std::string>, uint64_t>;
  struct Process {
    std::string binary;  // base name, as goerrprof_errors_total has it
    Counts counts;
    absl::Time taken = absl::InfinitePast();
  };
  std::map<pid_t, Process> processes_;
  absl::Time last_ = absl::InfinitePast();
  uint64_t snapshots_ = 0, failed_ = 0;
};

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_AGENT_GOROUTINE_COUNTS_H_
