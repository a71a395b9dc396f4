// Writes an ErrorProfile as a gzipped pprof profile (pprof's profile.proto)
// that `go tool pprof` reads: sample type errors/count, one location per
// distinct PC with its inlined frames, and on every sample the labels
// error.type, error.message (none under MessagePolicy::kOff), error.chain
// (strings) and goroutine (numeric; 0 when the goroutine id was not
// captured). A comment says which message policy the profile was made with.
//
// Location addresses are file virtual addresses of the target executable
// (not runtime addresses); each executable PT_LOAD segment gets a Mapping
// at its file vaddr range, so the addresses stay consistent for pprof's own
// symbolization (-symbolize=force). Mapping.build_id is the GNU build ID in
// hex (what pprof checks files against), or the Go build ID when the binary
// has no GNU one.
#ifndef GOERRPROF_PPROF_PPROF_WRITER_H_
#define GOERRPROF_PPROF_PPROF_WRITER_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "github.com/google/pprof/proto/profile.pb.h"
#include "aggregate/error_profile.h"
#include "symbolizer/go_binary.h"
#include "pprof/labels.h"

namespace goerrprof::profiler {

// One traced process. Its samples (SampleKey::process = its index in the
// list) hold file vaddrs of `binary`.
struct ProfiledProcess {
  const symbolizer::GoBinary* binary = nullptr;
  std::string path;  // Mapping filename and process.binary; empty: the binary's own path
  uint32_t pid = 0;
  // With label_processes, labelled on its samples when not empty.
  std::string container_id, pod_uid;
};

struct PprofInfo {
  std::string binary_path;     // single-binary calls: Mapping filename; empty: the binary's own
  int64_t time_nanos = 0;      // wall-clock start of the recording
  int64_t duration_nanos = 0;
  size_t probes_attached = 0;
  // Label every sample with its process (kLabelBinary, kLabelPid): for
  // recordings of a command and its children.
  bool label_processes = false;
  // Said in a comment when not empty: the overhead budget, what it took
  // off and what it estimated.
  std::string budget;
};

// The profile in memory. Stack entries after the first are return
// addresses: their lines are those of pc-1 (the call), their address pc.
// PCs outside every function get a location without lines.
absl::StatusOr<perftools::profiles::Profile> BuildPprof(
    const ErrorProfile& profile, const std::vector<ProfiledProcess>& processes,
    const PprofInfo& info);
// One process: `binary`, named info.binary_path.
absl::StatusOr<perftools::profiles::Profile> BuildPprof(const ErrorProfile& profile,
                                                       const symbolizer::GoBinary& binary,
                                                       const PprofInfo& info);

// BuildPprof, gzipped, written to a temporary file beside `path` and renamed
// over it, so readers never see a partial profile.
absl::Status WritePprof(const ErrorProfile& profile, const symbolizer::GoBinary& binary,
                        const PprofInfo& info, const std::string& path);
absl::Status WritePprof(const ErrorProfile& profile, const std::vector<ProfiledProcess>& processes,
                        const PprofInfo& info, const std::string& path);

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_PPROF_PPROF_WRITER_H_
