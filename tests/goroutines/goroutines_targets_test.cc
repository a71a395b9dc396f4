// `goerrprof goroutines` on targets beside the parked program: one that
// never stops changing (every snapshot must still succeed), release builds
// of esbuild, runtime.allgs found from code against the symbol, and the
// runtime's allocation counts read from outside against what it allocated.
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "goabi/g_layout.h"
#include "base/clock.h"
#include "goroutines/alloc_counter.h"
#include "goroutines/goroutine_locate.h"
#include "symbolizer/go_binary.h"
#include "symbolizer/load_bias.h"
#include "tests/goroutines/goroutines_test_util.h"
#include "tests/test_support.h"

namespace goerrprof::testing {

// The allgs address found from allgadd's code is the symbol's.
void CheckAllgs(const CorpusBinary& b) {
  auto bin = symbolizer::GoBinary::Open(b.path);
  ASSERT_TRUE(bin.ok()) << bin.status();
  auto found = profiler::FindAllgs(**bin);
  ASSERT_TRUE(found.ok()) << found.status();
  auto sym = (*bin)->elf().LookupSymbol("runtime.allgs");
  ASSERT_TRUE(sym.has_value()) << "no runtime.allgs symbol in " << b.path;
  EXPECT_EQ(*found, *sym);
}

// heapStats found from refill's code is the memstats symbol (it is
// memstats' first field), allp found from procresize's is the allp symbol,
// and the counts are the target's: parked allocates N objects of 10240
// bytes, and exactly that size class grows by N, both right after (most of
// the last span still cached by a P) and after a GC (which adds every P's
// cached counts to the totals: the exact count must not change).
void CheckAllocCounter(const CorpusBinary& b) {
  auto bin = symbolizer::GoBinary::Open(b.path);
  ASSERT_TRUE(bin.ok()) << bin.status();
  auto found = profiler::FindHeapStats(**bin);
  ASSERT_TRUE(found.ok()) << found.status();
  const symbolizer::ElfFile& elf = (*bin)->elf();
  if (auto sym = elf.LookupSymbol("runtime.memstats")) {
    EXPECT_EQ(*found, *sym);
  }
  auto allp = profiler::FindAllp(**bin);
  ASSERT_TRUE(allp.ok()) << allp.status();
  if (auto sym = elf.LookupSymbol("runtime.allp")) {
    EXPECT_EQ(*allp, *sym);
  }
  // The size class of 10240 bytes, from the runtime's own table.
  std::optional<uint64_t> table = elf.LookupSymbol("runtime.class_to_size");
  if (!table) table = elf.LookupSymbol("internal/runtime/gc.SizeClassToSize");
  int cls = -1;
  if (table) {
    auto bytes = elf.ReadVirtual(*table, 2 * profiler::AllocCounter::kSizeClasses);
    ASSERT_TRUE(bytes.ok()) << bytes.status();
    for (int k = 0; k < profiler::AllocCounter::kSizeClasses; ++k) {
      if ((*bytes)[2 * k] + 256 * (*bytes)[2 * k + 1] == 10240) cls = k;
    }
    ASSERT_GT(cls, 0) << "no size class of 10240 bytes";
  }

  Truth truth;
  std::unique_ptr<Child> child = StartParked(b.path, &truth);
  ASSERT_NE(child, nullptr);
  auto bias = symbolizer::LoadBias(child->pid(), elf);
  ASSERT_TRUE(bias.ok()) << bias.status();
  auto counter = profiler::AllocCounter::Open(child->pid(), **bin, *bias);
  ASSERT_TRUE(counter.ok()) << counter.status();
  auto command = [&](const std::string& line, const std::string& reply) {
    ASSERT_TRUE(child->Write(line + "\n").ok());
    auto got = child->ReadLine(false, kTimeout);
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(*got, reply);
  };
  constexpr uint64_t kN = 5000;
  command("gc", "gc");
  auto before = (*counter)->Read();
  ASSERT_TRUE(before.ok()) << before.status();
  command(absl::StrCat("alloc ", kN), absl::StrCat("alloc ", kN));
  auto after = (*counter)->Read();
  ASSERT_TRUE(after.ok()) << after.status();
  command("gc", "gc");
  auto flushed = (*counter)->Read();
  ASSERT_TRUE(flushed.ok()) << flushed.status();
  std::vector<int> grown_by_n;
  for (int k = 0; k < profiler::AllocCounter::kSizeClasses; ++k) {
    ASSERT_GE(after->small[k], before->small[k]) << "class " << k;
    if (after->small[k] - before->small[k] == kN) grown_by_n.push_back(k);
  }
  ASSERT_EQ(grown_by_n.size(), 1u) << "classes grown by exactly " << kN;
  if (cls > 0) {
    EXPECT_EQ(grown_by_n[0], cls);
  }
  EXPECT_EQ(flushed->small[grown_by_n[0]], after->small[grown_by_n[0]]);
  // Everything else between the reads: the replies and the command lines.
  EXPECT_GE(after->objects - before->objects, kN);
  EXPECT_LT(after->objects - before->objects, kN + 1000);

  // While a goroutine allocates (a 320-byte class span used up every few
  // tens of microseconds): exact readings never go back, and once it
  // stops, its class grew by exactly what it says it allocated.
  int cls300 = -1;
  if (table) {
    auto bytes = elf.ReadVirtual(*table, 2 * profiler::AllocCounter::kSizeClasses);
    ASSERT_TRUE(bytes.ok());
    for (int k = profiler::AllocCounter::kSizeClasses - 1; k > 0; --k) {
      if ((*bytes)[2 * k] + 256 * (*bytes)[2 * k + 1] >= 300) cls300 = k;
    }
  }
  auto start = (*counter)->Read();
  ASSERT_TRUE(start.ok()) << start.status();
  command("allocloop", "allocloop");
  uint64_t last_objects = start->objects, last_class = cls300 > 0 ? start->small[cls300] : 0;
  int exact = 0;
  for (int i = 0; i < 300; ++i) {
    const int64_t called = MonotonicNs();
    auto c = (*counter)->Read();
    const int64_t returned = MonotonicNs();
    ASSERT_TRUE(c.ok()) << c.status();
    // When its values were taken: inside the call (the budget counts hits
    // by their timestamps against it).
    ASSERT_LE(called, c->from_ns) << "reading " << i;
    ASSERT_LE(c->from_ns, c->to_ns) << "reading " << i;
    ASSERT_LE(c->to_ns, returned) << "reading " << i;
    if (!c->exact) continue;
    ++exact;
    ASSERT_GE(c->objects, last_objects) << "reading " << i;
    last_objects = c->objects;
    if (cls300 > 0) {
      ASSERT_GE(c->small[cls300], last_class) << "reading " << i;
      last_class = c->small[cls300];
    }
  }
  EXPECT_GE(exact, 10) << "of 300 readings; retries " << (*counter)->stats().retries;
  ASSERT_TRUE(child->Write("allocstop\n").ok());
  auto stopped = child->ReadLine(false, kTimeout);
  ASSERT_TRUE(stopped.ok()) << stopped.status();
  uint64_t looped = 0;
  ASSERT_TRUE(absl::StartsWith(*stopped, "allocstop ") &&
              absl::SimpleAtoi(stopped->substr(10), &looped))
      << *stopped;
  auto end = (*counter)->Read();
  ASSERT_TRUE(end.ok()) << end.status();
  EXPECT_TRUE(end->exact);
  EXPECT_GE(end->objects - start->objects, looped);
  if (cls300 > 0) {
    EXPECT_EQ(end->small[cls300] - start->small[cls300], looped);
  }

  ASSERT_TRUE(child->Write("quit\n").ok());
  auto done = child->Finish(kTimeout);
  ASSERT_TRUE(done.ok()) << done.status();
}

// A target that never stops changing (goroutines born and dying, stacks
// copied, mutexes handed over): every snapshot must succeed and show only
// well-formed goroutines; what could not be read consistently is counted.
void CheckChurn(const CorpusBinary& b) {
  constexpr int kWorkers = 40;
  auto child = Child::Spawn({b.path, "-churn", absl::StrCat(kWorkers)});
  ASSERT_TRUE(child.ok()) << child.status();
  auto ready = (*child)->ReadLine(false, kTimeout);
  ASSERT_TRUE(ready.ok() && absl::StartsWith(*ready, "ready ")) << ready.status();
  auto bin = symbolizer::GoBinary::Open(b.path);
  ASSERT_TRUE(bin.ok()) << bin.status();
  auto layout = goabi::GLayoutFor((*bin)->version());
  ASSERT_TRUE(layout.ok());
  std::set<std::string> states;
  for (std::string_view w : layout->wait_reasons) states.insert(std::string(w));
  for (std::string_view w : layout->status_names) states.insert(std::string(w));
  states.erase("");
  std::string pid = absl::StrCat("--pid=", (*child)->pid());
  uint64_t skipped = 0, retried = 0, truncated = 0, preempted = 0;
  for (int i = 0; i < 25; ++i) {
    // Every other snapshot with --all: runtime frames, asyncPreempt among them.
    std::vector<std::string> argv = {GoerrprofPath(), "goroutines", pid, "--text"};
    if (i % 2 == 1) argv.push_back("--all");
    CommandResult r = RunCommand(argv, kTimeout);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    // "goerrprof: N goroutines of pid P read in X ms (H system hidden, F free,
    // R re-read, S skipped as torn, T stacks truncated, ...)"
    std::vector<std::string> words = absl::StrSplit(r.err, absl::ByAnyChar(" (,"), absl::SkipEmpty());
    ASSERT_GE(words.size(), 20u) << r.err;
    uint64_t shown = 0, sk = 0, re = 0, tr = 0;
    ASSERT_TRUE(absl::SimpleAtoi(words[1], &shown)) << r.err;
    for (size_t k = 1; k < words.size(); ++k) {
      if (words[k] == "re-read") {
        ASSERT_TRUE(absl::SimpleAtoi(words[k - 1], &re));
      }
      if (words[k] == "skipped") {
        ASSERT_TRUE(absl::SimpleAtoi(words[k - 1], &sk));
      }
      if (words[k] == "stacks") {
        ASSERT_TRUE(absl::SimpleAtoi(words[k - 1], &tr));
      }
    }
    skipped += sk, retried += re, truncated += tr;
    std::map<uint64_t, Dumped> gs = ParseDump(r.out);
    EXPECT_EQ(gs.size(), shown);
    EXPECT_GE(shown + sk, static_cast<uint64_t>(kWorkers + 1)) << r.err;
    for (const auto& [id, g] : gs) {
      EXPECT_TRUE(states.contains(g.state)) << "goroutine " << id << " [" << g.state << "]";
      // A signal-injected call: the walk goes on into the interrupted
      // function (main.spin here, or a churner).
      for (size_t k = 0; k < g.frames.size(); ++k) {
        if (g.frames[k].function != "runtime.asyncPreempt") continue;
        ++preempted;
        ASSERT_LT(k + 1, g.frames.size()) << "goroutine " << id << " ends at asyncPreempt";
        EXPECT_TRUE(absl::StartsWith(g.frames[k + 1].function, "main."))
            << "goroutine " << id << ": " << Describe(g.frames[k + 1]);
      }
      for (const Frame& f : g.frames) {
        EXPECT_TRUE(f.function.find('.') != std::string::npos) << id << ": " << Describe(f);
        EXPECT_FALSE(f.file.empty()) << id;
        EXPECT_GT(f.line, 0) << id << ": " << Describe(f);
      }
      if (g.creator) {
        EXPECT_GT(g.creator->line, 0) << id;
        // Hidden runtime goroutines are created by the runtime (--all).
        EXPECT_TRUE(absl::StartsWith(g.creator->function, "main.") ||
                    (i % 2 == 1 && absl::StartsWith(g.creator->function, "runtime.")))
            << id << ": " << g.creator->function;
      }
    }
  }
  std::printf(
      "churn %s: 25 snapshots, %lu re-read, %lu skipped, %lu stacks truncated, %lu stacks "
      "through asyncPreempt\n",
      b.Label().c_str(), static_cast<unsigned long>(retried), static_cast<unsigned long>(skipped),
      static_cast<unsigned long>(truncated), static_cast<unsigned long>(preempted));
  ASSERT_TRUE((*child)->Write("quit\n").ok());
  auto done = (*child)->Finish(kTimeout);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->exit_code, 0) << done->err;
}

// Release builds of esbuild (stripped; Go 1.16 to 1.26, including the
// 1.16-1.18 layouts the parked corpus lacks), blocked reading stdin: the
// main goroutine is in a syscall under io.ReadAll, and with --all the
// runtime's forcegc helper is parked in "force gc (idle)".
void CheckEsbuild(const CorpusBinary& b) {
  auto child = Child::Spawn({b.path});
  ASSERT_TRUE(child.ok()) << child.status();
  std::string pid = absl::StrCat("--pid=", (*child)->pid());
  std::map<uint64_t, Dumped> gs;
  std::string last;
  // Poll (bounded) until esbuild has reached its read of stdin.
  for (int i = 0; i < 500; ++i) {
    CommandResult r = RunCommand({GoerrprofPath(), "goroutines", pid, "--text", "--all"}, kTimeout);
    last = r.out + r.err;
    if (r.exit_code != 0) continue;  // still starting (not yet a Go runtime to read)
    gs = ParseDump(r.out);
    bool reading = false;
    if (gs.contains(1) && gs[1].state == "syscall") {
      for (const Frame& f : gs[1].frames) reading |= f.function == "io.ReadAll";
    }
    if (reading) break;
    gs.clear();
  }
  ASSERT_FALSE(gs.empty()) << "esbuild never showed main blocked in io.ReadAll:\n" << last;
  const Dumped& main = gs[1];
  EXPECT_TRUE(absl::StartsWith(main.frames.front().function, "syscall.")) << last;
  // --all shows runtime frames too: the walk reached runtime.main.
  EXPECT_EQ(main.frames.back().function, "runtime.main") << last;
  bool fd_read = false, main_main = false;
  for (const Frame& f : main.frames) {
    fd_read |= f.function == "internal/poll.(*FD).Read";
    main_main |= f.function == "main.main";
  }
  EXPECT_TRUE(main_main) << last;
  EXPECT_TRUE(fd_read) << last;
  bool forcegc = false;
  for (const auto& [id, g] : gs) {
    for (const Frame& f : g.frames) {
      if (f.function == "runtime.forcegchelper") {
        forcegc = true;
        EXPECT_EQ(g.state, "force gc (idle)") << last;
      }
    }
  }
  EXPECT_TRUE(forcegc) << last;
  EXPECT_TRUE(absl::StrContains(last, " 0 skipped as torn")) << last;
  (*child)->CloseStdin();
  auto done = (*child)->Finish(kTimeout);
  ASSERT_TRUE(done.ok()) << done.status();
}

}  // namespace goerrprof::testing
