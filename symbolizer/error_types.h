// The types of a binary that implement `error`, found through the itabs the
// linker laid out for interfaces with an Error() method, with the layout a
// probe needs: where the message strings and the wrapped errors live.
#ifndef GOERRPROF_SYMBOLIZER_ERROR_TYPES_H_
#define GOERRPROF_SYMBOLIZER_ERROR_TYPES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "symbolizer/go_types.h"

namespace goerrprof::symbolizer {

enum class ErrorFieldKind { kString, kError, kErrorSlice };

struct ErrorField {
  std::string name;
  uint64_t offset = 0;  // within the struct (the pointee, for pointer types)
  ErrorFieldKind kind = ErrorFieldKind::kString;
};

struct ErrorType {
  std::string name;       // "*main.QueryError"
  uint64_t type_addr = 0;
  GoKind kind = GoKind::kInvalid;
  uint64_t size = 0;
  uint64_t elem_size = 0;  // pointee size for pointer types, else 0
  std::vector<ErrorField> fields;
  std::vector<uint64_t> itabs;          // every itab of this type for an error-like interface
  std::vector<std::string> interfaces;  // those interfaces' names ("error", "net.Error", …)
};

// Sorted by name. Types whose descriptors cannot be read are skipped.
// `candidates`: more type descriptors to test for an Error method (those
// the code refers to): a type only ever boxed into `any` (an argument of
// fmt.Errorf's %w) has no itab to be found by.
absl::StatusOr<std::vector<ErrorType>> FindErrorTypes(const TypeReader& types,
                                                      absl::Span<const uint64_t> candidates = {});

}  // namespace goerrprof::symbolizer

#endif  // GOERRPROF_SYMBOLIZER_ERROR_TYPES_H_
