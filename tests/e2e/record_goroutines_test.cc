// `goerrprof record --goroutines` end to end through the CLI.
// --goroutines=trace: the park profile lands beside the errors profile, the
// overhead warning is printed, and every blocking pattern parktrace reports
// about itself shows up in it under its wait reason. (park_test checks the
// tracer's counts and times exactly; this checks the command's wiring.)
// --goroutines (sample, the default mode): on parked, whose goroutines wait
// for the whole run, every (function, wait reason) of its own dump has
// exactly goroutines x snapshots samples, so its share of the samples is
// its share of the goroutines; with --pid and with -- COMMAND.
#include <chrono>
#include <filesystem>
#include <set>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "pprof/pprof_writer.h"
#include "tests/test_support.h"
#include "pprof/profile_file.h"
#include "tests/goroutines/goroutines_test_util.h"
#include "tests/goroutines/wait_truth.h"

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
  auto rec = Child::Spawn({GoerrprofPath(), "record", "--max_overhead=0", "--goroutines=trace",
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

std::string TempDirFor(const std::string& what) {
  std::string dir = absl::StrCat(::testing::TempDir(), "/record_goroutines_", what, "_", getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

TEST(RecordGoroutines, SampledWaitsOfPid) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root for BPF";
  auto corpus = NewestCorpusBinary(false, "parked", "default");
  ASSERT_TRUE(corpus) << "no parked in the corpus: run scripts/build_go_corpus.sh";
  std::string dir = TempDirFor("sample_pid");
  Truth truth;
  auto child = StartParked(CorpusBinaryPath(*corpus), &truth);
  ASSERT_NE(child, nullptr);
  // A bare --goroutines means sample; --hz as a separate word.
  auto rec = Child::Spawn({GoerrprofPath(), "record", "--max_overhead=0",
                           "--goroutines", "--hz", "50",
                           absl::StrCat("--pid=", child->pid()), "--duration=1s", "-o",
                           dir + "/errors.pb.gz"});
  ASSERT_TRUE(rec.ok()) << rec.status();
  // No overhead warning: sampling sets no probe on the scheduler.
  auto attached = (*rec)->ReadLine(true);
  ASSERT_TRUE(attached.ok()) << attached.status();
  ASSERT_TRUE(absl::StartsWith(*attached, "goerrprof: recording pid")) << *attached;
  auto run = (*rec)->Finish();
  ASSERT_TRUE(run.ok()) << run.status();
  ASSERT_EQ(run->exit_code, 0) << run->err;
  EXPECT_TRUE(absl::StrContains(run->err, "duration elapsed")) << run->err;
  EXPECT_TRUE(absl::StrContains(run->err, " goroutine snapshots at 50 Hz, 0 failed -> " + dir +
                                              "/goroutines.pb.gz"))
      << run->err;
  auto p = profiler::ReadProfile(dir + "/goroutines.pb.gz");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(CommentCounter(*p, "hz"), 50);
  int64_t snapshots = CommentCounter(*p, "snapshots");
  // Ticks at 0, 20ms, ...: never more than duration x 50 + 1 (the
  // profile's duration is the sampling's own: from attach to detach).
  EXPECT_GE(p->duration_nanos(), 1000000000);
  EXPECT_GE(snapshots, 1);
  EXPECT_LE(snapshots, p->duration_nanos() / 20000000 + 1);
  EXPECT_EQ(CommentCounter(*p, "snapshots_failed"), 0);
  int64_t main_samples = 0;
  WaitKeys got = ProfileWaitKeys(*p, &main_samples);
  ExpectExactShares(TruthWaitKeys(truth), got, snapshots, CommentCounter(*p, "torn_skipped"));
  EXPECT_TRUE(profiler::ReadProfile(dir + "/errors.pb.gz").ok());
  child->CloseStdin();
  EXPECT_TRUE(child->Finish().ok());
}

TEST(RecordGoroutines, SampledWaitsOfCommand) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root for BPF";
  auto corpus = NewestCorpusBinary(false, "parked", "default");
  ASSERT_TRUE(corpus) << "no parked in the corpus: run scripts/build_go_corpus.sh";
  std::string dir = TempDirFor("sample_command");
  auto rec = Child::Spawn({GoerrprofPath(), "record", "--max_overhead=0",
                           "--goroutines=sample", "--hz=100", "-o",
                           dir + "/errors.pb.gz", "--", CorpusBinaryPath(*corpus)});
  ASSERT_TRUE(rec.ok()) << rec.status();
  // parked's own output passes through: "ready", its dump, its labels.
  auto ready = (*rec)->ReadLine(false, kTimeout);
  ASSERT_TRUE(ready.ok()) << ready.status();
  ASSERT_TRUE(absl::StartsWith(*ready, "ready ")) << *ready;
  for (;;) {
    auto line = (*rec)->ReadLine(false, kTimeout);
    ASSERT_TRUE(line.ok()) << line.status();
    if (absl::StartsWith(*line, "{\"labels\"")) break;
  }
  // What a followed process's sampling writes, and where; what the
  // snapshots hold is checked exactly against --pid (SampledWaitsOfPid):
  // here they may all fall before parked has parked (no sleep waits them
  // out), so only a consistent profile is asked for.
  (*rec)->CloseStdin();  // parked exits on EOF
  auto run = (*rec)->Finish();
  ASSERT_TRUE(run.ok()) << run.status();
  ASSERT_EQ(run->exit_code, 0) << run->err;
  EXPECT_TRUE(absl::StrContains(run->err, " goroutine snapshots at 100 Hz, 0 failed -> " + dir +
                                              "/goroutines.pb.gz"))
      << run->err;
  auto p = profiler::ReadProfile(dir + "/goroutines.pb.gz");
  ASSERT_TRUE(p.ok()) << p.status();
  // The first snapshot is taken as the probes go in.
  EXPECT_GE(CommentCounter(*p, "snapshots"), 1);
  ASSERT_EQ(p->sample_type_size(), 2);
  EXPECT_EQ(p->string_table(p->sample_type(0).type()), "samples");
  EXPECT_EQ(p->string_table(p->default_sample_type()), "blocked");
}

}  // namespace
}  // namespace goerrprof::testing
