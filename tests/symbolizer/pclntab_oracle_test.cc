// The function table and pc→file:line of every corpus binary (each Go
// release × default/stripped/PIE/cgo, and the esbuild binaries) must equal
// what Go's own debug/gosym reports.
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "symbolizer/go_binary.h"
#include "tests/test_support.h"

namespace goerrprof::testing {
namespace {

constexpr int kMaxReported = 10;

uint64_t Hex(absl::string_view s) {
  uint64_t v = 0;
  absl::ConsumePrefix(&s, "0x");
  EXPECT_TRUE(absl::SimpleHexAtoi(s, &v)) << s;
  return v;
}

void CompareWithOracle(const CorpusBinary& b) {
  auto bin = symbolizer::GoBinary::Open(b.path);
  ASSERT_TRUE(bin.ok()) << bin.status();
  const symbolizer::Pclntab& tab = (*bin)->pclntab();
  CommandResult oracle = RunCommand({OraclePath(), b.path}, 300);
  ASSERT_EQ(oracle.exit_code, 0) << oracle.err;

  size_t funcs = 0, pcs = 0, mismatches = 0, no_line_table = 0;
  auto report = [&](const std::string& what) {
    if (++mismatches <= kMaxReported) ADD_FAILURE() << b.path << ": " << what;
  };
  for (absl::string_view line : absl::StrSplit(oracle.out, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> f = absl::StrSplit(line, '\t');
    if (f[0] == "F" && f.size() == 4) {
      uint64_t entry = Hex(f[1]), end = Hex(f[2]);
      if (funcs >= tab.num_functions()) {
        report(absl::StrCat("oracle has more functions than ", tab.num_functions()));
        continue;
      }
      if (tab.FuncEntry(funcs) != entry || tab.FuncEnd(funcs) != end ||
          tab.FuncName(funcs) != f[3]) {
        report(absl::StrCat("function ", funcs, ": oracle ", f[3], " [", f[1], ",", f[2],
                            ") ours ", tab.FuncName(funcs), " [0x",
                            absl::Hex(tab.FuncEntry(funcs)), ",0x", absl::Hex(tab.FuncEnd(funcs)),
                            ")"));
      }
      ++funcs;
    } else if (f[0] == "P" && f.size() == 5) {
      ++pcs;
      uint64_t pc = Hex(f[1]);
      int line_no = 0;
      EXPECT_TRUE(absl::SimpleAtoi(f[3], &line_no));
      auto frames = (*bin)->Symbolize(pc);
      if (!frames.ok() || frames->empty()) {
        report(absl::StrCat(f[1], ": oracle ", f[4], " ", f[2], ":", f[3], ", ours: ",
                            frames.status().ToString()));
        continue;
      }
      const auto& inner = frames->front();
      // No line table: the runtime answers "unknown" (our line 0), while
      // debug/gosym decodes a zero table offset as if it were a table and
      // returns -1 or garbage. Both sides must still agree there is no file.
      if (f[2].empty() && inner.file.empty() && inner.line == 0 &&
          frames->back().function == f[4]) {
        ++no_line_table;
        continue;
      }
      if (inner.file != f[2] || inner.line != line_no || frames->back().function != f[4]) {
        report(absl::StrCat(f[1], ": oracle ", f[4], " ", f[2], ":", f[3], ", ours ",
                            frames->back().function, " ", inner.file, ":", inner.line));
      }
    }
  }
  ::testing::Test::RecordProperty("pcs_without_line_table", static_cast<int>(no_line_table));
  // End-1 of most functions is alignment padding, which has no line entry.
  EXPECT_LT(no_line_table, pcs / 2) << "too many PCs without line tables";
  EXPECT_EQ(funcs, tab.num_functions()) << "function count differs from debug/gosym";
  EXPECT_GT(pcs, funcs) << "oracle compared too few PCs";
  EXPECT_EQ(mismatches, 0u) << mismatches << " of " << funcs << " functions + " << pcs
                            << " PCs differ";
}

}  // namespace
}  // namespace goerrprof::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  goerrprof::testing::RegisterCorpusTests("Oracle", "*", true, goerrprof::testing::CompareWithOracle);
  return RUN_ALL_TESTS();
}
