#include "plan/entry_probe.h"

#include <algorithm>
#include <vector>

namespace goerrprof::profiler {

std::optional<uint64_t> PastStackCheck(const symbolizer::GoBinary& binary, x86::Decoder& decoder,
                                       absl::string_view name) {
  const symbolizer::Pclntab& tab = binary.pclntab();
  for (size_t i = 0; i < tab.num_functions(); ++i) {
    if (tab.FuncName(i) != name) continue;
    const uint64_t entry = tab.FuncEntry(i), end = tab.FuncEnd(i);
    auto code = binary.elf().ReadVirtual(entry, std::min<uint64_t>(end - entry, 64));
    if (!code.ok()) return std::nullopt;
    std::vector<x86::Insn> insns = decoder.Decode(*code, entry);
    for (size_t k = 1; k + 1 < insns.size() && k < 4; ++k) {
      if (insns[k].flow == x86::Flow::kCondJump && insns[k - 1].id == X86_INS_CMP) {
        return insns[k + 1].addr;
      }
    }
    return entry;
  }
  return std::nullopt;
}

}  // namespace goerrprof::profiler
