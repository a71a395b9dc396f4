// `agent --otlp-endpoint`: each window of errors (pprof/otlp_profile.h)
// POSTed to an OpenTelemetry collector over OTLP/HTTP (protobuf, plain
// http://; no TLS yet). Sending runs on a thread of its own, so a slow or
// absent collector never holds up the agent's event loop. A failed push is
// retried (backing off from 1 s to kMaxBackoff) until it is sent, and
// pushes behind it wait; what cannot be queued, or is still unsent when
// Finish has tried it once more, is dropped and counted, never lost
// silently.
#ifndef GOERRPROF_AGENT_OTLP_EXPORTER_H_
#define GOERRPROF_AGENT_OTLP_EXPORTER_H_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace goerrprof::profiler {

// OTLP/HTTP's path for the profiles signal, appended to an endpoint given
// without a path (as OTEL_EXPORTER_OTLP_ENDPOINT is).
inline constexpr char kOtlpProfilesPath[] = "/v1development/profiles";

struct OtlpEndpoint {
  std::string host, port, path;
  std::string url() const;
};
// http://host[:port][/path]; port 4318 (OTLP/HTTP's) by default; path
// kOtlpProfilesPath when none. InvalidArgument otherwise (https:// too).
absl::StatusOr<OtlpEndpoint> ParseOtlpEndpoint(const std::string& url);

// One POST of `body` (application/x-protobuf), the whole exchange within
// `timeout`. OK on a 2xx reply; otherwise the reason, with the reply's
// status line and the start of its body.
absl::Status PostOtlp(const OtlpEndpoint& to, const std::string& body, absl::Duration timeout);

class OtlpExporter {
 public:
  static constexpr size_t kMaxQueued = 4;
  static constexpr absl::Duration kTimeout = absl::Seconds(10);
  static constexpr absl::Duration kMaxBackoff = absl::Seconds(30);

  explicit OtlpExporter(OtlpEndpoint to);
  ~OtlpExporter() { Finish(); }

  // Queues one request; with kMaxQueued waiting already (or after Finish),
  // it is dropped.
  void Push(std::string request);
  // Tries what is queued once more (each try bounded by kTimeout), drops
  // what still fails, and stops.
  void Finish();

  struct Counts {
    // Requests sent and dropped; failed counts tries (a request retried
    // until sent fails more than once).
    uint64_t sent = 0, failed = 0, dropped = 0;
    std::string last_error;  // of the newest failure
  };
  Counts counts() const;
  const OtlpEndpoint& endpoint() const { return to_; }

 private:
  void Run();

  const OtlpEndpoint to_;
  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::deque<std::string> queue_;
  bool stopping_ = false;
  bool failing_ = false;  // the last try failed: said once, not per try
  Counts counts_;
  std::thread thread_;
};

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_AGENT_OTLP_EXPORTER_H_
