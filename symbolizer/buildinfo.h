// The Go build information a binary carries in .go.buildinfo: the Go
// version and, from Go 1.18, the main module and build settings.
#ifndef GOERRPROF_SYMBOLIZER_BUILDINFO_H_
#define GOERRPROF_SYMBOLIZER_BUILDINFO_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "symbolizer/elf_file.h"

namespace goerrprof::symbolizer {

struct BuildInfo {
  std::string go_version;   // as stored, e.g. "go1.21.13"
  std::string main_path;    // "path" line of the module info
  std::string main_module;  // "mod" line: path and version
  std::vector<std::pair<std::string, std::string>> settings;  // "build" lines
  std::string Setting(absl::string_view key) const;
};

// NotFound when the binary has no Go build information.
absl::StatusOr<BuildInfo> ReadBuildInfo(const ElfFile& elf);

// For binaries whose .go.buildinfo was removed: the value of
// runtime.buildVersion, found as a Go string header in writable data that
// points at "go1.N" or "go1.N.P". NotFound when there is none.
absl::StatusOr<std::string> FindRuntimeBuildVersion(const ElfFile& elf);

}  // namespace goerrprof::symbolizer

#endif  // GOERRPROF_SYMBOLIZER_BUILDINFO_H_
