// `goerrprof record --goroutines` end to end through the CLI: the park
// profile lands beside the errors profile, the overhead warning is printed,
// and every blocking pattern parktrace reports about itself shows up in it
// under its wait reason. (park_test checks the tracer's counts and times
// exactly; this checks the command's wiring.)
#include <filesystem>
#include <set>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "pprof/pprof_writer.h"
#include "tests/test_support.h"
#include "pprof/profile_file.h"

namespace goerrprof::testing {
namespace {

TEST(RecordGoroutines, ParkProfileBesideErrors) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root for BPF";
  auto corpus = LoadCorpus(false);
  ASSERT_TRUE(corpus.ok()) << corpus.status();
  std::string target;
  for (const CorpusBinary& b : *corpus) {
    if (b.program == "parktrace" && b.flavour == "stripped") target = b.path;  // newest last
  }
  ASSERT_FALSE(target.empty()) << "no parktrace in the corpus: run scripts/build_go_corpus.sh";
  std::string dir = absl::StrCat(::testing::TempDir(), "/record_goroutines_", getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);

  auto child = Child::Spawn({target});
  ASSERT_TRUE(child.ok()) << child.status();
  auto ready = (*child)->ReadLine(false);
  ASSERT_TRUE(ready.ok()) << ready.status();
  ASSERT_EQ(*ready, absl::StrCat("ready ", (*child)->pid()));
  auto rec = Child::Spawn({GoerrprofPath(), "record", "--goroutines",
                           absl::StrCat("--pid=", (*child)->pid()), "-o", dir + "/errors.pb.gz"});
  ASSERT_TRUE(rec.ok()) << rec.status();
  auto warning = (*rec)->ReadLine(true);
  ASSERT_TRUE(warning.ok()) << warning.status();
  EXPECT_TRUE(absl::StartsWith(*warning, "goerrprof: warning: --goroutines")) << *warning;
  EXPECT_TRUE(absl::StrContains(*warning, " us per park")) << *warning;
  auto attached = (*rec)->ReadLine(true);
  ASSERT_TRUE(attached.ok()) << attached.status();
  ASSERT_TRUE(absl::StrContains(*attached, "recording pid")) << *attached;

  ASSERT_TRUE((*child)->Write("go\n").ok());
  auto truth_line = (*child)->ReadLine(false, 120);
  ASSERT_TRUE(truth_line.ok()) << truth_line.status();
  auto truth = ParseJson(*truth_line);
  ASSERT_TRUE(truth.ok()) << truth.status() << *truth_line;
  ASSERT_TRUE((*child)->Write("\n").ok());
  auto done = (*child)->Finish();
  ASSERT_TRUE(done.ok()) << done.status();
  auto run = (*rec)->Finish();
  ASSERT_TRUE(run.ok()) << run.status();
  ASSERT_EQ(run->exit_code, 0) << run->err;
  EXPECT_TRUE(absl::StrContains(run->err, "goroutine parks, 0 dropped -> " + dir +
                                              "/goroutines.pb.gz"))
      << run->err;

  auto parks = profiler::ReadProfile(dir + "/goroutines.pb.gz");
  ASSERT_TRUE(parks.ok()) << parks.status();
  auto str = [&](int64_t i) { return parks->string_table(static_cast<int>(i)); };
  std::set<std::string> functions, reasons;
  for (const auto& f : parks->function()) functions.insert(str(f.name()));
  for (const auto& s : parks->sample()) {
    for (const auto& l : s.label()) {
      if (str(l.key()) == "goroutine.wait_reason") reasons.insert(str(l.str()));
    }
  }
  int patterns = 0;
  for (const auto& p : Get(*truth, "patterns").list_value().values()) {
    ++patterns;
    EXPECT_TRUE(functions.contains(GetString(p, "function"))) << GetString(p, "function");
    EXPECT_TRUE(reasons.contains(GetString(p, "wait_reason"))) << GetString(p, "wait_reason");
  }
  EXPECT_GE(patterns, 4);
  auto errors = profiler::ReadProfile(dir + "/errors.pb.gz");
  EXPECT_TRUE(errors.ok()) << errors.status();
}

}  // namespace
}  // namespace goerrprof::testing
