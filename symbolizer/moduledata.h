// Finds runtime.firstmoduledata in a Go binary — by symbol, or in stripped
// binaries by scanning data for the word that points at the pclntab — and
// reads the fields goerrprof needs.
#ifndef GOERRPROF_SYMBOLIZER_MODULEDATA_H_
#define GOERRPROF_SYMBOLIZER_MODULEDATA_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "goabi/runtime_layout.h"
#include "symbolizer/elf_file.h"
#include "symbolizer/pclntab.h"

namespace goerrprof::symbolizer {

struct Moduledata {
  uint64_t addr = 0;
  uint64_t text = 0, etext = 0;
  uint64_t types = 0, etypes = 0;
  uint64_t gofunc = 0;  // 0 before 1.18
  uint64_t typelinks = 0, ntypelinks = 0;  // []int32 (offsets from types)
  uint64_t itablinks = 0, nitablinks = 0;  // []*itab, before 1.27
  // 1.27+: the linker's itabs lie back to back in [itabs, itabs+itab_bytes).
  uint64_t itabs = 0, itab_bytes = 0;
};

absl::StatusOr<Moduledata> FindModuledata(const ElfFile& elf, const Pclntab& pclntab,
                                          const goabi::ModuledataLayout& layout);

}  // namespace goerrprof::symbolizer

#endif  // GOERRPROF_SYMBOLIZER_MODULEDATA_H_
