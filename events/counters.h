// The error probe's counters as user space sums them, and what counts as a
// lost event: defined once, for the session's summary, the profile's
// comments and the tests.
#ifndef GOERRPROF_EVENTS_COUNTERS_H_
#define GOERRPROF_EVENTS_COUNTERS_H_

#include <array>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "bpf/errors_abi.h"

namespace goerrprof::profiler {

struct SessionCounters {
  std::array<uint64_t, GEP_CTR__COUNT> bpf{};  // summed over CPUs, by gep_counter
  uint64_t decode_errors = 0;  // malformed records (user side)
  uint64_t delivered = 0;      // events handed to Poll callbacks

  uint64_t operator[](gep_counter c) const { return bpf[c]; }
  // Whole events lost (the DROP_* counters plus decode errors).
  uint64_t dropped_events() const;
  // Events that lost part of their content (reads, truncation, caps).
  uint64_t partial_losses() const;
  // Every nonzero counter as "name=value", for reports.
  std::vector<std::pair<absl::string_view, uint64_t>> Named() const;
};
absl::string_view CounterName(gep_counter c);

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_EVENTS_COUNTERS_H_
