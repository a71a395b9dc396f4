// Plans cached on disk: planning a 50 MB binary takes most of a second,
// and `record -- go test` or an agent meets the same executables again and
// again. An entry holds what the error session loads (layouts and probe
// specs, panic probes included) and is keyed by the executable's build ID,
// or by its size and mtime when it has none. It is never trusted blindly:
// before use, the planner that wrote it must be this goerrprof, and the
// executable's size and a CRC-32 of its loaded segments must match; the
// entry and its directory must be this user's and writable by no one else;
// every probe must lie in a function and every enum be in range. Any
// failed check is a miss (with its reason), and the entry is replanned and
// rewritten.
#ifndef GOERRPROF_PLAN_PLAN_CACHE_H_
#define GOERRPROF_PLAN_PLAN_CACHE_H_

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "plan/layouts.h"
#include "symbolizer/go_binary.h"

namespace goerrprof::profiler {

struct CachedPlan {
  std::vector<ErrorLayout> layouts;
  std::vector<ProbeSpec> probes;
  size_t skipped = 0;
};

class PlanCache {
 public:
  // $XDG_CACHE_HOME/goerrprof/plans, or ~/.cache/goerrprof/plans.
  static std::string DefaultDir();
  // An empty dir disables the cache.
  explicit PlanCache(std::string dir) : dir_(std::move(dir)) {}

  bool enabled() const { return !dir_.empty(); }
  // The entry's file for `bin`.
  std::string PathFor(const symbolizer::GoBinary& bin) const;
  // The cached plan for `bin`, or nullopt with *miss saying why ("absent",
  // "corrupt", "executable changed", …).
  std::optional<CachedPlan> Load(const symbolizer::GoBinary& bin, std::string* miss) const;
  // Writes the entry atomically (a temporary file renamed over it).
  absl::Status Store(const symbolizer::GoBinary& bin, const CachedPlan& plan) const;

 private:
  std::string dir_;
};

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_PLAN_PLAN_CACHE_H_
