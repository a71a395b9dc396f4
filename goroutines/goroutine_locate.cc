#include "goroutines/goroutine_locate.h"

#include <elf.h>
#include <sys/stat.h>

#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "x86/decoder.h"

namespace goerrprof::profiler {
namespace {

bool InWritableData(const symbolizer::ElfFile& elf, uint64_t addr) {
  for (const symbolizer::ElfSegment& s : elf.loads()) {
    if ((s.flags & PF_W) && addr >= s.vaddr && addr + 24 <= s.vaddr + s.memsz) return true;
  }
  return false;
}

// RIP-relative data addresses the function's code reads or writes, with
// how often each is named.
absl::StatusOr<std::map<uint64_t, int>> DataRefs(const symbolizer::GoBinary& binary,
                                                 absl::string_view function) {
  const symbolizer::Pclntab& tab = binary.pclntab();
  for (size_t i = 0; i < tab.num_functions(); ++i) {
    if (tab.FuncName(i) != function) continue;
    uint64_t entry = tab.FuncEntry(i), end = tab.FuncEnd(i);
    auto code = binary.elf().ReadVirtual(entry, end - entry);
    if (!code.ok()) return code.status();
    auto decoder = x86::Decoder::Create();
    if (!decoder.ok()) return decoder.status();
    std::map<uint64_t, int> refs;
    for (const x86::Insn& in : (*decoder)->Decode(*code, entry)) {
      for (int k = 0; k < in.nops; ++k) {
        const x86::Operand& o = in.ops[k];
        // The decoder has made RIP-relative displacements absolute.
        if (o.type != x86::Operand::kMem || o.base != x86::kRip) continue;
        uint64_t target = static_cast<uint64_t>(o.value);
        if (InWritableData(binary.elf(), target)) ++refs[target];
      }
    }
    return refs;
  }
  return absl::NotFoundError(absl::StrCat(function, " not found"));
}

// The slice header: three words X, X+8, X+16 all named by the code. When
// several qualify (not seen so far), the most referenced one wins.
std::optional<uint64_t> SliceHeader(const std::map<uint64_t, int>& refs, bool need_cap) {
  std::optional<uint64_t> best;
  int best_score = 0;
  for (const auto& [addr, n] : refs) {
    auto len = refs.find(addr + 8);
    if (len == refs.end()) continue;
    auto cap = refs.find(addr + 16);
    if (need_cap && cap == refs.end()) continue;
    int score = n + len->second + (cap == refs.end() ? 0 : cap->second);
    if (score > best_score) best = addr, best_score = score;
  }
  return best;
}

}  // namespace

absl::StatusOr<uint64_t> FindAllgs(const symbolizer::GoBinary& binary) {
  auto refs = DataRefs(binary, "runtime.allgadd");
  if (refs.ok()) {
    if (auto x = SliceHeader(*refs, true)) return *x;
  }
  auto each = DataRefs(binary, "runtime.forEachG");
  if (each.ok()) {
    if (auto x = SliceHeader(*each, false)) return *x;
  }
  return absl::NotFoundError(
      "cannot find runtime.allgs (no slice header named by runtime.allgadd or runtime.forEachG)");
}

absl::StatusOr<uint64_t> FindAllp(const symbolizer::GoBinary& binary) {
  // procresize names allp more than any other slice it touches (the P
  // masks, the timer masks).
  auto refs = DataRefs(binary, "runtime.procresize");
  if (!refs.ok()) return refs.status();
  if (auto x = SliceHeader(*refs, true)) return *x;
  return absl::NotFoundError("cannot find runtime.allp (no slice header named by runtime.procresize)");
}

}  // namespace goerrprof::profiler
