// Go's pclntab (runtime.pcHeader and what follows): the function table,
// pc→file/line tables and the inline tree, for pclntab formats 1.16, 1.18
// and 1.20 (Go 1.16 through the newest release). Reads only the binary's
// bytes: stripped binaries work.
#ifndef GOERRPROF_SYMBOLIZER_PCLNTAB_H_
#define GOERRPROF_SYMBOLIZER_PCLNTAB_H_

#include <cstdint>
#include <memory>
#include <optional>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"
#include "base/byte_reader.h"
#include "symbolizer/elf_file.h"

namespace goerrprof::symbolizer {

// Named by the first Go release that wrote the format.
enum class PclntabVersion { k116 = 116, k118 = 118, k120 = 120 };

// One source frame. Strings point into the ELF file's mapping.
struct SourceFrame {
  absl::string_view function;
  absl::string_view file;
  int32_t line = 0;
  bool operator==(const SourceFrame&) const = default;
};

class Pclntab {
 public:
  // `addr` is the virtual address of the pcHeader. `text_start_fallback` is
  // used when the header does not carry the text start (1.16) or carries 0.
  static absl::StatusOr<std::unique_ptr<Pclntab>> Create(const ElfFile& elf, uint64_t addr,
                                                         uint64_t text_start_fallback);
  // Create's cheap checks alone: the header, and the first and last
  // entries of the function table (not the table in between, which
  // Create reads in full). A scan tries every magic it meets with this.
  static absl::Status Check(const ElfFile& elf, uint64_t addr, uint64_t text_start_fallback);

  PclntabVersion version() const { return version_; }
  uint64_t address() const { return addr_; }
  uint64_t text_start() const { return text_start_; }
  uint64_t text_end() const { return entries_.back(); }
  // Byte offset of the function table within the pclntab (moduledata.ftab).
  uint64_t functab_offset() const { return functab_off_; }

  // Base of 1.18+ funcdata offsets (moduledata.gofunc). Without it, inline
  // trees of 1.18+ binaries cannot be read and only outer frames are given.
  void set_gofunc(uint64_t gofunc) { gofunc_ = gofunc; }

  size_t num_functions() const { return entries_.size() - 1; }
  uint64_t FuncEntry(size_t i) const { return entries_[i]; }
  uint64_t FuncEnd(size_t i) const { return entries_[i + 1]; }
  absl::string_view FuncName(size_t i) const;
  // runtime._func.args of function i: the bytes of its argument frame
  // (stack arguments and results, and under the register ABI the spill
  // space of its register arguments); nullopt when unreadable or unknown
  // (assembly without a declared frame).
  std::optional<int32_t> FuncArgsSize(size_t i) const;
  // The scalar components of function i's arguments as its traceback
  // argument info (FUNCDATA_ArgInfo, Go 1.17+) lists them: under the
  // register ABI each takes one register at most, so this bounds the
  // registers the function reads. 0 for a function without arguments;
  // nullopt when not known (no info, or the list was cut short).
  std::optional<int> FuncArgComponents(size_t i) const;
  // A frame object whose address the function takes (and which holds
  // pointers): `off` below the frame's varp when negative, above its argp
  // otherwise (runtime.stackObjectRecord).
  struct StackObject {
    int32_t off;
    int32_t size;
  };
  // Function i's FUNCDATA_StackObjects: empty when it has none; nullopt when
  // not known (the records of Go 1.17 and older, or unreadable).
  std::optional<std::vector<StackObject>> FuncStackObjects(size_t i) const;
  // Function i's FUNCDATA_OpenCodedDeferInfo, offsets below the frame's
  // varp: its deferBits byte, and its closure slots. `listed` is the Go
  // 1.18-1.21 record (a count, then every slot); Go 1.22+ gives only the
  // first slot, the rest following it 8 bytes apart. nullopt when the
  // function has none, or for Go 1.17 and older (another record).
  struct OpenDefers {
    uint64_t bits_off = 0;
    std::vector<uint64_t> closure_offs;
  };
  std::optional<OpenDefers> FuncOpenDefers(size_t i, bool listed) const;
  // Index of the function containing pc.
  std::optional<size_t> FindFunc(uint64_t pc) const;

  // Frames at pc, innermost (most deeply inlined) first; the last one is the
  // physical function. NotFound when pc is in no function.
  absl::StatusOr<std::vector<SourceFrame>> Frames(uint64_t pc) const;

 // Field offsets inside runtime._func; they differ by format.
  struct FuncLayout;

 private:
  Pclntab(const ElfFile& elf) : elf_(elf) {}
  absl::Status ReadHeader(uint64_t addr, uint64_t text_start_fallback);
  absl::Status BuildTable();
  // Entry PC of function table slot i (0..nfunc) and its _func offset.
  absl::Status Slot(uint64_t i, uint64_t* entry, uint64_t* funcoff) const;
  absl::Status CheckFunc(uint64_t i) const;

  // The NUL-terminated string at `off` in the table; empty if there is none.
  absl::string_view CString(uint64_t off) const;
  // Decodes a pc-value table; nullopt when pc is past its end or it is corrupt.
  std::optional<int32_t> PcValue(uint64_t func_off, uint32_t table, uint64_t entry,
                                 uint64_t pc) const;
  std::optional<int32_t> PcData(uint64_t func_off, uint32_t index, uint64_t entry,
                                uint64_t pc) const;
  // Address of funcdata `index` of a function, 0 if it has none.
  uint64_t FuncData(uint64_t func_off, uint32_t index) const;
  absl::string_view FileName(uint64_t func_off, int32_t fileno) const;
  bool FileLine(uint64_t func_off, uint64_t entry, uint64_t pc, absl::string_view* file,
                int32_t* line) const;

  const ElfFile& elf_;
  ByteView data_;  // the table's bytes, every read bounds-checked
  const FuncLayout* layout_ = nullptr;
  PclntabVersion version_ = PclntabVersion::k120;
  uint64_t addr_ = 0;
  uint64_t text_start_ = 0;
  uint64_t gofunc_ = 0;
  uint32_t quantum_ = 1;
  uint64_t funcname_off_ = 0, cu_off_ = 0, filetab_off_ = 0, pctab_off_ = 0, functab_off_ = 0;
  uint64_t nfunc_ = 0;
  std::vector<uint64_t> entries_;   // nfunc+1 entry PCs; the last is the end of text
  std::vector<uint64_t> func_offs_; // offset of each _func from the table start
};

}  // namespace goerrprof::symbolizer

#endif  // GOERRPROF_SYMBOLIZER_PCLNTAB_H_
