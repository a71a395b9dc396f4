// Creation-probe planner. Per function holding a reference: decode it
// (x86/decoder.h), index branch sources, then follow each reference with a small
// symbolic simulation (values in registers and [base+disp] slots) along
// every path to the instruction that pairs it with a data word; place the
// probe where only that reference's path passes.
#include "plan/probe_plan.h"

#include <algorithm>
#include <cstring>
#include <tuple>

#include "absl/algorithm/container.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/types/span.h"
#include "bpf/probe_abi.h"
#include "plan/function_code.h"
#include "plan/ref_walker.h"
#include "x86/decoder.h"

namespace goerrprof::profiler {

using namespace planner;  // NOLINT: the planner's internals, in this file only
using symbolizer::ErrorType;
using symbolizer::GoBinary;

namespace {

const char* const kRegNames[] = {"rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp",
                                 "r8",  "r9",  "r10", "r11", "r12", "r13", "r14", "r15"};

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

// Every run from instruction `from` reaches `to`: what lies between only
// falls through, or branches forward within (a write barrier's diamond).
bool StraightRun(const Function& fn, int from, int to) {
  if (from < 0 || to <= from) return false;
  const auto& insns = fn.insns();
  for (int j = from; j < to; ++j) {
    for (int s : fn.Sources(j + 1)) {
      if (s < from || s > j) return false;
    }
    const Insn& in = insns[j];
    if (in.flow == Flow::kJump || in.flow == Flow::kCondJump) {
      int t = in.target ? fn.IndexOf(in.target) : -1;
      if (t <= j || t > to) return false;
    } else if (in.flow != Flow::kNext && in.flow != Flow::kCall) {
      return false;
    }
    if (in.flow != Flow::kJump && !fn.FallsThrough(j)) return false;
  }
  return true;
}

}  // namespace

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

  auto dis = x86::Decoder::Create();
  if (!dis.ok()) return dis.status();
  Binary binary(bin);
  for (size_t f : order) {
    uint64_t entry = tab.FuncEntry(f), end = tab.FuncEnd(f);
    if (entry < text_start || end > text_start + text->size() || end <= entry) continue;
    Function fn(entry, end);
    (*dis)->Decode(text->subspan(entry - text_start, end - entry), entry, fn.mutable_insns());
    fn.Analyze(binary);
    ++plan.functions_scanned;
    struct RefWalk {
      uint64_t addr, target;
      WalkResult r;
    };
    std::vector<RefWalk> walks;
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
      // Nothing made here on the face of it, but the walk stopped at a
      // comparison: the compiler may have kept the itab in its register
      // and boxed a new value with it later (crypto/rsa's VerifyPSS, an
      // inlined errors.New after `err == ErrVerification`). A second walk
      // goes on past comparisons; its probes are taken only if it has any.
      if (r.probes.empty() && SkipLosesNothing(r.skip_reason) &&
          absl::StartsWith(r.skip_reason, "comparison")) {
        RefWalker again(binary, fn, **dis, idx, target, true);
        WalkResult r2 = again.Run();
        if (!r2.probes.empty()) r = std::move(r2);
      }
      walks.push_back({addr, target_addr, std::move(r)});
    }
    // A re-boxed value's new object must be counted where it first meets
    // the itab: by another reference, fully planned, that names it its site
    // and that every run from the allocation reaches.
    auto restore_uncounted = [&] {
      absl::flat_hash_set<uint64_t> restored;  // their targets
      for (RefWalk& w : walks) {
        if (!w.r.rebox) continue;
        bool counted = true;
        for (uint64_t site : w.r.made_at) {
          bool found = false;
          for (const RefWalk& o : walks) {
            if (&o == &w || o.r.rebox || o.target != w.target || !o.r.skip_reason.empty() ||
                !StraightRun(fn, fn.IndexOf(site), fn.IndexOf(o.addr))) {
              continue;
            }
            for (const CreationProbe& p : o.r.probes) found = found || p.site == site;
          }
          counted = counted && found;
        }
        if (!counted) {
          w.r = WalkResult(*w.r.displaced);
          restored.insert(w.target);
        }
      }
      return restored;
    };
    // A new-object probe gives way where a reference it may meet again
    // (before the next such object) is probed itself: that one could count
    // the same object (crypto/tls re-loads the itab after a failed
    // assertion). Decided on the walks as they stand, then applied; a
    // re-boxed value whose new object's probe gave way is restored, which
    // may make others give way: until nothing changes (each step only
    // undoes a rule, so this ends).
    auto settle = [&] {
      for (bool changed = true; changed;) {
        changed = !restore_uncounted().empty();
        std::vector<RefWalk*> give_way;
        for (RefWalk& w : walks) {
          if (!w.r.fresh) continue;
          for (const RefWalk& o : walks) {
            if (&o == &w || o.r.probes.empty()) continue;
            if (w.r.again ? absl::c_linear_search(*w.r.again, o.addr) : o.target == w.target) {
              give_way.push_back(&w);
              break;
            }
          }
        }
        for (RefWalk* w : give_way) {
          std::shared_ptr<const WalkResult> d = w->r.displaced;
          w->r = *d;
          changed = true;
        }
      }
    };
    settle();
    absl::flat_hash_map<uint64_t, std::vector<WalkResult*>> by_target;
    absl::flat_hash_set<uint64_t> with_checked;
    for (RefWalk& w : walks) {
      by_target[w.target].push_back(&w.r);
      if (!w.r.checked.empty()) with_checked.insert(w.target);
    }
    for (auto& [target, group] : by_target) {
      if (with_checked.contains(target)) KeepClosedCheckedProbes(binary, fn, group);
    }
    // A probe a re-boxed value relied on may have gone with its check:
    // the value's own plan then stands, checked like the others.
    if (auto restored = restore_uncounted(); !restored.empty()) {
      settle();
      for (uint64_t target : restored) KeepClosedCheckedProbes(binary, fn, by_target[target]);
    }
    for (RefWalk& w : walks) {
      for (const CreationProbe& p : w.r.probes) plan.probes.push_back(p);
      if (!w.r.skip_reason.empty()) plan.skipped.push_back({w.addr, w.target, w.r.skip_reason});
    }
  }
  std::sort(plan.probes.begin(), plan.probes.end(),
            [](const CreationProbe& a, const CreationProbe& b) {
              return std::tie(a.addr, a.cookie, a.itab, a.type, a.data_const, a.ref_addr) <
                     std::tie(b.addr, b.cookie, b.itab, b.type, b.data_const, b.ref_addr);
            });
  // Two references planning the very same probe would count each hit twice:
  // one hit is one creation.
  // A checked copy keeps the check (another flow reaches it).
  std::vector<CreationProbe> unique;
  for (CreationProbe& p : plan.probes) {
    if (!unique.empty()) {
      CreationProbe& a = unique.back();
      if (a.addr == p.addr && a.cookie == p.cookie && a.itab == p.itab && a.type == p.type &&
          a.data_const == p.data_const) {
        a.checked = a.checked || p.checked;
        continue;
      }
    }
    unique.push_back(std::move(p));
  }
  // The session keys a checked probe's itab (and a constant word) by the
  // probe's address: a checked probe sharing its address with another
  // probe could read the other's word. It goes, its reference reported.
  plan.probes.clear();
  for (size_t i = 0; i < unique.size(); ++i) {
    const CreationProbe& p = unique[i];
    bool shared = (i > 0 && unique[i - 1].addr == p.addr) ||
                  (i + 1 < unique.size() && unique[i + 1].addr == p.addr);
    if (p.checked && shared) {
      plan.skipped.push_back({p.ref_addr, p.itab ? p.itab : p.type,
                              "created on some paths only; its return is probed for another value"});
      continue;
    }
    plan.probes.push_back(p);
  }
  std::sort(plan.skipped.begin(), plan.skipped.end(),
            [](const SkippedRef& a, const SkippedRef& b) { return a.addr < b.addr; });
  return plan;
}

std::string ReasonClass(absl::string_view reason) {
  absl::string_view r = reason.substr(0, reason.find(" ("));
  if (absl::StartsWith(r, "no probe point")) r = "no probe point";
  return std::string(r);
}

bool SkipLosesNothing(absl::string_view reason) {
  // "beyond the results": an itab left in a register no return sets, with
  // a data word nothing wrote (plan/ref_walker_place.cc, AtReturn).
  if (absl::StartsWith(reason, "comparison") || absl::EndsWith(reason, "overwritten unused") ||
      absl::StartsWith(reason, "re-boxes a value") ||
      absl::EndsWith(reason, "beyond the results at return")) {
    return true;
  }
  // Allocation helpers; interface comparisons; the failed-assertion panics,
  // which take the types to name them in the error the runtime then makes;
  // helpers that take a type only for the layout of memory they allocate,
  // move or clear (a slice of errors growing, a struct holding one copied).
  // errors.As takes a type only as its target's (`errors.As(err, &alert)`,
  // a pointer to a variable): no error is made (ClassifyCallee).
  if (reason == "passed to errors.As") return true;
  for (absl::string_view helper :
       {"runtime.newobject", "runtime.mallocgc", "runtime.convT", "runtime.ifaceeq",
        "runtime.efaceeq", "runtime.panicdottype", "runtime.growslice", "runtime.makeslice",
        "runtime.wbMove", "runtime.typedmemmove", "runtime.typedmemclr",
        "runtime.typedslicecopy", "runtime.makemap", "runtime.makechan"}) {
    if (absl::StartsWith(reason, absl::StrCat("passed to ", helper))) return true;
  }
  return false;
}

}  // namespace goerrprof::profiler
