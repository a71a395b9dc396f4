#include "goabi/go_version.h"

#include "gtest/gtest.h"

namespace goerrprof::goabi {
namespace {

TEST(GoVersion, ParsesReleases) {
  EXPECT_EQ(GoVersion::Parse("go1.21.13"), (GoVersion{1, 21, 13}));
  EXPECT_EQ(GoVersion::Parse("go1.21"), (GoVersion{1, 21, 0}));
  EXPECT_EQ(GoVersion::Parse("go1.22rc1"), (GoVersion{1, 22, 0}));
  EXPECT_EQ(GoVersion::Parse("1.19.8"), (GoVersion{1, 19, 8}));
  EXPECT_EQ(GoVersion::Parse("go1.23.0 X:nocoverageredesign"), (GoVersion{1, 23, 0}));
}

TEST(GoVersion, RejectsNonReleases) {
  EXPECT_FALSE(GoVersion::Parse("devel go1.24-abcdef"));
  EXPECT_FALSE(GoVersion::Parse(""));
  EXPECT_FALSE(GoVersion::Parse("gox.y"));
}

TEST(GoVersion, ComparesAsNumbers) {
  EXPECT_LT((GoVersion{1, 9, 0}), (GoVersion{1, 10, 0}));
  EXPECT_TRUE((GoVersion{1, 21, 0}).AtLeast(1, 20));
  EXPECT_FALSE((GoVersion{1, 19, 13}).AtLeast(1, 20));
  EXPECT_EQ((GoVersion{1, 21, 3}).ToString(), "go1.21.3");
}

}  // namespace
}  // namespace goerrprof::goabi
