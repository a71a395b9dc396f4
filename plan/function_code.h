// The planner's view of one function: its decoded code and control flow,
// and the whole-binary facts it needs (callee names, what a reference
// points at, which callees create nothing). Internal to plan/.
#ifndef GOERRPROF_PLAN_FUNCTION_CODE_H_
#define GOERRPROF_PLAN_FUNCTION_CODE_H_

#include <algorithm>
#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <tuple>
#include <utility>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "bpf/probe_abi.h"
#include "symbolizer/go_binary.h"
#include "x86/decoder.h"

namespace goerrprof::profiler::planner {

using symbolizer::GoBinary;
using x86::Flow;
using x86::Insn;
using x86::Operand;

constexpr int kNoReg = x86::kNoReg;
constexpr int kRipReg = x86::kRip;  // only as a memory base
constexpr int kNumRegs = x86::kNumRegs;

// The decoder's register numbers are used as probe ABI locations directly.
static_assert(int{x86::kRax} == GEP_RAX && int{x86::kRbx} == GEP_RBX && int{x86::kRcx} == GEP_RCX &&
              int{x86::kRdx} == GEP_RDX && int{x86::kRsi} == GEP_RSI && int{x86::kRdi} == GEP_RDI &&
              int{x86::kRbp} == GEP_RBP && int{x86::kRsp} == GEP_RSP && int{x86::kR8} == GEP_R8 &&
              int{x86::kR9} == GEP_R9 && int{x86::kR10} == GEP_R10 && int{x86::kR11} == GEP_R11 &&
              int{x86::kR12} == GEP_R12 && int{x86::kR13} == GEP_R13 && int{x86::kR14} == GEP_R14 &&
              int{x86::kR15} == GEP_R15);

// Go ABIInternal integer argument and result registers, in order.
constexpr std::array<int, 9> kAbiRegs = {GEP_RAX, GEP_RBX, GEP_RCX, GEP_RDI, GEP_RSI,
                                         GEP_R8,  GEP_R9,  GEP_R10, GEP_R11};
// A register's position among kAbiRegs, -1 when it is none of them.
inline int AbiIndex(int reg) {
  for (size_t i = 0; i < kAbiRegs.size(); ++i) {
    if (kAbiRegs[i] == reg) return static_cast<int>(i);
  }
  return -1;
}

// The planner looks at the first two operands only.
inline int PlannedOps(const Insn& in) { return std::min<int>(in.nops, 2); }

inline bool IsCompare(uint16_t id) {
  return id == X86_INS_CMP || id == X86_INS_TEST || id == X86_INS_BT;
}

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

class Function;

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
  // Name of the function containing `addr` (Duff's devices are entered
  // mid-body), empty if none.
  absl::string_view FuncContaining(uint64_t addr) const {
    const auto& tab = bin_.pclntab();
    if (auto idx = tab.FindFunc(addr)) return tab.FuncName(*idx);
    return {};
  }
  // A call into Duff's device (entered mid-body, so it has no name of its
  // own): it zeroes or copies upward from RDI (from RSI) and clobbers only
  // those registers.
  enum class Duff { kNone, kZero, kCopy };
  Duff DuffAt(const Insn& call) {
    if (call.flow != Flow::kCall || !call.target || !FuncAt(call.target).empty()) {
      return Duff::kNone;
    }
    absl::string_view within = FuncContaining(call.target);
    if (within == "runtime.duffzero") return Duff::kZero;
    if (within == "runtime.duffcopy") return Duff::kCopy;
    return Duff::kNone;
  }
  // Integer registers the Go function entered at `addr` can read as
  // arguments at most (register ABI): one per scalar component of its
  // arguments (Pclntab::FuncArgComponents). -1 when unknown (no such
  // function, no argument info, stack ABI).
  int ArgRegsAt(uint64_t addr) const {
    if (!regabi_ || addr == 0) return -1;
    const auto& tab = bin_.pclntab();
    auto idx = tab.FindFunc(addr);
    if (!idx || tab.FuncEntry(*idx) != addr) return -1;
    // The compiler leaves a shape function's first input (its dictionary,
    // or a method's receiver) out of the list: unknown for those.
    if (absl::StrContains(tab.FuncName(*idx), "[")) return -1;
    auto n = tab.FuncArgComponents(*idx);
    return n ? *n : -1;
  }

  // The function entered at `entry`, decoded and analyzed once (callees
  // the planner looks into); nullptr when it cannot be read.
  const Function* Decoded(uint64_t entry);
  // Every return of the Go function at `entry` gives, in RAX, a new object
  // of type `want` (fresh_objects.cc); remembered per function and type.
  bool ReturnsNew(uint64_t entry, uint64_t want, uint64_t target, int depth);
  // Frame byte ranges [lo, hi), RSP-relative in the body of `fn`, that code
  // may write other than by an RSP-based store the planner sees:
  // address-taken objects (FUNCDATA_StackObjects), variables reached
  // through a register set from RSP (copies, Duff's devices). nullopt when
  // not known (fresh_objects.cc).
  struct Hazard {
    int64_t lo, hi;
    int at;  // the instruction that writes there, -1 for any
  };
  using Ranges = std::vector<Hazard>;
  const std::optional<Ranges>& FrameHazards(const Function& fn);
  // The frame of `fn`'s body, RSP-relative: varp (the saved BP's slot) and
  // argp (the first argument word, past the return PC). nullopt when the
  // prologue is not read (open_defers.cc).
  struct Frame {
    int64_t varp, argp;
  };
  static std::optional<Frame> BodyFrame(const Function& fn);
  // `call` runs one of the function's open-coded defers (Go 1.18+): its
  // closure, read from a deferred-closure slot, takes no arguments.
  bool CallsDeferred(const Function& fn, int call);
  // `call` goes through a function variable that no code or data ever
  // sets (a hook left nil, `time.loadFromEmbeddedTZData` without
  // time/tzdata): it never runs (open_defers.cc).
  bool CallsNeverSetVar(const Function& fn, int call);

 private:
  const GoBinary& bin_;
  bool regabi_;
  absl::flat_hash_map<uint64_t, absl::string_view> names_;
  std::unique_ptr<x86::Decoder> dis_;
  absl::flat_hash_map<uint64_t, std::unique_ptr<Function>> decoded_;
  absl::flat_hash_map<std::tuple<uint64_t, uint64_t, uint64_t>, bool> returns_new_;
  absl::flat_hash_map<uint64_t, std::optional<Ranges>> hazards_;
  absl::flat_hash_map<uint64_t, std::vector<int64_t>> defer_slots_;  // RSP offsets
  absl::flat_hash_map<uint64_t, bool> never_set_;  // by global's address

  bool NeverSet(uint64_t global);

  const std::vector<int64_t>& DeferClosureSlots(const Function& fn);
};

// Calls after which control never comes back: the instruction that follows
// is reachable only by a branch (or not at all).
bool IsNoReturn(absl::string_view name);
// Argument words of a runtime helper that takes a type, -1 when not known:
// a reference in an argument register past them is a stale register.
int RuntimeArgWords(absl::string_view name);
// Integer result registers of the runtime's comparison and allocation
// helpers (register ABI); -1 for any other function, whose every register
// may be a result.
int RuntimeResultRegs(absl::string_view name);
// Pre-1.21 write barrier: stores a value register to [DI] itself.
// Returns the value register, or kNoReg when `name` is not one.
int OldWriteBarrierValueReg(absl::string_view name);
// 1.21+ write barrier: returns buffer space in R11, preserves everything else.
bool IsNewWriteBarrier(absl::string_view name);
bool IsWriteBarrier(absl::string_view name);
// What handing the reference as argument `k` to `callee` means.
CalleeClass ClassifyCallee(absl::string_view callee, bool eface, int k, std::string* reason);

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
  // Every way into insns_[i] the planner sees: the branches to it and the
  // fall-through. Alignment padding after a jump has none.
  std::vector<int> WaysIn(int i) const {
    std::vector<int> out(Sources(i).begin(), Sources(i).end());
    if (i > 0 && FallsThrough(i - 1)) out.push_back(i - 1);
    return out;
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

}  // namespace goerrprof::profiler::planner

#endif  // GOERRPROF_PLAN_FUNCTION_CODE_H_
