// The plan cache (plan/plan_cache.h): a second planning of one executable
// comes from the cache and equals the first; a changed executable, a
// corrupt, tampered, foreign or untrusted entry is a miss with its reason,
// and the plan is made again.
#include "plan/plan_cache.h"

#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "bpf/probe_abi.h"
#include "plan/plan_cache.pb.h"
#include "record/recorder.h"
#include "tests/test_support.h"

namespace goerrprof::testing {
namespace {

using profiler::ExecutablePlan;
using profiler::MakeExecutablePlan;
using profiler::RecordOptions;


void Spit(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// Everything the session loads, as text: equal texts, equal plans.
std::string Describe(const ExecutablePlan& p) {
  std::string out = absl::StrCat("skipped ", p.skipped, "\n");
  for (const auto& s : p.config.probes) {
    absl::StrAppend(&out, "probe ", s.vaddr, " ", s.cookie, " ", s.const_type, " ",
                    s.const_data, " ", s.check_tab, " ", s.site, " ", static_cast<int>(s.kind),
                    "\n");
  }
  for (const auto& l : p.config.layouts) {
    absl::StrAppend(&out, "layout ", l.type_addr, " ", l.name, " ", l.deref, " ",
                    static_cast<int>(l.value_size));
    for (const auto& f : l.fields) {
      absl::StrAppend(&out, " ", f.name, "@", f.offset, ":", static_cast<int>(f.kind));
    }
    if (l.addr_type) {
      absl::StrAppend(&out, " addr ", static_cast<int>(l.addr_type->kind), " ", l.addr_type->ip,
                      " ", l.addr_type->port);
      for (const auto& [n, o] : l.addr_type->strings) absl::StrAppend(&out, " ", n, "@", o);
    }
    absl::StrAppend(&out, "\n");
  }
  return out;
}

class PlanCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto corpus = LoadCorpus(false);
    ASSERT_TRUE(corpus.ok()) << corpus.status();
    std::string src;
    for (const CorpusBinary& b : *corpus) {
      if (b.program == "errgen" && b.flavour == "default") src = b.path;  // the newest, last
    }
    ASSERT_FALSE(src.empty()) << "no errgen in the corpus";
    dir_ = absl::StrCat(::testing::TempDir(), "/plan_cache_", getpid(), "_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    ASSERT_EQ(RunCommand({"/bin/rm", "-rf", dir_}).exit_code, 0);
    ASSERT_EQ(RunCommand({"/bin/mkdir", "-p", dir_ + "/bin"}).exit_code, 0);
    exe_ = dir_ + "/bin/errgen";
    ASSERT_EQ(RunCommand({"/bin/cp", src, exe_}).exit_code, 0);
    options_.plan_cache_dir = dir_ + "/cache";
  }

  // Plans exe_, returning the plan and its cache state.
  std::unique_ptr<ExecutablePlan> Plan() {
    auto p = MakeExecutablePlan(exe_, options_);
    EXPECT_TRUE(p.ok()) << p.status();
    return p.ok() ? std::move(*p) : nullptr;
  }

  std::string EntryPath() {
    auto bin = symbolizer::GoBinary::Open(exe_);
    EXPECT_TRUE(bin.ok());
    return profiler::PlanCache(options_.plan_cache_dir).PathFor(**bin);
  }

  // Rewrites the stored entry through `edit`.
  template <typename F>
  // Edits the plan inside an entry and seals it again as the cache does:
  // a CRC-32 of the plan (little endian), then "gepc".
  void EditEntry(F edit) {
    std::string whole = ReadFileOrEmpty(EntryPath());
    ASSERT_GE(whole.size(), 8u);
    ASSERT_EQ(whole.substr(whole.size() - 4), "gepc");
    plancache::Plan entry;
    ASSERT_TRUE(entry.ParseFromString(whole.substr(0, whole.size() - 8)));
    edit(entry);
    std::string bytes;
    ASSERT_TRUE(entry.SerializeToString(&bytes));
    uint32_t crc = static_cast<uint32_t>(
        crc32(crc32(0L, Z_NULL, 0), reinterpret_cast<const Bytef*>(bytes.data()),
              static_cast<uInt>(bytes.size())));
    for (int i = 0; i < 4; ++i) bytes.push_back(static_cast<char>(crc >> (8 * i)));
    Spit(EntryPath(), bytes + "gepc");
  }

  // The first planning stores; this one must miss with `why`, plan afresh
  // (equal to `want`) and store again, so the next one hits.
  void ExpectMissThenHit(const std::string& why, const std::string& want) {
    auto again = Plan();
    ASSERT_TRUE(again);
    EXPECT_EQ(again->cache, why);
    EXPECT_EQ(Describe(*again), want);
    auto hit = Plan();
    ASSERT_TRUE(hit);
    EXPECT_EQ(hit->cache, "hit");
  }

  std::string dir_, exe_;
  RecordOptions options_;
};

TEST_F(PlanCacheTest, SecondPlanningComesFromTheCacheAndIsEqual) {
  auto first = Plan();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->cache, "absent");
  auto second = Plan();
  ASSERT_TRUE(second);
  EXPECT_EQ(second->cache, "hit");
  EXPECT_GT(second->config.probes.size(), 100u);
  EXPECT_EQ(Describe(*second), Describe(*first));
  // Checked returns (internal/strconv.ParseInt from Go 1.26) keep their itab.
  size_t checked = 0;
  for (const auto& p : second->config.probes) {
    checked += p.check_tab != 0 && (GEP_COOKIE_TAB(p.cookie) & GEP_LOC_F_CHECK) != 0;
  }
  EXPECT_GT(checked, 0u) << "no checked probe in the newest errgen";
  struct stat st;
  ASSERT_EQ(stat(EntryPath().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(PlanCacheTest, ChangedExecutableIsAMiss) {
  auto first = Plan();
  ASSERT_TRUE(first);
  // One byte of code changed, size and build ID kept.
  std::string bytes = ReadFileOrEmpty(exe_);
  auto bin = symbolizer::GoBinary::Open(exe_);
  ASSERT_TRUE(bin.ok());
  uint64_t text = (*bin)->pclntab().FuncEntry(0);
  uint64_t off = 0;
  for (const auto& seg : (*bin)->elf().loads()) {
    if (text >= seg.vaddr && text < seg.vaddr + seg.filesz) off = seg.offset + (text - seg.vaddr);
  }
  ASSERT_NE(off, 0u);
  bytes[off + 1] ^= 0x5a;
  Spit(exe_, bytes);
  auto again = Plan();
  ASSERT_TRUE(again);
  EXPECT_EQ(again->cache, "executable changed");
}

TEST_F(PlanCacheTest, CorruptEntryIsAMiss) {
  auto first = Plan();
  ASSERT_TRUE(first);
  std::string want = Describe(*first);
  Spit(EntryPath(), "\x0a\xff\xff\xff\xff\x0f garbage");
  ExpectMissThenHit("corrupt (unreadable)", want);
  std::string whole = ReadFileOrEmpty(EntryPath());
  // Cut short anywhere, even at a field boundary where the protobuf alone
  // would still parse.
  for (size_t keep : {whole.size() / 2, whole.size() - 9, whole.size() - 1}) {
    Spit(EntryPath(), whole.substr(0, keep));
    auto cut = Plan();
    ASSERT_TRUE(cut);
    EXPECT_NE(cut->cache, "hit") << "cut to " << keep << " of " << whole.size() << " bytes";
    EXPECT_EQ(Describe(*cut), want);
  }
  // One byte of the plan changed.
  std::string flipped = whole;
  flipped[flipped.size() / 3] ^= 0x20;
  Spit(EntryPath(), flipped);
  ExpectMissThenHit("corrupt (checksum)", want);
}

TEST_F(PlanCacheTest, TamperedEntryIsAMiss) {
  auto first = Plan();
  ASSERT_TRUE(first);
  std::string want = Describe(*first);
  EditEntry([](plancache::Plan& e) { e.mutable_probes(0)->set_vaddr(1); });
  ExpectMissThenHit("corrupt (a probe outside the text)", want);
  EditEntry([](plancache::Plan& e) { e.mutable_probes(0)->set_kind(9); });
  ExpectMissThenHit("corrupt (a probe outside the text)", want);
  EditEntry([](plancache::Plan& e) { e.set_planner("another goerrprof"); });
  ExpectMissThenHit("planned by another goerrprof", want);
  EditEntry([](plancache::Plan& e) { e.set_size(e.size() + 1); });
  ExpectMissThenHit("executable changed", want);
}

TEST_F(PlanCacheTest, EntryOthersCanWriteIsNotTrusted) {
  auto first = Plan();
  ASSERT_TRUE(first);
  ASSERT_EQ(chmod(EntryPath().c_str(), 0666), 0);
  ExpectMissThenHit("not trusted (owned or writable by another user)", Describe(*first));
}

TEST_F(PlanCacheTest, DisabledCacheStoresNothing) {
  options_.plan_cache_dir = "";
  auto first = Plan();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->cache, "disabled");
  EXPECT_NE(access((dir_ + "/cache").c_str(), F_OK), 0);
}

}  // namespace
}  // namespace goerrprof::testing
