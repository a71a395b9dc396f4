// Crafted binaries cost bounded time and memory: each shape here once took
// minutes or gigabytes (or was undefined behaviour), and must now be read,
// or refused with one line, within seconds. The binaries are synthetic
// (tests/synthetic_go_binary.h), built at run time.
#include <elf.h>

#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "symbolizer/error_types.h"
#include "symbolizer/go_binary.h"
#include "symbolizer/type_refs.h"
#include "tests/bounded_child.h"
#include "tests/synthetic_go_binary.h"
#include "tests/test_support.h"

namespace goerrprof::testing {
namespace {

using symbolizer::ErrorType;
using symbolizer::GoBinary;

constexpr int kTimeLimit = 10;             // seconds; the fixed readers take milliseconds
constexpr int64_t kRssLimitKb = 256 << 10;  // 256 MB

absl::Span<const uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

absl::StatusOr<std::unique_ptr<GoBinary>> Open(const std::string& bytes) {
  return GoBinary::FromBytes("synthetic", Bytes(bytes));
}

// The error types found the way `inspect` finds them.
absl::StatusOr<std::vector<ErrorType>> ErrorTypes(const GoBinary& bin) {
  auto types = bin.types();
  if (!types.ok()) return types.status();
  auto refs = symbolizer::TypeDescriptorRefs(bin);
  if (!refs.ok()) return refs.status();
  return symbolizer::FindErrorTypes(**types, *refs);
}

// File offset of a virtual address of the binary.
uint64_t FileOffset(const GoBinary& bin, uint64_t addr) {
  for (const auto& seg : bin.elf().loads()) {
    if (addr >= seg.vaddr && addr < seg.vaddr + seg.filesz) return seg.offset + addr - seg.vaddr;
  }
  ADD_FAILURE() << "address not in the file: " << addr;
  return 0;
}

template <typename T>
T At(const std::string& bytes, uint64_t off) {
  T v{};
  std::memcpy(&v, bytes.data() + off, sizeof(v));
  return v;
}

std::string WriteTemp(const std::string& name, const std::string& bytes) {
  std::string path = absl::StrCat(::testing::TempDir(), "/", getpid(), "_", name);
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

// The builder itself, over every layout the readers know: the crafted
// shapes below are variations of a binary that reads right.
TEST(SyntheticBinary, ReadsLikeAGoBinary) {
  for (const char* v : {"go1.18.10", "go1.19.8", "go1.20.14", "go1.21.13", "go1.22.12",
                        "go1.23.12", "go1.24.13", "go1.25.14", "go1.26.11", "go1.27.4"}) {
    for (bool sections : {true, false}) {
      SCOPED_TRACE(absl::StrCat(v, sections ? "" : " without sections"));
      SyntheticGoOptions o;
      o.go_version = v;
      o.section_headers = sections;
      std::string bytes = BuildSyntheticGoBinary(o);
      auto bin = Open(bytes);
      ASSERT_TRUE(bin.ok()) << bin.status();
      EXPECT_EQ((*bin)->build_info().go_version, v);
      EXPECT_EQ((*bin)->pclntab_source(), sections ? "section" : "scan");
      ASSERT_EQ((*bin)->pclntab().num_functions(), 2u);
      EXPECT_EQ((*bin)->pclntab().FuncName(1), "main.fail");
      auto frames = (*bin)->Symbolize((*bin)->pclntab().FuncEntry(1) + 3);
      ASSERT_TRUE(frames.ok()) << frames.status();
      ASSERT_EQ(frames->size(), 1u);
      EXPECT_EQ((*frames)[0].function, "main.fail");
      EXPECT_EQ((*frames)[0].file, "main.go");
      EXPECT_EQ((*frames)[0].line, 11);
      auto types = ErrorTypes(**bin);
      ASSERT_TRUE(types.ok()) << types.status();
      ASSERT_EQ(types->size(), 1u);
      const ErrorType& e = (*types)[0];
      EXPECT_EQ(e.name, "*main.E");
      EXPECT_EQ(e.elem_size, 32u);
      ASSERT_EQ(e.fields.size(), 2u);
      EXPECT_EQ(e.fields[0].name, "Msg");
      EXPECT_EQ(e.fields[1].name, "Err");
      EXPECT_EQ(e.fields[1].offset, 16u);
      EXPECT_EQ(e.interfaces, std::vector<std::string>{"error"});
    }
  }
}

// A pc-value delta that overflows the int32 value (signed overflow in the
// decoder, an 11-byte change to a real binary): the table is corrupt, so
// the frame has its function but no line.
TEST(BoundedReads, PcValueOverflowIsCorrupt) {
  std::string bytes = BuildSyntheticGoBinary({});
  auto clean = Open(bytes);
  ASSERT_TRUE(clean.ok()) << clean.status();
  uint64_t hdr = FileOffset(**clean, (*clean)->pclntab().address());
  uint64_t pctab = hdr + At<uint64_t>(bytes, hdr + 56);
  uint64_t functab = hdr + At<uint64_t>(bytes, hdr + 64);
  uint64_t func = functab + At<uint32_t>(bytes, functab + 8 + 4);  // main.fail's _func
  uint64_t pcln = pctab + At<uint32_t>(bytes, func + 24);
  // Value delta zig-zag 0xffffffff (INT32_MIN) from -1, then a pc delta.
  bytes.replace(pcln, 7, std::string("\xff\xff\xff\xff\x0f\x40\x00", 7));
  auto bin = Open(bytes);
  ASSERT_TRUE(bin.ok()) << bin.status();
  auto frames = (*bin)->Symbolize((*bin)->pclntab().FuncEntry(1));
  ASSERT_TRUE(frames.ok()) << frames.status();
  ASSERT_EQ(frames->size(), 1u);
  EXPECT_EQ((*frames)[0].function, "main.fail");
  EXPECT_EQ((*frames)[0].line, 0) << "an overflowing line table must not give a line";
}

// An error struct of 4096 fields, all but two of its own type: each
// field's type used to be read in full again (all 4096 names), quadratic.
TEST(BoundedReads, SelfReferentialErrorStruct) {
  for (size_t name_bytes : {size_t{1000}, size_t{60000}}) {
    SCOPED_TRACE(absl::StrCat("field names of ", name_bytes, " bytes"));
    SyntheticGoOptions o;
    o.self_fields = 4094;  // 4096 fields in all, the most a struct may have
    o.self_field_name_bytes = name_bytes;
    std::string bytes = BuildSyntheticGoBinary(o);
    BoundedRun run = RunInChild(
        [&] {
          auto bin = Open(bytes);
          if (!bin.ok()) return 2;
          auto types = ErrorTypes(**bin);
          if (!types.ok()) return 3;
          // Long names may make the type implausible (left out); short
          // ones must not.
          if (name_bytes < 4096 && (types->size() != 1 || (*types)[0].fields.size() != 2)) {
            return 4;
          }
          return 0;
        },
        kTimeLimit);
    EXPECT_TRUE(run.finished && run.exit_code == 0) << run.Describe();
    EXPECT_LT(run.rss_growth_kb, kRssLimitKb) << run.Describe();
  }
}

// A file without section headers whose data holds 25 000 pclntab headers
// that all pass the header checks and share one 240 000-entry function
// table, unsorted in its middle: the scan used to build the table for
// every header (minutes). 3.7 MB.
std::string RepeatedMagics() {
  constexpr uint64_t kHeaders = 25000, kEntries = 240000, kHeaderBytes = 72;
  const uint64_t table = kHeaders * kHeaderBytes;
  std::string data(table + (kEntries + 1) * 8, '\0');
  for (uint64_t i = 0; i < kHeaders; ++i) {
    uint64_t h = i * kHeaderBytes;
    uint32_t magic = 0xfffffff1;
    std::memcpy(&data[h], &magic, 4);
    data[h + 6] = 1;  // quantum
    data[h + 7] = 8;  // pointer size
    uint64_t words[8] = {kEntries, 1, kSyntheticText, 72, 72, 72, 72, table - h};
    std::memcpy(&data[h + 8], words, sizeof(words));
  }
  for (uint64_t j = 0; j <= kEntries; ++j) {
    uint32_t entry = j == kEntries / 2 ? 0 : static_cast<uint32_t>(j);
    std::memcpy(&data[table + 8 * j], &entry, 4);
  }
  ElfWriter w;
  w.AddSegment(kSyntheticText, PF_R | PF_X, std::string(64, '\xcc'));
  w.AddSegment(kSyntheticRodata, PF_R, data);
  return w.Write(/*sections=*/false);
}

TEST(BoundedReads, RepeatedPclntabMagicsWithoutSections) {
  std::string bytes = RepeatedMagics();
  BoundedRun run = RunInChild(
      [&] {
        auto bin = Open(bytes);
        if (bin.ok()) return 2;
        return absl::StrContains(bin.status().message(), "no pclntab found") ? 0 : 3;
      },
      kTimeLimit);
  EXPECT_TRUE(run.finished && run.exit_code == 0) << run.Describe();
  EXPECT_LT(run.rss_growth_kb, kRssLimitKb) << run.Describe();
}

// The same file through the command line: one line, quickly.
TEST(BoundedReads, InspectRefusesRepeatedMagicsInOneLine) {
  std::string path = WriteTemp("magics", RepeatedMagics());
  CommandResult r = RunCommand({GoerrprofPath(), "inspect", path}, 4 * kTimeLimit);
  EXPECT_NE(r.exit_code, 0) << r.out;
  EXPECT_LT(r.exit_code, 128) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "no pclntab found")) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

// An itablinks length far past the file sized an allocation before any
// entry was read; now the array must be in the file first.
TEST(BoundedReads, ItablinksLongerThanTheFile) {
  SyntheticGoOptions o;
  o.go_version = "go1.22.12";
  std::string bytes = BuildSyntheticGoBinary(o);
  auto clean = Open(bytes);
  ASSERT_TRUE(clean.ok()) << clean.status();
  auto md = (*clean)->moduledata();
  ASSERT_TRUE(md.ok()) << md.status();
  auto layout = goabi::RuntimeLayoutFor((*clean)->version());
  ASSERT_TRUE(layout.ok());
  uint64_t len = FileOffset(**clean, (*md)->addr + layout->moduledata.itablinks + 8);
  uint64_t huge = (uint64_t{1} << 24) - 1;
  std::memcpy(&bytes[len], &huge, 8);
  std::memcpy(&bytes[len + 8], &huge, 8);  // cap
  auto bin = Open(bytes);
  ASSERT_TRUE(bin.ok()) << bin.status();
  auto types = ErrorTypes(**bin);
  ASSERT_FALSE(types.ok());
  EXPECT_TRUE(absl::StrContains(types.status().message(), "itablinks")) << types.status();
}

}  // namespace
}  // namespace goerrprof::testing
