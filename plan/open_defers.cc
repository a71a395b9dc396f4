// The body's frame, and calls through pointers known to take no
// arguments: open-coded defers, and function variables never set.
#include <elf.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

#include "plan/function_code.h"
#include "symbolizer/elf_file.h"

namespace goerrprof::profiler::planner {

std::optional<Binary::Frame> Binary::BodyFrame(const Function& fn) {
  // SUBQ $n, SP, after PUSHQ BP (1.21+) or with BP saved at n-8 (older):
  // varp is the saved BP's slot, argp past the return PC.
  const auto& insns = fn.insns();
  bool push = false;
  for (size_t i = 0; i < insns.size() && i < 8; ++i) {
    const Insn& in = insns[i];
    if (in.id == X86_INS_PUSH && in.ops[0].type == Operand::kReg && in.ops[0].reg == GEP_RBP) {
      push = true;
    }
    if (in.ops[0].type != Operand::kReg || in.ops[0].reg != GEP_RSP ||
        in.ops[1].type != Operand::kImm) {
      continue;
    }
    int64_t sub = -1;
    if (in.id == X86_INS_SUB) sub = in.ops[1].value;
    // SUBQ $128, SP is encoded as ADDQ $-128, SP (a shorter immediate).
    if (in.id == X86_INS_ADD && in.ops[1].value < 0) sub = -in.ops[1].value;
    if (sub < 0) continue;
    const int64_t spdelta = sub + (push ? 8 : 0);
    return Frame{spdelta - 8, spdelta + 8};
  }
  return std::nullopt;
}

const std::vector<int64_t>& Binary::DeferClosureSlots(const Function& fn) {
  auto [it, fresh] = defer_slots_.try_emplace(fn.entry());
  std::vector<int64_t>& slots = it->second;
  // Go 1.18 wrapped every deferred call in a closure without arguments
  // (1.17 did so only as an experiment, and wrote another record).
  if (!fresh || !bin_.version().AtLeast(1, 18)) return slots;
  const auto& tab = bin_.pclntab();
  auto idx = tab.FindFunc(fn.entry());
  if (!idx) return slots;
  auto info = tab.FuncOpenDefers(*idx, !bin_.version().AtLeast(1, 22));
  auto frame = BodyFrame(fn);
  if (!info || !frame) return slots;
  const int64_t bits = frame->varp - static_cast<int64_t>(info->bits_off);
  if (info->closure_offs.size() == 1) {
    // Go 1.22+ names only the first slot: as many follow as the highest bit
    // a defer statement sets (MOVB/ORB $imm to deferBits) shows.
    int n = 1;
    for (const Insn& in : fn.insns()) {
      if ((in.id == X86_INS_MOV || in.id == X86_INS_OR) && in.ops[0].type == Operand::kMem &&
          in.ops[0].base == GEP_RSP && in.ops[0].index == kNoReg && in.ops[0].value == bits &&
          in.ops[1].type == Operand::kImm) {
        for (int b = 0; b < 8; ++b) {
          if (in.ops[1].value >> b & 1) n = std::max(n, b + 1);
        }
      }
    }
    for (int k = 1; k < n; ++k) info->closure_offs.push_back(info->closure_offs[0] - 8 * k);
  }
  for (uint64_t off : info->closure_offs) slots.push_back(frame->varp - static_cast<int64_t>(off));
  return slots;
}

bool Binary::CallsDeferred(const Function& fn, int call) {
  const auto& insns = fn.insns();
  const Insn& in = insns[call];
  if (in.flow != Flow::kCall || in.ops[0].type != Operand::kReg) return false;
  const auto& slots = DeferClosureSlots(fn);
  if (slots.empty()) return false;
  // MOVQ slot(SP), DX; MOVQ (DX), R; CALL R, in one straight run.
  int want = in.ops[0].reg;  // the register still to be traced back
  for (int j = call - 1; j >= 0 && call - j <= 8; --j) {
    if (!fn.Sources(j + 1).empty() || !fn.FallsThrough(j)) return false;
    const Insn& w = insns[j];
    if (!(w.regs_written & (1u << want))) continue;
    if (w.id != X86_INS_MOV || w.ops[0].type != Operand::kReg || w.ops[0].reg != want ||
        w.ops[1].type != Operand::kMem || w.ops[1].index != kNoReg) {
      return false;
    }
    const Operand& m = w.ops[1];
    if (want != GEP_RDX) {
      if (m.base != GEP_RDX || m.value != 0) return false;
      want = GEP_RDX;
      continue;
    }
    return m.base == GEP_RSP && std::find(slots.begin(), slots.end(), m.value) != slots.end();
  }
  return false;
}

bool Binary::NeverSet(uint64_t global) {
  if (auto it = never_set_.find(global); it != never_set_.end()) return it->second;
  bool& out = never_set_[global];
  const auto& elf = bin_.elf();
  // Zero at start: in .bss or .noptrbss, not initialized data.
  bool zero = false;
  for (const auto& sec : elf.sections()) {
    if (sec.type == SHT_NOBITS && (sec.flags & SHF_ALLOC) && global >= sec.addr &&
        global + 8 <= sec.addr + sec.size) {
      zero = true;
    }
  }
  if (!zero) return out = false;
  // No code names it but to load it (REX.W 8B /r, RIP-relative): any
  // other RIP-relative use (a store, its address taken), or a byte window
  // that only looks like one, counts as setting it.
  for (const auto& sec : elf.sections()) {
    if (!(sec.flags & SHF_EXECINSTR) || sec.type == SHT_NOBITS) continue;
    auto text = elf.SectionData(sec);
    if (!text.ok()) return out = false;
    const uint8_t* p = text->data();
    for (size_t q = 0; q + 4 <= text->size(); ++q) {
      int32_t disp;
      std::memcpy(&disp, p + q, 4);
      const uint64_t end = sec.addr + q + 4;
      const uint64_t t = end + static_cast<int64_t>(disp);
      // C code may name it by its absolute address.
      if (static_cast<uint64_t>(static_cast<uint32_t>(disp)) == global) return out = false;
      // The instruction may carry up to 4 immediate bytes past the
      // displacement (its target then lies up to 4 bytes lower), and may
      // reach any of the variable's 8 bytes.
      if (t + 4 < global || t >= global + 8) continue;
      const bool load = t == global && q >= 3 && (p[q - 3] & 0xF8) == 0x48 && p[q - 2] == 0x8B &&
                        (p[q - 1] & 0xC7) == 0x05;
      if (!load) return out = false;
    }
  }
  // No pointer to it in data: absolute, or a PIE's relocation.
  if (elf.HasRelocationTo(global)) return out = false;
  for (const auto& sec : elf.sections()) {
    if (!(sec.flags & SHF_ALLOC) || (sec.flags & SHF_EXECINSTR) || sec.type == SHT_NOBITS) {
      continue;
    }
    auto data = elf.SectionData(sec);
    if (!data.ok()) return out = false;
    for (size_t q = 0; q + 8 <= data->size(); q += 8) {
      uint64_t v;
      std::memcpy(&v, data->data() + q, 8);
      if (v == global) return out = false;
    }
  }
  return out = true;
}

bool Binary::CallsNeverSetVar(const Function& fn, int call) {
  const auto& insns = fn.insns();
  const Insn& in = insns[call];
  if (in.flow != Flow::kCall || in.ops[0].type != Operand::kReg) return false;
  // MOVQ G(SB), X; … MOVQ (X), R; … CALL R, in one straight run (branches
  // on the way fall through: `if hook != nil { hook(…) }`).
  int want = in.ops[0].reg;
  bool via_closure = false;  // R was read through X already
  for (int j = call - 1; j >= 0 && call - j <= 12; --j) {
    if (!fn.Sources(j + 1).empty() || !fn.FallsThrough(j)) return false;
    const Insn& w = insns[j];
    if (!(w.regs_written & (1u << want))) continue;
    if (w.id != X86_INS_MOV || w.ops[0].type != Operand::kReg || w.ops[0].reg != want ||
        w.ops[1].type != Operand::kMem || w.ops[1].index != kNoReg || w.ops[1].size != 8) {
      return false;
    }
    const Operand& m = w.ops[1];
    if (!via_closure) {
      if (m.base == kRipReg || m.value != 0) return false;
      want = m.base;
      via_closure = true;
      continue;
    }
    return m.base == kRipReg && NeverSet(static_cast<uint64_t>(m.value));
  }
  return false;
}

}  // namespace goerrprof::profiler::planner
