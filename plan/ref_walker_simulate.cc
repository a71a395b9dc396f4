// Stepping the symbolic state over instructions, and over write barrier
// checks as a whole.
#include "plan/ref_walker.h"

#include <algorithm>


namespace goerrprof::profiler::planner {

std::optional<Key> RefWalker::MemKey(const State& st, const Operand& op) const {
  if (op.type != Operand::kMem || op.segment) return std::nullopt;
  if (op.index != kNoReg) {
    // A slice element (`errs = append(errs, err)`): named by the values of
    // its base and index registers.
    // (Not in the frame: an element there may alias any frame slot.)
    if (op.base < 0 || op.base >= kNumRegs || op.index < 0 || op.index >= kNumRegs ||
        op.base == GEP_RSP || values_.Key(st.regs[op.base]).first == rsp_root_ ||
        values_.Key(st.regs[op.index]).first == rsp_root_) {
      return std::nullopt;
    }
    return Key(values_.Indexed(st.regs[op.base], st.regs[op.index], op.scale), op.value);
  }
  if (op.base == kRipReg) return Key(kGlobalRoot, op.value);
  if (op.base < 0 || op.base >= kNumRegs) return std::nullopt;
  auto [root, off] = values_.Key(st.regs[op.base]);
  return Key(root, off + op.value);
}

uint32_t RefWalker::ReadOperand(State& st, const Operand& op) {
  switch (op.type) {
    case Operand::kReg:
      if (op.reg >= 0 && op.size == 8) return st.regs[op.reg];
      return values_.Fresh();
    case Operand::kImm:
      return values_.Const(static_cast<uint64_t>(op.value));
    case Operand::kMem: {
      auto key = MemKey(st, op);
      if (!key || op.size != 8) return values_.Fresh();
      if (const Slot* s = st.FindSlot(key->first, key->second)) return s->vid;
      // Frame slots above the outgoing argument words outlive calls.
      bool stack = key->first == rsp_root_;
      bool low = stack && key->second - values_.Key(st.regs[GEP_RSP]).second < kStackArgBytes;
      uint32_t gen = !stack ? st.heap_gen : low ? st.stack_gen : kAnyGen;
      uint32_t vid = values_.Load(key->first, key->second, gen);
      st.slots.push_back({key->first, key->second, vid, -1, false});
      return vid;
    }
    case Operand::kNone:
      break;
  }
  return values_.Fresh();
}

void RefWalker::Store(State& st, const Operand& mem, uint32_t vid, int size, bool plain) {
  auto key = MemKey(st, mem);
  if (!key) unnamed_store_ = true;
  if (key && mem.index != kNoReg) {
    // An element may alias any word of the object its base points into.
    uint32_t base_root = values_.Key(st.regs[mem.base]).first;
    st.slots.erase(std::remove_if(st.slots.begin(), st.slots.end(),
                                  [&](const Slot& s) { return s.root == base_root; }),
                   st.slots.end());
  }
  if (!key) {
    // An address the planner cannot name may alias any heap slot; through
    // the stack pointer it may alias any frame slot.
    bool stack = mem.base >= 0 && mem.base < kNumRegs &&
                 values_.Key(st.regs[mem.base]).first == rsp_root_;
    st.slots.erase(std::remove_if(st.slots.begin(), st.slots.end(),
                                  [&](const Slot& s) { return (s.root == rsp_root_) == stack; }),
                   st.slots.end());
    return;
  }
  st.Kill(key->first, key->second, size);
  if (size == 8) {
    st.slots.push_back({key->first, key->second, vid, step_, plain});
  } else if (size == 16) {
    // Vector stores zero or copy two words; neither is a fresh data word,
    // so neither completes a pair with an itab stored beside it (Go zeroes
    // the next variable's words right after an interface's slot).
    st.slots.push_back({key->first, key->second, values_.Fresh(), -1, false});
    st.slots.push_back({key->first, key->second + 8, values_.Fresh(), -1, false});
  }
}

void RefWalker::SimulateCall(State& st, const Insn& in) {
  absl::string_view name = binary_.FuncAt(in.target);
  if (int val = OldWriteBarrierValueReg(name); val != kNoReg) {
    auto [root, off] = values_.Key(st.regs[GEP_RDI]);
    st.Kill(root, off, 8);
    st.slots.push_back({root, off, st.regs[val], step_, true});
    return;
  }
  if (IsNewWriteBarrier(name)) {
    st.regs[GEP_R11] = values_.Fresh();
    return;
  }
  // Duff's devices zero or copy upward from RDI (from RSI) and clobber only
  // those registers (and X0): values in the others live on across them.
  if (const Binary::Duff duff = binary_.DuffAt(in); duff != Binary::Duff::kNone) {
    {
      auto [root, off] = values_.Key(st.regs[GEP_RDI]);
      bool stack = root == rsp_root_;
      st.slots.erase(std::remove_if(st.slots.begin(), st.slots.end(),
                                    [&](const Slot& s) {
                                      if (stack) return s.root == rsp_root_ && s.off >= off;
                                      return s.root != rsp_root_;
                                    }),
                     st.slots.end());
      st.regs[GEP_RDI] = values_.Fresh();
      if (duff == Binary::Duff::kCopy) st.regs[GEP_RSI] = values_.Fresh();
      return;
    }
  }
  // Past a known helper's results a register holds nothing anyone wrote;
  // any other callee may return in every register.
  const int results = binary_.regabi() ? RuntimeResultRegs(name) : 0;
  for (int r = 0; r < kNumRegs; ++r) {
    if (r == GEP_RSP || r == GEP_RBP || (binary_.regabi() && r == GEP_R14)) continue;
    int k = AbiIndex(r);
    bool garbage = results >= 0 && (k < 0 || k >= results);
    st.regs[r] = values_.Fresh(garbage ? Value::kGarbage : Value::kOpaque);
  }
  if (binary_.regabi()) {
    st.regs[GEP_RAX] = values_.Fresh(Value::kCallResult, in.addr);
    // The callee may write through any pointer, but not into live frame slots.
    st.slots.erase(std::remove_if(st.slots.begin(), st.slots.end(),
                                  [&](const Slot& s) { return s.root != rsp_root_; }),
                   st.slots.end());
    ++st.heap_gen;
  } else {
    // Stack ABI: the callee writes its arguments and results at the bottom
    // of the caller's frame; spills and locals above survive.
    int64_t rsp_off = values_.Key(st.regs[GEP_RSP]).second;
    st.slots.erase(std::remove_if(st.slots.begin(), st.slots.end(),
                                  [&](const Slot& s) {
                                    return s.root != rsp_root_ ||
                                           s.off - rsp_off < kStackArgBytes;
                                  }),
                   st.slots.end());
    ++st.heap_gen;
    ++st.stack_gen;
    if (name == "runtime.newobject") {
      auto [root, off] = values_.Key(st.regs[GEP_RSP]);
      st.slots.push_back(
          {root, off + 8, values_.Fresh(Value::kCallResult, in.addr), step_, true});
    }
  }
}

void RefWalker::Simulate(State& st, const Insn& in) {
  ++step_;
  const Operand& a = in.ops[0];
  const Operand& b = in.ops[1];
  bool a_reg = in.nops >= 1 && a.type == Operand::kReg && a.reg >= 0;
  switch (in.id) {
    case X86_INS_NOP:
    case X86_INS_CMP:
    case X86_INS_TEST:
    case X86_INS_BT:
    case X86_INS_JMP:
      return;
    case X86_INS_MOV:
    case X86_INS_MOVABS:
      if (&in == &insns_[lea_] && a_reg) {
        st.regs[a.reg] = ref_;
        return;
      }
      if (in.nops == 2 && a_reg) {
        uint32_t v = ReadOperand(st, b);
        if (b.type == Operand::kImm) {
          // 32-bit moves zero-extend, so the constant is exact.
          st.regs[a.reg] = a.size == 8   ? values_.Const(static_cast<uint64_t>(b.value))
                           : a.size == 4 ? values_.Const(static_cast<uint32_t>(b.value))
                                         : values_.Fresh();
        } else {
          st.regs[a.reg] = a.size == 8 ? v : values_.Fresh();
        }
        return;
      }
      if (in.nops == 2 && a.type == Operand::kMem) {
        uint32_t v = ReadOperand(st, b);
        bool plain = b.type == Operand::kReg && values_[v].kind != Value::kConst;
        Store(st, a, v, a.size, plain);
        return;
      }
      break;
    case X86_INS_LEA:
      if (a_reg && b.type == Operand::kMem && a.size == 8) {
        if (&in == &insns_[lea_]) {
          st.regs[a.reg] = ref_;
        } else if (b.base == kRipReg) {
          st.regs[a.reg] = values_.Global(static_cast<uint64_t>(b.value));
        } else if (b.index == kNoReg && !b.segment && b.base >= 0) {
          st.regs[a.reg] = values_.Addr(st.regs[b.base], b.value);
        } else if (auto key = MemKey(st, b); key && b.index != kNoReg) {
          st.regs[a.reg] = values_.Addr(key->first, key->second);
        } else {
          st.regs[a.reg] = values_.Fresh();
        }
        return;
      }
      break;
    case X86_INS_XOR:
      if (a_reg && b.type == Operand::kReg && a.raw_reg == b.raw_reg) {
        st.regs[a.reg] = values_.Const(0);
        return;
      }
      break;
    case X86_INS_ADD:
    case X86_INS_SUB:
      if (a_reg && a.size == 8 && b.type == Operand::kImm) {
        int64_t d = in.id == X86_INS_ADD ? b.value : -b.value;
        st.regs[a.reg] = values_.Addr(st.regs[a.reg], d);
        return;
      }
      break;
    case X86_INS_PUSH: {
      uint32_t v = a_reg ? st.regs[a.reg] : values_.Fresh();
      st.regs[GEP_RSP] = values_.Addr(st.regs[GEP_RSP], -8);
      Operand top;
      top.type = Operand::kMem;
      top.base = GEP_RSP;
      Store(st, top, v, 8, true);
      return;
    }
    case X86_INS_POP: {
      Operand top;
      top.type = Operand::kMem;
      top.base = GEP_RSP;
      top.size = 8;
      uint32_t v = ReadOperand(st, top);
      st.regs[GEP_RSP] = values_.Addr(st.regs[GEP_RSP], 8);
      if (a_reg) st.regs[a.reg] = v;
      return;
    }
    default:
      break;
  }
  if (in.flow == Flow::kCall) {
    SimulateCall(st, in);
    return;
  }
  // Anything else: the registers it writes become unknown and the memory it
  // writes is forgotten.
  for (int r = 0; r < kNumRegs; ++r) {
    if (in.regs_written & (1u << r)) st.regs[r] = values_.Fresh();
  }
  if (in.nops >= 1 && a.type == Operand::kMem && !IsCompare(in.id) && in.flow == Flow::kNext) {
    Store(st, a, values_.Fresh(), a.size ? a.size : 8, false);
  }
}

State RefWalker::Merge(const State& a, const State& b, bool loads_comparable) {
  // Two loads of one unwritten word (each side of a write barrier check
  // reloading a spilled data word) are the same value.
  auto same = [&](uint32_t x, uint32_t y) {
    if (x == y) return true;
    if (!loads_comparable) return false;
    const Value& vx = values_[x];
    const Value& vy = values_[y];
    return vx.kind == Value::kLoad && vy.kind == Value::kLoad && vx.aux == vy.aux &&
           vx.gen == vy.gen && values_.LoadRoot(x) == values_.LoadRoot(y);
  };
  State m;
  for (int r = 0; r < kNumRegs; ++r) {
    if (same(a.regs[r], b.regs[r])) {
      m.regs[r] = a.regs[r];
    } else {
      m.regs[r] = values_.Fresh(Unwritten(a.regs[r]) && Unwritten(b.regs[r]) ? Value::kGarbage
                                                                             : Value::kRoot);
    }
  }
  for (const Slot& s : a.slots) {
    const Slot* t = b.FindSlot(s.root, s.off);
    if (!t) continue;
    Slot merged = s;
    if (!same(s.vid, t->vid)) merged.vid = values_.Fresh(Value::kRoot);
    merged.written = std::max(s.written, t->written);
    merged.plain = s.plain && t->plain;
    m.slots.push_back(merged);
  }
  m.stack_gen = std::max(a.stack_gen, b.stack_gen);
  m.heap_gen = std::max(a.heap_gen, b.heap_gen);
  return m;
}

bool RefWalker::AllPredsVisited(const Path& p, int idx) const {
  if (fn_.UnknownEntry(idx)) return false;
  for (int s : fn_.Sources(idx)) {
    if (!p.visited.contains(s)) return false;
  }
  if (idx > 0 && fn_.FallsThrough(idx - 1) && !p.visited.contains(idx - 1)) return false;
  return true;
}

// Straight-line successors of `start`, following direct jumps, up to the
// first instruction that is neither a plain step nor a write barrier call.
std::vector<int> RefWalker::Trace(int start) const {
  std::vector<int> out;
  int i = start;
  while (i >= 0 && i < static_cast<int>(insns_.size()) && out.size() < kMaxSide) {
    if (std::find(out.begin(), out.end(), i) != out.end()) break;
    out.push_back(i);
    const Insn& in = insns_[i];
    if (in.flow == Flow::kJump) {
      if (!in.target) break;
      i = fn_.IndexOf(in.target);
      continue;
    }
    if (in.flow == Flow::kCall && !IsWriteBarrier(binary_.FuncAt(in.target))) break;
    if (in.flow != Flow::kNext && in.flow != Flow::kCall) break;
    ++i;
  }
  return out;
}

// A write barrier check, `CMPL runtime.writeBarrier(SB), $0; Jcc`, whose two
// sides meet again with only barrier calls in between. Recognised by shape
// (a barrier call on one side), so stripped binaries work too.
std::optional<Diamond> RefWalker::DiamondAt(int jcc) const {
  if (jcc == 0 || insns_[jcc].flow != Flow::kCondJump) return std::nullopt;
  int c = jcc - 1;
  while (c > 0 && insns_[c].id == X86_INS_NOP) --c;  // alignment padding (Go 1.27)
  const Insn& cmp = insns_[c];
  if (cmp.id != X86_INS_CMP || cmp.ops[0].type != Operand::kMem || cmp.ops[0].base != kRipReg ||
      cmp.ops[1].type != Operand::kImm || cmp.ops[1].value != 0) {
    return std::nullopt;
  }
  int taken = fn_.IndexOf(insns_[jcc].target);
  if (taken < 0) return std::nullopt;
  Diamond d;
  d.sides[0] = Trace(jcc + 1);
  d.sides[1] = Trace(taken);
  size_t len[2] = {d.sides[0].size(), d.sides[1].size()};
  for (size_t i = 0; i < d.sides[0].size(); ++i) {
    auto it = std::find(d.sides[1].begin(), d.sides[1].end(), d.sides[0][i]);
    if (it != d.sides[1].end()) {
      len[0] = i;
      len[1] = static_cast<size_t>(it - d.sides[1].begin());
      break;
    }
  }
  if (len[0] == d.sides[0].size()) return std::nullopt;
  d.merge = d.sides[0][len[0]];
  int barriers = 0;
  for (int s = 0; s < 2; ++s) {
    d.sides[s].resize(len[s]);
    for (int i : d.sides[s]) {
      const Insn& in = insns_[i];
      if (in.flow == Flow::kCall) {
        if (!IsWriteBarrier(binary_.FuncAt(in.target))) return std::nullopt;
        ++barriers;
      } else if (in.flow != Flow::kNext && in.flow != Flow::kJump) {
        return std::nullopt;
      }
    }
  }
  if (barriers == 0) return std::nullopt;
  return d;
}

// The write barrier check whose sides meet at `merge`, if any.
std::optional<int> RefWalker::DiamondEndingAt(int merge) const {
  for (int j = merge - 1; j > 0 && j >= merge - 2 * kMaxSide; --j) {
    if (insns_[j].flow != Flow::kCondJump) continue;
    if (auto d = DiamondAt(j); d && d->merge == merge) return j;
  }
  return std::nullopt;
}

State RefWalker::SimulateDiamond(const Diamond& d, const State& st) {
  State out[2] = {st, st};
  unnamed_store_ = false;
  for (int s = 0; s < 2; ++s) {
    for (int i : d.sides[s]) Simulate(out[s], insns_[i]);
  }
  // Two loads of one word are one value only if no side wrote memory the
  // walk cannot name (a load after such a write reads the word anew).
  return Merge(out[0], out[1], !unnamed_store_);
}

// Both sides are simulated and merged; the walk goes on at the meeting point.
bool RefWalker::TryDiamond(Path& p, int jcc, int* merge) {
  std::optional<Diamond> d = DiamondAt(jcc);
  if (!d) return false;
  for (const auto& side : d->sides) {
    for (int i : side) {
      if (p.visited.contains(i)) return false;
    }
  }
  for (const auto& side : d->sides) {
    for (int i : side) {
      if (!AllPredsVisited(p, i)) p.exclusive = false;
      p.visited.insert(i);
    }
  }
  p.st = SimulateDiamond(*d, p.st);
  *merge = d->merge;
  return true;
}

}  // namespace goerrprof::profiler::planner
