// GET /debug/pprof/errors?seconds=N: the errors of the next N seconds as a
// gzipped pprof profile. The recording is cumulative, so a window is the
// difference of two moments: each sample's count at its start is kept, and
// at its end the samples that grew make the profile (of their growth).
#ifndef GOERRPROF_AGENT_ERROR_WINDOW_H_
#define GOERRPROF_AGENT_ERROR_WINDOW_H_

#include <cstdint>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "aggregate/error_profile.h"
#include "record/recorder.h"

namespace goerrprof::profiler {

inline constexpr int kMaxWindowSeconds = 300;

// ?seconds=N from a request target: 30 without it; InvalidArgument outside
// 1..kMaxWindowSeconds or not a number.
absl::StatusOr<int> WindowSeconds(const std::string& target);

class ErrorWindow {
 public:
  // Starts now: remembers every sample's count so far.
  ErrorWindow(const Recorder& rec, absl::Duration length);
  absl::Time due() const { return due_; }
  // The gzipped profile of what was captured since the start, every
  // sample labelled with its process (process.binary, process.pid).
  absl::StatusOr<std::string> Finish(const Recorder& rec) const;

 private:
  absl::Time start_, due_;
  absl::flat_hash_map<SampleKey, uint64_t> before_;
};

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_AGENT_ERROR_WINDOW_H_
