// Externally linked (cgo) binaries put C code before Go's text, and from Go
// 1.26 the pclntab header no longer records where Go's text starts. Once
// `strip` removes runtime.text too, only moduledata says it: a stripped copy
// must symbolize exactly like the original, on every release.
#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "symbolizer/go_binary.h"
#include "tests/test_support.h"

namespace goerrprof::testing {
namespace {

void CheckStrippedCopy(const CorpusBinary& b) {
  std::string copy = absl::StrCat(::testing::TempDir(), "/stripped_", b.Label());
  CommandResult s = RunCommand({"strip", "-o", copy, b.path});
  ASSERT_EQ(s.exit_code, 0) << s.err;
  auto orig = symbolizer::GoBinary::Open(b.path);
  auto stripped = symbolizer::GoBinary::Open(copy);
  ASSERT_TRUE(orig.ok()) << orig.status();
  ASSERT_TRUE(stripped.ok()) << stripped.status();
  EXPECT_TRUE((*stripped)->stripped());
  const auto& a = (*orig)->pclntab();
  const auto& c = (*stripped)->pclntab();
  ASSERT_EQ(a.num_functions(), c.num_functions());
  EXPECT_EQ(a.text_start(), c.text_start());
  int differ = 0;
  for (size_t i = 0; i < a.num_functions(); ++i) {
    if (a.FuncEntry(i) != c.FuncEntry(i)) ++differ;
    auto fa = (*orig)->Symbolize(a.FuncEntry(i));
    auto fc = (*stripped)->Symbolize(a.FuncEntry(i));
    if (!fa.ok() || !fc.ok() || *fa != *fc) ++differ;
  }
  EXPECT_EQ(differ, 0);
  std::remove(copy.c_str());
}

}  // namespace
}  // namespace goerrprof::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  goerrprof::testing::RegisterCorpusTests("StrippedExternal", "errgen-cgo", false,
                                          goerrprof::testing::CheckStrippedCopy);
  return RUN_ALL_TESTS();
}
