// Following one reference from its LEA to the instruction that pairs it
// with a data word, and placing the probe there. Internal to plan/; the
// walker's code is split by job: ref_walker.cc (the walk and the uses),
// ref_walker_simulate.cc (stepping instructions, write barrier diamonds),
// ref_walker_known.cc (what one instruction does with the reference: type
// tests with known outcomes, nil checks, method calls, uses),
// ref_walker_place.cc (consumers and probe placement), ref_walker_checked.cc
// (returns past a merge, probed with a check of the itab),
// ref_walker_fresh.cc (a new object beside the itab's LEA, made on every way
// in: fresh_objects.h).
#ifndef GOERRPROF_PLAN_REF_WALKER_H_
#define GOERRPROF_PLAN_REF_WALKER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "plan/function_code.h"
#include "plan/probe_plan.h"
#include "plan/symbolic_state.h"
#include "x86/decoder.h"

namespace goerrprof::profiler::planner {

// Longest straight run simulated before a reference.
constexpr int kMaxBackward = 64;
constexpr int kMaxSide = 16;  // instructions on one side of a write barrier
// Simulated steps between the stores of an interface's two words, at most.
constexpr int kPairWindow = 24;
// Stack ABI: runtime helpers take an itab or type in their first three
// argument words, and calls clobber at least that much of the frame bottom.
constexpr int64_t kStackArgBytes = 24;

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
  bool itab_converted = false;  // the itab register holds convI2I's result
  int cur = 0;
  int forced_next = -1;
  // Index of a `test r, r` of the itab word just walked: the interface being
  // built is never nil, so the conditional jump after it goes one way only.
  int nil_check = -1;
  // Index of a `cmp` whose operands are known numbers, one of them the
  // reference or a word read from its itab (a type test of the interface
  // being built), and those numbers.
  int known_cmp = -1;
  uint64_t cmp_a = 0, cmp_b = 0;
  int cmp_size = 8;
  int last_fork = -1;  // positions up to here are shared with sibling paths
  uint32_t method = 0;  // a method read from the itab: called on the value being built
  bool examined = false;  // the value was nil-checked or type-tested on the way
  // The itab was compared on the way (`err == ErrX`) and the walk went on:
  // only a new object (or a constant) boxed with it later is a creation.
  bool compared = false;
  bool unseen_copy = false;  // the itab was stored at an address not named
  int64_t min_rsp = 0;  // lowest stack pointer offset seen since the walk start
};

// The paths behind a checked probe: the instructions they ran, and those
// past their first merge (where other flows may join).
struct CheckedPaths {
  uint64_t addr = 0;  // the probe
  std::vector<int> ran;
  std::vector<int> merged;
  // The return block itself sets the data word to a static address: any
  // flow arriving with this itab returns this very value, built there.
  bool built_in_block = false;
  // The instruction that set the itab register in that block, and the itab
  // (the type for an `any`) the probe checks for.
  int tab_writer = -1;
  uint64_t want = 0;
};

struct PathEnd {
  std::optional<CreationProbe> probe;
  std::string reason;     // why there is no probe
  bool use = false;       // the reference met a use that creates nothing
  bool creation = false;  // a creation was seen but could not be probed
  int probe_pos = -1;
  int last_fork = -1;
  uint64_t at = 0;  // where a use was seen
  // The probe's data word is an allocation's result: the value was built
  // for certain, so paths that lose it later do not undo the creation.
  bool fresh_data = false;
  uint32_t data_vid = 0;  // the probe's data word
  bool examined = false;  // the path nil-checked or type-tested the value
  bool compared = false;  // the path compared the itab first (Path::compared)
  uint64_t consumer = 0;  // the instruction that pairs the words
  int consumer_idx = -1;  // its index, when the words meet in registers
  int data_reg = kNoReg;  // the data word's register there
  int consumer_tab = -1;  // the itab's register there, -1 when not a register
  // A probe at the consumer itself, which other paths also reach (a return
  // past a merge), counting only runs that hold this itab there: used when
  // `probe` lies where sibling paths that create nothing pass too.
  std::optional<CreationProbe> checked;
  CheckedPaths checked_paths;  // when `checked` or a checked `probe`
};

struct Diamond {
  std::vector<int> sides[2];  // instructions of each side, before the merge
  int merge = -1;
};


struct WalkResult {
  std::vector<CreationProbe> probes;
  std::string skip_reason;  // set when some or all creations got no probe
  std::vector<CheckedPaths> checked;  // for KeepClosedCheckedProbes
  // Per probe: where the paths through it consume the pair, as
  // ConsumerKey (kOpenEnd: a path whose end is not known: cut by the walk's
  // bounds, a panic, a call result), for KeepClosedCheckedProbes.
  std::vector<std::vector<uint64_t>> consumers;
  uint64_t ref_addr = 0;  // the walked LEA
  // Planned by the new-object rule (FreshPairAtLea): kept only if none of
  // `again` (other references to the itab reachable before a new object
  // of the type; nullopt: unknown, all of them) gets a probe of its own,
  // which could count the same object; else `displaced` stands.
  bool fresh = false;
  std::optional<std::vector<uint64_t>> again;
  // Planned by the re-box rule (Reboxed): kept only if each of `made_at`
  // (allocation calls) is some other probe's site; else `displaced`.
  bool rebox = false;
  std::vector<uint64_t> made_at;
  std::shared_ptr<const WalkResult> displaced;
};

constexpr uint64_t kOpenEnd = ~uint64_t{0};
// A consumer: its address and the itab's register there.
inline uint64_t ConsumerKey(uint64_t addr, int reg) {
  return reg < 0 || addr == 0 ? kOpenEnd : addr * 32 + static_cast<uint64_t>(reg);
}

// Keeps a checked probe only when every way into the code it needs the
// check for comes from the paths of references to the same itab that
// planned it: then what arrives with that itab is one of their creations,
// not a sentinel loaded from a variable. `walks` holds one function's
// walks of one target; probes that fail are removed and their references
// reported in `skipped` with `reason`.
void KeepClosedCheckedProbes(Binary& binary, const Function& fn,
                             const std::vector<WalkResult*>& walks);

// Bounds on following one reference: paths forked at branches, and
// instructions walked over all of them.
constexpr int kMaxPaths = 12;
constexpr int kMaxBudget = 3000;

// The outcome of a conditional jump `id` after `cmp a, b` of `size` bytes;
// nullopt for jumps on other flags.
std::optional<bool> JumpTaken(unsigned id, uint64_t a, uint64_t b, int size);

class RefWalker {
 public:
  // `past_comparisons`: walk on past the itab's comparisons (`err ==
  // ErrX`), where only a new object or a constant boxed with it later is
  // taken for a creation (probe_plan.cc walks so a second time where the
  // first walk found nothing).
  RefWalker(Binary& binary, const Function& fn, const x86::Decoder& dis, int lea,
            const Target& target, bool past_comparisons = false)
      : binary_(binary), fn_(fn), insns_(fn.insns()), dis_(dis), lea_(lea), target_(target),
        eface_(target.eface), past_comparisons_(past_comparisons) {}

  WalkResult Run();
  // What the paths of the walk plan (Run, ref_walker.cc).
  WalkResult Decide(const Path& at_lea);
  // `planned`, or, where every creating path re-boxes a value that already
  // was an error (ReboxedOnEveryWay), no probe, with `planned` displaced
  // (ref_walker_fresh.cc).
  WalkResult Reboxed(WalkResult planned);
  // The object an interface of the reference's type points to (*T's T, a
  // boxed copy of a big value), 0 when none.
  uint64_t BoxedObjectType() const;
  // Run's plan when the paths differ: a probe past each creating path's
  // last branch.
  WalkResult PerPath(WalkResult out);

 private:
  // `shared`: the probes lie before the first fork, on every path.
  WalkResult WithCheckedPaths(WalkResult out, bool shared) const;

  // Simulation.
  std::optional<Key> MemKey(const State& st, const Operand& op) const;
  uint32_t ReadOperand(State& st, const Operand& op);
  void Store(State& st, const Operand& mem, uint32_t vid, int size, bool plain);
  void Simulate(State& st, const Insn& in);
  void SimulateCall(State& st, const Insn& in);
  State Merge(const State& a, const State& b, bool loads_comparable);
  bool unnamed_store_ = false;  // Store met an address it cannot name

  // Walking.
  // Follows one path to its end (WalkOn); forks are walked on their own.
  void Walk(Path p);
  void WalkOn(Path& p);
  bool AllPredsVisited(const Path& p, int idx) const;
  std::vector<int> Trace(int start) const;
  std::optional<Diamond> DiamondAt(int jcc) const;
  std::optional<int> DiamondEndingAt(int merge) const;
  State SimulateDiamond(const Diamond& d, const State& st);
  bool TryDiamond(Path& p, int jcc, int* merge);
  void NoteNewRefSlots(Path& p, const State& before);
  bool RefAlive(const State& st) const;
  std::optional<std::string> ClassifyUse(const State& st, const Insn& in) const;
  bool IsNilCheck(const State& st, const Insn& in) const;
  bool SelectsOrNil(const State& st, const Insn& in) const;
  std::optional<uint64_t> KnownNumber(uint32_t vid) const;
  bool KnownCompare(Path& p, const Insn& in) const;
  bool MethodLoad(const State& st, const Insn& in) const;
  bool MethodCall(const Path& p, const Insn& in) const;
  PathEnd AtMethodCall(Path& p, int pos);
  std::optional<uint64_t> ItabWordLoad(const State& st, const Insn& in) const;
  std::optional<uint64_t> ItabWordAt(const State& st, const Operand& op) const;
  bool Neutral(const PathEnd& e, bool fresh) const;
  static bool Unknown(const PathEnd& e);
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
  PathEnd EndOf(Path& p, const std::string& reason);
  PathEnd Resolve(Path& p, PathEnd later, uint32_t later_data);

  // Placing the probe.
  std::optional<uint32_t> MemLoc(const State& st, uint32_t root, int64_t off) const;
  std::optional<uint32_t> Locate(const State& st, uint32_t vid) const;
  PathEnd Emit(const Path& p, int pos, uint32_t tab_loc, uint32_t data_loc, uint32_t data_vid,
               CreationProbe::Via via);
  PathEnd Place(const Path& p, int pos, std::optional<uint32_t> tab_loc,
                std::optional<uint32_t> data_loc, uint32_t data_vid, CreationProbe::Via via);
  int LastBlockWriter(const Path& p, int pos, int reg) const;
  PathEnd PlaceFrom(const Path& p, int pos, std::optional<uint32_t> tab_loc,
                    std::optional<uint32_t> data_loc, uint32_t data_vid, CreationProbe::Via via);
  PathEnd PlaceAtRegs(const Path& p, int pos, int k, CreationProbe::Via via);
  PathEnd PlacePair(const Path& p, int pos, const Key& key);
  uint64_t SiteOf(uint32_t data_vid) const;
  bool IsAllocation(uint32_t data_vid) const;
  // The type runtime.newobject (or convT, boxing a copy) was given to make
  // data_vid; 0 when not known (another allocator, a type not static).
  uint64_t NewobjectType(uint32_t data_vid) const;
  // A probe just past the LEA where a register holds a new object of the
  // value's own type (&T{} for an itab of *T; the boxed copy of a large T)
  // allocated in the straight run before it: the pair is built there,
  // whatever the paths do later.
  std::optional<CreationProbe> FreshPairAtLea(const Path& at_lea);
  // The type a call to an allocator at `call` passes in RAX, 0 if unknown.
  uint64_t TypeArgument(int call) const;
  // The references to the itab (type) on some way from the LEA before a
  // new object of object_type is made: one may build the same value again
  // and be probed itself. nullopt when unsure (an indirect jump, too far).
  std::optional<std::vector<uint64_t>> ReferencedAgain(uint64_t object_type) const;
  uint64_t fresh_type_ = 0;  // the object type FreshPairAtLea matched

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
  const x86::Decoder& dis_;
  int lea_;
  Target target_;
  bool eface_;

  // Mutable: naming an indexed address (MemKey) interns a value.
  mutable Values values_;
  uint32_t rsp_root_ = 0;
  uint32_t ref_ = 0;  // the walked LEA's value, distinct from other LEAs of the same target
  uint32_t first_walk_vid_ = 0;  // values below it were held before the walk
  const bool past_comparisons_;
  // No instruction of the walk wrote v: held before it, or left by a call.
  bool Unwritten(uint32_t v) const {
    return v < first_walk_vid_ || values_[v].kind == Value::kGarbage;
  }
  int step_ = 0;
  int budget_ = 0;
  int paths_ = 1;
  int first_fork_ = -1;  // positions up to here are shared by every path
  // Values read from the reference's itab or type (its type word, its
  // hash), with their numbers: type switches compare them with constants.
  absl::flat_hash_map<uint32_t, uint64_t> derived_;
  std::vector<PathEnd> ends_;
  std::vector<PathEnd> all_ends_;  // before neutral ends are set aside
};


}  // namespace goerrprof::profiler::planner

#endif  // GOERRPROF_PLAN_REF_WALKER_H_
