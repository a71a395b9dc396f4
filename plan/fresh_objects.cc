// Following a new object back from where an itab meets it to the
// allocation that made it, on every way there.
#include "plan/fresh_objects.h"

#include <algorithm>
#include <memory>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"

namespace goerrprof::profiler::planner {

namespace {

// Constructors followed: a Go function's own body, at most this deep.
constexpr int kMaxDepth = 2;
// Decoded callees kept per binary, and backward steps per question.
constexpr size_t kMaxDecoded = 4096;
constexpr int kMaxSteps = 4096;

}  // namespace

int AllocatorTypeReg(absl::string_view callee) {
  if (callee == "runtime.newobject" || callee == "runtime.convT" ||
      callee == "runtime.convTnoptr") {
    return GEP_RAX;
  }
  if (absl::StartsWith(callee, "runtime.mallocgc")) return GEP_RBX;
  return kNoReg;
}

uint64_t AllocatedType(Binary& binary, const Function& fn, int call) {
  const auto& insns = fn.insns();
  const int reg = AllocatorTypeReg(binary.FuncAt(insns[call].target));
  if (reg == kNoReg) return 0;
  // The last write of that register in the few instructions before the call.
  for (int j = call - 1; j >= 0 && call - j <= 6; --j) {
    const Insn& in = insns[j];
    if (in.flow != Flow::kNext || !fn.Sources(j + 1).empty()) return 0;
    if (!(in.regs_written & (1u << reg))) continue;
    if (in.id == X86_INS_LEA && in.ops[1].type == Operand::kMem && in.ops[1].base == kRipReg) {
      return static_cast<uint64_t>(in.ops[1].value);
    }
    return 0;
  }
  return 0;
}

const Function* Binary::Decoded(uint64_t entry) {
  if (auto it = decoded_.find(entry); it != decoded_.end()) return it->second.get();
  if (decoded_.size() >= kMaxDecoded) return nullptr;
  std::unique_ptr<Function>& slot = decoded_[entry];
  const auto& tab = bin_.pclntab();
  auto idx = tab.FindFunc(entry);
  if (!idx || tab.FuncEntry(*idx) != entry) return nullptr;
  uint64_t end = tab.FuncEnd(*idx);
  if (end <= entry || end - entry > (1u << 20)) return nullptr;
  auto code = bin_.elf().ReadVirtualUpTo(entry, end - entry);
  if (!code.ok() || code->size() != end - entry) return nullptr;
  if (!dis_) {
    auto dis = x86::Decoder::Create();
    if (!dis.ok()) return nullptr;
    dis_ = std::move(*dis);
  }
  auto fn = std::make_unique<Function>(entry, end);
  dis_->Decode(*code, entry, fn->mutable_insns());
  fn->Analyze(*this);
  slot = std::move(fn);
  return slot.get();
}

namespace {

// Bytes Duff's device entered at `target` stores through RDI: its 16-byte
// stores from there to its return.
std::optional<int64_t> DuffBytes(Binary& binary, uint64_t target) {
  const auto& tab = binary.bin().pclntab();
  auto idx = tab.FindFunc(target);
  if (!idx) return std::nullopt;
  const Function* duff = binary.Decoded(tab.FuncEntry(*idx));
  if (!duff) return std::nullopt;
  int64_t bytes = 0, base = 0;  // DI advances block by block
  for (int i = duff->IndexOf(target); i >= 0 && i < static_cast<int>(duff->insns().size()); ++i) {
    const Insn& in = duff->insns()[i];
    if (in.flow == Flow::kRet) return bytes;
    if (in.flow != Flow::kNext) return std::nullopt;
    const Operand& a = in.ops[0];
    const Operand& b = in.ops[1];
    if (in.nops >= 1 && a.type == Operand::kMem && a.base == GEP_RDI) {
      bytes = std::max<int64_t>(bytes, base + a.value + a.size);
    }
    if (a.type == Operand::kReg && a.reg == GEP_RDI) {
      if (in.id == X86_INS_LEA && b.type == Operand::kMem && b.base == GEP_RDI) {
        base += b.value;
      } else if (in.id == X86_INS_ADD && b.type == Operand::kImm) {
        base += b.value;
      } else {
        return std::nullopt;
      }
    }
  }
  return std::nullopt;
}

}  // namespace

const std::optional<Binary::Ranges>& Binary::FrameHazards(const Function& fn) {
  if (auto it = hazards_.find(fn.entry()); it != hazards_.end()) return it->second;
  std::optional<Ranges>& out = hazards_[fn.entry()];
  const auto& tab = bin_.pclntab();
  auto idx = tab.FindFunc(fn.entry());
  if (!idx) return out;
  auto objects = tab.FuncStackObjects(*idx);
  if (!objects) return out;
  const auto& insns = fn.insns();
  auto frame = BodyFrame(fn);
  if (!frame) return out;
  const int64_t varp = frame->varp, argp = frame->argp;
  constexpr int64_t kAll = int64_t{1} << 40;
  Ranges ranges;
  for (const auto& o : *objects) {
    int64_t lo = o.off < 0 ? varp + o.off : argp + o.off;
    ranges.push_back({lo, lo + o.size, -1});
  }
  auto in_object = [&](int64_t d) {
    for (const auto& o : *objects) {
      int64_t lo = o.off < 0 ? varp + o.off : argp + o.off;
      if (d >= lo && d < lo + o.size) return true;
    }
    return false;
  };
  std::vector<int64_t> taken;  // frame addresses the code takes
  for (const Insn& in : insns) {
    if (in.id == X86_INS_LEA && in.ops[1].type == Operand::kMem && in.ops[1].base == GEP_RSP &&
        in.ops[1].index == kNoReg && in.ops[1].value >= 0) {
      taken.push_back(in.ops[1].value);
    }
  }
  // Frame addresses in registers: follow each in its straight run.
  for (size_t i = 0; i < insns.size(); ++i) {
    const Insn& lea = insns[i];
    if (lea.id != X86_INS_LEA || lea.ops[0].type != Operand::kReg || lea.ops[1].type != Operand::kMem ||
        lea.ops[1].base != GEP_RSP || lea.ops[1].index != kNoReg) {
      continue;
    }
    const int r = lea.ops[0].reg;
    int64_t d = lea.ops[1].value;
    if (r == GEP_RSP || r == GEP_RBP || d < 0 || in_object(d)) continue;
    bool open = true;  // the address may still be used past what was seen
    for (size_t j = i + 1; j < insns.size() && open; ++j) {
      const Insn& in = insns[j];
      if (in.flow == Flow::kCall) {
        absl::string_view callee = FuncAt(in.target);
        const Duff duff = DuffAt(in);
        if (r == GEP_RDI && duff != Duff::kNone) {
          if (auto n = DuffBytes(*this, in.target)) {
            ranges.push_back({d, d + *n, static_cast<int>(j)});
            open = false;
          }
        } else if (r == GEP_RSI && duff == Duff::kCopy) {
          open = false;  // the source: only read
        } else if (IsWriteBarrier(callee) && r != GEP_R11) {
          // Before Go 1.21 the barrier stores to [DI] itself.
          if (r == GEP_RDI && OldWriteBarrierValueReg(callee) != kNoReg) {
            ranges.push_back({d, d + 8, static_cast<int>(j)});
          }
          continue;
        }
        break;
      }
      if (in.flow != Flow::kNext) break;
      const Operand& a = in.ops[0];
      const Operand& b = in.ops[1];
      bool uses = false;  // r serves as the base of a memory operand
      for (int k = 0; k < PlannedOps(in); ++k) {
        uses = uses || (in.ops[k].type == Operand::kMem && in.ops[k].base == r);
      }
      // An element of it (an index), or a string instruction (REP STOS
      // through DI, its extent in RCX): how far it writes is unknown.
      if ((uses && ((a.type == Operand::kMem && a.base == r && a.index != kNoReg) ||
                    (b.type == Operand::kMem && b.base == r && b.index != kNoReg))) ||
          ((in.regs_written & in.regs_read & (1u << r)) &&
           !(in.id == X86_INS_LEA && b.type == Operand::kMem && b.base == r &&
             b.index == kNoReg) &&
           !(in.id == X86_INS_ADD && b.type == Operand::kImm))) {
        break;  // open
      }
      if (in.nops >= 1 && a.type == Operand::kMem && a.base == r && !IsCompare(in.id)) {
        ranges.push_back(
            {d + a.value, d + a.value + std::max<int64_t>(a.size, 8), static_cast<int>(j)});
      }
      if (in.regs_written & (1u << r)) {
        if ((in.id == X86_INS_LEA && b.type == Operand::kMem && b.base == r &&
             b.index == kNoReg) ||
            (in.id == X86_INS_ADD && b.type == Operand::kImm)) {
          d += b.value;
          continue;
        }
        open = false;  // overwritten: the address is gone
        break;
      }
      // Copied or stored elsewhere: it may be written through anywhere.
      if ((in.regs_read & (1u << r)) && !(a.type == Operand::kMem && a.base == r) &&
          !(in.nops >= 2 && b.type == Operand::kMem && b.base == r) && !IsCompare(in.id)) {
        break;
      }
    }
    // Unbounded: up to the next variable known to start above it (a
    // stack object or another taken address; distinct variables do not
    // overlap), or the saved frame pointer.
    if (open) {
      int64_t end = varp > d ? varp : kAll;
      for (const auto& o : *objects) {
        int64_t lo = o.off < 0 ? varp + o.off : argp + o.off;
        if (lo > d) end = std::min(end, lo);
      }
      for (int64_t t : taken) {
        if (t > d) end = std::min(end, t);
      }
      ranges.push_back({d, end, -1});
    }
  }
  out = std::move(ranges);
  return out;
}

bool Binary::ReturnsNew(uint64_t entry, uint64_t want, uint64_t target, int depth) {
  auto key = std::make_tuple(entry, want, target);
  if (auto it = returns_new_.find(key); it != returns_new_.end()) return it->second;
  returns_new_[key] = false;  // what recursion meets: not known to be new
  const Function* fn = Decoded(entry);
  if (!fn) return false;
  bool ok = false;
  for (int i = 0; i < static_cast<int>(fn->insns().size()); ++i) {
    if (fn->insns()[i].flow != Flow::kRet) continue;
    ok = NewOnEveryWay(*this, *fn, i, GEP_RAX, want, target, depth);
    if (!ok) break;
  }
  returns_new_[key] = ok;
  return ok;
}

// A frame slot that, at instruction `at` (-1: anywhere), only moves and
// RSP-based stores the walk sees can write.
bool SafeSlot(Binary& binary, const Function& fn, int64_t off, int at) {
  const auto& hazards = binary.FrameHazards(fn);
  if (!hazards) return false;
  for (const Binary::Hazard& h : *hazards) {
    if ((h.at == -1 || h.at == at) && off < h.hi && off + 8 > h.lo) return false;
  }
  return true;
}

bool MoveBack(Binary& binary, const Function& fn, const Insn& in, int* reg, int64_t* off) {
  auto frame_slot = [](const Operand& o) {
    return o.type == Operand::kMem && o.base == GEP_RSP && o.index == kNoReg && !o.segment;
  };
  const Operand& a = in.ops[0];
  const Operand& b = in.ops[1];
  if (*reg == kNoReg && (in.regs_written & (1u << GEP_RSP))) {
    return false;  // the slot's address moved: the prologue or epilogue
  }
  if (*reg != kNoReg && (in.regs_written & (1u << *reg))) {
    if (in.id != X86_INS_MOV || in.nops != 2 || a.type != Operand::kReg || a.size != 8) {
      return false;
    }
    if (b.type == Operand::kReg && b.reg != kNoReg && b.size == 8) {
      *reg = b.reg;
    } else if (frame_slot(b) && b.size == 8 && SafeSlot(binary, fn, b.value, -1)) {
      *reg = kNoReg;
      *off = b.value;
    } else {
      return false;
    }
  } else if (*reg == kNoReg && in.nops >= 1 && frame_slot(a) && a.value + a.size > *off &&
             a.value < *off + 8) {
    // A store over the slot: only a spill of a register carries on.
    // (Stores through other bases miss it: a spill slot's address is
    // never taken.)
    if (in.id != X86_INS_MOV || a.value != *off || a.size != 8 || b.type != Operand::kReg ||
        b.reg == kNoReg) {
      return false;
    }
    *reg = b.reg;
    *off = 0;
  }
  return true;
}

bool NewOnEveryWay(Binary& binary, const Function& fn, int at, int reg, uint64_t want,
                   uint64_t target, int depth) {
  // Register ABI only: on the stack ABI values and results go through the
  // frame, and a register after a call holds nothing it returned.
  if (!binary.regabi()) return false;
  const auto& insns = fn.insns();
  // Where the value is just before instruction `at`: a register, or a
  // frame slot (RSP-relative; Go keeps RSP fixed between prologue and
  // epilogue).
  struct Where {
    int at;
    int reg;      // kNoReg for a slot
    int64_t off;  // the slot
  };
  auto key = [](const Where& w) {
    return (static_cast<uint64_t>(w.at) << 40) ^ (static_cast<uint64_t>(w.reg + 1) << 36) ^
           (static_cast<uint64_t>(w.off) & 0xfffffffffu);
  };
  int steps = 0;
  std::vector<Where> work{{at, reg, 0}};
  absl::flat_hash_set<uint64_t> seen{key(work[0])};
  while (!work.empty()) {
    Where w = work.back();
    work.pop_back();
    if (w.at == 0) return false;  // held since the entry: an argument
    // Every way into `w.at`: a fall-through and the branches to it. A way
    // met before is a loop back, which carries only what entered the loop.
    const std::vector<int> preds = fn.WaysIn(w.at);
    // Alignment padding after a jump leads nowhere back.
    if (preds.empty() && insns[w.at].id == X86_INS_NOP) continue;
    if (fn.UnknownEntry(w.at)) return false;
    for (int j : preds) {
      if (++steps > kMaxSteps) return false;
      const Insn& in = insns[j];
      Where from{j, w.reg, w.off};
      // A reference to the itab on the way (this one, a loop ago, or
      // another): that one built the value.
      if (in.nops == 2 && in.ops[1].type == Operand::kMem && in.ops[1].base == kRipReg &&
          static_cast<uint64_t>(in.ops[1].value) == target) {
        return false;
      }
      // A write the walk cannot see here (through a register set from RSP,
      // Duff's device) over the slot.
      if (w.reg == kNoReg && !SafeSlot(binary, fn, w.off, j)) return false;
      if (in.flow == Flow::kCall) {
        absl::string_view callee = binary.FuncAt(in.target);
        if (w.reg == GEP_RAX && AllocatorTypeReg(callee) != kNoReg) {
          if (AllocatedType(binary, fn, j) != want) return false;
          continue;  // made here
        }
        // A constructor: a Go function whose every return gives one.
        if (w.reg == GEP_RAX && binary.regabi() && !callee.empty() &&
            !absl::StartsWith(callee, "runtime.") && depth < kMaxDepth) {
          if (!binary.ReturnsNew(in.target, want, target, depth + 1)) return false;
          continue;
        }
        if (w.reg != kNoReg) {
          // Write barriers keep every register but R11 (1.21+); Duff's
          // devices all but RDI and RSI; other calls none.
          bool kept = (IsWriteBarrier(callee) && w.reg != GEP_R11) ||
                      (binary.DuffAt(in) != Binary::Duff::kNone && w.reg != GEP_RDI &&
                       w.reg != GEP_RSI);
          if (!kept) return false;
        }
        // A live frame slot outlives calls.
      } else if (!MoveBack(binary, fn, in, &from.reg, &from.off)) {
        return false;
      }
      if (seen.insert(key(from)).second) work.push_back(from);
    }
  }
  return true;
}

}  // namespace goerrprof::profiler::planner
