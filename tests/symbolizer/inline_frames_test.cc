// Inlined frames from the pclntab inline tree must match what
// runtime.CallersFrames reported inside the inlframes program about its own
// PCs, on every Go release and build flavour of the corpus.
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "symbolizer/go_binary.h"
#include "tests/test_support.h"

namespace goerrprof::testing {
namespace {

void CheckInlineFrames(const CorpusBinary& b) {
  auto bin = symbolizer::GoBinary::Open(b.path);
  ASSERT_TRUE(bin.ok()) << bin.status();
  CommandResult r = RunCommand({b.path});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto truth = ParseJson(r.out);
  ASSERT_TRUE(truth.ok()) << truth.status() << "\n" << r.out;
  size_t max_depth = 0, compared = 0;
  for (const auto& stack : Get(*truth, "stacks").list_value().values()) {
    const auto& pcs = Get(stack, "pcs").list_value().values();
    const auto& frames = Get(stack, "frames").list_value().values();
    ASSERT_EQ(pcs.size(), frames.size());
    for (int i = 0; i < pcs.size(); ++i) {
      uint64_t pc = 0;
      absl::string_view hex = pcs[i].string_value();
      ASSERT_TRUE(absl::ConsumePrefix(&hex, "0x") && absl::SimpleHexAtoi(hex, &pc));
      // Callers gives return addresses; the call is one byte earlier.
      auto ours = (*bin)->Symbolize(pc - 1);
      ASSERT_TRUE(ours.ok()) << ours.status();
      ASSERT_LE(i + ours->size(), static_cast<size_t>(frames.size()))
          << "more frames than CallersFrames at " << pcs[i].string_value();
      for (size_t k = 0; k < ours->size(); ++k) {
        const auto& want = frames[i + k];
        const auto& got = (*ours)[k];
        EXPECT_EQ(got.function, GetString(want, "function"))
            << pcs[i].string_value() << " frame " << k;
        EXPECT_EQ(got.file, GetString(want, "file")) << pcs[i].string_value() << " frame " << k;
        EXPECT_EQ(got.line, GetInt(want, "line")) << pcs[i].string_value() << " frame " << k;
        ++compared;
      }
      max_depth = std::max(max_depth, ours->size());
    }
  }
  EXPECT_GE(max_depth, 3u) << "no PC with two or more inlined frames was exercised";
  EXPECT_GT(compared, 10u);
}

}  // namespace
}  // namespace goerrprof::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  goerrprof::testing::RegisterCorpusTests("InlineFrames", "inlframes", false, goerrprof::testing::CheckInlineFrames);
  return RUN_ALL_TESTS();
}
