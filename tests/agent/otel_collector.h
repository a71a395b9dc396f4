// A real OpenTelemetry Collector for the tests (tests/agent/otelcol, built
// by scripts/build_otelcol.sh): the OTLP receiver on a free loopback port,
// and every profiles batch it accepts written to a file as text lines
// (otelcol's textBatch: "batch ...", "sample TYPE VALUE FRAMES ATTRS...",
// "end").
#ifndef GOERRPROF_TESTS_AGENT_OTEL_COLLECTOR_H_
#define GOERRPROF_TESTS_AGENT_OTEL_COLLECTOR_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "tests/test_support.h"

namespace goerrprof::testing {

// The binary; empty when it was not built.
std::string FindOtelCollector();

class OtelCollector {
 public:
  // Started and accepting connections (bounded wait), on `port` or, with 0,
  // a free one.
  static absl::StatusOr<std::unique_ptr<OtelCollector>> Start(int port = 0);
  ~OtelCollector();  // stopped, its directory removed

  // http://127.0.0.1:PORT: the agent's --otlp-endpoint.
  const std::string& endpoint() const { return endpoint_; }
  // Every whole batch received so far, as written.
  absl::StatusOr<std::string> Received() const;
  // SIGTERM, and a clean exit.
  absl::Status Stop();

 private:
  OtelCollector() = default;
  std::unique_ptr<Child> child_;
  std::string dir_, endpoint_;
};

struct OtlpSample {
  std::string kind;  // "errors/count"
  int64_t value = 0;
  std::vector<std::string> frames;  // leaf first
  std::map<std::string, std::string> attributes;
};
// The samples of the whole batches in `text`; the batch header lines in
// *batches when given.
absl::StatusOr<std::vector<OtlpSample>> ParseOtlpSamples(const std::string& text,
                                                         std::vector<std::string>* batches = nullptr);

}  // namespace goerrprof::testing

#endif  // GOERRPROF_TESTS_AGENT_OTEL_COLLECTOR_H_
