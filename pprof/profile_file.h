// pprof profile files: written gzipped and atomically (a temporary file
// renamed over the target, so readers never see a partial profile), read
// gzipped or not. Shared by every profile goerrprof writes and by `diff`.
#ifndef GOERRPROF_PPROF_PROFILE_FILE_H_
#define GOERRPROF_PPROF_PROFILE_FILE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "github.com/google/pprof/proto/profile.pb.h"

namespace goerrprof::profiler {

absl::Status WriteProfileFile(const perftools::profiles::Profile& profile, const std::string& path);
// Whether a profile could be written to `path` now (a file created and
// removed in its directory), so a recording fails at its start, not after
// an hour of data.
absl::Status CheckWritable(const std::string& path);
absl::StatusOr<perftools::profiles::Profile> ReadProfile(const std::string& path);
// ReadProfile's decoding of a file's bytes (gzipped or not); `name` stands
// for the path in messages.
absl::StatusOr<perftools::profiles::Profile> ParseProfile(const std::string& bytes,
                                                          const std::string& name);

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_PPROF_PROFILE_FILE_H_
