// A Go release number (1.21.3), parsed from the version string a Go binary
// carries, compared as numbers so layout tables can be keyed by release.
#ifndef GOERRPROF_GOABI_GO_VERSION_H_
#define GOERRPROF_GOABI_GO_VERSION_H_

#include <compare>
#include <optional>
#include <string>
#include <string_view>

namespace goerrprof::goabi {

struct GoVersion {
  int major = 1;
  int minor = 0;
  int patch = 0;

  // Accepts "go1.21", "go1.21.3", "go1.22rc1", "go1.23.0 X:nocoverageredesign",
  // with or without the "go" prefix. "devel …" strings are not releases.
  static std::optional<GoVersion> Parse(std::string_view text);

  // True when this is release major.minor or a later one.
  bool AtLeast(int major_want, int minor_want) const {
    return major > major_want || (major == major_want && minor >= minor_want);
  }
  std::string ToString() const;  // "go1.21.3"

  auto operator<=>(const GoVersion&) const = default;
};

}  // namespace goerrprof::goabi

#endif  // GOERRPROF_GOABI_GO_VERSION_H_
