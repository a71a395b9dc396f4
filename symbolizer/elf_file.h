// A read-only view of an ELF64 executable: sections, loadable segments,
// symbols, notes and bounds-checked reads by virtual address. Pointer reads
// apply R_X86_64_RELATIVE relocations, so PIE binaries read like the loaded
// image would (before the load bias).
#ifndef GOERRPROF_SYMBOLIZER_ELF_FILE_H_
#define GOERRPROF_SYMBOLIZER_ELF_FILE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace goerrprof::symbolizer {

struct ElfSection {
  std::string name;
  uint32_t type = 0;
  uint64_t flags = 0;
  uint64_t addr = 0;
  uint64_t offset = 0;
  uint64_t size = 0;
};

struct ElfSegment {  // PT_LOAD
  uint64_t vaddr = 0;
  uint64_t offset = 0;
  uint64_t filesz = 0;
  uint64_t memsz = 0;
  uint32_t flags = 0;  // PF_X / PF_W / PF_R
};

class ElfFile {
 public:
  static absl::StatusOr<std::unique_ptr<ElfFile>> Open(const std::string& path);
  // The file's bytes already in memory (fuzzers, crafted inputs), borrowed:
  // they must outlive the ElfFile. `name` stands for the path in messages.
  static absl::StatusOr<std::unique_ptr<ElfFile>> FromBytes(const std::string& name,
                                                            absl::Span<const uint8_t> bytes);
  ~ElfFile();
  ElfFile(const ElfFile&) = delete;
  ElfFile& operator=(const ElfFile&) = delete;

  const std::string& path() const { return path_; }
  bool is_pie() const { return is_dyn_; }  // ET_DYN
  uint64_t file_size() const { return size_; }
  const std::vector<ElfSection>& sections() const { return sections_; }
  const std::vector<ElfSegment>& loads() const { return loads_; }
  const ElfSection* FindSection(absl::string_view name) const;
  bool has_symtab() const { return !symbols_.empty(); }
  bool has_dwarf() const { return FindSection(".debug_info") || FindSection(".zdebug_info"); }
  // GNU build ID (hex), or the Go build ID from .note.go.buildid; empty if none.
  const std::string& gnu_build_id() const { return gnu_build_id_; }
  const std::string& go_build_id() const { return go_build_id_; }

  // Value of a .symtab symbol (first match), if the binary has one.
  std::optional<uint64_t> LookupSymbol(absl::string_view name) const;

  // Bytes of a section's file contents (empty span for SHT_NOBITS).
  absl::StatusOr<absl::Span<const uint8_t>> SectionData(const ElfSection& s) const;
  // `len` bytes at virtual address `addr`, all within one PT_LOAD's file part.
  absl::StatusOr<absl::Span<const uint8_t>> ReadVirtual(uint64_t addr, uint64_t len) const;
  // Like ReadVirtual, but returns whatever is available up to `max_len`.
  absl::StatusOr<absl::Span<const uint8_t>> ReadVirtualUpTo(uint64_t addr, uint64_t max_len) const;
  absl::StatusOr<uint64_t> ReadU64(uint64_t addr) const;
  absl::StatusOr<uint32_t> ReadU32(uint64_t addr) const;
  // A pointer-sized word as the loader would leave it (relocations applied).
  absl::StatusOr<uint64_t> ReadPointer(uint64_t addr) const;
  // True when `addr` has a RELATIVE relocation (the word is an address).
  bool HasRelocationAt(uint64_t addr) const { return relative_.contains(addr); }
  // True when some RELATIVE relocation writes `target` (a PIE's pointer to
  // it in data). Walks every relocation.
  bool HasRelocationTo(uint64_t target) const {
    for (const auto& [at, addend] : relative_) {
      if (addend == target) return true;
    }
    return false;
  }
  // File offset of a virtual address inside an executable segment (uprobes).
  absl::StatusOr<uint64_t> FileOffsetOf(uint64_t addr) const;

 private:
  ElfFile() = default;
  absl::Status Parse();

  std::string path_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
  bool mapped_ = false;  // data_ is our mapping of the file (else borrowed)
  bool is_dyn_ = false;
  std::vector<ElfSection> sections_;
  std::vector<ElfSegment> loads_;
  absl::flat_hash_map<absl::string_view, uint64_t> symbols_;  // names in the file
  absl::flat_hash_map<uint64_t, uint64_t> relative_;  // r_offset -> addend
  std::string gnu_build_id_;
  std::string go_build_id_;
};

}  // namespace goerrprof::symbolizer

#endif  // GOERRPROF_SYMBOLIZER_ELF_FILE_H_
