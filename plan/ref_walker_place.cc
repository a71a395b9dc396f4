// Where the reference meets its data word (calls, returns, stored pairs)
// and the probe point that reads both.
#include "plan/ref_walker.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace goerrprof::profiler::planner {

// The slot pair key/key+8 holds the reference and a data word written with
// it: after the itab store, or before it from a register (not zeroing).
bool RefWalker::PairComplete(const State& st, const Key& key, int store_step) const {
  const Slot* tab = st.FindSlot(key.first, key.second);
  const Slot* data = st.FindSlot(key.first, key.second + 8);
  // The reference beside itself is the next variable's type word (Go keeps
  // an interface's words in separate slots when it spills them), not a pair.
  if (!tab || tab->vid != ref_ || !data || data->written < 0 || data->vid == ref_) return false;
  // Go writes an interface's two words together (a write barrier check
  // between them at most): a word written much later beside a spilled
  // itab belongs to the next variable.
  if (data->written > store_step) return data->written - store_step <= kPairWindow;
  return data->plain;
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

// newobject, mallocgc and its size-specialized forms (1.26+), convT*.
bool RefWalker::IsAllocation(uint32_t data_vid) const {
  const Value& v = values_[data_vid];
  if (v.kind != Value::kCallResult) return false;
  int call = fn_.IndexOf(v.aux);
  if (call < 0) return false;
  absl::string_view callee = binary_.FuncAt(insns_[call].target);
  return callee == "runtime.newobject" || absl::StartsWith(callee, "runtime.mallocgc") ||
         absl::StartsWith(callee, "runtime.convT");
}

// The allocation call of the data word (inside an inlined errors.New, a
// composite literal) names the creation best; else the reference itself.
uint64_t RefWalker::SiteOf(uint32_t data_vid) const {
  return IsAllocation(data_vid) ? values_[data_vid].aux : insns_[lea_].addr;
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
  if (GEP_LOC_KIND(data_loc) == GEP_LOC_CONST) {
    probe.data_const = static_cast<uint64_t>(values_[data_vid].off);
  }
  probe.kind = eface_ ? CreationProbe::kEface : CreationProbe::kIface;
  probe.via = via;
  probe.site = SiteOf(data_vid);
  probe.frameless =
      via == CreationProbe::kReturn || p.positions[pos].frame_gone || !fn_.has_frame();
  PathEnd e;
  e.probe = probe;
  e.probe_pos = pos;
  e.last_fork = p.last_fork;
  e.fresh_data = data_vid != 0 && IsAllocation(data_vid);
  e.data_vid = data_vid;
  return e;
}

// Probes at `pos` when only this path reaches it; otherwise at the latest
// earlier position that only this path reaches, reading the same two values.
PathEnd RefWalker::Place(const Path& p, int pos, std::optional<uint32_t> tab_loc,
                         std::optional<uint32_t> data_loc, uint32_t data_vid,
                         CreationProbe::Via via) {
  PathEnd e = PlaceFrom(p, pos, tab_loc, data_loc, data_vid, via);
  e.consumer = insns_[p.positions[pos].idx].addr;
  if (tab_loc && GEP_LOC_KIND(*tab_loc) == GEP_LOC_REG) e.consumer_tab = GEP_LOC_REGNO(*tab_loc);

  // Past a merge, a return can still be probed where it is: what arrives
  // there with this itab in the result register is this error, returned.
  if (!p.positions[pos].exclusive && !p.itab_converted && via == CreationProbe::kReturn &&
      tab_loc && data_loc &&
      GEP_LOC_KIND(*tab_loc) == GEP_LOC_REG && GEP_LOC_KIND(*data_loc) == GEP_LOC_REG &&
      LastBlockWriter(p, pos, GEP_LOC_REGNO(*tab_loc)) >= 0 &&
      LastBlockWriter(p, pos, GEP_LOC_REGNO(*data_loc)) >= 0) {
    PathEnd at = Emit(p, pos, *tab_loc, *data_loc, data_vid, via);
    at.probe->checked = true;
    // Other references' flows may arrive: the return names the site.
    at.probe->site = at.probe->addr;
    e.checked_paths.addr = at.probe->addr;
    e.checked_paths.tab_writer = LastBlockWriter(p, pos, GEP_LOC_REGNO(*tab_loc));
    e.checked_paths.want = eface_ ? target_.type : target_.itab;
    const Insn& w = insns_[LastBlockWriter(p, pos, GEP_LOC_REGNO(*data_loc))];
    e.checked_paths.built_in_block = w.id == X86_INS_LEA && w.ops[1].type == Operand::kMem &&
                                     w.ops[1].base == kRipReg;
    for (int i = 0; i <= pos; ++i) {
      e.checked_paths.ran.push_back(p.positions[i].idx);
      if (!p.positions[i].exclusive) e.checked_paths.merged.push_back(p.positions[i].idx);
    }
    at.checked_paths = e.checked_paths;
    if (e.probe) {
      e.checked = at.probe;
    } else {
      at.consumer = e.consumer;
      at.consumer_tab = e.consumer_tab;
      return at;
    }
  }
  return e;
}

PathEnd RefWalker::PlaceFrom(const Path& p, int pos, std::optional<uint32_t> tab_loc,
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
    // A static data word (runtime.zerobase for a zero-size value, a global)
    // is known before it is loaded: the plan gives it.
    if (!data && data_vid != 0 && values_[data_vid].kind == Value::kAddr &&
        values_[data_vid].root == kGlobalRoot) {
      data = GEP_LOC(GEP_LOC_CONST, 0, 0);
    }
    if (tab && data) {
      return Emit(p, i, *tab, *data, data_vid, i == pos ? via : CreationProbe::kEarly);
    }
  }
  return Unplaced(absl::StrFormat("no probe point: data word not held before the merge at 0x%x",
                                  insns_[p.positions[pos].idx].addr));
}

PathEnd RefWalker::PlaceAtRegs(const Path& p, int pos, int k, CreationProbe::Via via) {
  int tab_reg = kAbiRegs[k], data_reg = kAbiRegs[k + 1];
  PathEnd e = Place(p, pos, GEP_LOC(GEP_LOC_REG, tab_reg, 0), GEP_LOC(GEP_LOC_REG, data_reg, 0),
                    p.positions[pos].state.regs[data_reg], via);
  e.consumer_idx = p.positions[pos].idx;
  e.data_reg = data_reg;
  return e;
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
  int words = RuntimeArgWords(callee);
  // A Go callee reads no more registers than its frame has spill slots for.
  if (words < 0) words = binary_.ArgRegsAt(insns_[p.positions[pos].idx].target);
  // A deferred call's closure takes no arguments (the value merely lingers
  // past a `defer mu.Unlock()` run at the return).
  if (words < 0 && callee.empty() && binary_.CallsDeferred(fn_, p.positions[pos].idx)) words = 0;
  // A call through a function variable nothing sets never happens.
  if (callee.empty() && binary_.CallsNeverSetVar(fn_, p.positions[pos].idx)) {
    return End(p, "call to a function variable never set, before use");
  }
  if (words >= 0 && k >= words) {  // left over in a register the callee does not read
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
  // data word must at least have been set during the walk, and for a call
  // through a pointer (a method value, `ctx.Done()`), whose arguments are
  // unknown, after the LEA: an itab kept for comparisons (a `switch err`)
  // lingers beside whatever the register held before.
  if ((p.last_fork >= 0 || !p.positions[pos].exclusive) &&
      (data < first_walk_vid_ ||
       (callee.empty() && data == p.positions[0].state.regs[kAbiRegs[k + 1]]))) {
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
    // Beyond every register the function's returns set, with a data word
    // no instruction wrote (a call's leftover): an itab kept for
    // comparisons, not a result (os.Getwd's `err == syscall.EINTR`).
    if (!straight && i >= fn_.result_regs() && Unwritten(st.regs[kAbiRegs[i + 1]])) {
      return End(p, absl::StrCat(Noun(), " beyond the results at return"));
    }
    if (!straight && !data_set && i + 1 >= fn_.result_regs()) {
      return End(p, "stale register at return");
    }
    return Resolve(p, PlaceAtRegs(p, pos, i, CreationProbe::kReturn), st.regs[kAbiRegs[i + 1]]);
  }
  return End(p, "returned without the " + Noun());
}

// The path cannot go on: settle for what was seen on it.
PathEnd RefWalker::End(Path& p, const std::string& reason) {
  PathEnd e = EndOf(p, reason);
  e.examined = p.examined;
  return e;
}

PathEnd RefWalker::EndOf(Path& p, const std::string& reason) {
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

WalkResult RefWalker::PerPath(WalkResult out) {
  // Paths differ: each creating path needs its own probe past its last
  // branch, where no other path passes.
  std::string unplaced, use, lost;
  for (const PathEnd& e : ends_) {
    if (e.probe) {
      const CreationProbe* probe = &*e.probe;
      if (e.probe_pos <= e.last_fork) {
        if (!e.checked) {
          if (unplaced.empty()) {
            unplaced = "created on some paths only; no probe point past the branch";
          }
          continue;
        }
        probe = &*e.checked;
      }
      bool dup = false;
      for (const CreationProbe& q : out.probes) {
        dup = dup || (q.addr == probe->addr && q.cookie == probe->cookie);
      }
      if (!dup) out.probes.push_back(*probe);
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
  return WithCheckedPaths(std::move(out), false);
}

}  // namespace goerrprof::profiler::planner
