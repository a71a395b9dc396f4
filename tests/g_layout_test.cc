// Wait-reason tables per release: 1.20-1.23 share one array read through
// prefixes, so each release must still see exactly its own list (lengths
// and last entries as in each release's runtime/runtime2.go).
#include "goabi/g_layout.h"

#include "gtest/gtest.h"

namespace goerrprof::goabi {
namespace {

void ExpectTable(GoVersion v, size_t len, std::string_view last) {
  auto g = GLayoutFor(v);
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

}  // namespace
}  // namespace goerrprof::goabi
