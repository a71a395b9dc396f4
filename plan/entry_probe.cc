#include "plan/entry_probe.h"

#include <algorithm>
#include <vector>

namespace goerrprof::profiler {

std::optional<FuncRange> FindFunction(const symbolizer::Pclntab& tab, absl::string_view name) {
  for (size_t i = 0; i < tab.num_functions(); ++i) {
    if (tab.FuncName(i) == name) return FuncRange{tab.FuncEntry(i), tab.FuncEnd(i)};
  }
  return std::nullopt;
}

uint64_t PastStackCheck(const symbolizer::GoBinary& binary, x86::Decoder& decoder,
                        const FuncRange& f) {
  auto code = binary.elf().ReadVirtual(f.entry, std::min<uint64_t>(f.end - f.entry, 64));
  if (!code.ok()) return f.entry;
  std::vector<x86::Insn> insns = decoder.Decode(*code, f.entry);
  for (size_t k = 1; k + 1 < insns.size() && k < 4; ++k) {
    if (insns[k].flow == x86::Flow::kCondJump && insns[k - 1].id == X86_INS_CMP) {
      return insns[k + 1].addr;
    }
  }
  return f.entry;
}

}  // namespace goerrprof::profiler
