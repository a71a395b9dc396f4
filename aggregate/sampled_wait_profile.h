// Sampled goroutine waits (`record --goroutines=sample`): the blocked-time
// profile built from periodic outside snapshots instead of park uprobes.
// Every goroutine seen waiting in a snapshot adds one sample, worth one
// period (1/hz) of blocked time, to its (stack, wait reason) key. Goroutines
// parked before the recording started are counted like the others; those
// that never wait cost nothing. WaitSampleAggregator knows nothing of
// processes: it is fed Snapshot structs (tests feed synthetic ones).
//
// The profile (gzipped profile.proto, opens with `go tool pprof`):
//   sample types  samples/count, blocked/nanoseconds (default; samples x
//                 period); period type blocked/nanoseconds, period 1/hz
//   samples       stack = the waiting goroutine's (runtime.gopark first);
//                 every PC is a return address (the first one is where
//                 mcall returns in gopark), so locations are at pc-1;
//                 label goroutine.wait_reason (the runtime's words)
//   comments      mode=sample hz=N snapshots=N snapshots_failed=N
//                 torn_skipped=N waiting_samples=N keys=N other_samples=N
// Distinct keys are capped (Options::max_keys): samples of new stacks past
// the cap go to one sample per wait reason whose only frame is "<other>",
// counted in other_samples.
#ifndef GOERRPROF_AGGREGATE_SAMPLED_WAIT_PROFILE_H_
#define GOERRPROF_AGGREGATE_SAMPLED_WAIT_PROFILE_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "github.com/google/pprof/proto/profile.pb.h"
#include "goroutines/goroutine_snapshot.h"
#include "symbolizer/go_binary.h"

namespace goerrprof::profiler {

// The frame standing in for the stacks past the key cap.
inline constexpr char kOtherStack[] = "<other>";

struct WaitSampleTotals {
  uint64_t snapshots = 0;         // taken and aggregated
  uint64_t snapshots_failed = 0;  // could not be read (the target exited, ...)
  uint64_t torn_skipped = 0;      // goroutines skipped as torn, summed over snapshots
  uint64_t waiting_samples = 0;   // waiting goroutines seen, summed over snapshots
  uint64_t other_samples = 0;     // of those, past the key cap
};

class WaitSampleAggregator {
 public:
  struct Options {
    int64_t period_ns = 1000000000 / 19;  // what one sample is worth
    size_t max_keys = 20000;              // distinct (stack, wait reason) keys
  };
  explicit WaitSampleAggregator(Options options) : options_(options) {}

  // One sample for every waiting goroutine (wait_reason set) of `snap`.
  void Add(const Snapshot& snap);
  // A snapshot that could not be taken.
  void AddFailure() { ++totals_.snapshots_failed; }

  struct Key {
    std::vector<uint64_t> stack;  // empty: past the cap (kOtherStack)
    std::string wait_reason;
    template <typename H>
    friend H AbslHashValue(H h, const Key& k) {
      return H::combine(std::move(h), k.stack, k.wait_reason);
    }
    bool operator==(const Key&) const = default;
  };
  const absl::flat_hash_map<Key, uint64_t>& samples() const { return samples_; }
  const WaitSampleTotals& totals() const { return totals_; }
  const Options& options() const { return options_; }

 private:
  Options options_;
  absl::flat_hash_map<Key, uint64_t> samples_;
  size_t other_keys_ = 0;  // keys of samples_ that are <other> buckets
  WaitSampleTotals totals_;
};

struct SampledWaitInfo {
  std::string binary_path;  // Mapping filename; empty: the binary's own path
  int64_t pid = 0;
  int hz = 19;
  int64_t time_nanos = 0;  // wall-clock start
  int64_t duration_nanos = 0;
};

absl::StatusOr<perftools::profiles::Profile> BuildSampledWaitProfile(
    const WaitSampleAggregator& agg, const symbolizer::GoBinary& binary,
    const SampledWaitInfo& info);

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_AGGREGATE_SAMPLED_WAIT_PROFILE_H_
