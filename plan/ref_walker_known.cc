// Type tests of the interface being built: a type switch or an inlined
// errors.As compares its itab, type word or hash with constants, and the
// walker knows every one of those numbers, so it knows the branch taken.
#include <optional>

#include "plan/ref_walker.h"

namespace goerrprof::profiler::planner {

// The number a value is known to hold: the reference (the address it
// loads), a word read from its itab, a static address or a constant.
std::optional<uint64_t> RefWalker::KnownNumber(uint32_t vid) const {
  if (vid == ref_) return eface_ ? target_.type : target_.itab;
  if (auto it = derived_.find(vid); it != derived_.end()) return it->second;
  const Value& v = values_[vid];
  if (v.kind == Value::kAddr && v.root == kGlobalRoot) return static_cast<uint64_t>(v.off);
  if (v.kind == Value::kConst) return v.aux;
  return std::nullopt;
}

// `cmp` of the reference, or of a word read from its itab, with a known
// number: a type test (switch, inlined errors.As) of the interface being
// built, whose outcome is known. Not a use of the itab for another value.
bool RefWalker::KnownCompare(Path& p, const Insn& in) const {
  if (in.id != X86_INS_CMP || in.nops != 2) return false;
  const Operand& a = in.ops[0];
  const Operand& b = in.ops[1];
  if (a.type != Operand::kReg || a.reg < 0 || a.reg >= kNumRegs || (a.size != 8 && a.size != 4)) {
    return false;
  }
  uint32_t va = p.st.regs[a.reg];
  std::optional<uint64_t> na = KnownNumber(va), nb;
  bool mine = va == ref_ || derived_.contains(va);
  if (b.type == Operand::kImm) {
    nb = static_cast<uint64_t>(b.value);
  } else if (b.type == Operand::kReg && b.reg >= 0 && b.reg < kNumRegs && b.size == a.size) {
    uint32_t vb = p.st.regs[b.reg];
    nb = KnownNumber(vb);
    mine = mine != (vb == ref_ || derived_.contains(vb));  // exactly one side is ours
  } else {
    return false;
  }
  if (!mine || !na || !nb) return false;
  p.cmp_a = *na;
  p.cmp_b = *nb;
  p.cmp_size = a.size;
  return true;
}

// `mov r, [ref+8]` (an itab's type) or `mov r32, [ref+16]` (the hash an
// itab or a type descriptor carries), the loads of a type switch. Returns
// the word, read from the binary.
std::optional<uint64_t> RefWalker::ItabWordLoad(const State& st, const Insn& in) const {
  if (in.id != X86_INS_MOV || in.nops != 2) return std::nullopt;
  const Operand& a = in.ops[0];
  const Operand& b = in.ops[1];
  if (a.type != Operand::kReg || b.type != Operand::kMem || b.index != kNoReg || b.segment ||
      b.base < 0 || b.base >= kNumRegs || st.regs[b.base] != ref_) {
    return std::nullopt;
  }
  uint64_t base = eface_ ? target_.type : target_.itab;
  if (!eface_ && b.value == 8 && a.size == 8) return target_.type;
  if (b.value != 16 || a.size != 4) return std::nullopt;
  auto bytes = binary_.bin().elf().ReadVirtual(base + 16, 4);
  if (!bytes.ok() || bytes->size() < 4) return std::nullopt;
  const uint8_t* q = bytes->data();
  return uint64_t{q[0]} | uint64_t{q[1]} << 8 | uint64_t{q[2]} << 16 | uint64_t{q[3]} << 24;
}

// The outcome of a conditional jump after `cmp a, b` of `size` bytes.
std::optional<bool> JumpTaken(unsigned id, uint64_t a, uint64_t b, int size) {
  if (size == 4) {
    a = static_cast<uint32_t>(a);
    b = static_cast<uint32_t>(b);
  }
  int64_t sa = size == 4 ? static_cast<int32_t>(a) : static_cast<int64_t>(a);
  int64_t sb = size == 4 ? static_cast<int32_t>(b) : static_cast<int64_t>(b);
  switch (id) {
    case X86_INS_JE: return a == b;
    case X86_INS_JNE: return a != b;
    case X86_INS_JA: return a > b;
    case X86_INS_JAE: return a >= b;
    case X86_INS_JB: return a < b;
    case X86_INS_JBE: return a <= b;
    case X86_INS_JG: return sa > sb;
    case X86_INS_JGE: return sa >= sb;
    case X86_INS_JL: return sa < sb;
    case X86_INS_JLE: return sa <= sb;
    default: return std::nullopt;
  }
}

}  // namespace goerrprof::profiler::planner
