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

// Where the paths through each probe end, and the paths behind each checked
// probe chosen, for KeepClosedCheckedProbes.
WalkResult RefWalker::WithCheckedPaths(WalkResult out, bool shared) const {
  out.ref_addr = insns_[lea_].addr;
  out.consumers.resize(out.probes.size());
  for (size_t k = 0; k < out.probes.size(); ++k) {
    const CreationProbe& q = out.probes[k];
    std::vector<uint64_t>& ends = out.consumers[k];
    if (q.checked) {
      ends.push_back(ConsumerKey(q.addr, GEP_LOC_REGNO(q.tab_loc)));
      continue;
    }
    // A probe on every path sees every path's end, known or not; one past
    // a path's last fork, that path's alone.
    for (const PathEnd& e : shared ? all_ends_ : ends_) {
      if (!shared && !(e.probe && e.probe->addr == q.addr)) continue;
      ends.push_back(e.probe ? ConsumerKey(e.consumer, e.consumer_tab) : kOpenEnd);
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
bool AlwaysMaterialized(Binary& binary, const Function& fn, int idx, int reg, uint64_t want,
                        std::vector<int>* defs) {
  std::vector<std::pair<int, int>> todo = {{idx, reg}};
  absl::flat_hash_set<std::pair<int, int>> seen;
  int budget = 4096;
  while (!todo.empty()) {
    auto [i, r] = todo.back();
    todo.pop_back();
    if (!seen.insert({i, r}).second) continue;
    // Alignment padding after a jump is entered by nothing: no way in.
    if (fn.UnknownEntry(i) && fn.insns()[i].id == X86_INS_NOP && i > 0) continue;
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
        defs->push_back(q);
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
bool TabMaterialized(Binary& binary, const Function& fn, const CheckedPaths& c,
                     std::vector<int>* defs) {
  if (c.tab_writer < 0 || c.want == 0) return false;
  const Insn& w = fn.insns()[c.tab_writer];
  if (w.ops[0].type != Operand::kReg) return false;
  if (IsLeaOf(w, w.ops[0].reg, c.want)) {
    defs->push_back(c.tab_writer);
    return true;
  }
  return w.id == X86_INS_MOV && w.ops[0].size == 8 && w.ops[1].type == Operand::kReg &&
         w.ops[1].size == 8 && w.ops[1].reg >= 0 && w.ops[1].reg < kNumRegs &&
         AlwaysMaterialized(binary, fn, c.tab_writer, w.ops[1].reg, c.want, defs);
}

}  // namespace

void KeepClosedCheckedProbes(Binary& binary, const Function& fn,
                             const std::vector<WalkResult*>& walks) {
  static const bool trace = getenv("GOERRPROF_PLAN_TRACE") != nullptr;
  auto key_of = [](const CreationProbe& p) {
    return ConsumerKey(p.addr, GEP_LOC_REGNO(p.tab_loc));
  };
  absl::flat_hash_set<uint64_t> open;  // checked probes (keys) that cannot stay
  auto refuse = [&](uint64_t key, const char* why, uint64_t at) {
    if (trace && !open.contains(key)) {
      fprintf(stderr, "  checked probe %lx: %s 0x%lx\n", static_cast<unsigned long>(key / 32), why,
              static_cast<unsigned long>(at));
    }
    open.insert(key);
  };
  absl::flat_hash_map<uint64_t, absl::flat_hash_set<int>> ran;  // by probe address
  for (const WalkResult* w : walks) {
    for (const CheckedPaths& c : w->checked) ran[c.addr].insert(c.ran.begin(), c.ran.end());
  }
  absl::flat_hash_map<int, const WalkResult*> walk_at;  // by the LEA's index
  for (const WalkResult* w : walks) walk_at[fn.IndexOf(w->ref_addr)] = w;
  // Whether `w` counts nothing that also reaches `key` elsewhere: each of
  // its probes is that return or one the return replaces (all its paths
  // end there, and it is in no loop).
  auto replaced_by = [&](const WalkResult* w, uint64_t key) {
    for (size_t k = 0; k < w->probes.size(); ++k) {
      if (w->probes[k].checked) {
        if (key_of(w->probes[k]) != key) return false;
        continue;
      }
      const std::vector<uint64_t>& ends = w->consumers[k];
      int at = fn.IndexOf(w->probes[k].addr);
      if (ends.empty() || at < 0 || InLoop(fn, at) ||
          !std::all_of(ends.begin(), ends.end(), [&](uint64_t y) { return y == key; })) {
        return false;
      }
    }
    return true;
  };
  for (const WalkResult* w : walks) {
    for (size_t k = 0; k < w->probes.size(); ++k) {
      const CreationProbe& p = w->probes[k];
      if (!p.checked) continue;
      const uint64_t key = key_of(p);
      for (const CheckedPaths& c : w->checked) {
        if (c.addr != p.addr) continue;
        if (c.built_in_block) continue;  // the value is built there, whoever arrives
        // Every LEA that can reach the return's itab register belongs to a
        // reference whose creations the return counts, and to no other probe.
        std::vector<int> defs;
        if (TabMaterialized(binary, fn, c, &defs)) {
          for (int d : defs) {
            auto it = walk_at.find(d);
            if (it == walk_at.end() || !replaced_by(it->second, key)) {
              refuse(key, "a LEA reaching it is counted elsewhere:", fn.insns()[d].addr);
            }
          }
          continue;
        }
        // Else every way in must come from the paths behind it.
        const absl::flat_hash_set<int>& r = ran[c.addr];
        for (int i : c.merged) {
          bool closed = i > 0 && !fn.UnknownEntry(i) && (!fn.FallsThrough(i - 1) || r.contains(i - 1));
          for (int src : fn.Sources(i)) closed = closed && r.contains(src);
          if (!closed) refuse(key, "reached from outside its paths at", fn.insns()[i].addr);
        }
      }
    }
  }
  // A kept checked return also counts the flows of the probes whose paths
  // all end there (probed early, before it): those go. One whose paths end
  // elsewhere too, or that sits in a loop (a creation on each turn, one
  // return), cannot go, and the return cannot stay.
  absl::flat_hash_set<uint64_t> kept;
  for (const WalkResult* w : walks) {
    for (const CreationProbe& p : w->probes) {
      if (p.checked && !open.contains(key_of(p))) kept.insert(key_of(p));
    }
  }
  for (const WalkResult* w : walks) {
    for (size_t k = 0; k < w->probes.size(); ++k) {
      if (w->probes[k].checked) continue;
      const std::vector<uint64_t>& ends = w->consumers[k];
      int at = fn.IndexOf(w->probes[k].addr);
      for (uint64_t x : ends) {
        if (!kept.contains(x)) continue;
        if (at < 0 || InLoop(fn, at) ||
            std::any_of(ends.begin(), ends.end(), [&](uint64_t y) { return y != x; })) {
          refuse(x, "an early probe also counts elsewhere:", w->probes[k].addr);
          kept.erase(x);
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
      bool counted_at_return =
          !p.checked && !ends.empty() &&
          std::all_of(ends.begin(), ends.end(), [&](uint64_t x) { return kept.contains(x); });
      if (p.checked ? !kept.contains(key_of(p)) : counted_at_return) {
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
