// ELF and pclntab tables whose counts or names multiply the work: found by
// reading the readers (issue 12). Each shape is built at run time and
// must be read, or refused with one line, in seconds and megabytes.
#include <elf.h>

#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "symbolizer/elf_file.h"
#include "symbolizer/error_types.h"
#include "symbolizer/go_binary.h"
#include "tests/bounded_child.h"
#include "tests/synthetic_go_binary.h"

namespace goerrprof::testing {
namespace {

constexpr int kTimeLimit = 10;
constexpr int64_t kRssLimitKb = 256 << 10;

absl::Span<const uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Every address lookup walks the PT_LOADs: thousands of them multiplied
// all work. More than a real executable has is refused.
TEST(BoundedElf, TooManyLoadableSegments) {
  ElfWriter w;
  for (int i = 0; i < 100; ++i) w.AddSegment(0x400000 + 0x1000 * i, PF_R, std::string(8, 'x'));
  std::string bytes = w.Write();
  auto elf = symbolizer::ElfFile::FromBytes("segments", Bytes(bytes));
  ASSERT_FALSE(elf.ok());
  EXPECT_TRUE(absl::StrContains(elf.status().message(), "loadable segments")) << elf.status();
}

// 30 000 symbols whose names are the suffixes of one 1 MB run: each used
// to be copied (30 GB). Names stay in the file now, long ones unkept.
TEST(BoundedElf, SymbolNamesAreSuffixesOfOneRun) {
  constexpr uint64_t kText = 0x401000, kStr = 0x500000, kSym = 0x700000;
  std::string strtab = std::string(1, '\0') + "runtime.text" + '\0';
  uint32_t run = static_cast<uint32_t>(strtab.size());
  strtab += std::string(1 << 20, 'x') + '\0';
  std::string symtab(sizeof(Elf64_Sym), '\0');  // symbol 0 is null
  for (uint32_t k = 0; k <= 30000; ++k) {
    Elf64_Sym sym{};
    sym.st_name = k == 0 ? 1 : run + k;
    sym.st_value = kText;
    symtab.append(reinterpret_cast<const char*>(&sym), sizeof(sym));
  }
  ElfWriter w;
  w.AddSegment(kText, PF_R | PF_X, std::string(64, '\xcc'));
  w.AddSegment(kStr, PF_R, strtab);
  w.AddSegment(kSym, PF_R, symtab);
  w.AddSection(".strtab", SHT_STRTAB, 0, kStr, strtab.size());
  w.AddSection(".symtab", SHT_SYMTAB, 0, kSym, symtab.size(), /*link=*/1, sizeof(Elf64_Sym));
  std::string bytes = w.Write();
  BoundedRun run_ = RunInChild(
      [&] {
        auto elf = symbolizer::ElfFile::FromBytes("symbols", Bytes(bytes));
        if (!elf.ok()) return 2;
        return (*elf)->LookupSymbol("runtime.text") == kText ? 0 : 3;
      },
      kTimeLimit);
  EXPECT_TRUE(run_.finished && run_.exit_code == 0) << run_.Describe();
  EXPECT_LT(run_.rss_growth_kb, kRssLimitKb) << run_.Describe();
}

// 20 000 sections named by suffixes of one 1 MB name: each name used to
// be copied in full.
TEST(BoundedElf, SectionNamesAreSuffixesOfOneRun) {
  ElfWriter w;
  w.AddSegment(0x401000, PF_R | PF_X, std::string(64, '\xcc'));
  w.AddSection(std::string(1 << 20, 's'), SHT_PROGBITS, 0, 0x401000, 0);
  for (int i = 0; i < 20000; ++i) w.AddSection("x", SHT_PROGBITS, 0, 0x401000, 0);
  std::string bytes = w.Write();
  Elf64_Ehdr eh;
  std::memcpy(&eh, bytes.data(), sizeof(eh));
  for (uint32_t i = 2; i + 1 < eh.e_shnum; ++i) {  // ours after the long one; .shstrtab last
    uint32_t name = 1 + i;  // a suffix of the long name, which starts at offset 1
    std::memcpy(&bytes[eh.e_shoff + i * sizeof(Elf64_Shdr)], &name, 4);
  }
  BoundedRun run = RunInChild(
      [&] {
        auto elf = symbolizer::ElfFile::FromBytes("sections", Bytes(bytes));
        return elf.ok() && (*elf)->sections().size() == 20002 ? 0 : 2;
      },
      kTimeLimit);
  EXPECT_TRUE(run.finished && run.exit_code == 0) << run.Describe();
  EXPECT_LT(run.rss_growth_kb, kRssLimitKb) << run.Describe();
}

// 40 000 functions whose names run into each other (no NUL in 2.5 MB of
// names): every name lookup used to scan to the table's end, and the
// readers look up every function's name (cgo detection, runtime.allgs).
TEST(BoundedElf, FunctionNamesWithoutEnds) {
  SyntheticGoOptions o;
  o.functions.clear();
  for (int i = 0; i < 40000; ++i) {
    o.functions.push_back(absl::StrCat("main.a_function_with_a_name_long_enough_to_matter_", i));
  }
  std::string bytes = BuildSyntheticGoBinary(o);
  auto clean = symbolizer::GoBinary::FromBytes("names", Bytes(bytes));
  ASSERT_TRUE(clean.ok()) << clean.status();
  uint64_t hdr = 0;
  for (const auto& seg : (*clean)->elf().loads()) {
    uint64_t a = (*clean)->pclntab().address();
    if (a >= seg.vaddr && a < seg.vaddr + seg.filesz) hdr = seg.offset + a - seg.vaddr;
  }
  uint64_t names = hdr + *reinterpret_cast<const uint64_t*>(&bytes[hdr + 32]);
  uint64_t cutab = hdr + *reinterpret_cast<const uint64_t*>(&bytes[hdr + 40]);
  std::fill(bytes.begin() + names, bytes.begin() + cutab, 'x');
  BoundedRun run = RunInChild(
      [&] {
        auto bin = symbolizer::GoBinary::FromBytes("names", Bytes(bytes));
        if (!bin.ok()) return 2;
        for (size_t i = 0; i < (*bin)->pclntab().num_functions(); ++i) {
          (void)(*bin)->pclntab().FuncName(i);
        }
        // A name with no end in sight reads as none.
        return (*bin)->pclntab().FuncName(0).empty() ? 0 : 3;
      },
      kTimeLimit);
  EXPECT_TRUE(run.finished && run.exit_code == 0) << run.Describe();
  EXPECT_LT(run.rss_growth_kb, kRssLimitKb) << run.Describe();
}

// 100 000 itabs of one error type for an interface with a 60 KB name:
// each itab used to read the name again and keep a copy (6 GB).
TEST(BoundedElf, ItabsNamingOneLongInterface) {
  SyntheticGoOptions o;
  o.go_version = "go1.22.12";
  o.itab_copies = 100000;
  o.error_name_bytes = 60000;
  std::string bytes = BuildSyntheticGoBinary(o);
  BoundedRun run = RunInChild(
      [&] {
        auto bin = symbolizer::GoBinary::FromBytes("itabs", Bytes(bytes));
        if (!bin.ok()) return 2;
        auto types = (*bin)->types();
        if (!types.ok()) return 3;
        auto found = symbolizer::FindErrorTypes(**types);
        if (found.ok()) return 4;
        return absl::StrContains(found.status().message(), "interface") ? 0 : 5;
      },
      kTimeLimit);
  EXPECT_TRUE(run.finished && run.exit_code == 0) << run.Describe();
  EXPECT_LT(run.rss_growth_kb, kRssLimitKb) << run.Describe();
}

// 20 000 relocation sections over the same 4 MB of relocations: each used
// to be applied (3.5 billion inserts). All sections together are read at
// most the file's size.
TEST(BoundedElf, OverlappingRelocationSections) {
  constexpr uint64_t kText = 0x401000, kRela = 0x500000;
  std::string relas;
  for (uint64_t i = 0; i < (4 << 20) / sizeof(Elf64_Rela); ++i) {
    Elf64_Rela r{};
    r.r_offset = kRela + 8 * i;
    r.r_info = ELF64_R_INFO(0, 8);  // R_X86_64_RELATIVE
    r.r_addend = static_cast<int64_t>(kText);
    relas.append(reinterpret_cast<const char*>(&r), sizeof(r));
  }
  ElfWriter w;
  w.AddSegment(kText, PF_R | PF_X, std::string(64, '\xcc'));
  w.AddSegment(kRela, PF_R, relas);
  for (int i = 0; i < 20000; ++i) w.AddSection(".rela", SHT_RELA, 0, kRela, relas.size());
  std::string bytes = w.Write();
  BoundedRun run = RunInChild(
      [&] {
        auto elf = symbolizer::ElfFile::FromBytes("relas", Bytes(bytes));
        return elf.ok() && (*elf)->HasRelocationAt(kRela) ? 0 : 2;
      },
      kTimeLimit);
  EXPECT_TRUE(run.finished && run.exit_code == 0) << run.Describe();
  EXPECT_LT(run.rss_growth_kb, kRssLimitKb) << run.Describe();
}

}  // namespace
}  // namespace goerrprof::testing
