// The new-object rule: a LEA of an itab beside a fresh object of the
// value's own type is the creation itself, however the paths then carry
// the value (ref_walker.cc's Run falls back on it; probe_plan.cc has it
// give way to another probed reference of the itab).
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "plan/fresh_objects.h"
#include "plan/ref_walker.h"
#include "symbolizer/go_types.h"

namespace goerrprof::profiler::planner {

uint64_t RefWalker::NewobjectType(uint32_t data_vid) const {
  const Value& v = values_[data_vid];
  if (v.kind != Value::kCallResult) return 0;
  int call = fn_.IndexOf(v.aux);
  if (call < 0) return 0;
  return TypeArgument(call);
}

uint64_t RefWalker::TypeArgument(int call) const { return AllocatedType(binary_, fn_, call); }

std::optional<std::vector<uint64_t>> RefWalker::ReferencedAgain(uint64_t object_type) const {
  const uint64_t target = target_.itab ? target_.itab : target_.type;
  constexpr int kMaxSteps = 8192;
  std::vector<int> work;
  absl::flat_hash_set<int> seen;
  auto push = [&](int i) {
    if (i >= 0 && i < static_cast<int>(insns_.size()) && seen.insert(i).second) work.push_back(i);
  };
  push(lea_ + 1);
  int steps = 0;
  std::vector<uint64_t> refs;
  while (!work.empty()) {
    if (++steps > kMaxSteps) return std::nullopt;
    int i = work.back();
    work.pop_back();
    const Insn& in = insns_[i];
    // The itab itself, or its type word (which a type switch or an `any`
    // made of the same value loads).
    if (in.nops == 2 && in.ops[1].type == Operand::kMem && in.ops[1].base == kRipReg &&
        (static_cast<uint64_t>(in.ops[1].value) == target ||
         (target_.itab && static_cast<uint64_t>(in.ops[1].value) == target + 8)) &&
        (in.id == X86_INS_LEA || in.id == X86_INS_MOV)) {
      refs.push_back(in.addr);
    }
    switch (in.flow) {
      case Flow::kCall: {
        // A new object of the type: what follows is another creation's.
        absl::string_view callee = binary_.FuncAt(in.target);
        if (AllocatorTypeReg(callee) != kNoReg && TypeArgument(i) == object_type) {
          continue;
        }
        // Or a constructor returning one (net.newDNSError, Go 1.23+).
        if (binary_.regabi() && !callee.empty() && !absl::StartsWith(callee, "runtime.") &&
            binary_.ReturnsNew(in.target, object_type, target, 1)) {
          continue;
        }
        if (IsNoReturn(callee)) continue;  // a panic: nothing follows
        push(i + 1);
        break;
      }
      case Flow::kNext:
        push(i + 1);
        break;
      case Flow::kJump:
        if (!in.target) return std::nullopt;  // an indirect jump: anywhere
        push(fn_.IndexOf(in.target));
        break;
      case Flow::kCondJump:
        push(i + 1);
        push(fn_.IndexOf(in.target));
        break;
      case Flow::kRet:
      case Flow::kStop:
        break;
    }
  }
  return refs;
}

std::optional<CreationProbe> RefWalker::FreshPairAtLea(const Path& at_lea) {
  // Just past the LEA, reading the itab from its register; or, where that
  // is a merge, at the LEA itself with the itab known statically. Either
  // only when the LEA's own way leads there.
  // (A write barrier check's two sides meeting there still come from the
  // one straight run.)
  auto run_only = [&](int idx) {
    if (fn_.UnknownEntry(idx)) return false;
    if (fn_.Sources(idx).empty()) return true;
    std::optional<int> jcc = DiamondEndingAt(idx);
    if (!jcc) return false;
    for (int s : fn_.Sources(idx)) {
      if (s < *jcc || s >= idx) return false;
    }
    return true;
  };
  int next = lea_ + 1;
  bool at_next = next < static_cast<int>(insns_.size()) && fn_.Sources(next).empty() &&
                 !fn_.UnknownEntry(next);
  bool at_ref = run_only(lea_);
  // A LEA only: a load of the itab's type word is a type switch's key.
  if ((!at_next && !at_ref) || insns_[lea_].id != X86_INS_LEA ||
      insns_[lea_].ops[0].type != Operand::kReg) {
    return std::nullopt;
  }
  // A path that uses the value (compares it, asserts on it, passes it to
  // errors.As as a target) says it was not made to be carried on unseen.
  for (const PathEnd& e : all_ends_) {
    if (e.use) return std::nullopt;
  }
  const uint64_t want = BoxedObjectType();
  if (want == 0) return std::nullopt;
  const int tab_reg = insns_[lea_].ops[0].reg;
  // The register must hold the itab's data word: no path that pairs the
  // itab may pair it with another value (`last = old` in a loop, beside a
  // new object still in a register, is no creation of it).
  auto pairs_with = [&](int r) {
    for (const PathEnd& e : all_ends_) {
      if ((e.probe || e.checked) && e.data_vid != 0 && e.data_vid != at_lea.st.regs[r]) {
        return false;
      }
    }
    return true;
  };
  int made = kNoReg;
  for (int r : {GEP_RAX, GEP_RBX, GEP_RCX, GEP_RDI, GEP_RSI, GEP_R8, GEP_R9, GEP_R10, GEP_R11,
                GEP_RDX, GEP_R12, GEP_R13, GEP_R15}) {
    uint32_t vid = at_lea.st.regs[r];
    if (r == tab_reg || NewobjectType(vid) != want) continue;
    // Made in the straight run before the LEA, with no other LEA of this
    // itab since (that one built the value; this one would re-materialize it).
    int call = fn_.IndexOf(values_[vid].aux);
    if (call < 0 || call >= lea_) continue;
    // Nor a branch (but write barrier checks) or another call: the object
    // is then made for this LEA, on every way to it (http2StreamError.As
    // boxes its value for reflect, then loads the type for reflect.Type).
    bool again = false;
    for (int j = call + 1; j < lea_ && !again; ++j) {
      const Insn& in = insns_[j];
      again = (in.id == X86_INS_LEA && in.ops[1].type == Operand::kMem &&
               in.ops[1].base == kRipReg &&
               static_cast<uint64_t>(in.ops[1].value) ==
                   (target_.itab ? target_.itab : target_.type)) ||
              (in.flow == Flow::kCondJump && !DiamondAt(j)) ||
              (in.flow == Flow::kCall && !IsWriteBarrier(binary_.FuncAt(in.target)));
    }
    if (again || !pairs_with(r)) continue;
    made = r;
    break;
  }
  // Else a register that holds such an object however the code got there:
  // each way in made one (a loop's `lastErr = &DNSError{…}; continue`
  // reached from several creating branches).
  // Only for an itab: a LEA of a type may be reflect's, beside a copy boxed
  // for another use.
  if (made == kNoReg && !eface_) {
    for (int r : {GEP_RAX, GEP_RBX, GEP_RCX, GEP_RDI, GEP_RSI, GEP_R8, GEP_R9, GEP_R10, GEP_R11,
                  GEP_RDX, GEP_R12, GEP_R13, GEP_R15}) {
      if (r != tab_reg && pairs_with(r) &&
          NewOnEveryWay(binary_, fn_, lea_, r, want, target_.itab)) {
        made = r;
        break;
      }
    }
  }
  if (made != kNoReg) {
    const int r = made;
    // One allocation names the site; several, the LEA.
    uint32_t vid = NewobjectType(at_lea.st.regs[r]) == want ? at_lea.st.regs[r] : 0;
    fresh_type_ = want;
    if (!at_next) {
      return Emit(at_lea, static_cast<int>(at_lea.positions.size()) - 1,
                  GEP_LOC(GEP_LOC_CONST, 0, 0), GEP_LOC(GEP_LOC_REG, r, 0), vid,
                  CreationProbe::kEarly)
          .probe;
    }
    Path p = at_lea;
    PushPosition(p, next, true);
    PathEnd e = Emit(p, static_cast<int>(p.positions.size()) - 1,
                     GEP_LOC(GEP_LOC_REG, tab_reg, 0), GEP_LOC(GEP_LOC_REG, r, 0), vid,
                     CreationProbe::kEarly);
    return e.probe;
  }
  return std::nullopt;
}

uint64_t RefWalker::BoxedObjectType() const {
  auto types = binary_.bin().types();
  if (!types.ok()) return 0;
  auto t = (*types)->Read(target_.type);
  if (!t.ok()) return 0;
  // The object the data word points to: *T's T, or for a value type too big
  // to sit in the word itself, the boxed copy of the value.
  using symbolizer::GoKind;
  if (t->kind == GoKind::kPointer) return t->elem;
  if (t->size > 8 && t->kind != GoKind::kFunc && t->kind != GoKind::kMap &&
      t->kind != GoKind::kChan && t->kind != GoKind::kUnsafePointer) {
    return t->addr;
  }
  return 0;
}

// The compiler keeps an itab it tested against (`serr, _ :=
// err.(*SemanticError)`) as one constant, and re-materializes it at each
// merge on the way to `return serr`: those LEAs build nothing. Where every
// path that would create pairs the itab, in registers, with a word that on
// every way there is either the asserted value or a new object (counted
// where it first meets the itab), the reference plans nothing.
WalkResult RefWalker::Reboxed(WalkResult planned) {
  if (eface_ || planned.fresh) return planned;
  for (const PathEnd& e : ends_) {
    if (e.probe && e.fresh_data) return planned;  // pairs a new object itself
  }
  const uint64_t want = BoxedObjectType();
  if (want == 0) return planned;
  std::vector<int> made;
  bool any = false;
  for (const PathEnd& e : ends_) {
    if (Unknown(e)) continue;
    if (!e.probe && !e.checked && !e.creation) continue;
    if (e.consumer_idx < 0 || e.data_reg == kNoReg ||
        !ReboxedOnEveryWay(binary_, fn_, e.consumer_idx, e.data_reg, want, target_.itab,
                           &made)) {
      return planned;
    }
    any = true;
  }
  if (!any) return planned;
  WalkResult out;
  out.ref_addr = planned.ref_addr;
  out.skip_reason = "re-boxes a value asserted out of an interface, or made where it is counted";
  out.rebox = true;
  for (int i : made) out.made_at.push_back(insns_[i].addr);
  out.displaced = std::make_shared<const WalkResult>(std::move(planned));
  return out;
}

}  // namespace goerrprof::profiler::planner
