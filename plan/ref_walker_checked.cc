// Checked returns: a return past a merge, probed where it is with a check
// of the itab in its result register (GEP_LOC_F_CHECK), and the test that
// keeps such a probe only where no value merely passed on can arrive.
#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "plan/ref_walker.h"

namespace goerrprof::profiler::planner {

// The instruction (index) that gave register `reg` its value at `pos`
// within the block that ends there, or -1: Go moves results into their
// registers just before the return, and a register set before the last
// merge may be a leftover on the other way in.
int RefWalker::LastBlockWriter(const Path& p, int pos, int reg) const {
  int start = pos;
  while (start > 0) {
    int idx = p.positions[start].idx;
    const Insn& prev = insns_[p.positions[start - 1].idx];
    if (!fn_.Sources(idx).empty() || prev.flow == Flow::kCondJump || prev.flow == Flow::kJump ||
        p.positions[start - 1].idx + 1 != idx) {
      break;
    }
    --start;
  }
  for (int j = pos - 1; j >= start; --j) {
    if (p.positions[j].state.regs[reg] != p.positions[j + 1].state.regs[reg]) {
      return p.positions[j].idx;
    }
  }
  return -1;
}

// The paths behind each checked probe chosen, for KeepClosedCheckedProbes.
WalkResult RefWalker::WithCheckedPaths(WalkResult out) const {
  // Where the paths behind each probe consume the pair.
  out.consumers.resize(out.probes.size());
  for (size_t k = 0; k < out.probes.size(); ++k) {
    const CreationProbe& q = out.probes[k];
    for (const PathEnd& e : ends_) {
      bool mine = (e.probe && e.probe->addr == q.addr && !q.checked) ||
                  (e.checked && q.checked && e.checked->addr == q.addr) ||
                  (e.probe && e.probe->checked && q.checked && e.probe->addr == q.addr);
      if (mine && e.consumer != 0) out.consumers[k].push_back(e.consumer);
    }
  }
  for (const PathEnd& e : ends_) {
    if (e.checked_paths.addr == 0) continue;
    for (const CreationProbe& q : out.probes) {
      if (q.checked && q.addr == e.checked_paths.addr) {
        out.checked.push_back(e.checked_paths);
        break;
      }
    }
  }
  return out;
}

namespace {

bool IsLeaOf(const Insn& in, int reg, uint64_t want) {
  return in.id == X86_INS_LEA && in.ops[0].type == Operand::kReg && in.ops[0].reg == reg &&
         in.ops[1].type == Operand::kMem && in.ops[1].base == kRipReg &&
         static_cast<uint64_t>(in.ops[1].value) == want;
}

// Whether instruction `start` can run again before the function returns
// (bounded; an indirect jump counts as yes): a probe there may count
// several creations for one return.
bool InLoop(const Function& fn, int start) {
  const std::vector<Insn>& insns = fn.insns();
  std::vector<int> todo = {start};
  absl::flat_hash_set<int> seen;
  int budget = 20000;
  while (!todo.empty()) {
    int i = todo.back();
    todo.pop_back();
    if (--budget < 0) return true;
    const Insn& in = insns[i];
    std::vector<int> next;
    if (in.flow == Flow::kJump || in.flow == Flow::kCondJump) {
      if (in.target == 0) return true;
      int t = fn.IndexOf(in.target);
      if (t < 0) return true;
      next.push_back(t);
    }
    if (fn.FallsThrough(i) && i + 1 < static_cast<int>(insns.size())) next.push_back(i + 1);
    for (int n : next) {
      if (n == start) return true;
      if (seen.insert(n).second) todo.push_back(n);
    }
  }
  return false;
}

// Whether every definition of `reg` that reaches instruction `idx`,
// followed back through register moves, is a LEA of `want`: the register
// then always holds the materialized itab there, never one loaded from
// memory or returned by a call (an interface merely passed on). A LEA in a
// loop is allowed: the compiler re-materializes the itab after each call
// (json v2's cmp.Or loop).
bool AlwaysMaterialized(Binary& binary, const Function& fn, int idx, int reg, uint64_t want) {
  std::vector<std::pair<int, int>> todo = {{idx, reg}};
  absl::flat_hash_set<std::pair<int, int>> seen;
  int budget = 4096;
  while (!todo.empty()) {
    auto [i, r] = todo.back();
    todo.pop_back();
    if (!seen.insert({i, r}).second) continue;
    // Alignment padding after a jump is entered by nothing: no way in.
    if (fn.UnknownEntry(i) && fn.insns()[i].id == X86_INS_NOP) continue;
    if (--budget < 0 || i == 0 || fn.UnknownEntry(i)) return false;
    std::vector<int> preds(fn.Sources(i).begin(), fn.Sources(i).end());
    if (fn.FallsThrough(i - 1)) preds.push_back(i - 1);
    for (int q : preds) {
      const Insn& in = fn.insns()[q];
      uint32_t written = in.regs_written;
      if (in.flow == Flow::kCall) {
        // A write barrier keeps the registers (1.21+: all but R11); any
        // other call clobbers them all.
        absl::string_view callee = binary.FuncAt(in.target);
        if (!IsWriteBarrier(callee)) return false;
        written = IsNewWriteBarrier(callee) ? 1u << GEP_R11 : 0;
      }
      if (!(written & (1u << r))) {
        todo.push_back({q, r});
      } else if (IsLeaOf(in, r, want)) {
        continue;
      } else if (in.id == X86_INS_MOV && in.ops[0].type == Operand::kReg && in.ops[0].reg == r &&
                 in.ops[0].size == 8 && in.ops[1].type == Operand::kReg && in.ops[1].size == 8 &&
                 in.ops[1].reg >= 0 && in.ops[1].reg < kNumRegs) {
        todo.push_back({q, in.ops[1].reg});
      } else {
        return false;
      }
    }
  }
  return true;
}

// The itab register at the return got its value from a LEA of the itab on
// every way in.
bool TabMaterialized(Binary& binary, const Function& fn, const CheckedPaths& c) {
  if (c.tab_writer < 0 || c.want == 0) return false;
  const Insn& w = fn.insns()[c.tab_writer];
  if (w.ops[0].type != Operand::kReg) return false;
  if (IsLeaOf(w, w.ops[0].reg, c.want)) return true;
  return w.id == X86_INS_MOV && w.ops[0].size == 8 && w.ops[1].type == Operand::kReg &&
         w.ops[1].size == 8 && w.ops[1].reg >= 0 && w.ops[1].reg < kNumRegs &&
         AlwaysMaterialized(binary, fn, c.tab_writer, w.ops[1].reg, c.want);
}

}  // namespace

void KeepClosedCheckedProbes(Binary& binary, const Function& fn,
                             const std::vector<WalkResult*>& walks) {
  absl::flat_hash_map<uint64_t, absl::flat_hash_set<int>> ran;
  for (const WalkResult* w : walks) {
    for (const CheckedPaths& c : w->checked) ran[c.addr].insert(c.ran.begin(), c.ran.end());
  }
  // Probes that need the paths' closure: some path neither builds the value
  // in the return block nor has the itab register always materialized.
  absl::flat_hash_set<uint64_t> built;
  for (const WalkResult* w : walks) {
    for (const CheckedPaths& c : w->checked) {
      if (!c.built_in_block && !TabMaterialized(binary, fn, c)) built.insert(c.addr);
    }
  }
  absl::flat_hash_set<uint64_t> open;  // probes some other flow may reach
  for (const WalkResult* w : walks) {
    for (const CheckedPaths& c : w->checked) {
      if (!built.contains(c.addr)) continue;
      const absl::flat_hash_set<int>& r = ran[c.addr];
      for (int i : c.merged) {
        bool closed = !fn.UnknownEntry(i) && (i == 0 || !fn.FallsThrough(i - 1) || r.contains(i - 1));
        for (int src : fn.Sources(i)) closed = closed && r.contains(src);
        if (!closed) {
          static const bool trace = getenv("GOERRPROF_PLAN_TRACE") != nullptr;
          if (trace) {
            fprintf(stderr, "  checked probe %lx: 0x%lx reached from outside its paths\n",
                    static_cast<unsigned long>(c.addr),
                    static_cast<unsigned long>(fn.insns()[i].addr));
          }
          open.insert(c.addr);
        }
      }
    }
  }
  // A kept checked return also counts the flows of other probes that end
  // there (a path probed early, before that return): those probes go. One
  // whose paths end elsewhere too, or that sits in a loop (an error made
  // on each turn, the last one returned: one return, several creations),
  // cannot go, and the return cannot stay.
  absl::flat_hash_set<uint64_t> kept;
  for (const WalkResult* w : walks) {
    for (const CreationProbe& p : w->probes) {
      if (p.checked && !open.contains(p.addr)) kept.insert(p.addr);
    }
  }
  for (const WalkResult* w : walks) {
    for (size_t k = 0; k < w->probes.size(); ++k) {
      if (w->probes[k].checked) continue;
      const std::vector<uint64_t>& ends = w->consumers[k];
      for (uint64_t x : ends) {
        if (!kept.contains(x)) continue;
        if (std::any_of(ends.begin(), ends.end(), [&](uint64_t y) { return y != x; }) ||
            InLoop(fn, fn.IndexOf(w->probes[k].addr))) {
          open.insert(x);
        }
      }
    }
  }
  const std::string reason = "created on some paths only; other values may reach the return";
  for (WalkResult* w : walks) {
    bool dropped = false;
    for (size_t k = w->probes.size(); k-- > 0;) {
      const CreationProbe& p = w->probes[k];
      const std::vector<uint64_t>& ends = w->consumers[k];
      bool counted_at_return = !p.checked && !ends.empty() &&
                               std::all_of(ends.begin(), ends.end(), [&](uint64_t x) {
                                 return kept.contains(x) && !open.contains(x);
                               });
      if (p.checked ? open.contains(p.addr) : counted_at_return) {
        dropped = dropped || p.checked;
        w->probes.erase(w->probes.begin() + static_cast<ptrdiff_t>(k));
        w->consumers.erase(w->consumers.begin() + static_cast<ptrdiff_t>(k));
      }
    }
    if (!dropped || !w->skip_reason.empty()) continue;
    w->skip_reason = w->probes.empty() ? reason : "partly planned: " + reason;
  }
}

}  // namespace goerrprof::profiler::planner
