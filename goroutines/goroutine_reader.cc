#include "goroutines/goroutine_reader.h"

#include <time.h>

#include <algorithm>
#include <array>
#include <memory>
#include <optional>

#include "base/clock.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "base/byte_reader.h"
#include "goroutines/goroutine_memory.h"

namespace goerrprof::profiler {
namespace {

namespace gabi = goabi;

constexpr uint64_t kMaxGoid = uint64_t{1} << 48;
constexpr uint64_t kMaxStackBytes = uint64_t{1} << 30;  // the runtime's own limit (amd64)
constexpr uint64_t kStackRead = 16 << 10;  // first read of a stack: its used top
// Second read, for a chain that leaves the first: the walk follows at most
// kMaxFrames frames, so more than this is a g whose bounds lie (or frames
// no program has); reading the whole claimed stack would cost up to a GB.
constexpr uint64_t kMaxStackRead = 64 << 20;
// gs lie back to back in heap spans and small stacks in stack spans; the
// kernel's cost is per range, so neighbours are read as one span.
constexpr uint64_t kMergeG = 4096, kMergeStack = 2048;
constexpr size_t kMaxFrames = 1024;
// gs are read, walked and rechecked a chunk at a time: the chunk's gs,
// stack tops and recheck stay in the cache between the kernel's copy and
// our reading of it, and a recheck follows its read closely.
constexpr size_t kChunk = 256;
// Without syscallbp (before 1.23) the syscall caller's frame pointer is
// searched for this far above syscallsp.
constexpr uint64_t kSyscallScan = 1024;

// A field of a g; 0 when the release lacks it (kAbsent) or it is not in
// what was read.
template <typename T>
T At(ByteView g, int32_t off) {
  T v{};
  if (off >= 0) g.Read(off, &v);
  return v;
}

enum class Walk { kComplete, kTruncated, kNeedMore, kBad };

// waitReason.isMutexWait: the parks casgstatus stamps.
bool IsMutexWait(absl::string_view reason) {
  return reason == "sync.Mutex.Lock" || reason == "sync.RWMutex.RLock" ||
         reason == "sync.RWMutex.Lock";
}


// One g being read: what its stack walk needs, and its result. The g's
// bytes are seen only while its span is in the scratch buffer.
struct Pending {
  GoroutineRead* r = nullptr;  // where the result goes
  uint64_t pc = 0, sp = 0, bp = 0, lo = 0, hi = 0;
  bool has_bp = true;
  bool parsed = false;     // the g looked like a g
  bool unchanged = false;  // the recheck saw the same g
  std::array<uint64_t, 8> key{};  // what the recheck compares
  Walk walk = Walk::kBad;
  bool done = false;
};

class Reader {
 public:
  Reader(pid_t pid, MemorySource* source, const symbolizer::GoBinary& bin,
         const gabi::GLayout& layout, uint64_t bias)
      : mem_(pid, source), bin_(bin), layout_(layout), bias_(bias) {
    const symbolizer::Pclntab& tab = bin.pclntab();
    for (size_t i = 0; i < tab.num_functions(); ++i) {
      absl::string_view name = tab.FuncName(i);
      if (name == "runtime.goexit") goexit_ = i;
      if (name == "runtime.asyncPreempt" || name == "runtime.sigpanic") injected_.push_back(i);
    }
    g_size_ = 0;
    for (int32_t off : {layout.stack_hi, layout.sched_sp, layout.sched_pc, layout.sched_bp,
                        layout.syscallsp, layout.syscallpc, layout.syscallbp, layout.atomicstatus,
                        layout.goid, layout.waitsince, layout.waitreason, layout.parent_goid,
                        layout.gopc, layout.startpc, layout.labels}) {
      g_size_ = std::max<int32_t>(g_size_, off + 8);
    }
    tracking_ = layout.tracking;
    tracking_stamp_ = layout.tracking_stamp;
    // The span of Key's fields.
    recheck_lo_ = layout.sched_sp;
    recheck_hi_ = std::max(layout.goid, layout.atomicstatus) + 8;
  }

  ProcessMemory& mem() { return mem_; }

  // The fields that change when a goroutine runs: its scheduling state,
  // syscall state, status (without the GC's scan bit) and goid. Offsets
  // are relative to the g; `g` may start at recheck_lo_ instead (base).
  std::array<uint64_t, 8> Key(ByteView g, int32_t base = 0) const {
    auto at = [&](int32_t off) {
      return off == gabi::GLayout::kAbsent ? 0 : At<uint64_t>(g, off - base);
    };
    return {at(layout_.sched_sp), at(layout_.sched_pc), at(layout_.sched_bp),
            at(layout_.syscallsp), at(layout_.syscallpc), at(layout_.syscallbp),
            At<uint32_t>(g, layout_.atomicstatus - base) & ~uint64_t{gabi::kGscan},
            at(layout_.goid)};
  }

  // FindFunc through a small direct-mapped cache: goroutines share most
  // of their PCs. The entry also says what the walk asks of the function.
  struct FuncCacheEntry {
    uint64_t pc = 0;
    std::optional<size_t> func;
    bool goexit = false;    // runtime.goexit: a goroutine's root
    bool injected = false;  // runtime.asyncPreempt, runtime.sigpanic
  };
  FuncCacheEntry Entry(uint64_t runtime_pc) {
    if (runtime_pc < bias_) return {};
    FuncCacheEntry& e = func_cache_[(runtime_pc ^ (runtime_pc >> 12)) % func_cache_.size()];
    if (e.pc == runtime_pc && e.pc != 0) return e;
    std::optional<size_t> f = bin_.pclntab().FindFunc(runtime_pc - bias_);
    e = {runtime_pc, f, f && goexit_ && *f == *goexit_,
         f && std::find(injected_.begin(), injected_.end(), *f) != injected_.end()};
    return e;
  }
  std::optional<size_t> Func(uint64_t runtime_pc) { return Entry(runtime_pc).func; }

  // Parses the g; false when it does not look like a g (torn or garbage).
  bool Parse(ByteView g, Pending& p, int64_t now) {
    uint32_t raw = At<uint32_t>(g, layout_.atomicstatus);
    uint32_t status = raw & ~gabi::kGscan;
    Goroutine& o = *p.r->g;
    o = Goroutine{};
    o.status = status;
    o.scan = (raw & gabi::kGscan) != 0;
    if (raw & ~(gabi::kGscan | 0xff)) return false;
    if (status == gabi::kGidle || status == gabi::kGdead || status == gabi::kGdeadextra) {
      p.done = true;  // a free g: nothing to show
      return true;
    }
    if (status == gabi::kGmoribundUnused || status == gabi::kGenqueueUnused ||
        status > gabi::kGdeadextra) {
      return false;
    }
    o.id = At<uint64_t>(g, layout_.goid);
    if (o.id == 0 || o.id >= kMaxGoid) return false;
    if (layout_.parent_goid != gabi::GLayout::kAbsent) {
      o.parent_id = At<uint64_t>(g, layout_.parent_goid);
      if (o.parent_id >= kMaxGoid) return false;
    }
    p.lo = At<uint64_t>(g, layout_.stack_lo);
    p.hi = At<uint64_t>(g, layout_.stack_hi);
    if (p.lo == 0 || p.hi <= p.lo || p.hi - p.lo > kMaxStackBytes) return false;
    uint64_t gopc = At<uint64_t>(g, layout_.gopc), startpc = At<uint64_t>(g, layout_.startpc);
    if (gopc != 0 && !Func(gopc)) return false;
    auto start = Func(startpc);
    if (!start) return false;
    o.gopc = gopc == 0 ? 0 : gopc - bias_;
    o.startpc = startpc - bias_;
    absl::string_view start_name = bin_.pclntab().FuncName(*start);
    o.system = absl::StartsWith(start_name, "runtime.") && start_name != "runtime.main" &&
               start_name != "runtime.corostart";
    std::string_view name = layout_.StatusName(status);
    o.state = absl::string_view(name.data(), name.size());
    if (o.state.empty()) return false;
    if (status == gabi::kGwaiting) {
      uint8_t reason = At<uint8_t>(g, layout_.waitreason);
      if (reason != 0) {
        std::string_view why = layout_.WaitReason(reason);
        o.wait_reason = absl::string_view(why.data(), why.size());
        if (o.wait_reason.empty()) return false;
        o.state = o.wait_reason;
      }
    }
    if (status == gabi::kGwaiting || status == gabi::kGsyscall) {
      int64_t since = At<int64_t>(g, layout_.waitsince);
      int64_t parked = 0;
      if (tracking_ >= 0 && IsMutexWait(o.wait_reason) && At<uint8_t>(g, tracking_) != 0) {
        parked = At<int64_t>(g, tracking_stamp_);
      }
      if (parked > 0 && parked <= now) {
        o.wait_kind = WaitKnowledge::kExact;
        o.wait_ns = now - parked;
      } else if (since > 0 && since <= now) {
        o.wait_kind = WaitKnowledge::kLowerBound;
        o.wait_ns = now - since;
      } else {
        o.wait_kind = WaitKnowledge::kUnknown;
      }
    }
    p.r->labels = At<uint64_t>(g, layout_.labels);
    p.key = Key(g);
    if (status == gabi::kGrunning) {
      o.stack_kind = StackKind::kNone;
      return true;
    }
    if (status == gabi::kGsyscall && layout_.syscallsp != gabi::GLayout::kAbsent) {
      p.pc = At<uint64_t>(g, layout_.syscallpc);
      p.sp = At<uint64_t>(g, layout_.syscallsp);
      p.has_bp = layout_.syscallbp != gabi::GLayout::kAbsent;
      p.bp = p.has_bp ? At<uint64_t>(g, layout_.syscallbp) : 0;
    } else {
      p.pc = At<uint64_t>(g, layout_.sched_pc);
      p.sp = At<uint64_t>(g, layout_.sched_sp);
      p.bp = At<uint64_t>(g, layout_.sched_bp);
    }
    if (p.sp < p.lo || p.sp > p.hi || !Func(p.pc)) return false;
    return true;
  }

  // Walks the saved frame pointers from (pc, bp) through the stack bytes
  // [sp, sp + stack.size()).
  Walk WalkFrom(const Pending& p, ByteView stack, uint64_t bp, std::vector<uint64_t>* out) {
    out->clear();
    out->push_back(p.pc - bias_);
    uint64_t lower = p.sp, end = p.sp + stack.size();
    std::optional<uint64_t> at_sp = bp == 0 ? stack.U64(0) : std::nullopt;
    if (at_sp) {
      // A goroutine that has not run yet: it sits at its function's entry
      // with no frame pointer saved and goexit's return address at sp.
      if (Entry(*at_sp).goexit) return Walk::kComplete;
    }
    bool after_injected = false;  // the last PC pushed was interrupted by a signal
    bool below_injected = Entry(p.pc).injected;  // the same of out->back()
    uint64_t last_bp = 0;
    while (out->size() < kMaxFrames) {
      if (bp == 0) {
        // An interrupted function without a frame of its own (a leaf that
        // never saved BP) has its return address right above the injected
        // call's: at the goroutine's root that is goexit.
        std::optional<uint64_t> ret =
            after_injected ? stack.U64(last_bp + 16 - p.sp) : std::nullopt;
        if (ret && Entry(*ret).goexit) return Walk::kComplete;
        return Walk::kTruncated;
      }
      if (bp < lower || bp + 16 > p.hi || bp % 8 != 0) return Walk::kBad;
      if (bp + 16 > end) return Walk::kNeedMore;
      // The saved BP and the return address above it.
      ByteReader frame(stack, bp - p.sp);
      uint64_t next = frame.U64(), ret = frame.U64();
      if (!frame.ok()) return Walk::kBad;  // bp + 16 wrapped around
      FuncCacheEntry f = Entry(ret);
      if (!f.func) return Walk::kBad;
      if (f.goexit) return Walk::kComplete;
      // out->back() is the frame whose saved BP we just read.
      after_injected = below_injected;
      below_injected = f.injected;
      out->push_back(ret - bias_);
      lower = bp + 16;
      last_bp = bp;
      bp = next;
    }
    return Walk::kTruncated;
  }

  // The walk goes into frames_ (reused), then into the goroutine's own
  // vector at its exact size: one allocation per goroutine.
  Walk WalkStack(Pending& p, ByteView stack) {
    uint64_t len = stack.size();
    if (p.has_bp) {
      Walk w = WalkFrom(p, stack, p.bp, &frames_);
      p.r->g->stack.assign(frames_.begin(), frames_.end());
      return w;
    }
    // No saved frame pointer (syscall before 1.23): the caller's frame
    // pointer slot is the first one above syscallsp whose chain reaches
    // goexit.
    for (uint64_t s = p.sp; s + 16 <= p.sp + std::min<uint64_t>(len, kSyscallScan); s += 8) {
      Walk w = WalkFrom(p, stack, s, &frames_);
      if (w == Walk::kComplete) {
        p.r->g->stack.assign(frames_.begin(), frames_.end());
        return Walk::kComplete;
      }
    }
    p.r->g->stack.assign(1, p.pc - bias_);
    return len < std::min<uint64_t>(p.hi - p.sp, kSyscallScan + 16) ? Walk::kNeedMore
                                                                    : Walk::kTruncated;
  }

  absl::Status ReadGs(absl::Span<Pending* const> ps, int64_t now) {
    std::vector<ReadRange>& r = ranges_;
    r.clear();
    for (Pending* p : ps) r.push_back({p->r->gaddr, static_cast<uint64_t>(g_size_)});
    return mem_.Visit(r, kMergeG, [&](size_t i, const uint8_t* g) {
      Pending& p = *ps[i];
      p.parsed = g != nullptr && Parse(ByteView(g, g_size_), p, now);
    });
  }

  // Reads the used top of each stack and walks it; a chain that leaves
  // what was read is read again up to the stack's top.
  absl::Status WalkStacks(absl::Span<Pending* const> ps) {
    for (bool more : {false, true}) {
      std::vector<ReadRange>& r = ranges_;
      std::vector<Pending*>& who = who_;
      r.clear();
      who.clear();
      for (Pending* p : ps) {
        if (more && p->walk != Walk::kNeedMore) continue;
        uint64_t want = std::min<uint64_t>(p->hi - p->sp, more ? kMaxStackRead : kStackRead);
        r.push_back({p->sp, want});
        who.push_back(p);
      }
      if (r.empty()) break;
      absl::Status s = mem_.Visit(r, more ? 0 : kMergeStack, [&](size_t i, const uint8_t* st) {
        Pending& p = *who[i];
        p.walk = st == nullptr ? Walk::kBad : WalkStack(p, ByteView(st, r[i].len));
        if (more && p.walk == Walk::kNeedMore) p.walk = Walk::kBad;
      });
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }

  // Re-reads what the walk relied on; a g that changed ran meanwhile.
  absl::Status Recheck(absl::Span<Pending* const> ps) {
    std::vector<ReadRange>& r = ranges_;
    r.clear();
    uint64_t n = recheck_hi_ - recheck_lo_;
    for (Pending* p : ps) r.push_back({p->r->gaddr + recheck_lo_, n});
    return mem_.Visit(r, kMergeG, [&](size_t i, const uint8_t* now) {
      Pending& p = *ps[i];
      p.unchanged = now != nullptr && Key(ByteView(now, n), recheck_lo_) == p.key;
    });
  }

 private:
  ProcessMemory mem_;
  const symbolizer::GoBinary& bin_;
  const gabi::GLayout& layout_;
  uint64_t bias_;
  std::optional<size_t> goexit_;
  std::vector<size_t> injected_;  // runtime.asyncPreempt, runtime.sigpanic
  int32_t g_size_ = 0, recheck_lo_ = 0, recheck_hi_ = 0;
  int32_t tracking_ = -1, tracking_stamp_ = -1;
  std::array<FuncCacheEntry, 4096> func_cache_{};
  // Reused between chunks.
  std::vector<uint64_t> frames_;
  std::vector<ReadRange> ranges_;
  std::vector<Pending*> who_;
};

// What reading a chunk needs, reused from chunk to chunk: the Pending
// state lives only while its chunk is read (a retry starts afresh).
struct ChunkState {
  std::array<Pending, kChunk> pending;
  std::vector<Pending*> all, live, stacks;
};

// Reads, walks and rechecks one chunk of gs; what must be read again goes
// to `retry`.
absl::Status ReadChunk(Reader& reader, absl::Span<GoroutineRead* const> chunk, bool last,
                       uint64_t bias, SnapshotStats* stats, ChunkState& c,
                       std::vector<GoroutineRead*>* retry) {
  c.all.clear();
  for (size_t i = 0; i < chunk.size(); ++i) {
    c.pending[i] = Pending{};
    c.pending[i].r = chunk[i];
    c.all.push_back(&c.pending[i]);
  }
  absl::Status s;
  if (s = reader.ReadGs(c.all, MonotonicNanos()); !s.ok()) return s;
  c.live.clear();
  c.stacks.clear();
  for (Pending* p : c.all) {
    if (!p->parsed) {
      retry->push_back(p->r);
    } else if (p->done) {
      ++stats->dead;
    } else {
      c.live.push_back(p);  // running ones have no stack, but are rechecked
      if (p->r->g->status != gabi::kGrunning) c.stacks.push_back(p);
    }
  }
  if (s = reader.WalkStacks(c.stacks); !s.ok()) return s;
  if (s = reader.Recheck(c.live); !s.ok()) return s;
  for (Pending* p : c.live) {
    Goroutine& g = *p->r->g;
    bool running = g.status == gabi::kGrunning;
    bool stack_ok = running || p->walk == Walk::kComplete;
    if (!p->unchanged || (!stack_ok && !last)) {
      retry->push_back(p->r);
      continue;
    }
    if (running) {
      g.stack_kind = StackKind::kNone;
    } else if (stack_ok) {
      g.stack_kind = StackKind::kComplete;
    } else {
      g.stack_kind = StackKind::kTruncated;
      if (g.stack.empty()) g.stack = {p->pc - bias};
      ++stats->stacks_truncated;
    }
    p->r->accepted = true;
  }
  return absl::OkStatus();
}

// Reads, walks and rechecks `todo` until every g is accepted or out of
// attempts. Each attempt goes over all that is left, a chunk at a time,
// so a g that was changing is read again only after the others.
absl::Status ReadShare(Reader& reader, std::vector<GoroutineRead*> todo, int max_attempts,
                       uint64_t bias, SnapshotStats* stats) {
  auto c = std::make_unique<ChunkState>();
  std::vector<GoroutineRead*> retry;
  for (int attempt = 0; attempt < max_attempts && !todo.empty(); ++attempt) {
    if (attempt > 0) stats->retried += todo.size();
    bool last = attempt + 1 == max_attempts;
    retry.clear();
    absl::Span<GoroutineRead* const> all(todo);
    for (size_t i = 0; i < all.size(); i += kChunk) {
      absl::Status s = ReadChunk(reader, all.subspan(i, kChunk), last, bias, stats, *c, &retry);
      if (!s.ok()) return s;
    }
    todo.swap(retry);
  }
  stats->skipped = todo.size();
  return absl::OkStatus();
}

}  // namespace

int64_t MonotonicNanos() { return MonotonicNs(); }  // the clock of the runtime's nanotime

absl::Status ReadGoroutines(pid_t pid, const symbolizer::GoBinary& binary,
                            const goabi::GLayout& layout, uint64_t bias,
                            absl::Span<GoroutineRead> share, int max_attempts,
                            SnapshotStats* stats, MemorySource* source) {
  std::vector<GoroutineRead*> todo(share.size());
  for (size_t i = 0; i < share.size(); ++i) todo[i] = &share[i];
  Reader reader(pid, source, binary, layout, bias);
  absl::Status s = ReadShare(reader, std::move(todo), max_attempts, bias, stats);
  stats->syscalls += reader.mem().syscalls();
  return s;
}

}  // namespace goerrprof::profiler
