#include "goroutines/goroutine_locate.h"

#include <capstone/capstone.h>
#include <elf.h>
#include <sys/stat.h>

#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

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
    csh handle;
    if (cs_open(CS_ARCH_X86, CS_MODE_64, &handle) != CS_ERR_OK) {
      return absl::InternalError("cannot start the Capstone disassembler");
    }
    cs_option(handle, CS_OPT_DETAIL, CS_OPT_ON);
    cs_insn* insn = cs_malloc(handle);
    std::map<uint64_t, int> refs;
    const uint8_t* p = code->data();
    size_t left = code->size();
    uint64_t pc = entry;
    while (left > 0 && cs_disasm_iter(handle, &p, &left, &pc, insn)) {
      const cs_x86& x = insn->detail->x86;
      for (int k = 0; k < x.op_count; ++k) {
        const cs_x86_op& o = x.operands[k];
        if (o.type != X86_OP_MEM || o.mem.base != X86_REG_RIP) continue;
        uint64_t target = insn->address + insn->size + o.mem.disp;
        if (InWritableData(binary.elf(), target)) ++refs[target];
      }
    }
    cs_free(insn, 1);
    cs_close(&handle);
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

}  // namespace goerrprof::profiler
