// What one instruction does with the reference: type tests of the
// interface being built (a type switch or an inlined errors.As compares its
// itab, type word or hash with constants, and the walker knows every one of
// those numbers, so it knows the branch taken), nil checks, methods called
// on the value, and the uses that create nothing.
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "plan/ref_walker.h"

namespace goerrprof::profiler::planner {

// `test r, r` with r holding the reference: an inlined `err != nil` on the
// interface under construction (Go checks it when a helper returning an
// error is inlined). Its itab is never nil; the value lives on.
bool RefWalker::IsNilCheck(const State& st, const Insn& in) const {
  if (in.id != X86_INS_TEST || in.nops != 2) return false;
  const Operand& a = in.ops[0];
  const Operand& b = in.ops[1];
  return a.type == Operand::kReg && b.type == Operand::kReg && a.raw_reg == b.raw_reg &&
         a.size == 8 && a.reg >= 0 && a.reg < kNumRegs && st.regs[a.reg] == ref_;
}

// `cmovCC dst, src` choosing between the reference and zero: the register
// then holds the new interface or a nil one (an error returned only when a
// flag says so). The probe reads it later, and a nil itab there counts
// nothing (nil_at_site), so the select is followed as if it always moved
// the reference. A select between two itabs is not: both would be counted.
bool RefWalker::SelectsOrNil(const State& st, const Insn& in) const {
  if (in.id < X86_INS_CMOVA || in.id > X86_INS_CMOVS || in.nops != 2) return false;
  const Operand& a = in.ops[0];
  const Operand& b = in.ops[1];
  if (a.type != Operand::kReg || b.type != Operand::kReg || a.size != 8 || b.size != 8 ||
      a.reg < 0 || a.reg >= kNumRegs || b.reg < 0 || b.reg >= kNumRegs) {
    return false;
  }
  uint32_t dst = st.regs[a.reg], src = st.regs[b.reg];
  uint32_t other = dst == ref_ ? src : src == ref_ ? dst : ref_;
  if (other == ref_) return false;
  std::optional<uint64_t> n = KnownNumber(other);
  return n && *n == 0;
}

std::optional<std::string> RefWalker::ClassifyUse(const State& st, const Insn& in) const {
  if (in.id == X86_INS_NOP) return std::nullopt;  // multi-byte NOPs name registers
  for (int i = 0; i < PlannedOps(in); ++i) {
    const Operand& op = in.ops[i];
    if (op.type != Operand::kMem) continue;
    for (int r : {op.base, op.index}) {
      if (r >= 0 && r < kNumRegs && st.regs[r] == ref_) {
        return in.id == X86_INS_LEA ? Noun() + " used as a pointer"
                                    : Noun() + " dereferenced";
      }
    }
  }
  bool reads = false;
  for (int r = 0; r < kNumRegs; ++r) {
    if ((in.regs_read & (1u << r)) && st.regs[r] == ref_) reads = true;
  }
  // Go's nil check, TESTB AX, (R): it faults on a nil R; AX is whatever AX
  // holds (an itab just loaded there, in http2serverConn.processData).
  if (in.id == X86_INS_TEST && PlannedOps(in) == 2 && in.ops[0].type == Operand::kMem &&
      in.ops[1].type == Operand::kReg && in.ops[1].size == 1) {
    return std::nullopt;
  }
  if (IsCompare(in.id)) {
    bool mem = false;
    for (int i = 0; i < PlannedOps(in); ++i) {
      if (auto key = MemKey(st, in.ops[i])) {
        const Slot* s = st.FindSlot(key->first, key->second);
        mem = mem || (s && s->vid == ref_);
      }
    }
    if (reads || mem) return std::string("comparison");
    return std::nullopt;
  }
  if (!reads) return std::nullopt;
  switch (in.id) {
    case X86_INS_MOV:
      if (in.ops[1].type == Operand::kReg && in.ops[1].size == 8) return std::nullopt;
      break;
    case X86_INS_PUSH:
      return std::nullopt;
    case X86_INS_XOR:
      if (in.ops[0].type == Operand::kReg && in.ops[1].type == Operand::kReg &&
          in.ops[0].raw_reg == in.ops[1].raw_reg) {
        return std::nullopt;
      }
      break;
    default:
      if (in.flow == Flow::kCall || in.flow == Flow::kRet) return std::nullopt;
      break;
  }
  return absl::StrCat("unhandled use: ", dis_.Name(in.id));
}

// Go moves the stack pointer only in prologues and epilogues, so once it
// rises above its lowest point the frame is being torn down.
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
  // `cmp [ref+8], r`: the itab's type word read by the compare itself
  // (`switch err { case syscall.EINVAL: }` right after building err).
  if (a.type == Operand::kMem) {
    std::optional<uint64_t> na = ItabWordAt(p.st, a), nb;
    if (!na) return false;
    if (b.type == Operand::kImm) {
      nb = static_cast<uint64_t>(b.value);
    } else if (b.type == Operand::kReg && b.reg >= 0 && b.reg < kNumRegs && b.size == a.size) {
      uint32_t vb = p.st.regs[b.reg];
      if (vb == ref_ || derived_.contains(vb)) return false;
      nb = KnownNumber(vb);
    }
    if (!nb) return false;
    p.cmp_a = *na;
    p.cmp_b = *nb;
    p.cmp_size = a.size;
    return true;
  }
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
  if (in.id != X86_INS_MOV || in.nops != 2 || in.ops[0].type != Operand::kReg) return std::nullopt;
  return ItabWordAt(st, in.ops[1]);
}

// The word a memory operand reads from the reference's itab (its type, 8
// bytes at +8) or itab or type (its hash, 4 bytes at +16).
std::optional<uint64_t> RefWalker::ItabWordAt(const State& st, const Operand& b) const {
  if (b.type != Operand::kMem || b.index != kNoReg || b.segment || b.base < 0 ||
      b.base >= kNumRegs || st.regs[b.base] != ref_) {
    return std::nullopt;
  }
  uint64_t base = eface_ ? target_.type : target_.itab;
  if (!eface_ && b.value == 8 && b.size == 8) return target_.type;
  if (b.value != 16 || b.size != 4) return std::nullopt;
  auto bytes = binary_.bin().elf().ReadVirtual(base + 16, 4);
  if (!bytes.ok() || bytes->size() < 4) return std::nullopt;
  const uint8_t* q = bytes->data();
  return uint64_t{q[0]} | uint64_t{q[1]} << 8 | uint64_t{q[2]} << 16 | uint64_t{q[3]} << 24;
}

// `mov r, [itab + 24 + 8k]`: method k of the itab being built.
bool RefWalker::MethodLoad(const State& st, const Insn& in) const {
  if (eface_ || in.id != X86_INS_MOV || in.nops != 2) return false;
  const Operand& a = in.ops[0];
  const Operand& b = in.ops[1];
  return a.type == Operand::kReg && a.size == 8 && b.type == Operand::kMem &&
         b.index == kNoReg && !b.segment && b.base >= 0 && b.base < kNumRegs &&
         st.regs[b.base] == ref_ && b.value >= 24 && b.value % 8 == 0;
}

// An indirect call of such a method (loaded before, or read by the call).
bool RefWalker::MethodCall(const Path& p, const Insn& in) const {
  // Register ABI only: on the stack ABI the receiver is in the frame.
  if (eface_ || !binary_.regabi() || in.target || in.nops < 1) return false;
  const Operand& op = in.ops[0];
  if (op.type == Operand::kReg) return p.method && op.reg >= 0 && p.st.regs[op.reg] == p.method;
  return op.type == Operand::kMem && op.index == kNoReg && !op.segment && op.base >= 0 &&
         op.base < kNumRegs && p.st.regs[op.base] == ref_ && op.value >= 24;
}

PathEnd RefWalker::AtMethodCall(Path& p, int pos) {
  const State& st = p.positions[pos].state;
  uint32_t data = st.regs[GEP_RAX];  // the receiver
  // A receiver from before the walk is some other value's.
  if (data < first_walk_vid_ || data == ref_) return Lost(Noun() + " dereferenced");
  return Place(p, pos, Locate(st, ref_), Locate(st, data), data, CreationProbe::kCall);
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
