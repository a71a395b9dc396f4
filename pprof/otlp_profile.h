// A pprof profile re-encoded as an OpenTelemetry profiles export request
// (OTLP's profiles signal, v1development, as the collector's pdata 1.71
// reads it), for `agent --otlp-endpoint`. No .proto for that signal is
// published where this project builds from (the module proxy's
// go.opentelemetry.io/proto/otlp has no profiles), so the message is
// written with its field numbers by hand; the tests check it against a
// real collector's receiver (tests/agent/otelcol).
//
// The mapping: one Profile per pprof sample type (OTLP's carries one), its
// samples those with a non-zero value of that type; locations, functions
// and mappings into the request's dictionary (index 0 of every table the
// empty entry); pprof's labels become the samples' attributes (numeric ones
// with their unit), a mapping's build ID the attribute
// process.executable.build_id.gnu (40 hex digits) or .go.
#ifndef GOERRPROF_PPROF_OTLP_PROFILE_H_
#define GOERRPROF_PPROF_OTLP_PROFILE_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "github.com/google/pprof/proto/profile.pb.h"

namespace goerrprof::profiler {

struct OtlpResource {
  // Resource attributes (service.name, host.name, ...), strings.
  std::vector<std::pair<std::string, std::string>> attributes;
  std::string scope_name = "goerrprof";
  std::string scope_version;
};

// The serialized ExportProfilesServiceRequest (protobuf, for OTLP/HTTP's
// application/x-protobuf). InvalidArgument for a profile whose ids point
// nowhere.
absl::StatusOr<std::string> PprofToOtlp(const perftools::profiles::Profile& profile,
                                        const OtlpResource& resource);

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_PPROF_OTLP_PROFILE_H_
