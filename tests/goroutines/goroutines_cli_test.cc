// `goerrprof goroutines` refusing what it cannot read (a dead pid, a process
// that is not Go, bad flags, no privileges) with one line and a non-zero
// exit; and the pprof builder the goroutine profile uses, on its own.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "pprof/pprof_builder.h"
#include "pprof/profile_file.h"
#include "symbolizer/go_binary.h"
#include "tests/goroutines/goroutines_test_util.h"
#include "tests/test_support.h"

namespace goerrprof::testing {
namespace {

namespace pp = perftools::profiles;

void ExpectOneLineError(const CommandResult& r, const std::vector<std::string>& any_of) {
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(absl::StartsWith(r.err, "goerrprof: ")) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  bool matched = false;
  for (const std::string& s : any_of) matched |= absl::StrContains(r.err, s);
  EXPECT_TRUE(matched) << r.err;
  EXPECT_EQ(r.out, "");
}

CorpusBinary NewestParked() {
  auto corpus = LoadCorpus(false);
  CorpusBinary best;
  if (!corpus.ok()) return best;
  for (const CorpusBinary& b : *corpus) {
    if (b.program == "parked" && b.flavour == "default") best = b;  // manifest is oldest first
  }
  return best;
}

// The builder the goroutine profile uses, on its own: two binaries in one
// profile keep their own mappings and locations; return addresses get
// pc-1 and the call's lines.
TEST(PprofBuilder, TwoBinaries) {
  auto corpus = LoadCorpus(false);
  ASSERT_TRUE(corpus.ok()) << corpus.status();
  std::vector<std::string> paths;
  for (const CorpusBinary& b : *corpus) {
    if (b.program == "parked" && b.flavour == "default") paths.push_back(b.path);
  }
  ASSERT_GE(paths.size(), 2u);
  auto a = symbolizer::GoBinary::Open(paths.front());
  auto b = symbolizer::GoBinary::Open(paths.back());
  ASSERT_TRUE(a.ok() && b.ok());
  profiler::PprofBuilder builder;
  builder.AddSampleType("things", "count");
  auto ia = builder.AddBinary(**a, "a");
  auto ib = builder.AddBinary(**b, "b");
  ASSERT_TRUE(ia.ok() && ib.ok());
  EXPECT_NE(*ia, *ib);
  // A PC inside main.startReceivers in each (not its entry).
  auto pc_of = [](const symbolizer::GoBinary& bin) {
    const symbolizer::Pclntab& t = bin.pclntab();
    for (size_t i = 0; i < t.num_functions(); ++i) {
      if (t.FuncName(i) == "main.startReceivers") return t.FuncEntry(i) + 4;
    }
    return uint64_t{0};
  };
  uint64_t pa = pc_of(**a), pb = pc_of(**b);
  ASSERT_NE(pa, 0u);
  ASSERT_NE(pb, 0u);
  uint64_t la = builder.Location(*ia, pa, false), lb = builder.Location(*ib, pb, true);
  EXPECT_EQ(builder.Location(*ia, pa, false), la);  // interned
  EXPECT_NE(builder.Location(*ia, pa, true), la);   // a return address is another location
  EXPECT_NE(la, lb);
  perftools::profiles::Sample* s = builder.AddSample(*ib, std::vector<uint64_t>{pb, pb});
  s->add_value(1);
  builder.Label(s, "k", "v");
  builder.NumLabel(s, "n", 7, "bytes");
  pp::Profile p = builder.Release();
  std::map<uint64_t, std::string> mapping_file;
  for (const pp::Mapping& m : p.mapping()) mapping_file[m.id()] = p.string_table(m.filename());
  std::map<uint64_t, const pp::Location*> locs;
  for (const pp::Location& l : p.location()) locs[l.id()] = &l;
  EXPECT_EQ(mapping_file[locs[la]->mapping_id()], "a");
  EXPECT_EQ(mapping_file[locs[lb]->mapping_id()], "b");
  EXPECT_EQ(locs[la]->address(), pa);
  EXPECT_EQ(locs[lb]->address(), pb - 1);
  auto frames = (*b)->Symbolize(pb - 1);
  ASSERT_TRUE(frames.ok());
  ASSERT_EQ(locs[lb]->line_size(), static_cast<int>(frames->size()));
  EXPECT_EQ(locs[lb]->line(0).line(), frames->front().line);
  ASSERT_EQ(p.sample_size(), 1);
  // The sample's first PC is the leaf (pc itself), the second a return.
  EXPECT_EQ(locs[p.sample(0).location_id(0)]->address(), pb);
  EXPECT_EQ(locs[p.sample(0).location_id(1)]->address(), pb - 1);

  char dir[] = "/tmp/pprof_builder_test.XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::string out = absl::StrCat(dir, "/p.pb.gz");
  ASSERT_TRUE(profiler::WriteProfileFile(p, out).ok());
  auto back = profiler::ReadProfile(out);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->SerializeAsString(), p.SerializeAsString());
  std::vector<std::string> argv = kPprof;
  argv.insert(argv.end(), {"-raw", out});
  CommandResult r = RunCommand(argv, 300);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "main.startReceivers")) << r.out;
  std::remove(out.c_str());
  rmdir(dir);
}

TEST(GoroutinesCli, DeadPid) {
  // A pid that existed and is gone: our own reaped child.
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) _exit(0);
  ASSERT_EQ(waitpid(pid, nullptr, 0), pid);
  ExpectOneLineError(
      RunCommand({GoerrprofPath(), "goroutines", absl::StrCat("--pid=", pid), "--text"}, kTimeout),
      {"no process"});
}

TEST(GoroutinesCli, NotAGoProcess) {
  auto sleeper = Child::Spawn({"/bin/cat"});  // blocks on its stdin
  ASSERT_TRUE(sleeper.ok()) << sleeper.status();
  ExpectOneLineError(RunCommand({GoerrprofPath(), "goroutines",
                                 absl::StrCat("--pid=", (*sleeper)->pid()), "--text"},
                                kTimeout),
                     {"not a Go binary", "Go"});
}

TEST(GoroutinesCli, BadFlags) {
  ExpectOneLineError(RunCommand({GoerrprofPath(), "goroutines", "--text"}, kTimeout),
                     {"needs --pid"});
  ExpectOneLineError(RunCommand({GoerrprofPath(), "goroutines", "--pid=abc"}, kTimeout),
                     {"invalid pid"});
}

TEST(GoroutinesCli, WithoutPrivileges) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to start a target another user cannot read";
  CorpusBinary b = NewestParked();
  ASSERT_FALSE(b.path.empty()) << "no parked binary in the corpus";
  Truth truth;
  auto child = StartParked(b.path, &truth);  // root's
  ASSERT_NE(child, nullptr);
  CommandResult r = RunCommand({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                GoerrprofPath(), "goroutines",
                                absl::StrCat("--pid=", child->pid()), "--text"},
                               kTimeout);
  // Root's process, to nobody: the capability that would allow it, named.
  EXPECT_EQ(r.err, absl::StrCat("goerrprof: process ", child->pid(),
                                " is another user's or more privileged: reading it needs "
                                "CAP_SYS_PTRACE\n"));
  ExpectOneLineError(r, {"CAP_SYS_PTRACE"});
  ASSERT_TRUE(child->Write("quit\n").ok());
  auto done = child->Finish(kTimeout);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->exit_code, 0) << done->err;
}

}  // namespace
}  // namespace goerrprof::testing
