// Park tracing for `goerrprof record --goroutines`: where and why the
// goroutines of a running Go process block, for how long, and who wakes
// them. Three uprobes (bpf/goroutines.bpf.c) through one uprobe_multi
// link: gopark's CALL runtime.mcall (park), the instruction after it
// (resume, whatever woke the goroutine) and runtime.ready (wakeup, with the
// waker's stack). Records are paired per goroutine in user space and summed
// into a pprof profile (see park_profile.h for its sample types and labels).
//
// Driving it from a poll loop:
//   auto t = ParkTracer::Start(pid, binary, {});
//   poll t->fd() with the loop's other fds; call t->Poll(0) when readable
//   (or every so often: wakeups are batched); then t->Stop();
//   t->WriteProfile(path, info); report t->counters().
// Nothing is written to the target; no uretprobes.
#ifndef GOERRPROF_SESSION_PARK_SESSION_H_
#define GOERRPROF_SESSION_PARK_SESSION_H_

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "bpf/park_abi.h"
#include "github.com/google/pprof/proto/profile.pb.h"
#include "plan/park_probes.h"
#include "session/lifecycle.h"
#include "session/pid_namespace.h"
#include "aggregate/park_profile.h"
#include "symbolizer/go_binary.h"

struct goroutines_bpf;
struct ring_buffer;
struct bpf_link;

namespace goerrprof::profiler {

struct ParkOptions {
  uint32_t ringbuf_bytes = 8u << 20;  // rounded up to a power of two
  // Wake a waiting Poll only once this fraction of the ring is filled (0:
  // every record). Records then reach Poll within its timeout.
  double wakeup_fraction = 0.25;
  uint32_t max_parked = 1u << 16;  // goroutines parked at once the probe remembers
  bool uprobe_multi = true;  // else one perf uprobe per probe (kernels before 6.6)
};

// ParkTracer's skeleton settings for a release's runtime `layout`, the
// target (pid and namespace as its threads see them) and `options`; shared
// with doctor's cost measurement (bpf_cost), so it measures what loads.
absl::Status ConfigureParkProbe(goroutines_bpf* skel, const goabi::GLayout& layout,
                                const ParkOptions& options, const PidNamespaceId& target,
                                bool multi);

struct ParkCounters {
  std::array<uint64_t, GPK_CTR__COUNT> bpf{};  // summed over CPUs, by gpk_counter
  ParkTotals totals;                           // pairing (user side)
  uint64_t records = 0;                        // decoded records
  uint64_t decode_errors = 0;                  // malformed records
  uint64_t operator[](gpk_counter c) const { return bpf[c]; }
  // Records lost before user space saw them: ring full, busy scratch,
  // malformed.
  uint64_t dropped() const;
  // Every nonzero counter as "name=value".
  std::vector<std::pair<std::string, uint64_t>> Named() const;
};
absl::string_view ParkCounterName(gpk_counter c);

class ParkTracer {
 public:
  // `binary` must be the executable pid runs and outlive the tracer.
  // One-line errors for a dead pid, missing privileges, a binary without
  // the runtime functions (see FindParkProbes).
  static absl::StatusOr<std::unique_ptr<ParkTracer>> Start(pid_t pid,
                                                           const symbolizer::GoBinary& binary,
                                                           const ParkOptions& options);
  ~ParkTracer();
  ParkTracer(const ParkTracer&) = delete;
  ParkTracer& operator=(const ParkTracer&) = delete;

  // Waits up to timeout_ms (-1 forever, 0 not at all) for records, then
  // aggregates every record ready. Returns how many. After Stop: 0.
  absl::StatusOr<int> Poll(int timeout_ms);
  // Readable when records wait (the ring buffer's epoll fd); -1 after Stop.
  int fd() const;
  // Detaches the probes, drains the ring, and closes the goroutines still
  // parked at this moment (counted until now). Idempotent.
  void Stop();

  ParkCounters counters() const;
  // One line for record's summary: parks, blocked time, still parked,
  // wakeups and every loss, e.g. "parks=236 blocked=1.19s still_parked=1
  // wakeups=236 drops=0".
  std::string Summary() const;
  const ParkAggregator& aggregator() const { return *agg_; }
  const ParkProbes& probes() const { return probes_; }
  bool uprobe_multi() const { return multi_; }
  uint64_t load_bias() const { return target_.load_bias(); }
  // Kernel ids of the loaded programs (for checking cleanup).
  std::vector<uint32_t> prog_ids() const;

  // `info.counters` is filled from counters() when empty; duration and
  // start time default to the tracing's own.
  absl::StatusOr<perftools::profiles::Profile> BuildProfile(ParkProfileInfo info = {}) const;
  absl::Status WriteProfile(const std::string& path, ParkProfileInfo info = {}) const;

  // What `record --goroutines` prints: the tracing costs every blocking
  // operation about `per_park_us` microseconds (bench/park measures it).
  static std::string OverheadWarning(double per_park_us = kMeasuredPerParkMicros);
  // bench/park on the 2-CPU reference VM (Go 1.27 channel ping-pong): 38-43
  // us per park over two runs, 2-3x one raw uprobe trap there (13-22 us);
  // bare traps at the three sites alone cost 34-41 us of it.
  static constexpr double kMeasuredPerParkMicros = 40;

 private:
  ParkTracer(const symbolizer::GoBinary& binary) : binary_(binary) {}
  absl::Status Init(pid_t pid, const ParkOptions& options);
  absl::Status Load(const ParkOptions& options, const goabi::GLayout& layout, bool multi);
  static int OnSample(void* ctx, void* data, size_t size);
  void Detach();

  const symbolizer::GoBinary& binary_;
  ProbeTarget target_;
  ParkProbes probes_;
  goroutines_bpf* skel_ = nullptr;
  EventRing ring_;
  ProbeLinks links_;
  bool multi_ = false;
  std::unique_ptr<ParkAggregator> agg_;
  uint64_t start_mono_ns_ = 0;
  uint64_t stop_mono_ns_ = 0;
  int64_t start_wall_ns_ = 0;
  bool stopped_ = false;
  uint64_t records_ = 0;
  uint64_t decode_errors_ = 0;
  std::array<uint64_t, GPK_CTR__COUNT> final_bpf_{};  // read at Stop
};

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_SESSION_PARK_SESSION_H_
