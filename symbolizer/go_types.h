// Reads Go runtime type descriptors (internal/abi.Type and the kind-specific
// structs after it) and itabs from a binary, so error types and their field
// layouts are known without DWARF.
#ifndef GOERRPROF_SYMBOLIZER_GO_TYPES_H_
#define GOERRPROF_SYMBOLIZER_GO_TYPES_H_

#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"
#include "goabi/runtime_layout.h"
#include "symbolizer/elf_file.h"
#include "symbolizer/moduledata.h"

namespace goerrprof::symbolizer {

enum class GoKind : uint8_t {
  kInvalid = 0, kBool, kInt, kInt8, kInt16, kInt32, kInt64, kUint, kUint8, kUint16,
  kUint32, kUint64, kUintptr, kFloat32, kFloat64, kComplex64, kComplex128, kArray,
  kChan, kFunc, kInterface, kMap, kPointer, kSlice, kString, kStruct, kUnsafePointer,
};
// reflect's spelling: "ptr", "struct", "uintptr", …
absl::string_view KindName(GoKind kind);

struct GoField {
  std::string name;
  uint64_t type = 0;
  uint64_t offset = 0;
};

struct GoType {
  uint64_t addr = 0;
  std::string name;  // as %T prints it: "*main.QueryError", "error", "[]error"
  GoKind kind = GoKind::kInvalid;
  uint64_t size = 0;
  uint64_t elem = 0;                 // pointer, slice, array, chan
  std::vector<GoField> fields;       // struct
  std::vector<std::string> methods;  // interface method names
};

struct GoItab {
  uint64_t addr = 0;
  uint64_t inter = 0;  // interface type
  uint64_t type = 0;   // concrete type
};

class TypeReader {
 public:
  TypeReader(const ElfFile& elf, const Moduledata& md, const goabi::TypeLayout& layout)
      : elf_(elf), md_(md), layout_(layout) {}

  absl::StatusOr<GoType> Read(uint64_t addr) const;
  absl::StatusOr<std::string> Name(uint64_t addr) const;
  absl::StatusOr<GoKind> Kind(uint64_t addr) const;
  // Every itab the linker laid out (moduledata.itablinks).
  absl::StatusOr<std::vector<GoItab>> Itabs() const;
  // Names of the type's exported methods (its uncommon type's method table;
  // for *T, the methods of T and *T). Empty for types without methods and
  // for func and map types, whose records this reader does not size.
  absl::StatusOr<std::vector<std::string>> ExportedMethods(uint64_t addr) const;
  // Whether addr lies among the type descriptors.
  bool InTypes(uint64_t addr) const { return addr >= md_.types && addr < md_.etypes; }

 private:
  // A runtime `name` at addr: flag byte, length, bytes.
  absl::StatusOr<std::string> NameAt(uint64_t addr) const;
  absl::StatusOr<std::string> NameOff(int32_t off) const { return NameAt(md_.types + off); }

  const ElfFile& elf_;
  Moduledata md_;
  goabi::TypeLayout layout_;
};

}  // namespace goerrprof::symbolizer

#endif  // GOERRPROF_SYMBOLIZER_GO_TYPES_H_
