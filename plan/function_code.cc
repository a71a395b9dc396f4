#include "plan/function_code.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace goerrprof::profiler::planner {

bool IsNoReturn(absl::string_view name) {
  return absl::StartsWith(name, "runtime.gopanic") || absl::StartsWith(name, "runtime.panic") ||
         absl::StartsWith(name, "runtime.goPanic") || name == "runtime.throw" ||
         name == "runtime.fatal" || name == "runtime.fatalthrow" ||
         absl::StartsWith(name, "runtime.morestack");
}

// Pre-1.21 write barrier: stores a value register to [DI] itself.
// Returns the value register, or kNoReg when `name` is not one.
int OldWriteBarrierValueReg(absl::string_view name) {
  if (!absl::ConsumePrefix(&name, "runtime.gcWriteBarrier")) return kNoReg;
  if (name.empty()) return GEP_RAX;
  static const std::pair<const char*, int> kSuffixes[] = {
      {"AX", GEP_RAX}, {"BX", GEP_RBX}, {"CX", GEP_RCX}, {"DX", GEP_RDX}, {"SI", GEP_RSI},
      {"BP", GEP_RBP}, {"R8", GEP_R8},  {"R9", GEP_R9}};
  for (const auto& [suffix, reg] : kSuffixes) {
    if (name == suffix) return reg;
  }
  return kNoReg;
}

// 1.21+ write barrier: returns buffer space in R11, preserves everything else.
bool IsNewWriteBarrier(absl::string_view name) {
  return absl::ConsumePrefix(&name, "runtime.gcWriteBarrier") && name.size() == 1 &&
         name[0] >= '1' && name[0] <= '8';
}

bool IsWriteBarrier(absl::string_view name) {
  return OldWriteBarrierValueReg(name) != kNoReg || IsNewWriteBarrier(name);
}

// What handing the reference as argument `k` to `callee` means.
int RuntimeArgWords(absl::string_view name) {
  if (name == "runtime.newobject" || name == "runtime.convT16" || name == "runtime.convT32" ||
      name == "runtime.convT64" || name == "runtime.convTstring" || name == "runtime.convTslice") {
    return 1;
  }
  if (name == "runtime.convT" || name == "runtime.convTnoptr") return 2;
  if (name == "runtime.mallocgc") return 3;
  // Bounds, shift and division panics take integers only (their stubs read
  // fixed registers): an itab left in one is stale.
  if (absl::StartsWith(name, "runtime.panicIndex") || absl::StartsWith(name, "runtime.panicSlice") ||
      absl::StartsWith(name, "runtime.goPanicIndex") ||
      absl::StartsWith(name, "runtime.goPanicSlice") || name == "runtime.panicshift" ||
      name == "runtime.panicdivide" || name == "runtime.panicBounds") {
    return 0;
  }
  return -1;
}

int RuntimeResultRegs(absl::string_view name) {
  static const absl::flat_hash_map<absl::string_view, int> kResults = {
      {"runtime.ifaceeq", 1},          {"runtime.efaceeq", 1},
      {"runtime.memequal", 1},         {"runtime.memequal8", 1},
      {"runtime.memequal16", 1},       {"runtime.memequal32", 1},
      {"runtime.memequal64", 1},       {"runtime.memequal128", 1},
      {"runtime.cmpstring", 1},        {"runtime.newobject", 1},
      {"runtime.mallocgc", 1},         {"runtime.convT", 1},
      {"runtime.convTnoptr", 1},       {"runtime.convT16", 1},
      {"runtime.convT32", 1},          {"runtime.convT64", 1},
      {"runtime.convTstring", 1},      {"runtime.convTslice", 1},
      {"runtime.makeslice", 1},        {"runtime.growslice", 3},
      {"runtime.concatstring2", 2},    {"runtime.concatstring3", 2},
      {"runtime.concatstring4", 2},    {"runtime.concatstring5", 2},
      {"runtime.slicebytetostring", 2}, {"runtime.intstring", 2},
      {"runtime.stringtoslicebyte", 3}, {"runtime.typedslicecopy", 1},
      {"runtime.typedmemmove", 0},     {"runtime.typedmemclr", 0},
      {"runtime.memmove", 0},          {"runtime.memclrNoHeapPointers", 0},
      {"runtime.mapaccess1", 1},       {"runtime.mapaccess1_fast32", 1},
      {"runtime.mapaccess1_fast64", 1}, {"runtime.mapaccess1_faststr", 1},
      {"runtime.mapaccess2", 2},       {"runtime.mapaccess2_fast32", 2},
      {"runtime.mapaccess2_fast64", 2}, {"runtime.mapaccess2_faststr", 2},
      {"runtime.mapassign", 1},        {"runtime.mapassign_fast32", 1},
      {"runtime.mapassign_fast64", 1}, {"runtime.mapassign_faststr", 1},
      {"runtime.makemap", 1},          {"runtime.makemap_small", 1},
      {"runtime.makechan", 1},         {"runtime.chansend1", 0},
      {"runtime.chanrecv1", 0},        {"runtime.chanrecv2", 1},
      {"runtime.newproc", 0},          {"runtime.deferreturn", 0},
  };
  auto it = kResults.find(name);
  return it == kResults.end() ? -1 : it->second;
}

CalleeClass ClassifyCallee(absl::string_view callee, bool eface, int k, std::string* reason) {
  if (callee.empty()) return CalleeClass::kCreates;  // closure or method value
  if (k == 0 && (eface ? (callee == "runtime.convT2E" || callee == "runtime.convT2Enoptr")
                       : (callee == "runtime.convT2I" || callee == "runtime.convT2Inoptr"))) {
    return CalleeClass::kPairResult;
  }
  if (eface && k == 0 && callee == "runtime.gopanic") return CalleeClass::kCreates;
  // The runtime takes itabs and types only to allocate, assert or compare.
  bool denied = absl::StartsWith(callee, "runtime.");
  // Types reach reflection and errors.As as plain pointers or as targets,
  // not as error values.
  if (eface) {
    denied = denied || absl::StartsWith(callee, "reflect.") ||
             absl::StartsWith(callee, "internal/") || callee == "errors.As";
  }
  if (denied) {
    *reason = absl::StrCat("passed to ", callee);
    return CalleeClass::kNotCreation;
  }
  return CalleeClass::kCreates;
}

void Function::Analyze(Binary& binary) {
  size_t n = insns_.size();
  for (size_t i = 0; i < n && i < 8; ++i) {
    const Insn& in = insns_[i];
    if ((in.id == X86_INS_PUSH && in.ops[0].type == Operand::kReg && in.ops[0].reg == GEP_RBP) ||
        (in.id == X86_INS_SUB && in.ops[0].type == Operand::kReg && in.ops[0].reg == GEP_RSP)) {
      has_frame_ = true;
    }
  }
  falls_through_.assign(n, true);
  unknown_entry_.assign(n, false);
  for (size_t i = 0; i < n; ++i) {
    const Insn& in = insns_[i];
    switch (in.flow) {
      case Flow::kJump:
        falls_through_[i] = false;
        if (in.target) {
          AddSource(in.target, static_cast<int>(i));
        } else {
          AddJumpTable(binary, static_cast<int>(i));
        }
        break;
      case Flow::kCondJump:
        if (in.target) AddSource(in.target, static_cast<int>(i));
        break;
      case Flow::kRet:
      case Flow::kStop:
        falls_through_[i] = false;
        break;
      case Flow::kCall:
        if (IsNoReturn(binary.FuncAt(in.target))) falls_through_[i] = false;
        break;
      case Flow::kNext:
        break;
    }
  }
  for (size_t i = 0; i < n; ++i) {
    if (insns_[i].flow != Flow::kRet) continue;
    for (size_t j = i; j > 0 && i - j < 16; --j) {
      for (int k = 0; k < static_cast<int>(kAbiRegs.size()); ++k) {
        if (insns_[j - 1].regs_written & (1u << kAbiRegs[k])) {
          result_regs_ = std::max(result_regs_, k + 1);
        }
      }
      if (!falls_through_[j - 1] || sources_.contains(static_cast<int>(j - 1)) ||
          insns_[j - 1].flow != Flow::kNext) {
        break;
      }
    }
  }
  // An instruction no branch reaches and nothing falls into is entered by the
  // runtime (deferreturn after recover) or an unseen table: treat as foreign.
  for (size_t i = 1; i < n; ++i) {
    if (!falls_through_[i - 1] && !sources_.contains(static_cast<int>(i))) {
      // Unless it is alignment padding after a jump: dead, and no way into
      // what follows it.
      if (insns_[i].id == X86_INS_NOP) {
        falls_through_[i] = false;
        continue;
      }
      unknown_entry_[i] = true;
    }
  }
}

// Go's jump tables: LEAQ table(SB), Rb; JMP (Rb)(Ri*8). Entries are absolute
// addresses (relocated in PIE). When the table is not found, every
// instruction that starts a block is marked as a possible target.
void Function::AddJumpTable(Binary& binary, int jmp) {
  const Insn& j = insns_[jmp];
  const auto& elf = binary.bin().elf();
  uint64_t table = 0;
  int64_t bound = 4096;
  if (j.nops == 1 && j.ops[0].type == Operand::kMem && j.ops[0].base >= 0 &&
      j.ops[0].base < kNumRegs && j.ops[0].index >= 0 && j.ops[0].value == 0) {
    for (int k = jmp - 1; k >= 0 && k >= jmp - 8; --k) {
      const Insn& p = insns_[k];
      if (p.id == X86_INS_LEA && p.ops[0].type == Operand::kReg &&
          p.ops[0].reg == j.ops[0].base && p.ops[1].type == Operand::kMem &&
          p.ops[1].base == kRipReg) {
        table = static_cast<uint64_t>(p.ops[1].value);
      }
      if (p.id == X86_INS_CMP && p.ops[0].type == Operand::kReg &&
          p.ops[0].reg == j.ops[0].index && p.ops[1].type == Operand::kImm) {
        bound = std::min<int64_t>(bound, p.ops[1].value + 1);
        break;
      }
      if (p.flow != Flow::kNext && p.flow != Flow::kCondJump) break;
    }
  }
  if (table == 0) {
    for (size_t i = 1; i < insns_.size(); ++i) {
      if (!falls_through_[i - 1] || insns_[i - 1].flow == Flow::kCondJump) {
        sources_[static_cast<int>(i)].push_back(jmp);
      }
    }
    return;
  }
  for (int64_t e = 0; e < bound; ++e) {
    auto target = elf.ReadPointer(table + 8 * e);
    if (!target.ok() || *target < entry_ || *target >= end_) break;
    AddSource(*target, jmp);
  }
}
}  // namespace goerrprof::profiler::planner
