// Small Go-like ELF files built from nothing, for crafted inputs (the
// bounded-work tests) and fuzzer seeds: what goerrprof's readers need of a
// Go binary — pclntab, build info, moduledata, the type descriptors and
// itab of one error type — laid out as the given Go release lays them out,
// a few KB in all. No binary is committed: tests build them at run time.
#ifndef GOERRPROF_TESTS_SYNTHETIC_GO_BINARY_H_
#define GOERRPROF_TESTS_SYNTHETIC_GO_BINARY_H_

#include <cstdint>
#include <string>
#include <vector>

namespace goerrprof::testing {

// A minimal ELF64 x86-64 executable: PT_LOADs and, optionally, sections
// over them. Segment vaddrs must be page-aligned and ascending.
class ElfWriter {
 public:
  // flags: PF_X / PF_W / PF_R.
  void AddSegment(uint64_t vaddr, uint32_t flags, std::string bytes);
  // A section over [addr, addr + size), inside a segment added before.
  // Sections are numbered from 1 in the order they are added.
  void AddSection(std::string name, uint32_t type, uint64_t flags, uint64_t addr, uint64_t size,
                  uint32_t link = 0, uint64_t entsize = 0);
  // The file; `sections` false leaves the section header table out.
  std::string Write(bool sections = true) const;

 private:
  struct Segment {
    uint64_t vaddr;
    uint32_t flags;
    std::string bytes;
  };
  struct Section {
    std::string name;
    uint32_t type;
    uint64_t flags, addr, size;
    uint32_t link;
    uint64_t entsize;
  };
  std::vector<Segment> segments_;
  std::vector<Section> sections_;
};

struct SyntheticGoOptions {
  // Release whose layouts are used: go1.18 or newer (pclntab formats 1.18
  // and 1.20; 1.26+ write no text start in the header).
  std::string go_version = "go1.22.0";
  std::vector<std::string> functions = {"main.main", "main.fail"};
  bool section_headers = true;  // without: every table is found by scanning
  // Extra fields of the error struct main.E whose type is main.E itself,
  // all named by one name of self_field_name_bytes bytes.
  int self_fields = 0;
  size_t self_field_name_bytes = 8;
  // The itab of (error, *main.E) this many times (itablinks entries, or
  // 1.27's packed itabs), and the interface named by this many bytes
  // instead of "error" when not 0.
  int itab_copies = 1;
  size_t error_name_bytes = 0;
};

// An executable whose error type *main.E (struct {Msg string; Err error},
// plus the self fields) implements `error` through one itab, and whose
// functions are 64 bytes of text each (main.fail loads *main.E's
// descriptor with a LEA).
std::string BuildSyntheticGoBinary(const SyntheticGoOptions& options);

// Where BuildSyntheticGoBinary puts things (non-PIE, fixed addresses).
inline constexpr uint64_t kSyntheticText = 0x401000;
inline constexpr uint64_t kSyntheticRodata = 0x10000000;
inline constexpr uint64_t kSyntheticData = 0x20000000;

}  // namespace goerrprof::testing

#endif  // GOERRPROF_TESTS_SYNTHETIC_GO_BINARY_H_
