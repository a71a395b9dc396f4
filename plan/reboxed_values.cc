// Whether the data word an itab meets is a value that already existed as
// an error: one asserted out of an interface argument, or a new object
// whose own creation another probe counts.
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "plan/fresh_objects.h"

namespace goerrprof::profiler::planner {

namespace {

constexpr int kMaxSteps = 4096;

bool SameRegs(const Insn& in) {
  return in.nops == 2 && in.ops[0].type == Operand::kReg && in.ops[1].type == Operand::kReg &&
         in.ops[0].reg == in.ops[1].reg;
}

// Register `reg` was last set, in the straight run just before `before`,
// by a LEA of the itab.
bool HoldsItab(const Function& fn, int before, int reg, uint64_t itab) {
  const auto& insns = fn.insns();
  if (!fn.Sources(before).empty() || before == 0 || !fn.FallsThrough(before - 1)) return false;
  for (int j = before - 1; j >= 0 && before - j <= 8; --j) {
    const Insn& in = insns[j];
    if (in.regs_written & (1u << reg)) {
      return in.id == X86_INS_LEA && in.ops[1].type == Operand::kMem &&
             in.ops[1].base == kRipReg && static_cast<uint64_t>(in.ops[1].value) == itab;
    }
    if (!fn.Sources(j).empty() || (j > 0 && !fn.FallsThrough(j - 1))) return false;
  }
  return false;
}

}  // namespace

bool ReboxedOnEveryWay(Binary& binary, const Function& fn, int at, int reg, uint64_t want,
                       uint64_t itab, std::vector<int>* allocs) {
  if (!binary.regabi()) return false;
  const auto& insns = fn.insns();
  // Where the value is just before `at`, and what the way back has learnt:
  // the value is not nil there (TEST; JNE taken), and which register held
  // the itab (CMP with the itab; the equal edge).
  struct Where {
    int at;
    int reg;  // kNoReg for a frame slot
    int64_t off;
    bool nonzero;
    int tested;  // kNoReg when none
  };
  auto key = [](const Where& w) {
    return (static_cast<uint64_t>(w.at) << 40) ^ (static_cast<uint64_t>(w.reg + 1) << 35) ^
           (static_cast<uint64_t>(w.tested + 1) << 30) ^ (uint64_t{w.nonzero} << 29) ^
           (static_cast<uint64_t>(w.off) & 0x1fffffffu);
  };
  int steps = 0;
  std::vector<Where> work{{at, reg, 0, false, kNoReg}};
  absl::flat_hash_set<uint64_t> seen{key(work[0])};
  while (!work.empty()) {
    Where w = work.back();
    work.pop_back();
    if (w.at == 0) {
      // An argument's data word, its itab register tested equal to the itab.
      int k = AbiIndex(w.reg);
      if (k < 1 || w.tested != kAbiRegs[k - 1]) return false;
      continue;
    }
    const std::vector<int> preds = fn.WaysIn(w.at);
    if (preds.empty() && insns[w.at].id == X86_INS_NOP) continue;
    if (fn.UnknownEntry(w.at)) return false;
    for (int j : preds) {
      if (++steps > kMaxSteps) return false;
      const Insn& in = insns[j];
      Where from = w;
      from.at = j;
      // What the branch taken (or not) on the way says.
      if (in.flow == Flow::kCondJump && j > 0 && (in.id == X86_INS_JNE || in.id == X86_INS_JE) &&
          fn.Sources(j).empty() && fn.FallsThrough(j - 1)) {
        const bool taken = fn.IndexOf(in.target) == w.at && j + 1 != w.at;
        const bool differ = (in.id == X86_INS_JNE) == taken;
        const Insn& c = insns[j - 1];
        if (differ && c.id == X86_INS_TEST && SameRegs(c) && c.ops[0].reg == w.reg &&
            c.ops[0].size == 8) {
          from.nonzero = true;
        }
        if (!differ && c.id == X86_INS_CMP && c.nops == 2 && c.ops[0].type == Operand::kReg &&
            c.ops[1].type == Operand::kReg && c.ops[0].size == 8) {
          if (HoldsItab(fn, j - 1, c.ops[0].reg, itab)) from.tested = c.ops[1].reg;
          if (HoldsItab(fn, j - 1, c.ops[1].reg, itab)) from.tested = c.ops[0].reg;
        }
      }
      if (w.reg == kNoReg && !SafeSlot(binary, fn, w.off, j)) return false;
      if (in.flow == Flow::kCall) {
        absl::string_view callee = binary.FuncAt(in.target);
        if (w.reg == GEP_RAX && AllocatorTypeReg(callee) != kNoReg) {
          if (AllocatedType(binary, fn, j) != want) return false;
          allocs->push_back(j);
          continue;  // made here
        }
        const bool barrier = IsWriteBarrier(callee);
        if (w.reg != kNoReg && !(barrier && w.reg != GEP_R11)) return false;
        if (w.tested != kNoReg && !(barrier && w.tested != GEP_R11)) from.tested = kNoReg;
        if (seen.insert(key(from)).second) work.push_back(from);
        continue;
      }
      if (w.tested != kNoReg && (in.regs_written & (1u << w.tested))) from.tested = kNoReg;
      // Zeroed on a way that then found it non-nil: no way at all.
      if (w.reg != kNoReg && in.id == X86_INS_XOR && SameRegs(in) && in.ops[0].reg == w.reg) {
        if (w.nonzero) continue;
        return false;
      }
      if (!MoveBack(binary, fn, in, &from.reg, &from.off)) return false;
      if (seen.insert(key(from)).second) work.push_back(from);
    }
  }
  return true;
}

}  // namespace goerrprof::profiler::planner
