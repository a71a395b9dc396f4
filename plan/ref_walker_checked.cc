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

void KeepClosedCheckedProbes(const Function& fn, const std::vector<WalkResult*>& walks) {
  absl::flat_hash_map<uint64_t, absl::flat_hash_set<int>> ran;
  for (const WalkResult* w : walks) {
    for (const CheckedPaths& c : w->checked) ran[c.addr].insert(c.ran.begin(), c.ran.end());
  }
  absl::flat_hash_set<uint64_t> built;  // some path does not build the value in the block
  for (const WalkResult* w : walks) {
    for (const CheckedPaths& c : w->checked) {
      if (!c.built_in_block) built.insert(c.addr);
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
  if (open.empty()) return;
  const std::string reason = "created on some paths only; other values may reach the return";
  for (WalkResult* w : walks) {
    size_t before = w->probes.size();
    w->probes.erase(std::remove_if(w->probes.begin(), w->probes.end(),
                                   [&](const CreationProbe& p) {
                                     return p.checked && open.contains(p.addr);
                                   }),
                    w->probes.end());
    if (w->probes.size() == before || !w->skip_reason.empty()) continue;
    w->skip_reason = w->probes.empty() ? reason : "partly planned: " + reason;
  }
}

}  // namespace goerrprof::profiler::planner
