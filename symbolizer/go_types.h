// Reads Go runtime type descriptors (internal/abi.Type and the kind-specific
// structs after it) and itabs from a binary, so error types and their field
// layouts are known without DWARF.
#ifndef GOERRPROF_SYMBOLIZER_GO_TYPES_H_
#define GOERRPROF_SYMBOLIZER_GO_TYPES_H_

#include <atomic>
#include <cstdint>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/container/node_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
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

// Reads are bounded by the file: each descriptor is read once (memoised),
// and all reads of one reader together may copy at most about the file's
// size in names and an eighth of it in field and method records (plus a
// floor), so crafted descriptors that refer to each other cost linear
// time and memory. Past that, reads fail with ResourceExhausted.
class TypeReader {
 public:
  TypeReader(const ElfFile& elf, const Moduledata& md, const goabi::TypeLayout& layout);
  TypeReader(const TypeReader&) = delete;
  TypeReader& operator=(const TypeReader&) = delete;

  // A copy of Get's descriptor.
  absl::StatusOr<GoType> Read(uint64_t addr) const;
  // The descriptor at addr, read on first use; valid as long as the reader.
  absl::StatusOr<const GoType*> Get(uint64_t addr) const;
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
  absl::StatusOr<GoType> ReadUncached(uint64_t addr) const;
  // A runtime `name` at addr: flag byte, length, bytes.
  absl::StatusOr<std::string> NameAt(uint64_t addr) const;
  absl::StatusOr<std::string> NameOff(int32_t off) const { return NameAt(md_.types + off); }
  // Takes `records` field/method records and `name_bytes` from the budget.
  absl::Status Spend(uint64_t records, uint64_t name_bytes) const;

  const ElfFile& elf_;
  Moduledata md_;
  goabi::TypeLayout layout_;
  mutable std::atomic<int64_t> records_left_;
  mutable std::atomic<int64_t> name_bytes_left_;
  mutable absl::Mutex mu_;
  mutable absl::node_hash_map<uint64_t, absl::StatusOr<GoType>> cache_ ABSL_GUARDED_BY(mu_);
};

}  // namespace goerrprof::symbolizer

#endif  // GOERRPROF_SYMBOLIZER_GO_TYPES_H_
