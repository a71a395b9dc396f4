// The walk: one path per branch taken, each ending in a consumer, a use
// that creates nothing or a lost reference; Run merges the paths' ends.
#include "plan/ref_walker.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace goerrprof::profiler::planner {

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
  const size_t before = ends_.size();
  WalkOn(p);
  // The path's own end comes last: its forks ended before it went on.
  if (p.compared && ends_.size() > before) ends_.back().compared = true;
}

void RefWalker::WalkOn(Path& p) {
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
      // Back at the LEA itself, which loads the itab again: the value held
      // in that register only is dead (a constant the compiler loads again
      // at each merge of a loop that tests against it).
      if (next == lea_ && !p.heap_ref && !p.tentative && !p.method && p.stack_refs.empty() &&
          !p.unseen_copy) {
        State st = p.st;
        st.regs[insns_[lea_].ops[0].reg] = values_.Fresh();
        if (!RefAlive(st)) {
          ends_.push_back(Lost(absl::StrCat(Noun(), " overwritten unused")));
          ends_.back().examined = p.examined;
          return;
        }
      }
      ends_.push_back(End(p, "loop before use"));
      return;
    }
    if (p.exclusive && !AllPredsVisited(p, next)) p.exclusive = false;
    p.visited.insert(next);
    PushPosition(p, next, p.exclusive);
    int pos = static_cast<int>(p.positions.size()) - 1;
    const Insn& in = insns_[next];
    p.cur = next;
    std::optional<uint64_t> itab_word;  // `in` reads a word of the reference's itab
    bool method_load = false;           // `in` reads a method of the reference's itab
    bool select_or_nil = false;         // `in` leaves the reference or nil in a register

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
    } else if (IsNilCheck(p.st, in)) {
      p.nil_check = next;
      p.examined = true;
    } else if (KnownCompare(p, in)) {
      p.known_cmp = next;
      p.examined = true;
    } else if (SelectsOrNil(p.st, in)) {
      select_or_nil = true;
    } else if (auto word = ItabWordLoad(p.st, in)) {
      itab_word = word;
    } else if (MethodLoad(p.st, in)) {
      method_load = true;
    } else if (in.flow == Flow::kCall && MethodCall(p, in)) {
      // A method called on the value being built (`mapErr(err).Error()`):
      // it is made here and used once, its data word the receiver.
      ends_.push_back(AtMethodCall(p, pos));
      return;
    } else if (auto use = ClassifyUse(p.st, in);
               use && *use == "comparison" && past_comparisons_ && !p.tentative &&
               !ComparesStoredPair(p)) {
      // A comparison (`err == ErrX`): the compiler may keep the itab in
      // its register and box a new value with it later. Walk on.
      p.compared = true;
      p.examined = true;
    } else if (use) {
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
        // convI2I(dst, tab) (Go 1.21 and older) re-types the value for a
        // smaller interface (awserr's BatchedErrors returned as an error):
        // the itab it returns stands for the same value, its data word
        // unchanged, so the walk follows that instead. Such a path is never
        // probed with a check of the itab: the word there is another itab.
        if (callee == "runtime.convI2I" && binary_.regabi() && !p.heap_ref &&
            p.st.regs[GEP_RBX] == ref_) {
          Simulate(p.st, in);
          p.st.regs[GEP_RAX] = ref_;
          p.itab_converted = true;
          continue;
        }
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
        if (p.nil_check == p.cur - 1 && (in.id == X86_INS_JE || in.id == X86_INS_JNE)) {
          p.nil_check = -1;
          if (in.id == X86_INS_JE) continue;  // "is nil" is never taken
          int taken = in.target ? fn_.IndexOf(in.target) : -1;
          if (taken >= 0) {
            p.forced_next = taken;
            continue;
          }
        }
        if (p.known_cmp == p.cur - 1) {
          p.known_cmp = -1;
          std::optional<bool> jump = JumpTaken(in.id, p.cmp_a, p.cmp_b, p.cmp_size);
          int taken = in.target ? fn_.IndexOf(in.target) : -1;
          if (jump && (!*jump || taken >= 0)) {
            if (*jump) p.forced_next = taken;
            continue;
          }
        }
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
        if (first_fork_ < 0 || pos < first_fork_) first_fork_ = pos;
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
    // The itab stored where the planner cannot name the address (an
    // indexed frame slot, `errs[i&7] = p`): a copy lives on unseen.
    if (in.nops == 2 && in.ops[0].type == Operand::kMem && in.ops[1].type == Operand::kReg &&
        in.ops[1].reg >= 0 && in.ops[1].reg < kNumRegs && p.st.regs[in.ops[1].reg] == ref_ &&
        !IsCompare(in.id) && !MemKey(p.st, in.ops[0])) {
      p.unseen_copy = true;
    }
    Simulate(p.st, in);
    if (select_or_nil) p.st.regs[in.ops[0].reg] = ref_;
    if (itab_word) {
      uint32_t v = values_.Fresh();
      p.st.regs[in.ops[0].reg] = v;
      derived_[v] = *itab_word;
    }
    if (method_load) {
      p.method = values_.Fresh();
      p.st.regs[in.ops[0].reg] = p.method;
    }
    NoteNewRefSlots(p, before);
    bool method_held = false;
    for (uint32_t v : p.st.regs) method_held = method_held || (p.method && v == p.method);
    if (!p.heap_ref && !p.tentative && !RefAlive(p.st) && !method_held) {
      // Never stored and never read by anything but moves: the value was
      // not built on this path. (A stored copy may live on unseen.)
      if (p.unseen_copy) {
        ends_.push_back(End(p, absl::StrCat(Noun(), " stored where the planner cannot follow")));
      } else if (p.stack_refs.empty() && !p.heap_ref && !p.tentative) {
        ends_.push_back(Lost(absl::StrCat(Noun(), " overwritten unused")));
        ends_.back().examined = p.examined;
      } else {
        ends_.push_back(End(p, absl::StrCat(Noun(), " discarded before use")));
      }
      return;
    }
  }
}

bool RefWalker::Neutral(const PathEnd& e, bool fresh) const {
  if (e.probe || e.creation) return false;
  absl::string_view r = e.reason;
  if (e.use) {
    // A stale register at a panic call (panicBounds, …), not an argument.
    return absl::ConsumePrefix(&r, "passed to ") && IsNoReturn(r) && r != "runtime.gopanic";
  }
  if (absl::StartsWith(r, "trap before use")) return true;
  if (absl::ConsumePrefix(&r, "call to ") && absl::EndsWith(r, " before use")) return true;
  return fresh;
}

bool RefWalker::Unknown(const PathEnd& e) {
  return !e.probe && !e.creation && !e.use &&
         (e.reason == "loop before use" || e.reason == "too many branches before use" ||
          e.reason == "no use within reach");
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
  const Path at_lea = p;
  Walk(std::move(p));
  return Reboxed(Decide(at_lea));
}

WalkResult RefWalker::Decide(const Path& at_lea) {
  WalkResult out;
  // Past a comparison only a new object, or a constant, boxed with the
  // itab is a creation; anything else it meets is the compared value or
  // one passed on (`newDNSError(errNoSuchHost, …)`): the comparison stands.
  for (PathEnd& e : ends_) {
    if (!e.compared) continue;
    if (e.probe && (e.fresh_data || GEP_LOC_KIND(e.probe->data_loc) == GEP_LOC_CONST)) continue;
    PathEnd use = Use("comparison");
    use.examined = true;
    e = std::move(use);
  }
  // GOERRPROF_PLAN_TRACE=1: each path's end, for probe_plan_tool users
  // working out why a reference got no probe.
  static const bool trace = getenv("GOERRPROF_PLAN_TRACE") != nullptr;
  if (trace) {
    for (const PathEnd& e : ends_) {
      fprintf(stderr,
              "  ref %lx path: probe=%lx consumer=%lx checked=%d cookie=%lx pos=%d fork=%d "
              "fresh=%d %s\n",
              static_cast<unsigned long>(insns_[lea_].addr),
              static_cast<unsigned long>(e.probe ? e.probe->addr : 0),
              static_cast<unsigned long>(e.consumer), e.checked || (e.probe && e.probe->checked),
              static_cast<unsigned long>(e.probe ? e.probe->cookie : 0), e.probe_pos,
              e.last_fork, e.fresh_data, e.reason.c_str());
    }
  }
  // Paths that end in a panic, or that lose a value built from an
  // allocation, say nothing against a probe on the paths that create.
  bool fresh = false;
  for (const PathEnd& e : ends_) fresh = fresh || (e.probe && e.fresh_data);
  all_ends_ = ends_;
  std::vector<PathEnd> all = std::move(ends_);
  ends_.clear();
  for (PathEnd& e : all) {
    if (!Neutral(e, fresh)) ends_.push_back(std::move(e));
  }
  if (ends_.empty()) ends_ = std::move(all);  // nothing but neutral ends: report them
  // A path cut short by the walk's own bounds (a loop back, too many
  // branches) carries the value on unseen: it says nothing against a probe
  // that every path passes.
  const PathEnd* base = nullptr;
  for (const PathEnd& e : ends_) {
    if (!Unknown(e)) {
      base = &e;
      break;
    }
  }
  bool all_same = base != nullptr, all_probes = base != nullptr;
  const PathEnd* earliest = nullptr;
  for (const PathEnd& e : ends_) {
    if (Unknown(e)) continue;
    const CreationProbe* first = base->probe ? &*base->probe : nullptr;
    // Two paths may read the same point of their shared prefix differently
    // (the itab from its register or as a constant): both are right.
    // (The data word must be the same value: paths that pair the itab with
    // different words disagree on what was built.)
    bool shared = first && e.probe && e.probe->addr == first->addr &&
                  e.probe_pos <= first_fork_ && base->probe_pos <= first_fork_ &&
                  e.data_vid == base->data_vid;
    if (!shared && (!e.probe || !first || e.probe->addr != first->addr ||
                    e.probe->cookie != first->cookie || e.probe->data_const != first->data_const)) {
      all_same = false;
    }
    all_probes = all_probes && e.probe && e.data_vid == base->data_vid;
    if (e.probe && (!earliest || e.probe_pos < earliest->probe_pos)) earliest = &e;
  }
  if (all_same) {
    out.probes.push_back(*base->probe);
    return WithCheckedPaths(std::move(out), true);
  }
  // Every path creates with the same data word, and one probe point lies
  // before the first fork: every path passes it with the pair built.
  if (all_probes && earliest && first_fork_ >= 0 && earliest->probe_pos <= first_fork_) {
    out.probes.push_back(*earliest->probe);
    return WithCheckedPaths(std::move(out), true);
  }
  // A fresh allocation paired with the reference before the first fork: the
  // value is built for certain and every path carries it on, so that one
  // probe counts it whatever the paths do later (keep it in a loop's phi,
  // pass it in an unplaceable register, drop it).
  // So is a static data word (`return -1, EAFNOSUPPORT`: the itab and the
  // constant's address set together) where no path uses the value (a
  // comparison's operand, `errors.Is(err, EINVAL)`, is no creation) and
  // every path that drops it tested it first (`switch err`): the compiler
  // sets constants early, for paths that never build the value too
  // (strconv's ParseInt holds its range error's itab from the start).
  bool any_use = false;
  for (const PathEnd& e : ends_) any_use = any_use || e.use || (!e.probe && !e.examined);
  auto built = [&](const PathEnd& e) {
    if (e.fresh_data) return true;
    if (any_use || e.data_vid == 0) return false;
    const Value& v = values_[e.data_vid];
    return v.kind == Value::kAddr && v.root == kGlobalRoot;
  };
  const PathEnd* fresh_early = nullptr;
  for (const PathEnd& e : ends_) {
    if (e.probe && built(e) && (first_fork_ < 0 || e.probe_pos <= first_fork_) &&
        (!fresh_early || e.probe_pos < fresh_early->probe_pos)) {
      fresh_early = &e;
    }
  }
  if (fresh_early) {
    bool same = true;
    for (const PathEnd& e : ends_) {
      same = same && (!e.probe || e.data_vid == fresh_early->data_vid ||
                      (e.probe->addr == fresh_early->probe->addr && e.probe_pos <= first_fork_));
    }
    if (same) {
      out.probes.push_back(*fresh_early->probe);
      return WithCheckedPaths(std::move(out), true);
    }
  }
  // A new object of the value's type beside the LEA: built here, however
  // the paths then carry it (a loop's phi, words spilled apart). What the
  // paths alone would plan is kept for probe_plan.cc to fall back on.
  std::optional<CreationProbe> made_here = FreshPairAtLea(at_lea);
  WalkResult paths = PerPath(std::move(out));
  if (!made_here) return paths;
  WalkResult one;
  one.probes.push_back(*made_here);
  one = WithCheckedPaths(std::move(one), true);
  one.fresh = true;
  one.again = ReferencedAgain(fresh_type_);
  one.displaced = std::make_shared<const WalkResult>(std::move(paths));
  return one;
}

}  // namespace goerrprof::profiler::planner
