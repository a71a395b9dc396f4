// Everything goerrprof knows about one Go executable, from its bytes alone:
// build info, pclntab, moduledata and runtime type data. This is the
// symbolizer module's entry point.
#ifndef GOERRPROF_SYMBOLIZER_GO_BINARY_H_
#define GOERRPROF_SYMBOLIZER_GO_BINARY_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "goabi/go_version.h"
#include "goabi/runtime_layout.h"
#include "symbolizer/buildinfo.h"
#include "symbolizer/elf_file.h"
#include "symbolizer/error_types.h"
#include "symbolizer/go_types.h"
#include "symbolizer/moduledata.h"
#include "symbolizer/pclntab.h"

namespace goerrprof::symbolizer {

class GoBinary {
 public:
  // Fails with a one-line message for non-ELF, non-Go, corrupt or
  // unsupported (pre-1.16) binaries.
  static absl::StatusOr<std::unique_ptr<GoBinary>> Open(const std::string& path);
  // A binary already in memory, borrowed (see ElfFile::FromBytes).
  static absl::StatusOr<std::unique_ptr<GoBinary>> FromBytes(const std::string& name,
                                                             absl::Span<const uint8_t> bytes);

  const ElfFile& elf() const { return *elf_; }
  const Pclntab& pclntab() const { return *pclntab_; }
  const BuildInfo& build_info() const { return build_info_; }
  const goabi::GoVersion& version() const { return version_; }
  const goabi::RuntimeLayout& layout() const { return layout_; }
  // Where the pclntab was found: "section", "symbol" or "scan".
  const std::string& pclntab_source() const { return pclntab_source_; }

  bool stripped() const { return !elf_->has_symtab(); }
  bool pie() const { return elf_->is_pie(); }
  bool cgo() const { return cgo_; }

  // Runtime type data needs moduledata; these fail when it was not found.
  absl::StatusOr<const Moduledata*> moduledata() const;
  absl::StatusOr<const TypeReader*> types() const;

  // Frames at a file virtual address, innermost first.
  absl::StatusOr<std::vector<SourceFrame>> Symbolize(uint64_t pc) const {
    return pclntab_->Frames(pc);
  }

 private:
  GoBinary() = default;
  absl::Status Init(std::unique_ptr<ElfFile> elf);
  absl::Status LocatePclntab();

  std::unique_ptr<ElfFile> elf_;
  std::unique_ptr<Pclntab> pclntab_;
  BuildInfo build_info_;
  goabi::GoVersion version_;
  goabi::RuntimeLayout layout_;
  std::string pclntab_source_;
  bool cgo_ = false;
  absl::Status moduledata_status_;
  Moduledata moduledata_;
  std::optional<TypeReader> types_;
};

}  // namespace goerrprof::symbolizer

#endif  // GOERRPROF_SYMBOLIZER_GO_BINARY_H_
