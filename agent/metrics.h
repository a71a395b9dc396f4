// The agent's /metrics page, in Prometheus' text exposition format 0.0.4.
// Error counts are named as `goerrprof diff` names sites (function, origin,
// type: diff/profile_diff.h), summed over the processes of one executable
// base name, with a bounded number of series per binary.
#ifndef GOERRPROF_AGENT_METRICS_H_
#define GOERRPROF_AGENT_METRICS_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "agent/agent.h"
#include "agent/goroutine_counts.h"
#include "agent/otlp_exporter.h"

namespace goerrprof::profiler {

// A label value escaped for the text format: \ " and newline.
std::string EscapeLabelValue(absl::string_view v);

class ErrorMetrics {
 public:
  // At most max_sites series per binary; the sites past them (first seen
  // last) are summed in one series labelled "other". With `panics`, the
  // same for panics (goerrprof_panics_total, by panic_type) instead of
  // errors.
  explicit ErrorMetrics(size_t max_sites, bool panics = false)
      : max_sites_(max_sites), panics_(panics) {}

  // Recounts from the recorder's profile when it changed since last time.
  // A series never decreases (Prometheus counters), and a site that got a
  // series keeps it, so "other" only ever grows too.
  absl::Status Update(const Recorder& rec);
  // Keeps the counts of processes the recorder forgot (EvictClosed) in
  // their series, so the series stay exact without them. Call it with
  // every eviction's result, before the next Update.
  absl::Status Fold(const Recorder::Evicted& gone);
  // goerrprof_errors_total's (or goerrprof_panics_total's) lines, HELP and
  // TYPE first.
  void Render(std::string* out) const;

 private:
  struct SiteLabels {
    std::string function, origin, type;
    auto operator<=>(const SiteLabels&) const = default;
  };
  using SiteCounts = std::map<SiteLabels, uint64_t>;
  struct Binary {
    SiteCounts sites;  // the admitted series, as last rendered
    uint64_t other = 0;
    // Of evicted processes: by admitted series, and the rest ("other").
    // A series is what is folded here plus what live processes have.
    SiteCounts gone;
    uint64_t gone_other = 0;
  };
  // One sample to count: its key, its process (an index into the
  // processes given with it) and its count.
  struct Counted {
    const SampleKey* key;
    size_t process;
    uint64_t count;
  };
  struct Process {
    const ExecutablePlan* plan;
    pid_t pid;
  };
  // Errors (or only panics) by binary base name and site, named as diff does.
  absl::StatusOr<std::map<std::string, SiteCounts>> CountSites(
      const std::vector<Counted>& samples, const std::vector<Process>& processes) const;
  size_t max_sites_;
  bool panics_;
  // What the profile was at the last recount.
  std::tuple<uint64_t, uint64_t, size_t> seen_{~uint64_t{0}, 0, 0};
  std::map<std::string, Binary> binaries_;
};

// The whole page: errors, process statuses, probes, drops, the profile
// windows open (/debug/pprof/errors) and the agent's own CPU time and
// resident memory; with `otlp`, its pushes by outcome; with `goroutines`,
// the goroutine counts (as last refreshed).
std::string RenderMetrics(const Agent& agent, const ErrorMetrics& errors,
                          const ErrorMetrics& panics, size_t windows,
                          const OtlpExporter* otlp = nullptr,
                          const GoroutineCounts* goroutines = nullptr);

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_AGENT_METRICS_H_
