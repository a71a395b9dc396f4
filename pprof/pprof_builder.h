// Builds a pprof profile (perftools::profiles::Profile): interned strings,
// one Mapping per executable PT_LOAD segment of each Go binary added
// (several binaries may share one profile), and Locations with their
// inlined frames as Lines, one per distinct (binary, pc, role).
//
// Addresses are file virtual addresses of each binary. A stack's first PC
// is where execution is (its lines are those of pc); the others are return
// addresses, whose location gets pc-1 (inside the call, as pprof expects of
// non-leaf frames) and the lines of the call.
#ifndef GOERRPROF_PPROF_PPROF_BUILDER_H_
#define GOERRPROF_PPROF_PPROF_BUILDER_H_

#include <cstdint>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "github.com/google/pprof/proto/profile.pb.h"
#include "symbolizer/go_binary.h"

namespace goerrprof::profiler {

class PprofBuilder {
 public:
  PprofBuilder();

  perftools::profiles::Profile& profile() { return p_; }
  int64_t String(absl::string_view s);

  // Sample value types in order; the first also becomes the period type
  // (period 1).
  void AddSampleType(absl::string_view type, absl::string_view unit);
  // What `go tool pprof` shows unless told otherwise (else: the last type).
  void SetDefaultSampleType(absl::string_view type) { p_.set_default_sample_type(String(type)); }
  void AddComment(absl::string_view text) { p_.add_comment(String(text)); }
  // A one-binary profile's first comments: `title`, the binary's Go
  // version, the duration.
  void AddHeaderComments(absl::string_view title, const symbolizer::GoBinary& binary,
                         int64_t duration_nanos);

  // Registers a binary (it must outlive the builder) and its mappings;
  // returns its handle for Stack/Location. `path` names it in the profile
  // (default: the ELF's path). Mapping.build_id is the GNU build ID, else
  // the Go build ID.
  absl::StatusOr<int> AddBinary(const symbolizer::GoBinary& binary, absl::string_view path = "");

  // Location id of `pc` in binary `bin`; `ret`: pc is a return address.
  uint64_t Location(int bin, uint64_t pc, bool ret);
  // A sample with the stack's locations (innermost first), no values yet.
  perftools::profiles::Sample* AddSample(int bin, absl::Span<const uint64_t> stack);
  void Label(perftools::profiles::Sample* s, absl::string_view key, absl::string_view value);
  void NumLabel(perftools::profiles::Sample* s, absl::string_view key, int64_t value,
                absl::string_view unit = "");

  perftools::profiles::Profile Release() { return std::move(p_); }

 private:
  struct Binary {
    const symbolizer::GoBinary* binary;
    std::vector<std::pair<uint64_t, uint64_t>> ranges;  // [start, limit) -> mapping
    std::vector<uint64_t> mapping_ids;
  };
  uint64_t FunctionId(absl::string_view name, absl::string_view file);

  perftools::profiles::Profile p_;
  absl::flat_hash_map<std::string, int64_t> strings_;
  std::vector<Binary> binaries_;
  absl::flat_hash_map<std::tuple<int, uint64_t, bool>, uint64_t> locations_;
  absl::flat_hash_map<std::pair<std::string, std::string>, uint64_t> functions_;
};


}  // namespace goerrprof::profiler

#endif  // GOERRPROF_PPROF_PPROF_BUILDER_H_
