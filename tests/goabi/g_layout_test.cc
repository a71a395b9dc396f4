// goabi's runtime.g / runtime.m layouts: the wait-reason tables per release
// (1.20-1.23 share one array read through prefixes, so each release must
// still see exactly its own list), and every offset against the DWARF of
// the corpus binaries of each release (the oracle's `fields` mode), and the
// allocator counters' layout (goabi/malloc_layout.h) likewise.
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "goabi/g_layout.h"
#include "goabi/malloc_layout.h"
#include "gtest/gtest.h"
#include "symbolizer/go_binary.h"
#include "tests/test_support.h"

namespace goerrprof::testing {
namespace {

using goabi::GLayout;
using goabi::GoVersion;

void ExpectTable(GoVersion v, size_t len, std::string_view last) {
  auto g = goabi::GLayoutFor(v);
  ASSERT_TRUE(g.ok()) << g.status();
  ASSERT_EQ(g->wait_reasons.size(), len) << v.ToString();
  EXPECT_EQ(g->wait_reasons.back(), last) << v.ToString();
  EXPECT_EQ(g->WaitReason(len - 1), last) << v.ToString();
}

TEST(GLayout, WaitReasonTablesPerRelease) {
  ExpectTable({1, 19, 8}, 27, "debug call");
  ExpectTable({1, 20, 14}, 32, "stopping the world");
  ExpectTable({1, 21, 13}, 32, "stopping the world");
  ExpectTable({1, 22, 12}, 37, "coroutine");
  ExpectTable({1, 23, 12}, 38, "GC weak to strong wait");
  ExpectTable({1, 27, 4}, 47, "cleanup wait");
}

// Field offsets by "struct.field" from the oracle's reading of the DWARF.
std::map<std::string, int32_t> DwarfFields(const std::string& path,
                                           const std::vector<std::string>& structs) {
  std::vector<std::string> argv = {OraclePath(), "fields", path};
  argv.insert(argv.end(), structs.begin(), structs.end());
  CommandResult r = RunCommand(argv);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::map<std::string, int32_t> dwarf;
  for (absl::string_view line : absl::StrSplit(r.out, '\n', absl::SkipEmpty())) {
    std::vector<std::string> parts = absl::StrSplit(line, ' ');
    int32_t off = 0;
    const bool ok = parts.size() == 2 && absl::SimpleAtoi(parts[1], &off);
    EXPECT_TRUE(ok) << line;
    if (ok) dwarf[parts[0]] = off;
  }
  return dwarf;
}

// Every offset goerrprof reads from g and m equals the compiler's own
// DWARF of that release; a field goabi calls absent is absent there.
void CheckAgainstDwarf(const CorpusBinary& b) {
  auto bin = symbolizer::GoBinary::Open(b.path);
  ASSERT_TRUE(bin.ok()) << bin.status();
  auto g = goabi::GLayoutFor((*bin)->version());
  ASSERT_TRUE(g.ok()) << g.status();
  std::map<std::string, int32_t> dwarf =
      DwarfFields(b.path, {"runtime.g", "runtime.m", "runtime._panic"});
  const std::pair<const char*, int32_t> fields[] = {
      {"runtime.g.stack.lo", g->stack_lo},
      {"runtime.g.stack.hi", g->stack_hi},
      {"runtime.g.m", g->m},
      {"runtime.g.sched.sp", g->sched_sp},
      {"runtime.g.sched.pc", g->sched_pc},
      {"runtime.g.sched.bp", g->sched_bp},
      {"runtime.g.syscallsp", g->syscallsp},
      {"runtime.g.syscallpc", g->syscallpc},
      {"runtime.g.syscallbp", g->syscallbp},
      {"runtime.g.atomicstatus", g->atomicstatus},
      {"runtime.g.goid", g->goid},
      {"runtime.g.waitsince", g->waitsince},
      {"runtime.g.waitreason", g->waitreason},
      {"runtime.g.parentGoid", g->parent_goid},
      {"runtime.g.gopc", g->gopc},
      {"runtime.g.startpc", g->startpc},
      {"runtime.g.labels", g->labels},
      {"runtime.g.tracking", g->tracking},
      {"runtime.g.trackingStamp", g->tracking_stamp},
      {"runtime.m.procid", g->m_procid},
      {"runtime.m.curg", g->m_curg},
      {"runtime._panic.arg", g->panic_arg},
  };
  for (const auto& [name, ours] : fields) {
    auto it = dwarf.find(name);
    if (ours == GLayout::kAbsent) {
      // 1.19's g.tracking sampled run-queue latency, with no park stamp: unused.
      if (std::string(name) == "runtime.g.tracking" && g->tracking_stamp == GLayout::kAbsent) {
        continue;
      }
      EXPECT_TRUE(it == dwarf.end()) << name << " exists in " << b.go_version << " at "
                                     << it->second;
    } else {
      ASSERT_NE(it, dwarf.end()) << name << " not in the DWARF of " << b.go_version;
      EXPECT_EQ(ours, it->second) << name << " in " << b.go_version;
    }
  }
}

void CheckMallocAgainstDwarf(const CorpusBinary& b) {
  auto bin = symbolizer::GoBinary::Open(b.path);
  ASSERT_TRUE(bin.ok()) << bin.status();
  auto m = goabi::MallocLayoutFor((*bin)->version());
  ASSERT_TRUE(m.ok()) << m.status();
  std::map<std::string, int32_t> dwarf =
      DwarfFields(b.path, {"runtime.heapStatsDelta", "runtime.consistentHeapStats", "runtime.p",
                           "runtime.mcache", "runtime.mspan"});
  const std::pair<const char*, int32_t> fields[] = {
      {"runtime.heapStatsDelta.tinyAllocCount", m->tiny_alloc_count},
      {"runtime.heapStatsDelta.largeAllocCount", m->large_alloc_count},
      {"runtime.heapStatsDelta.smallAllocCount", m->small_alloc_count},
      {"runtime.heapStatsDelta.smallFreeCount",
       m->small_alloc_count + goabi::MallocLayout::kSizeClasses * 8 + 16},
      {"runtime.consistentHeapStats.gen", m->heap_stats_gen},
      {"runtime.p.mcache", m->p_mcache},
      {"runtime.mcache.tinyAllocs", m->mcache_tiny_allocs},
      {"runtime.mcache.alloc", m->mcache_alloc},
      {"runtime.mspan.sweepgen", m->mspan_sweepgen},
      {"runtime.mspan.allocCount", m->mspan_alloc_count},
      {"runtime.mspan.allocCountBeforeCache", m->mspan_alloc_count_before_cache},
  };
  for (const auto& [name, ours] : fields) {
    auto it = dwarf.find(name);
    ASSERT_NE(it, dwarf.end()) << name << " not in the DWARF of " << b.go_version;
    EXPECT_EQ(ours, it->second) << name << " in " << b.go_version;
  }
  // The last field ends the struct: three of them, then gen.
  EXPECT_EQ(m->heap_stats_gen, 3 * m->delta_size);
}

}  // namespace
}  // namespace goerrprof::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  // Default builds keep DWARF; the cgo ones are linked externally (same g).
  goerrprof::testing::RegisterCorpusTests("GLayoutDwarf", "errgen-default", false,
                                          goerrprof::testing::CheckAgainstDwarf);
  goerrprof::testing::RegisterCorpusTests("MallocLayoutDwarf", "errgen-default", false,
                                          goerrprof::testing::CheckMallocAgainstDwarf);
  return RUN_ALL_TESTS();
}
