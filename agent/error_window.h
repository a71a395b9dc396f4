// GET /debug/pprof/errors?seconds=N: the errors of the next N seconds as a
// gzipped pprof profile. The recording is cumulative, so a window is the
// difference of two moments: each sample's count at its start is kept, and
// at its end the samples that grew make the profile (of their growth).
#ifndef GOERRPROF_AGENT_ERROR_WINDOW_H_
#define GOERRPROF_AGENT_ERROR_WINDOW_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "aggregate/error_profile.h"
#include "pprof/pprof_writer.h"
#include "record/recorder.h"

namespace goerrprof::profiler {

inline constexpr int kMaxWindowSeconds = 300;

// `bytes` gzipped, as pprof files are (the agent's pages serve them so).
absl::StatusOr<std::string> Gzip(const std::string& bytes);

// ?seconds=N from a request target: 30 without it; InvalidArgument outside
// 1..kMaxWindowSeconds or not a number.
absl::StatusOr<int> WindowSeconds(const std::string& target);

class ErrorWindow {
 public:
  // Starts now: remembers every sample's count so far.
  ErrorWindow(const Recorder& rec, absl::Duration length);
  absl::Time due() const { return due_; }
  // The gzipped profile of what was captured since the start, every
  // sample labelled with its process (process.binary, process.pid) and,
  // where `container_of` knows them, its container (container.id,
  // k8s.pod.uid).
  using ContainerOf = std::function<void(pid_t, std::string* container_id, std::string* pod_uid)>;
  absl::StatusOr<std::string> Finish(const Recorder& rec,
                                     const ContainerOf& container_of = nullptr) const;
  // The same profile, not serialized (for OTLP: pprof/otlp_profile.h).
  absl::StatusOr<perftools::profiles::Profile> Build(
      const Recorder& rec, const ContainerOf& container_of = nullptr) const;
  // Processes the recorder forgot (Recorder::EvictClosed) while this is
  // open: their growth since the start is kept here, the rest of the
  // start's counts renumbered. Call it with every eviction's result.
  void Fold(const Recorder::Evicted& gone, const ContainerOf& container_of = nullptr);

 private:
  absl::Time start_, due_;
  absl::flat_hash_map<SampleKey, uint64_t> before_;
  // What evicted processes created in the window, numbered as gone_processes_
  // (whose binaries gone_plans_ keeps open until the window ends).
  ErrorProfile gone_;
  std::vector<ProfiledProcess> gone_processes_;
  std::vector<std::shared_ptr<const ExecutablePlan>> gone_plans_;
};

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_AGENT_ERROR_WINDOW_H_
