// `record --goroutines=sample`: where goroutines wait, sampled from outside.
// A thread of goerrprof takes a goroutine snapshot of the target (no probe,
// no stop: goroutines/goroutine_snapshot.h) `hz` times a second on a steady
// schedule (tick k at start + k/hz; ticks missed while a snapshot ran long
// are skipped, never caught up, so the rate does not drift) and feeds each
// into a WaitSampleAggregator (aggregate/sampled_wait_profile.h). The first
// snapshot is taken at once, so goroutines parked before the start count.
// The thread stops on Stop(), promptly (it waits on a condition variable,
// never sleeps), or by itself when the target is gone.
#ifndef GOERRPROF_RECORD_WAIT_SAMPLER_H_
#define GOERRPROF_RECORD_WAIT_SAMPLER_H_

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "aggregate/sampled_wait_profile.h"
#include "goabi/g_layout.h"
#include "goroutines/goroutine_snapshot.h"
#include "symbolizer/go_binary.h"

namespace goerrprof::profiler {

struct WaitSamplerOptions {
  int hz = 19;                  // 1..1000
  size_t max_keys = 20000;      // distinct (stack, wait reason) keys kept
  int reader_threads = 1;       // SnapshotOptions::threads: one, to stay light
};

class WaitSampler {
 public:
  // `binary` is the executable pid runs and must outlive the sampler. Fails
  // in one line when the goroutine list cannot be found or the process is
  // not readable. The thread is running when this returns.
  static absl::StatusOr<std::unique_ptr<WaitSampler>> Start(pid_t pid,
                                                            const symbolizer::GoBinary& binary,
                                                            const WaitSamplerOptions& options);
  ~WaitSampler();
  WaitSampler(const WaitSampler&) = delete;
  WaitSampler& operator=(const WaitSampler&) = delete;

  // Ends the sampling (an in-flight snapshot finishes first). Idempotent.
  void Stop();
  // The thread ended by itself: the process is gone.
  bool target_gone() const;
  WaitSampleTotals totals() const;

  // Defaults: pid, hz, the sampling's start and duration.
  absl::StatusOr<perftools::profiles::Profile> BuildProfile(SampledWaitInfo info = {}) const;
  // Gzipped, through a temporary file renamed over `path`.
  absl::Status WriteProfile(const std::string& path, SampledWaitInfo info = {}) const;

 private:
  WaitSampler(pid_t pid, const symbolizer::GoBinary& binary, const WaitSamplerOptions& options);
  void Run();
  // One snapshot into the aggregate; false when the process is gone.
  bool TakeOne(const SnapshotOptions& snap_options);

  const pid_t pid_;
  const symbolizer::GoBinary& binary_;
  const WaitSamplerOptions options_;
  goabi::GLayout layout_;
  uint64_t allgs_ = 0;  // runtime address of the runtime.allgs header
  uint64_t bias_ = 0;
  int64_t start_wall_ns_ = 0;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point stop_time_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // guarded by mu_
  bool gone_ = false;  // guarded by mu_
  bool ended_ = false;  // guarded by mu_: Run returned
  WaitSampleAggregator agg_;  // guarded by mu_
  std::thread thread_;
};

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_RECORD_WAIT_SAMPLER_H_
