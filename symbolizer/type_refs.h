// The type descriptors a binary's code refers to: the candidates for
// FindErrorTypes beyond those the itabs name.
#ifndef GOERRPROF_SYMBOLIZER_TYPE_REFS_H_
#define GOERRPROF_SYMBOLIZER_TYPE_REFS_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "symbolizer/go_binary.h"

namespace goerrprof::symbolizer {

// Every type descriptor the code loads with a RIP-relative LEA: the
// candidates for FindErrorTypes (types with an Error method that no itab
// names, like one only passed to fmt.Errorf's %w). A byte scan: some may be
// false matches, which FindErrorTypes then does not keep.
absl::StatusOr<std::vector<uint64_t>> TypeDescriptorRefs(const GoBinary& bin);

}  // namespace goerrprof::symbolizer

#endif  // GOERRPROF_SYMBOLIZER_TYPE_REFS_H_
