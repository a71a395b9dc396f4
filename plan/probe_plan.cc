// Creation-probe planner. Per function holding a reference: decode with
// Capstone, index branch sources, then follow each reference with a small
// symbolic simulation (values in registers and [base+disp] slots) along
// every path to the instruction that pairs it with a data word; place the
// probe where only that reference's path passes.
#include "plan/probe_plan.h"

#include <capstone/capstone.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <memory>
#include <optional>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/types/span.h"
#include "bpf/probe_abi.h"

namespace goerrprof::profiler {
namespace {

using symbolizer::ErrorType;
using symbolizer::GoBinary;

constexpr int kNoReg = -1;
constexpr int kRipReg = 16;  // only as a memory base
constexpr int kNumRegs = 16;

// Go ABIInternal integer argument and result registers, in order.
constexpr std::array<int, 9> kAbiRegs = {GEP_RAX, GEP_RBX, GEP_RCX, GEP_RDI, GEP_RSI,
                                         GEP_R8,  GEP_R9,  GEP_R10, GEP_R11};

// Longest straight run simulated before a reference.
constexpr int kMaxBackward = 64;
constexpr int kMaxSide = 16;  // instructions on one side of a write barrier
// Stack ABI: runtime helpers take an itab or type in their first three
// argument words, and calls clobber at least that much of the frame bottom.
constexpr int64_t kStackArgBytes = 24;
constexpr uint32_t kAnyGen = ~0u;

// Capstone register (any width) to the probe ABI's numbering.
int GepReg(unsigned r) {
  switch (r) {
    case X86_REG_RAX: case X86_REG_EAX: case X86_REG_AX: case X86_REG_AL: case X86_REG_AH:
      return GEP_RAX;
    case X86_REG_RBX: case X86_REG_EBX: case X86_REG_BX: case X86_REG_BL: case X86_REG_BH:
      return GEP_RBX;
    case X86_REG_RCX: case X86_REG_ECX: case X86_REG_CX: case X86_REG_CL: case X86_REG_CH:
      return GEP_RCX;
    case X86_REG_RDX: case X86_REG_EDX: case X86_REG_DX: case X86_REG_DL: case X86_REG_DH:
      return GEP_RDX;
    case X86_REG_RSI: case X86_REG_ESI: case X86_REG_SI: case X86_REG_SIL: return GEP_RSI;
    case X86_REG_RDI: case X86_REG_EDI: case X86_REG_DI: case X86_REG_DIL: return GEP_RDI;
    case X86_REG_RBP: case X86_REG_EBP: case X86_REG_BP: case X86_REG_BPL: return GEP_RBP;
    case X86_REG_RSP: case X86_REG_ESP: case X86_REG_SP: case X86_REG_SPL: return GEP_RSP;
    case X86_REG_R8: case X86_REG_R8D: case X86_REG_R8W: case X86_REG_R8B: return GEP_R8;
    case X86_REG_R9: case X86_REG_R9D: case X86_REG_R9W: case X86_REG_R9B: return GEP_R9;
    case X86_REG_R10: case X86_REG_R10D: case X86_REG_R10W: case X86_REG_R10B: return GEP_R10;
    case X86_REG_R11: case X86_REG_R11D: case X86_REG_R11W: case X86_REG_R11B: return GEP_R11;
    case X86_REG_R12: case X86_REG_R12D: case X86_REG_R12W: case X86_REG_R12B: return GEP_R12;
    case X86_REG_R13: case X86_REG_R13D: case X86_REG_R13W: case X86_REG_R13B: return GEP_R13;
    case X86_REG_R14: case X86_REG_R14D: case X86_REG_R14W: case X86_REG_R14B: return GEP_R14;
    case X86_REG_R15: case X86_REG_R15D: case X86_REG_R15W: case X86_REG_R15B: return GEP_R15;
    case X86_REG_RIP: return kRipReg;
    default: return kNoReg;
  }
}

const char* const kRegNames[] = {"rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
                                 "r8",  "r9",  "r10", "r11", "r12", "r13", "r14", "r15"};

// ---------------------------------------------------------------------------
// Decoded instructions, reduced to what the planner looks at.

struct Operand {
  enum Type : uint8_t { kNone, kReg, kImm, kMem };
  Type type = kNone;
  uint8_t size = 0;
  int8_t reg = kNoReg;    // kReg: GP register, kNoReg for others (xmm, …)
  int8_t base = kNoReg;   // kMem: kRipReg for RIP-relative
  int8_t index = kNoReg;  // kMem
  bool segment = false;   // kMem through fs/gs: not a plain address
  uint16_t raw_reg = 0;   // kReg: Capstone's register id
  int64_t value = 0;      // kImm: immediate; kMem: displacement (absolute for RIP)
};

enum class Flow : uint8_t { kNext, kJump, kCondJump, kCall, kRet, kStop };

struct Insn {
  uint64_t addr = 0;
  uint64_t target = 0;  // direct jump/call target, else 0
  uint16_t id = 0;      // x86_insn
  uint8_t size = 0;
  uint8_t nops = 0;
  Flow flow = Flow::kNext;
  uint16_t regs_read = 0;     // mask of GP registers read (explicit and implicit)
  uint16_t regs_written = 0;  // mask of GP registers written
  std::array<Operand, 2> ops;
};

bool IsCompare(uint16_t id) {
  return id == X86_INS_CMP || id == X86_INS_TEST || id == X86_INS_BT;
}

class Disassembler {
 public:
  static absl::StatusOr<std::unique_ptr<Disassembler>> Create() {
    auto d = std::unique_ptr<Disassembler>(new Disassembler());
    if (cs_open(CS_ARCH_X86, CS_MODE_64, &d->handle_) != CS_ERR_OK) {
      return absl::InternalError("cannot start the Capstone disassembler");
    }
    cs_option(d->handle_, CS_OPT_DETAIL, CS_OPT_ON);
    d->insn_ = cs_malloc(d->handle_);
    return d;
  }
  ~Disassembler() {
    if (insn_) cs_free(insn_, 1);
    if (handle_) cs_close(&handle_);
  }

  const char* Mnemonic(uint16_t id) const { return cs_insn_name(handle_, id); }

  // Decodes [addr, addr+code.size()) linearly; stops at undecodable bytes.
  void Decode(absl::Span<const uint8_t> code, uint64_t addr, std::vector<Insn>* out) {
    const uint8_t* p = code.data();
    size_t left = code.size();
    uint64_t pc = addr;
    while (left > 0 && cs_disasm_iter(handle_, &p, &left, &pc, insn_)) {
      out->push_back(Convert(*insn_));
    }
  }

 private:
  Disassembler() = default;

  Insn Convert(const cs_insn& ci) {
    Insn in;
    in.addr = ci.address;
    in.id = static_cast<uint16_t>(ci.id);
    in.size = static_cast<uint8_t>(ci.size);
    const cs_x86& x = ci.detail->x86;
    in.nops = static_cast<uint8_t>(std::min<int>(x.op_count, 2));
    for (int i = 0; i < in.nops; ++i) {
      const cs_x86_op& o = x.operands[i];
      Operand& op = in.ops[i];
      op.size = o.size;
      if (o.type == X86_OP_REG) {
        op.type = Operand::kReg;
        op.reg = static_cast<int8_t>(GepReg(o.reg));
        if (op.reg == kRipReg) op.reg = kNoReg;
        op.raw_reg = static_cast<uint16_t>(o.reg);
      } else if (o.type == X86_OP_IMM) {
        op.type = Operand::kImm;
        op.value = o.imm;
      } else if (o.type == X86_OP_MEM) {
        op.type = Operand::kMem;
        op.base = static_cast<int8_t>(GepReg(o.mem.base));
        op.index = static_cast<int8_t>(GepReg(o.mem.index));
        op.segment = o.mem.segment != X86_REG_INVALID;
        op.value = o.mem.disp;
        if (op.base == kRipReg) op.value += static_cast<int64_t>(ci.address + ci.size);
      }
    }
    cs_regs read, write;
    uint8_t nread = 0, nwrite = 0;
    if (cs_regs_access(handle_, &ci, read, &nread, write, &nwrite) == CS_ERR_OK) {
      for (int i = 0; i < nread; ++i) {
        int r = GepReg(read[i]);
        if (r >= 0 && r < kNumRegs) in.regs_read |= 1u << r;
      }
      for (int i = 0; i < nwrite; ++i) {
        int r = GepReg(write[i]);
        if (r >= 0 && r < kNumRegs) in.regs_written |= 1u << r;
      }
    }
    if (cs_insn_group(handle_, &ci, X86_GRP_CALL)) {
      in.flow = Flow::kCall;
    } else if (cs_insn_group(handle_, &ci, X86_GRP_RET)) {
      in.flow = Flow::kRet;
    } else if (cs_insn_group(handle_, &ci, X86_GRP_JUMP)) {
      in.flow = ci.id == X86_INS_JMP ? Flow::kJump : Flow::kCondJump;
    } else if (ci.id == X86_INS_UD2 || ci.id == X86_INS_INT3 || ci.id == X86_INS_HLT) {
      in.flow = Flow::kStop;
    }
    if ((in.flow == Flow::kCall || in.flow == Flow::kJump || in.flow == Flow::kCondJump) &&
        in.nops == 1 && in.ops[0].type == Operand::kImm) {
      in.target = static_cast<uint64_t>(in.ops[0].value);
    }
    return in;
  }

  csh handle_ = 0;
  cs_insn* insn_ = nullptr;
};

// ---------------------------------------------------------------------------
// Whole-binary context: what reference targets are, callee names.

// What a reference instruction materializes: an itab (LEA), a type
// descriptor (LEA) or a static itab's type word (MOV from itab+8, boxing an
// error into `any`).
struct Target {
  uint64_t itab = 0;  // 0 for a type descriptor
  uint64_t type = 0;
  bool eface = false;
};

enum class CalleeClass { kCreates, kPairResult, kNotCreation };

class Binary {
 public:
  explicit Binary(const GoBinary& bin) : bin_(bin), regabi_(bin.version().AtLeast(1, 17)) {}

  const GoBinary& bin() const { return bin_; }
  bool regabi() const { return regabi_; }

  // Name of the function whose entry is `addr`, empty if none.
  absl::string_view FuncAt(uint64_t addr) {
    if (addr == 0) return {};
    auto it = names_.find(addr);
    if (it != names_.end()) return it->second;
    absl::string_view name;
    const auto& tab = bin_.pclntab();
    if (auto idx = tab.FindFunc(addr); idx && tab.FuncEntry(*idx) == addr) name = tab.FuncName(*idx);
    names_.emplace(addr, name);
    return name;
  }

 private:
  const GoBinary& bin_;
  bool regabi_;
  absl::flat_hash_map<uint64_t, absl::string_view> names_;
};

// Calls after which control never comes back: the instruction that follows
// is reachable only by a branch (or not at all).
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

// ---------------------------------------------------------------------------
// One function's code and control flow.

class Function {
 public:
  Function(uint64_t entry, uint64_t end) : entry_(entry), end_(end) {}

  uint64_t entry() const { return entry_; }
  uint64_t end() const { return end_; }
  const std::vector<Insn>& insns() const { return insns_; }
  std::vector<Insn>* mutable_insns() { return &insns_; }

  int IndexOf(uint64_t addr) const {
    auto it = std::lower_bound(insns_.begin(), insns_.end(), addr,
                               [](const Insn& in, uint64_t a) { return in.addr < a; });
    if (it == insns_.end() || it->addr != addr) return -1;
    return static_cast<int>(it - insns_.begin());
  }

  // Control can continue from insns_[i] to insns_[i+1].
  bool FallsThrough(int i) const { return falls_through_[i]; }
  // Branches (by instruction index) that can reach insns_[i].
  absl::Span<const int> Sources(int i) const {
    auto it = sources_.find(i);
    if (it == sources_.end()) return {};
    return it->second;
  }
  // insns_[i] may be entered from somewhere the planner cannot see.
  bool UnknownEntry(int i) const { return unknown_entry_[i]; }

  void Analyze(Binary& binary);
  // The prologue sets up a frame (PUSHQ BP or SUBQ $n, SP); leaf functions
  // without one keep the caller's frame pointer throughout.
  bool has_frame() const { return has_frame_; }
  // Integer result registers the function evidently uses: one past the
  // highest ABI result register written in the block before any RET.
  // Registers past it hold stale values at a RET.
  int result_regs() const { return result_regs_; }

 private:
  void AddSource(uint64_t target, int from) {
    int t = IndexOf(target);
    if (t >= 0) sources_[t].push_back(from);
  }
  void AddJumpTable(Binary& binary, int jmp);

  uint64_t entry_, end_;
  std::vector<Insn> insns_;
  std::vector<bool> falls_through_;
  std::vector<bool> unknown_entry_;
  absl::flat_hash_map<int, std::vector<int>> sources_;
  bool has_frame_ = false;
  int result_regs_ = 0;
};

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

// ---------------------------------------------------------------------------
// Symbolic values: enough to follow an itab through registers and memory
// and to recognise the data word at the other end.

struct Value {
  enum Kind : uint8_t {
    kOpaque,      // anything not modelled
    kRoot,        // a register's value at the start of the walk, or a merge
    kAddr,        // root + off: LEA results, RSP arithmetic, globals (root 0)
    kConst,       // an integer constant (aux)
    kCallResult,  // RAX after a call (aux: the call's address)
    kLoad,        // a load from memory not written during the walk
  };
  Kind kind = kOpaque;
  uint32_t root = 0;
  int64_t off = 0;
  uint64_t aux = 0;
  uint32_t gen = 0;  // kLoad: memory generation of its root class at the load
};

struct Slot {
  uint32_t root = 0;
  int64_t off = 0;
  uint32_t vid = 0;
  int written = -1;     // step of the last write; -1: only loaded
  bool plain = false;   // written from a register that is not a constant
};

struct State {
  std::array<uint32_t, kNumRegs> regs{};
  std::vector<Slot> slots;
  uint32_t stack_gen = 0;
  uint32_t heap_gen = 0;

  Slot* FindSlot(uint32_t root, int64_t off) {
    for (Slot& s : slots) {
      if (s.root == root && s.off == off) return &s;
    }
    return nullptr;
  }
  const Slot* FindSlot(uint32_t root, int64_t off) const {
    return const_cast<State*>(this)->FindSlot(root, off);
  }
  // Forgets slots that an access of `size` bytes at root+off overlaps.
  void Kill(uint32_t root, int64_t off, int size) {
    slots.erase(std::remove_if(slots.begin(), slots.end(),
                               [&](const Slot& s) {
                                 return s.root == root && s.off < off + size && off < s.off + 8;
                               }),
                slots.end());
  }
  void KillRoot(uint32_t root) {
    slots.erase(std::remove_if(slots.begin(), slots.end(),
                               [&](const Slot& s) { return s.root == root; }),
                slots.end());
  }
};

constexpr uint32_t kGlobalRoot = 0;  // vid 0: addresses are offsets from it

class Values {
 public:
  Values() { values_.push_back({Value::kRoot, 0, 0, 0, 0}); }
  const Value& operator[](uint32_t vid) const { return values_[vid]; }

  uint32_t Fresh(Value::Kind kind = Value::kOpaque, uint64_t aux = 0) {
    uint32_t vid = static_cast<uint32_t>(values_.size());
    values_.push_back({kind, vid, 0, aux, 0});
    return vid;
  }
  uint32_t Load(uint32_t root, int64_t off, uint32_t gen) {
    uint32_t vid = Fresh(Value::kLoad);
    values_[vid].aux = static_cast<uint64_t>(off);
    values_[vid].gen = gen;
    load_root_[vid] = root;
    return vid;
  }
  uint32_t LoadRoot(uint32_t vid) const { return load_root_.at(vid); }
  // root+off, interned so equal addresses are equal values.
  uint32_t Addr(uint32_t base, int64_t disp) {
    const Value& b = values_[base];
    uint32_t root = b.kind == Value::kAddr ? b.root : base;
    int64_t off = (b.kind == Value::kAddr ? b.off : 0) + disp;
    if (off == 0 && root != kGlobalRoot) return root;
    auto [it, fresh] = addrs_.try_emplace({root, off}, 0);
    if (fresh) {
      it->second = static_cast<uint32_t>(values_.size());
      values_.push_back({Value::kAddr, root, off, 0, 0});
    }
    return it->second;
  }
  uint32_t Global(uint64_t addr) { return Addr(kGlobalRoot, static_cast<int64_t>(addr)); }
  uint32_t Const(uint64_t c) {
    auto [it, fresh] = consts_.try_emplace(c, 0);
    if (fresh) it->second = Fresh(Value::kConst, c);
    return it->second;
  }
  // (root, offset) a value addresses, for memory keys.
  std::pair<uint32_t, int64_t> Key(uint32_t vid) const {
    const Value& v = values_[vid];
    if (v.kind == Value::kAddr) return {v.root, v.off};
    return {vid, 0};
  }

 private:
  std::vector<Value> values_;
  absl::flat_hash_map<std::pair<uint32_t, int64_t>, uint32_t> addrs_;
  absl::flat_hash_map<uint64_t, uint32_t> consts_;
  absl::flat_hash_map<uint32_t, uint32_t> load_root_;
};


// ---------------------------------------------------------------------------
// Following one reference from its LEA to the instruction that pairs it with
// a data word. Conditional branches fork the walk (a bounded number of
// times); every path ends in a consumer, a use that creates nothing
// (comparison, …) or loses the reference.

using Key = std::pair<uint32_t, int64_t>;

struct Position {
  int idx;          // instruction about to execute
  State state;      // before it
  int step;         // simulation step count before it
  bool exclusive;   // reachable, since the LEA, only along this path
  bool frame_gone;  // the epilogue has popped the frame: [rsp] is the return address
};

// A call that received the reference in a register while the reference was
// also spilled: maybe a stale register, decided by what follows.
struct Tentative {
  int pos;
  int k;
  uint32_t data;
};

struct Path {
  State st;
  std::vector<Position> positions;
  absl::flat_hash_set<int> visited;
  std::vector<std::pair<Key, int>> stack_refs;  // stack slots given the reference, store step
  std::optional<Key> heap_ref;                  // first non-stack slot given the reference
  int heap_ref_step = 0;
  int heap_ref_pos = -1;  // position right after that store
  bool heap_pre_data = false;
  std::optional<Tentative> tentative;
  bool exclusive = true;
  int cur = 0;
  int forced_next = -1;
  int last_fork = -1;  // positions up to here are shared with sibling paths
  int64_t min_rsp = 0;  // lowest stack pointer offset seen since the walk start
};

struct PathEnd {
  std::optional<CreationProbe> probe;
  std::string reason;     // why there is no probe
  bool use = false;       // the reference met a use that creates nothing
  bool creation = false;  // a creation was seen but could not be probed
  int probe_pos = -1;
  int last_fork = -1;
  uint64_t at = 0;  // where a use was seen
};

struct Diamond {
  std::vector<int> sides[2];  // instructions of each side, before the merge
  int merge = -1;
};

struct WalkResult {
  std::vector<CreationProbe> probes;
  std::string skip_reason;  // set when some or all creations got no probe
};

// Bounds on following one reference: paths forked at branches, and
// instructions walked over all of them.
constexpr int kMaxPaths = 12;
constexpr int kMaxBudget = 3000;

class RefWalker {
 public:
  RefWalker(Binary& binary, const Function& fn, const Disassembler& dis, int lea,
            const Target& target)
      : binary_(binary), fn_(fn), insns_(fn.insns()), dis_(dis), lea_(lea), target_(target),
        eface_(target.eface) {}

  WalkResult Run();

 private:
  // Simulation.
  std::optional<Key> MemKey(const State& st, const Operand& op) const;
  uint32_t ReadOperand(State& st, const Operand& op);
  void Store(State& st, const Operand& mem, uint32_t vid, int size, bool plain);
  void Simulate(State& st, const Insn& in);
  void SimulateCall(State& st, const Insn& in);
  State Merge(const State& a, const State& b);

  // Walking.
  void Walk(Path p);
  bool AllPredsVisited(const Path& p, int idx) const;
  std::vector<int> Trace(int start) const;
  std::optional<Diamond> DiamondAt(int jcc) const;
  std::optional<int> DiamondEndingAt(int merge) const;
  State SimulateDiamond(const Diamond& d, const State& st);
  bool TryDiamond(Path& p, int jcc, int* merge);
  void NoteNewRefSlots(Path& p, const State& before);
  bool RefAlive(const State& st) const;
  std::optional<std::string> ClassifyUse(const State& st, const Insn& in) const;
  bool Spilled(const State& st) const;
  bool ComparesStoredPair(const Path& p) const;
  void PushPosition(Path& p, int idx, bool exclusive);
  bool PairComplete(const State& st, const Key& key, int store_step) const;
  std::optional<int> PairPosition(const Path& p, const Key& key, int store_step) const;
  PathEnd AtCall(Path& p, int pos, absl::string_view callee, bool* handled);
  PathEnd AtReturn(Path& p, int pos);
  PathEnd AtStackConsumer(Path& p, int pos, absl::string_view callee, bool* handled);
  PathEnd AfterCall(Path& p, int pos, uint32_t tab_loc, uint32_t data_loc,
                    absl::string_view callee);
  PathEnd End(Path& p, const std::string& reason);
  PathEnd Resolve(Path& p, PathEnd later, uint32_t later_data);

  // Placing the probe.
  std::optional<uint32_t> MemLoc(const State& st, uint32_t root, int64_t off) const;
  std::optional<uint32_t> Locate(const State& st, uint32_t vid) const;
  PathEnd Emit(const Path& p, int pos, uint32_t tab_loc, uint32_t data_loc, uint32_t data_vid,
               CreationProbe::Via via);
  PathEnd Place(const Path& p, int pos, std::optional<uint32_t> tab_loc,
                std::optional<uint32_t> data_loc, uint32_t data_vid, CreationProbe::Via via);
  PathEnd PlaceAtRegs(const Path& p, int pos, int k, CreationProbe::Via via);
  PathEnd PlacePair(const Path& p, int pos, const Key& key);
  uint64_t SiteOf(uint32_t data_vid) const;

  static PathEnd Use(std::string reason) {
    PathEnd e;
    e.reason = std::move(reason);
    e.use = true;
    return e;
  }
  static PathEnd Lost(std::string reason) {
    PathEnd e;
    e.reason = std::move(reason);
    return e;
  }
  static PathEnd Unplaced(std::string reason) {
    PathEnd e;
    e.reason = std::move(reason);
    e.creation = true;
    return e;
  }
  std::string Noun() const { return eface_ ? "type" : "itab"; }

  Binary& binary_;
  const Function& fn_;
  const std::vector<Insn>& insns_;
  const Disassembler& dis_;
  int lea_;
  Target target_;
  bool eface_;

  Values values_;
  uint32_t rsp_root_ = 0;
  uint32_t ref_ = 0;  // the walked LEA's value, distinct from other LEAs of the same target
  uint32_t first_walk_vid_ = 0;  // values below it were held before the walk
  int step_ = 0;
  int budget_ = 0;
  int paths_ = 1;
  std::vector<PathEnd> ends_;
};

std::optional<Key> RefWalker::MemKey(const State& st, const Operand& op) const {
  if (op.type != Operand::kMem || op.segment || op.index != kNoReg) return std::nullopt;
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
    // Vector stores zero or copy two words; neither is a fresh data word.
    st.slots.push_back({key->first, key->second, values_.Fresh(), step_, false});
    st.slots.push_back({key->first, key->second + 8, values_.Fresh(), step_, false});
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
  for (int r = 0; r < kNumRegs; ++r) {
    if (r == GEP_RSP || r == GEP_RBP || (binary_.regabi() && r == GEP_R14)) continue;
    st.regs[r] = values_.Fresh();
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

State RefWalker::Merge(const State& a, const State& b) {
  State m;
  for (int r = 0; r < kNumRegs; ++r) {
    m.regs[r] = a.regs[r] == b.regs[r] ? a.regs[r] : values_.Fresh(Value::kRoot);
  }
  for (const Slot& s : a.slots) {
    const Slot* t = b.FindSlot(s.root, s.off);
    if (!t) continue;
    Slot merged = s;
    if (s.vid != t->vid) merged.vid = values_.Fresh(Value::kRoot);
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
  for (int s = 0; s < 2; ++s) {
    for (int i : d.sides[s]) Simulate(out[s], insns_[i]);
  }
  return Merge(out[0], out[1]);
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

void RefWalker::NoteNewRefSlots(Path& p, const State& before) {
  for (const Slot& s : p.st.slots) {
    if (s.vid != ref_) continue;
    const Slot* old = before.FindSlot(s.root, s.off);
    if (old && old->vid == ref_) continue;
    Key key(s.root, s.off);
    if (s.root == rsp_root_) {
      p.stack_refs.push_back({key, s.written});
    } else if (!p.heap_ref) {
      p.heap_ref = key;
      p.heap_ref_step = s.written;
      p.heap_ref_pos = static_cast<int>(p.positions.size());
      const Slot* data = p.st.FindSlot(s.root, s.off + 8);
      p.heap_pre_data = data && data->plain && data->written >= 0 && data->written < s.written;
    }
  }
}

bool RefWalker::RefAlive(const State& st) const {
  for (uint32_t v : st.regs) {
    if (v == ref_) return true;
  }
  for (const Slot& s : st.slots) {
    if (s.vid == ref_) return true;
  }
  return false;
}

bool RefWalker::Spilled(const State& st) const {
  for (const Slot& s : st.slots) {
    if (s.vid == ref_ && s.root == rsp_root_) return true;
  }
  return false;
}

// The reference already sits in a complete frame slot pair: a comparison
// now tests that interface variable (nil check, type test), it does not
// decide whether one is created.
bool RefWalker::ComparesStoredPair(const Path& p) const {
  for (const auto& [k, store_step] : p.stack_refs) {
    if (PairComplete(p.st, k, store_step)) return true;
  }
  return false;
}

std::optional<std::string> RefWalker::ClassifyUse(const State& st, const Insn& in) const {
  if (in.id == X86_INS_NOP) return std::nullopt;  // multi-byte NOPs name registers
  for (int i = 0; i < in.nops; ++i) {
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
  if (IsCompare(in.id)) {
    bool mem = false;
    for (int i = 0; i < in.nops; ++i) {
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
  return absl::StrCat("unhandled use: ", dis_.Mnemonic(in.id));
}

// The slot pair key/key+8 holds the reference and a data word written with
// it: after the itab store, or before it from a register (not zeroing).
bool RefWalker::PairComplete(const State& st, const Key& key, int store_step) const {
  const Slot* tab = st.FindSlot(key.first, key.second);
  const Slot* data = st.FindSlot(key.first, key.second + 8);
  if (!tab || tab->vid != ref_ || !data || data->written < 0) return false;
  return data->written > store_step || data->plain;
}

// First position at which the pair at `key` was complete.
std::optional<int> RefWalker::PairPosition(const Path& p, const Key& key, int store_step) const {
  for (size_t i = 0; i < p.positions.size(); ++i) {
    if (p.positions[i].step < store_step) continue;
    if (PairComplete(p.positions[i].state, key, store_step)) return static_cast<int>(i);
  }
  return std::nullopt;
}

std::optional<uint32_t> RefWalker::MemLoc(const State& st, uint32_t root, int64_t off) const {
  if (root == kGlobalRoot) return std::nullopt;
  for (int r : {GEP_RSP, GEP_RAX, GEP_RBX, GEP_RCX, GEP_RDX, GEP_RSI, GEP_RDI, GEP_RBP, GEP_R8,
                GEP_R9, GEP_R10, GEP_R11, GEP_R12, GEP_R13, GEP_R14, GEP_R15}) {
    auto [rroot, roff] = values_.Key(st.regs[r]);
    if (rroot != root) continue;
    int64_t disp = off - roff;
    if (disp < -(1 << 23) || disp >= (1 << 23)) continue;
    return GEP_LOC(GEP_LOC_MEM, r, disp);
  }
  return std::nullopt;
}

std::optional<uint32_t> RefWalker::Locate(const State& st, uint32_t vid) const {
  for (int r : {GEP_RAX, GEP_RBX, GEP_RCX, GEP_RDI, GEP_RSI, GEP_R8, GEP_R9, GEP_R10, GEP_R11,
                GEP_RDX, GEP_R12, GEP_R13, GEP_R15}) {
    if (st.regs[r] == vid) return GEP_LOC(GEP_LOC_REG, r, 0);
  }
  for (const Slot& s : st.slots) {
    if (s.vid != vid) continue;
    if (auto loc = MemLoc(st, s.root, s.off)) return loc;
  }
  // A word loaded later from memory nobody wrote in between is there now.
  const Value& v = values_[vid];
  if (v.kind == Value::kLoad) {
    uint32_t root = values_.LoadRoot(vid);
    int64_t off = static_cast<int64_t>(v.aux);
    uint32_t gen = root == rsp_root_ ? st.stack_gen : st.heap_gen;
    if ((v.gen == kAnyGen || gen == v.gen) && !st.FindSlot(root, off)) {
      return MemLoc(st, root, off);
    }
  }
  return std::nullopt;
}

uint64_t RefWalker::SiteOf(uint32_t data_vid) const {
  const Value& v = values_[data_vid];
  uint64_t ref_addr = insns_[lea_].addr;
  if (v.kind != Value::kCallResult) return ref_addr;
  int call = fn_.IndexOf(v.aux);
  if (call < 0) return ref_addr;
  absl::string_view callee = binary_.FuncAt(insns_[call].target);
  // newobject, mallocgc and its size-specialized forms (1.26+), convT*.
  if (callee == "runtime.newobject" || absl::StartsWith(callee, "runtime.mallocgc") ||
      absl::StartsWith(callee, "runtime.convT")) {
    return v.aux;
  }
  return ref_addr;
}

PathEnd RefWalker::Emit(const Path& p, int pos, uint32_t tab_loc, uint32_t data_loc,
                        uint32_t data_vid, CreationProbe::Via via) {
  CreationProbe probe;
  probe.addr = insns_[p.positions[pos].idx].addr;
  probe.ref_addr = insns_[lea_].addr;
  probe.itab = eface_ ? 0 : target_.itab;
  probe.type = target_.type;
  probe.tab_loc = tab_loc;
  probe.data_loc = data_loc;
  probe.cookie = GEP_COOKIE(tab_loc, data_loc);
  probe.kind = eface_ ? CreationProbe::kEface : CreationProbe::kIface;
  probe.via = via;
  probe.site = SiteOf(data_vid);
  probe.frameless =
      via == CreationProbe::kReturn || p.positions[pos].frame_gone || !fn_.has_frame();
  PathEnd e;
  e.probe = probe;
  e.probe_pos = pos;
  e.last_fork = p.last_fork;
  return e;
}

// Probes at `pos` when only this path reaches it; otherwise at the latest
// earlier position that only this path reaches, reading the same two values.
PathEnd RefWalker::Place(const Path& p, int pos, std::optional<uint32_t> tab_loc,
                         std::optional<uint32_t> data_loc, uint32_t data_vid,
                         CreationProbe::Via via) {
  for (int i = pos; i >= 0; --i) {
    if (!p.positions[i].exclusive) continue;
    if (i == pos && tab_loc && data_loc) return Emit(p, pos, *tab_loc, *data_loc, data_vid, via);
    // Keep earlier probes out of epilogues, where stack walks misread frames.
    if (p.positions[i].frame_gone) continue;
    const State& st = p.positions[i].state;
    std::optional<uint32_t> tab = Locate(st, ref_);
    // Before the LEA has run, the itab is only known statically.
    if (!tab && i == 0) tab = GEP_LOC(GEP_LOC_CONST, 0, 0);
    std::optional<uint32_t> data = Locate(st, data_vid);
    if (tab && data) {
      return Emit(p, i, *tab, *data, data_vid, i == pos ? via : CreationProbe::kEarly);
    }
  }
  return Unplaced(absl::StrFormat("no probe point: data word not held before the merge at 0x%x",
                                  insns_[p.positions[pos].idx].addr));
}

PathEnd RefWalker::PlaceAtRegs(const Path& p, int pos, int k, CreationProbe::Via via) {
  int tab_reg = kAbiRegs[k], data_reg = kAbiRegs[k + 1];
  return Place(p, pos, GEP_LOC(GEP_LOC_REG, tab_reg, 0), GEP_LOC(GEP_LOC_REG, data_reg, 0),
               p.positions[pos].state.regs[data_reg], via);
}

PathEnd RefWalker::PlacePair(const Path& p, int pos, const Key& key) {
  const State& st = p.positions[pos].state;
  const Slot* data = st.FindSlot(key.first, key.second + 8);
  std::optional<uint32_t> tab_loc = MemLoc(st, key.first, key.second);
  std::optional<uint32_t> data_loc = MemLoc(st, key.first, key.second + 8);
  // A global interface variable has no register base: read the registers.
  if (!tab_loc) tab_loc = Locate(st, ref_);
  if (!data_loc) data_loc = Locate(st, data->vid);
  return Place(p, pos, tab_loc, data_loc, data->vid, CreationProbe::kStore);
}

// A later consumer replaces a tentative call only when it pairs the
// reference with another data word (the call then merely saw a stale
// register).
PathEnd RefWalker::Resolve(Path& p, PathEnd later, uint32_t later_data) {
  if (!p.tentative || p.tentative->data != later_data) return later;
  return PlaceAtRegs(p, p.tentative->pos, p.tentative->k, CreationProbe::kCall);
}

// runtime.convT2I / convT2E build the interface themselves: probe the
// instruction after the call, which reads their results.
PathEnd RefWalker::AfterCall(Path& p, int pos, uint32_t tab_loc, uint32_t data_loc,
                             absl::string_view callee) {
  int call = p.positions[pos].idx;
  int after = call + 1;
  if (after >= static_cast<int>(insns_.size()) || !p.positions[pos].exclusive ||
      !AllPredsVisited(p, after)) {
    return Unplaced(absl::StrCat(callee, " result at a merge point"));
  }
  p.positions.push_back({after, p.positions[pos].state, step_, true,
                         p.positions[pos].frame_gone});
  return Emit(p, static_cast<int>(p.positions.size()) - 1, tab_loc, data_loc, 0,
              CreationProbe::kCallResult);
}

// Stack ABI (Go 1.16): interfaces travel to calls and from returns as slot
// pairs in the frame. A pair in the first argument words of a runtime call
// is judged by the callee; any other complete pair is an interface value.
PathEnd RefWalker::AtStackConsumer(Path& p, int pos, absl::string_view callee, bool* handled) {
  *handled = false;
  const State& st = p.positions[pos].state;
  bool is_call = insns_[p.positions[pos].idx].flow == Flow::kCall;
  int64_t rsp_off = values_.Key(st.regs[GEP_RSP]).second;
  for (const auto& [key, store_step] : p.stack_refs) {
    const Slot* tab = st.FindSlot(key.first, key.second);
    if (!tab || tab->vid != ref_) continue;
    int64_t disp = key.second - rsp_off;
    std::string reason;
    if (is_call && disp >= 0 && disp < kStackArgBytes) {
      switch (ClassifyCallee(callee, eface_, static_cast<int>(disp / 8), &reason)) {
        case CalleeClass::kNotCreation:
          *handled = true;
          return Use(reason);
        case CalleeClass::kPairResult:
          *handled = true;
          p.visited.insert(p.positions[pos].idx);
          return AfterCall(p, pos, GEP_LOC(GEP_LOC_MEM, GEP_RSP, disp + 16),
                           GEP_LOC(GEP_LOC_MEM, GEP_RSP, disp + 24), callee);
        case CalleeClass::kCreates:
          break;
      }
    }
    if (!PairComplete(st, key, store_step)) continue;
    *handled = true;
    std::optional<int> at = PairPosition(p, key, store_step);
    return PlacePair(p, at ? *at : pos, key);
  }
  return Lost("");
}

PathEnd RefWalker::AtCall(Path& p, int pos, absl::string_view callee, bool* handled) {
  *handled = true;
  const State& st = p.positions[pos].state;
  if (!binary_.regabi()) return AtStackConsumer(p, pos, callee, handled);
  int k = -1, count = 0;
  for (int i = 0; i < static_cast<int>(kAbiRegs.size()); ++i) {
    if (st.regs[kAbiRegs[i]] == ref_) {
      if (k < 0) k = i;
      ++count;
    }
  }
  if (k < 0) {
    *handled = false;
    return Lost("");
  }
  // A register that also has a spilled copy may just be stale: let the
  // spill show the real use unless this call is plainly one.
  bool spilled = Spilled(st);
  std::string reason;
  switch (ClassifyCallee(callee, eface_, k, &reason)) {
    case CalleeClass::kNotCreation:
      if (spilled) {
        *handled = false;
        return Lost("");
      }
      if (p.tentative) return PlaceAtRegs(p, p.tentative->pos, p.tentative->k, CreationProbe::kCall);
      return Use(reason);
    case CalleeClass::kPairResult:
      p.visited.insert(p.positions[pos].idx);
      return AfterCall(p, pos, GEP_LOC(GEP_LOC_REG, GEP_RAX, 0), GEP_LOC(GEP_LOC_REG, GEP_RBX, 0),
                       callee);
    case CalleeClass::kCreates:
      break;
  }
  if (count > 1) return Unplaced(absl::StrCat(Noun(), " in several argument registers"));
  if (k + 1 >= static_cast<int>(kAbiRegs.size())) {
    return Unplaced(absl::StrCat(Noun(), " in the last argument register"));
  }
  uint32_t data = st.regs[kAbiRegs[k + 1]];
  // Past a branch or merge the register may be a leftover phi input: the
  // data word must at least have been set during the walk.
  if ((p.last_fork >= 0 || !p.positions[pos].exclusive) && data < first_walk_vid_) {
    *handled = false;
    return Lost("");
  }
  if (p.tentative) return Resolve(p, PlaceAtRegs(p, pos, k, CreationProbe::kCall), data);
  if (spilled) {
    p.tentative = Tentative{pos, k, data};
    *handled = false;
    return Lost("");
  }
  return PlaceAtRegs(p, pos, k, CreationProbe::kCall);
}

PathEnd RefWalker::AtReturn(Path& p, int pos) {
  const State& st = p.positions[pos].state;
  if (!binary_.regabi()) {
    bool handled = false;
    PathEnd e = AtStackConsumer(p, pos, "", &handled);
    if (handled) return e;
    return End(p, "returned without the " + Noun());
  }
  for (int i = 0; i + 1 < static_cast<int>(kAbiRegs.size()); ++i) {
    if (st.regs[kAbiRegs[i]] != ref_) continue;
    // Straight from the LEA the value cannot be dead, so it is a result.
    // Past a branch or merge it may be a leftover phi input, unless the data
    // word was set during the walk or the function's returns use that many
    // result registers.
    bool straight = p.last_fork < 0 && p.positions[pos].exclusive;
    bool data_set = st.regs[kAbiRegs[i + 1]] >= first_walk_vid_;
    if (!straight && !data_set && i + 1 >= fn_.result_regs()) {
      return End(p, "stale register at return");
    }
    return Resolve(p, PlaceAtRegs(p, pos, i, CreationProbe::kReturn), st.regs[kAbiRegs[i + 1]]);
  }
  return End(p, "returned without the " + Noun());
}

// The path cannot go on: settle for what was seen on it.
PathEnd RefWalker::End(Path& p, const std::string& reason) {
  if (p.heap_ref) {
    if (p.heap_pre_data && p.heap_ref_pos < static_cast<int>(p.positions.size())) {
      return PlacePair(p, p.heap_ref_pos, *p.heap_ref);
    }
    return Unplaced(absl::StrCat("data word not stored next to the ", Noun(), " (", reason, ")"));
  }
  // An interface kept in a stack variable.
  std::optional<int> pair_pos;
  Key pair_key;
  for (const auto& [key, store_step] : p.stack_refs) {
    auto at = PairPosition(p, key, store_step);
    if (at && PairComplete(p.positions.back().state, key, store_step)) {
      pair_pos = at;
      pair_key = key;
      break;
    }
  }
  if (p.tentative) {
    if (!pair_pos) return PlaceAtRegs(p, p.tentative->pos, p.tentative->k, CreationProbe::kCall);
    const Slot* data = p.positions[*pair_pos].state.FindSlot(pair_key.first, pair_key.second + 8);
    if (data && data->vid == p.tentative->data) {
      return PlaceAtRegs(p, p.tentative->pos, p.tentative->k, CreationProbe::kCall);
    }
  }
  if (pair_pos) return PlacePair(p, *pair_pos, pair_key);
  return Lost(reason);
}

// Go moves the stack pointer only in prologues and epilogues, so once it
// rises above its lowest point the frame is being torn down.
void RefWalker::PushPosition(Path& p, int idx, bool exclusive) {
  auto [root, off] = values_.Key(p.st.regs[GEP_RSP]);
  bool gone = false;
  if (root == rsp_root_) {
    p.min_rsp = std::min(p.min_rsp, off);
    gone = off > p.min_rsp;
  }
  p.positions.push_back({idx, p.st, step_, exclusive, gone});
}

void RefWalker::Walk(Path p) {
  for (;;) {
    if (++budget_ > kMaxBudget) {
      ends_.push_back(End(p, "no use within reach"));
      return;
    }
    const Insn& c = insns_[p.cur];
    int next = p.cur + 1;
    if (p.forced_next >= 0) {
      next = p.forced_next;
      p.forced_next = -1;
    } else if (c.flow == Flow::kJump) {
      next = c.target ? fn_.IndexOf(c.target) : -1;
      if (next < 0) {
        ends_.push_back(End(p, "jump out of the function before use"));
        return;
      }
    }
    if (next >= static_cast<int>(insns_.size())) {
      ends_.push_back(End(p, "fell off the function"));
      return;
    }
    if (p.visited.contains(next)) {
      ends_.push_back(End(p, "loop before use"));
      return;
    }
    if (p.exclusive && !AllPredsVisited(p, next)) p.exclusive = false;
    p.visited.insert(next);
    PushPosition(p, next, p.exclusive);
    int pos = static_cast<int>(p.positions.size()) - 1;
    const Insn& in = insns_[next];
    p.cur = next;

    if (p.heap_ref) {
      if (PairComplete(p.st, *p.heap_ref, p.heap_ref_step)) {
        const Slot* data = p.st.FindSlot(p.heap_ref->first, p.heap_ref->second + 8);
        if (data->written > p.heap_ref_step) {
          ends_.push_back(PlacePair(p, pos, *p.heap_ref));
          return;
        }
      }
      const Slot* tab = p.st.FindSlot(p.heap_ref->first, p.heap_ref->second);
      if (!tab || tab->vid != ref_) {
        ends_.push_back(End(p, "itab slot overwritten"));
        return;
      }
    } else if (auto use = ClassifyUse(p.st, in)) {
      if (*use == "comparison" && ComparesStoredPair(p)) {
        ends_.push_back(End(p, "comparison of a stored interface"));
        return;
      }
      if (p.tentative) {
        ends_.push_back(PlaceAtRegs(p, p.tentative->pos, p.tentative->k, CreationProbe::kCall));
      } else {
        ends_.push_back(Use(*use));
        ends_.back().at = in.addr;
      }
      return;
    }

    switch (in.flow) {
      case Flow::kCall: {
        absl::string_view callee = binary_.FuncAt(in.target);
        if (IsWriteBarrier(callee)) break;
        if (p.heap_ref) {
          ends_.push_back(End(p, absl::StrCat("call to ", callee.empty() ? "?" : callee)));
          return;
        }
        bool handled = false;
        PathEnd e = AtCall(p, pos, callee, &handled);
        if (handled) {
          ends_.push_back(std::move(e));
          return;
        }
        if (IsNoReturn(callee)) {
          ends_.push_back(End(p, absl::StrCat("call to ", callee, " before use")));
          return;
        }
        break;
      }
      case Flow::kRet:
        ends_.push_back(p.heap_ref ? End(p, "return") : AtReturn(p, pos));
        return;
      case Flow::kCondJump: {
        int merge = -1;
        State before = p.st;
        if (TryDiamond(p, p.cur, &merge)) {
          NoteNewRefSlots(p, before);
          p.forced_next = merge;
          continue;
        }
        int taken = in.target ? fn_.IndexOf(in.target) : -1;
        if (taken < 0) {
          ends_.push_back(End(p, "branch out of the function before use"));
          return;
        }
        if (paths_ >= kMaxPaths) {
          ends_.push_back(End(p, "too many branches before use"));
          return;
        }
        ++paths_;
        p.last_fork = pos;
        Path q = p;
        q.forced_next = taken;
        Walk(std::move(q));
        continue;  // this path takes the fall-through
      }
      case Flow::kStop:
        ends_.push_back(End(p, "trap before use"));
        return;
      case Flow::kJump:
        if (!in.target) {
          ends_.push_back(End(p, "indirect jump before use"));
          return;
        }
        continue;
      case Flow::kNext:
        break;
    }
    State before = p.st;
    Simulate(p.st, in);
    NoteNewRefSlots(p, before);
    if (!p.heap_ref && !p.tentative && !RefAlive(p.st)) {
      ends_.push_back(End(p, absl::StrCat(Noun(), " discarded before use")));
      return;
    }
  }
}

WalkResult RefWalker::Run() {
  // Start at the head of the straight run of code that ends at the LEA, so
  // stores made just before it (a data word, an allocation) are known.
  // Write barrier diamonds on the way are stepped over as a whole.
  int start = lea_;
  while (start > 0 && lea_ - start < kMaxBackward && !fn_.UnknownEntry(start)) {
    if (fn_.Sources(start).empty() && fn_.FallsThrough(start - 1)) {
      --start;
      continue;
    }
    std::optional<int> jcc = DiamondEndingAt(start);
    if (!jcc || *jcc < 2) break;
    start = *jcc - 1;  // the CMP of the check
    if (!fn_.Sources(start).empty() || !fn_.FallsThrough(start - 1)) break;
  }
  Path p;
  for (int r = 0; r < kNumRegs; ++r) p.st.regs[r] = values_.Fresh(Value::kRoot);
  rsp_root_ = p.st.regs[GEP_RSP];
  ref_ = values_.Fresh(Value::kRoot);
  first_walk_vid_ = ref_ + 1;
  for (int i = start; i < lea_;) {
    if (insns_[i].flow == Flow::kCondJump) {
      std::optional<Diamond> d = DiamondAt(i);
      if (d && d->merge <= lea_) {
        p.st = SimulateDiamond(*d, p.st);
        i = d->merge;
        continue;
      }
    }
    Simulate(p.st, insns_[i]);
    p.min_rsp = std::min(p.min_rsp, values_.Key(p.st.regs[GEP_RSP]).second);
    ++i;
  }
  PushPosition(p, lea_, true);
  p.visited.insert(lea_);
  Simulate(p.st, insns_[lea_]);
  p.cur = lea_;
  Walk(std::move(p));

  WalkResult out;
  bool all_same = !ends_.empty();
  for (const PathEnd& e : ends_) {
    const CreationProbe* first = ends_[0].probe ? &*ends_[0].probe : nullptr;
    if (!e.probe || !first || e.probe->addr != first->addr || e.probe->cookie != first->cookie) {
      all_same = false;
    }
  }
  if (all_same) {
    out.probes.push_back(*ends_[0].probe);
    return out;
  }
  // Paths differ: each creating path needs its own probe past its last
  // branch, where no other path passes.
  std::string unplaced, use, lost;
  for (const PathEnd& e : ends_) {
    if (e.probe) {
      if (e.probe_pos <= e.last_fork) {
        if (unplaced.empty()) unplaced = "created on some paths only; no probe point past the branch";
        continue;
      }
      bool dup = false;
      for (const CreationProbe& q : out.probes) {
        dup = dup || (q.addr == e.probe->addr && q.cookie == e.probe->cookie);
      }
      if (!dup) out.probes.push_back(*e.probe);
    } else if (e.creation) {
      if (unplaced.empty()) unplaced = e.reason;
    } else if (e.use) {
      if (use.empty()) use = e.reason;
    } else if (lost.empty()) {
      lost = e.reason;
    }
  }
  if (!unplaced.empty()) {
    out.skip_reason = out.probes.empty() ? unplaced : "partly planned: " + unplaced;
  } else if (out.probes.empty()) {
    out.skip_reason = !use.empty() ? use : lost;
  }
  return out;
}

// ---------------------------------------------------------------------------

// RIP-relative LEAs and loads (REX.W 8D or 8B /r, mod=00 rm=101) in `text`
// whose target is a reference target. Byte matches inside other
// instructions are weeded out when the function is decoded.
struct RefSite {
  uint64_t addr;
  uint64_t target;  // the RIP-relative address
  bool load;
};

std::vector<RefSite> ScanRefs(absl::Span<const uint8_t> text, uint64_t base,
                              const absl::flat_hash_map<uint64_t, Target>& leas,
                              const absl::flat_hash_map<uint64_t, Target>& loads) {
  std::vector<RefSite> out;
  const uint8_t* p = text.data();
  size_t n = text.size();
  for (size_t i = 0; i + 7 <= n; ++i) {
    if ((p[i] & 0xF8) != 0x48 || (p[i + 2] & 0xC7) != 0x05) continue;
    bool load = p[i + 1] == 0x8B;
    if (!load && p[i + 1] != 0x8D) continue;
    int32_t disp;
    std::memcpy(&disp, p + i + 3, 4);
    uint64_t target = base + i + 7 + static_cast<int64_t>(disp);
    if ((load ? loads : leas).contains(target)) out.push_back({base + i, target, load});
  }
  return out;
}

}  // namespace

absl::StatusOr<std::vector<uint64_t>> TypeDescriptorRefs(const GoBinary& bin) {
  auto types = bin.types();
  if (!types.ok()) return types.status();
  const symbolizer::Pclntab& tab = bin.pclntab();
  if (tab.num_functions() == 0) return std::vector<uint64_t>{};
  uint64_t text_start = tab.FuncEntry(0);
  auto text = bin.elf().ReadVirtualUpTo(text_start, tab.text_end() - text_start);
  if (!text.ok()) return text.status();
  absl::flat_hash_set<uint64_t> seen;
  const uint8_t* p = text->data();
  for (size_t i = 0; i + 7 <= text->size(); ++i) {
    // REX.W 8D /r with mod=00 rm=101: LEA reg, [rip+disp32].
    if ((p[i] & 0xF8) != 0x48 || p[i + 1] != 0x8D || (p[i + 2] & 0xC7) != 0x05) continue;
    int32_t disp;
    std::memcpy(&disp, p + i + 3, 4);
    uint64_t target = text_start + i + 7 + static_cast<int64_t>(disp);
    if ((*types)->InTypes(target)) seen.insert(target);
  }
  std::vector<uint64_t> out(seen.begin(), seen.end());
  std::sort(out.begin(), out.end());
  return out;
}

const char* ViaName(CreationProbe::Via via) {
  switch (via) {
    case CreationProbe::kCall: return "call";
    case CreationProbe::kReturn: return "ret";
    case CreationProbe::kStore: return "store";
    case CreationProbe::kCallResult: return "call-result";
    case CreationProbe::kEarly: return "early";
  }
  return "?";
}

std::string LocationString(uint32_t loc) {
  uint32_t reg = GEP_LOC_REGNO(loc);
  const char* name = reg < kNumRegs ? kRegNames[reg] : "?";
  switch (GEP_LOC_KIND(loc)) {
    case GEP_LOC_REG:
      return absl::StrCat("reg:", name);
    case GEP_LOC_MEM: {
      int32_t d = GEP_LOC_DISP(loc);
      return absl::StrFormat("mem:[%s%s0x%x]", name, d < 0 ? "-" : "+",
                             d < 0 ? -static_cast<int64_t>(d) : d);
    }
    case GEP_LOC_CONST:
      return "const";
    default:
      return "none";
  }
}

absl::StatusOr<ProbePlan> PlanCreationProbes(const GoBinary& bin,
                                             const std::vector<ErrorType>& types) {
  absl::flat_hash_map<uint64_t, Target> targets;  // LEA targets
  absl::flat_hash_map<uint64_t, Target> loads;    // MOV targets: itab.type words
  for (const ErrorType& t : types) {
    for (uint64_t itab : t.itabs) {
      targets[itab] = Target{itab, t.type_addr, false};
      loads[itab + 8] = Target{itab, t.type_addr, true};
    }
    if (t.type_addr) targets.try_emplace(t.type_addr, Target{0, t.type_addr, true});
  }
  ProbePlan plan;
  const symbolizer::Pclntab& tab = bin.pclntab();
  if (targets.empty() || tab.num_functions() == 0) return plan;

  uint64_t text_start = tab.FuncEntry(0);
  uint64_t text_end = tab.text_end();
  auto text = bin.elf().ReadVirtualUpTo(text_start, text_end - text_start);
  if (!text.ok()) {
    return absl::FailedPreconditionError(
        absl::StrFormat("cannot read text at 0x%x: %s", text_start, text.status().message()));
  }
  std::vector<RefSite> refs = ScanRefs(*text, text_start, targets, loads);

  // Group by function; only those functions are decoded.
  absl::flat_hash_map<size_t, std::vector<RefSite>> by_func;
  std::vector<size_t> order;
  for (const RefSite& ref : refs) {
    auto f = tab.FindFunc(ref.addr);
    if (!f) continue;
    auto [it, fresh] = by_func.try_emplace(*f);
    if (fresh) order.push_back(*f);
    it->second.push_back(ref);
  }

  auto dis = Disassembler::Create();
  if (!dis.ok()) return dis.status();
  Binary binary(bin);
  for (size_t f : order) {
    uint64_t entry = tab.FuncEntry(f), end = tab.FuncEnd(f);
    if (entry < text_start || end > text_start + text->size() || end <= entry) continue;
    Function fn(entry, end);
    (*dis)->Decode(text->subspan(entry - text_start, end - entry), entry, fn.mutable_insns());
    fn.Analyze(binary);
    ++plan.functions_scanned;
    for (const RefSite& ref : by_func[f]) {
      int idx = fn.IndexOf(ref.addr);
      if (idx < 0) continue;  // the bytes were inside another instruction
      const Insn& in = fn.insns()[idx];
      if (in.id != (ref.load ? X86_INS_MOV : X86_INS_LEA) || in.ops[0].type != Operand::kReg ||
          in.ops[0].size != 8 || in.ops[1].type != Operand::kMem || in.ops[1].base != kRipReg ||
          static_cast<uint64_t>(in.ops[1].value) != ref.target) {
        continue;
      }
      ++plan.references;
      const Target& target = (ref.load ? loads : targets).at(ref.target);
      uint64_t addr = ref.addr;
      uint64_t target_addr = target.itab ? target.itab : target.type;
      RefWalker walker(binary, fn, **dis, idx, target);
      WalkResult r = walker.Run();
      for (const CreationProbe& p : r.probes) plan.probes.push_back(p);
      if (!r.skip_reason.empty()) plan.skipped.push_back({addr, target_addr, r.skip_reason});
    }
  }
  std::sort(plan.probes.begin(), plan.probes.end(),
            [](const CreationProbe& a, const CreationProbe& b) {
              return std::tie(a.addr, a.ref_addr) < std::tie(b.addr, b.ref_addr);
            });
  std::sort(plan.skipped.begin(), plan.skipped.end(),
            [](const SkippedRef& a, const SkippedRef& b) { return a.addr < b.addr; });
  return plan;
}

}  // namespace goerrprof::profiler
