// Park tracing's aggregation and its pprof profile. ParkAggregator pairs
// the probes' records per goroutine (park -> optional wakeup -> resume) and
// sums blocked time per park stack, wait reason, waker and park state.
// It knows nothing of BPF: records come in decoded, with PCs as file
// virtual addresses, so it is testable on its own.
//
// The profile (gzipped profile.proto, opens with `go tool pprof`):
//   sample types  parks/count, blocked/nanoseconds (default),
//                 runnable/nanoseconds, wakeups/count
//   park samples  stack = where the goroutine parked (gopark first), values
//                 [parks, blocked, runnable, 0], labels
//                   goroutine.wait_reason  the runtime's words ("chan receive")
//                   goroutine.waker        function that woke it: the first
//                                          frame of the waker's stack outside
//                                          runtime, sync and internal/*, else
//                                          the first past the wakeup plumbing
//                                          (runtime.goroutineReady: a timer);
//                                          "(none)" when no runtime.ready ran
//                                          (netpoll, the park was undone, or
//                                          its record was dropped: counted)
//                   goroutine.park_state   resumed | still_parked (open when
//                                          tracing stopped: counted until the
//                                          stop) | parked_before_start (resumed,
//                                          counted from the start)
//   runnable is the part of blocked after the wakeup (runtime.ready) until
//   the goroutine ran again: the scheduler's delay.
//   wakeup samples stack = the waker's stack, values [0, 0, 0, wakeups], labels
//                   goroutine.wait_reason of the woken park, goroutine.woken
//                   (the woken park's first frame outside runtime/sync/internal)
// Non-leaf PCs are return addresses: their locations are at pc-1.
#ifndef GOERRPROF_AGGREGATE_PARK_PROFILE_H_
#define GOERRPROF_AGGREGATE_PARK_PROFILE_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "github.com/google/pprof/proto/profile.pb.h"
#include "goabi/g_layout.h"
#include "symbolizer/go_binary.h"

namespace goerrprof::profiler {

enum class ParkState { kResumed, kStillParked, kParkedBeforeStart };
absl::string_view ParkStateName(ParkState s);

// One decoded probe record; PCs are file virtual addresses.
struct ParkRecord {
  enum Kind { kPark, kResume, kReady } kind = kPark;
  uint64_t ts_ns = 0;  // CLOCK_MONOTONIC
  uint64_t goid = 0;
  // kResume: park time the probe remembered (0: parked before start).
  // kReady: the waker's goid (0: the scheduler).
  uint64_t other = 0;
  uint8_t wait_reason = 0;
  bool untracked = false;  // kResume without a remembered park
  // Every PC is a return address, the first too (a waker's stack taken
  // from curg.sched.bp); else the first is where execution is.
  bool all_returns = false;
  std::vector<uint64_t> stack;
};

struct ParkTotals {
  uint64_t parks = 0;            // park records
  uint64_t resumes = 0;          // paired with their park
  uint64_t wakeups = 0;          // ready records
  uint64_t resumed_before_start = 0;  // goroutines parked before tracing
  uint64_t lost_parks = 0;       // resume whose park record was lost
  uint64_t lost_resumes = 0;     // a second park of a goroutine whose resume was lost
  uint64_t orphan_wakeups = 0;   // ready of a goroutine with no open park, never resumed
  uint64_t unknown_goid = 0;     // records whose goid could not be read
  uint64_t still_parked = 0;     // open at Close
};

class ParkAggregator {
 public:
  // `start_ns`: CLOCK_MONOTONIC time the probes went in (the lower bound of
  // goroutines parked before).
  ParkAggregator(const symbolizer::GoBinary& binary, const goabi::GLayout& layout,
                 uint64_t start_ns);

  void Add(const ParkRecord& r);
  // Closes every open park at stop_ns as still parked. Idempotent.
  void Close(uint64_t stop_ns);

  struct ParkKey {
    std::vector<uint64_t> stack;
    uint8_t wait_reason = 0;
    std::string waker;
    ParkState state = ParkState::kResumed;
    template <typename H>
    friend H AbslHashValue(H h, const ParkKey& k) {
      return H::combine(std::move(h), k.stack, k.wait_reason, k.waker, k.state);
    }
    bool operator==(const ParkKey&) const = default;
  };
  struct ParkValue {
    uint64_t parks = 0;
    uint64_t blocked_ns = 0;
    uint64_t runnable_ns = 0;  // from the wakeup to the resume
  };
  struct WakeKey {
    std::vector<uint64_t> stack;
    bool all_returns = false;  // see ParkRecord
    uint8_t wait_reason = 0;
    std::string woken;
    template <typename H>
    friend H AbslHashValue(H h, const WakeKey& k) {
      return H::combine(std::move(h), k.stack, k.all_returns, k.wait_reason, k.woken);
    }
    bool operator==(const WakeKey&) const = default;
  };

  const absl::flat_hash_map<ParkKey, ParkValue>& parks() const { return parks_; }
  const absl::flat_hash_map<WakeKey, uint64_t>& wakeups() const { return wakeups_; }
  const ParkTotals& totals() const { return totals_; }
  size_t open_parks() const { return open_.size(); }
  std::string_view WaitReason(uint8_t r) const { return layout_.WaitReason(r); }

  // The first frame outside runtime, sync and internal/* ("" if none).
  std::string UserFunction(const std::vector<uint64_t>& stack, bool all_returns = false);
  // UserFunction, else the first runtime frame past the wakeup plumbing
  // (runtime.goroutineReady for timers), else "(unknown)".
  std::string WakerFunction(const std::vector<uint64_t>& stack, bool all_returns);

 private:
  struct Waker {
    std::vector<uint64_t> stack;
    bool all_returns = false;
    std::string function;
    uint64_t ts_ns = 0;
  };
  struct Open {
    uint64_t ts_ns = 0;
    uint8_t wait_reason = 0;
    std::vector<uint64_t> stack;
    bool woken = false;
    Waker waker;
  };
  void Finish(std::vector<uint64_t> stack, uint8_t reason, uint64_t blocked, uint64_t runnable,
              ParkState state, const Waker* waker);
  // Function names at pc (innermost first); non-leaf PCs at pc-1.
  const std::vector<std::string>& FunctionsAt(uint64_t pc, bool ret);

  const symbolizer::GoBinary& binary_;
  goabi::GLayout layout_;
  uint64_t start_ns_;
  bool closed_ = false;
  absl::flat_hash_map<uint64_t, Open> open_;       // by goid
  absl::flat_hash_map<uint64_t, Waker> early_wake_;  // woken, park not seen
  absl::flat_hash_map<ParkKey, ParkValue> parks_;
  absl::flat_hash_map<WakeKey, uint64_t> wakeups_;
  absl::flat_hash_map<std::pair<uint64_t, bool>, std::vector<std::string>> names_;
  ParkTotals totals_;
};

struct ParkProfileInfo {
  std::string binary_path;  // Mapping filename; empty: the binary's own path
  int64_t time_nanos = 0;   // wall-clock start
  int64_t duration_nanos = 0;
  // "name=value" lines for the comments (counters, drops).
  std::vector<std::pair<std::string, uint64_t>> counters;
};

absl::StatusOr<perftools::profiles::Profile> BuildParkProfile(const ParkAggregator& agg,
                                                              const symbolizer::GoBinary& binary,
                                                              const ParkProfileInfo& info);
// Gzipped, through a temporary file renamed over `path`.
absl::Status WriteParkProfile(const perftools::profiles::Profile& profile,
                              const std::string& path);

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_AGGREGATE_PARK_PROFILE_H_
