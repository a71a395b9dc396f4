// `goerrprof record -- COMMAND` and `goerrprof diff` as a CI job uses them,
// with real BPF: `go test ./...` on testdata/ci_module is recorded as is,
// again, and with GOERRPROF_REGRESS=1 (a new error site, another doubled);
// counts per site equal what the test binaries wrote about themselves;
// diff passes the first pair and fails the second naming the sites; exit
// codes, stdin/stdout and signals pass through the recorder.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "pprof/pprof_writer.h"
#include "tests/test_support.h"
#include "pprof/labels.h"
#include "pprof/profile_file.h"

namespace goerrprof::testing {
namespace {

using perftools::profiles::Profile;

constexpr char kModulePrefix[] = "goerrprof.test/cimodule/";

bool IsRoot() { return geteuid() == 0; }

std::string ModuleDir() { return std::string(GOERRPROF_SOURCE_DIR) + "/testdata/ci_module"; }

// The go command the corpus is built with (scripts/build_go_corpus.sh).
std::string GoCommand() {
  if (access("/usr/local/go/bin/go", X_OK) == 0) return "/usr/local/go/bin/go";
  return "go";
}

std::string NewDir(const std::string& name) {
  std::string dir = absl::StrCat(::testing::TempDir(), "/ci_", name, "_", getpid());
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// `goerrprof record -o out -- env VARS go test -count=1 ./...` on the module.
// VARS come last, so they override the defaults.
CommandResult RecordGoTest(const std::string& out, const std::string& truth_dir,
                           const std::vector<std::string>& vars,
                           const std::string& module = ModuleDir()) {
  std::vector<std::string> argv = {GoerrprofPath(), "record", "--max_overhead=0",
                                   "-o", out, "--", "env",
                                   "GOTOOLCHAIN=local", "GOFLAGS=-mod=mod",
                                   absl::StrCat("GOERRPROF_TRUTH_DIR=", truth_dir)};
  argv.insert(argv.end(), vars.begin(), vars.end());
  for (const std::string& a : {GoCommand(), std::string("-C"), module, std::string("test"),
                               std::string("-count=1"), std::string("./...")}) {
    argv.push_back(a);
  }
  return RunCommand(argv, 600);
}

struct Sample {
  std::string site;  // first frame from the leaf inside the module
  // Made while writing the truth file (epoll refuses regular files: EPERM),
  // which the truth cannot count.
  bool truth_writer = false;
  std::string type, binary;
  int64_t pid = 0, count = 0;
};

std::vector<Sample> Samples(const Profile& p) {
  std::vector<Sample> out;
  for (const ProfileSample& s : ProfileSamples(p)) {
    Sample x;
    x.count = s.value;
    for (const std::string& fn : s.functions) {
      if (x.site.empty() && absl::StartsWith(fn, kModulePrefix)) x.site = fn;
      if (fn == "goerrprof.test/cimodule.WriteTruth") x.truth_writer = true;
    }
    if (auto t = s.labels.find(profiler::kLabelType); t != s.labels.end()) x.type = t->second;
    if (auto b = s.labels.find(profiler::kLabelBinary); b != s.labels.end()) x.binary = b->second;
    if (auto n = s.num_labels.find(profiler::kLabelPid); n != s.num_labels.end()) x.pid = n->second;
    out.push_back(x);
  }
  return out;
}

// Each test binary's truth file: {"pid": N, "sites": {"pkg.Func": count}}.
struct Truth {
  std::map<std::string, int64_t> sites;
  std::map<std::string, int64_t> pids;  // test binary name -> pid
};

Truth ReadTruth(const std::string& dir) {
  Truth t;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::ifstream in(entry.path());
    std::stringstream text;
    text << in.rdbuf();
    auto v = ParseJson(text.str());
    EXPECT_TRUE(v.ok()) << entry.path() << ": " << v.status();
    if (!v.ok()) continue;
    t.pids[entry.path().stem().string() + ".test"] = GetInt(*v, "pid");
    for (const auto& [fn, n] : Get(*v, "sites").struct_value().fields()) {
      t.sites[fn] += static_cast<int64_t>(n.number_value());
    }
  }
  return t;
}

// Records one `go test` run and checks the profile against its truth.
// `summary` (when given) receives goerrprof's stderr.
void RecordAndCheck(const std::string& name, const std::vector<std::string>& vars,
                    std::string* profile_path, const std::string& module = ModuleDir(),
                    std::string* summary = nullptr) {
  std::string dir = NewDir(name);
  std::string truth_dir = dir + "/truth";
  std::filesystem::create_directories(truth_dir);
  *profile_path = dir + "/errors.pb.gz";
  CommandResult r = RecordGoTest(*profile_path, truth_dir, vars, module);
  if (summary) *summary = r.err;
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  // go test's own output passes through untouched.
  EXPECT_TRUE(absl::StrContains(r.out, "ok  \tgoerrprof.test/cimodule/store")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.err, "command exited with 0")) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, ", 0 dropped")) << r.err;
  Truth truth = ReadTruth(truth_dir);
  ASSERT_EQ(truth.pids.size(), 2u) << "truth files in " << truth_dir;

  auto profile = profiler::ReadProfile(*profile_path);
  ASSERT_TRUE(profile.ok()) << profile.status();
  std::map<std::string, int64_t> got;
  std::set<std::string> binaries;
  for (const Sample& s : Samples(*profile)) {
    binaries.insert(s.binary);
    // Each test binary is labelled with its own name and pid.
    ASSERT_TRUE(truth.pids.contains(s.binary)) << "sample of " << s.binary;
    EXPECT_EQ(s.pid, truth.pids[s.binary]) << s.binary;
    if (!s.site.empty() && !s.truth_writer) got[s.site] += s.count;
  }
  EXPECT_EQ(got, truth.sites);
  EXPECT_EQ(binaries, (std::set<std::string>{"parse.test", "store.test"}));
}

CommandResult Diff(const std::string& base, const std::string& now) {
  return RunCommand({GoerrprofPath(), "diff", base, now});
}

TEST(CiRecord, GoTestAgainstTruthAndDiff) {
  if (!IsRoot()) GTEST_SKIP() << "needs root for BPF";
  std::string base, again, regressed;
  ASSERT_NO_FATAL_FAILURE(RecordAndCheck("base", {}, &base));
  ASSERT_NO_FATAL_FAILURE(RecordAndCheck("again", {}, &again));
  ASSERT_NO_FATAL_FAILURE(RecordAndCheck("regressed", {"GOERRPROF_REGRESS=1"}, &regressed));

  CommandResult same = Diff(base, again);
  EXPECT_EQ(same.exit_code, 0) << same.out << same.err;

  CommandResult worse = Diff(base, regressed);
  EXPECT_EQ(worse.exit_code, 1) << worse.out << worse.err;
  // The new site and the doubled one are named.
  EXPECT_TRUE(absl::StrContains(worse.out, "cimodule/store.(*Store).Put")) << worse.out;
  EXPECT_TRUE(absl::StrContains(worse.out, "cimodule/store.(*Store).Get")) << worse.out;
  EXPECT_FALSE(absl::StrContains(worse.out, "cimodule/parse.HostPort")) << worse.out;

  // The README's CI step: a Markdown summary for the job page.
  CommandResult md = RunCommand({GoerrprofPath(), "diff", "--markdown", base, regressed});
  EXPECT_EQ(md.exit_code, 1) << md.err;
  EXPECT_TRUE(absl::StartsWith(md.out, "### goerrprof diff: 3 regressions")) << md.out;
  // Put's two new errors: the *ReadOnlyError given to fmt.Errorf's %w and
  // the wrapper fmt.Errorf makes of it (both inside inlined fmt code).
  for (const char* type : {"*store.ReadOnlyError", "*fmt.wrapError"}) {
    EXPECT_TRUE(absl::StrContains(
        md.out, absl::StrCat("goerrprof.test/cimodule/store.(*Store).Put` | `",
                             ModuleDir(), "/store/store.go:39` | `", type, "` | 0 | 3 | new |")))
        << type << "\n" << md.out;
  }
  EXPECT_TRUE(absl::StrContains(md.out, "| **FAIL** | growth | "
                                        "`goerrprof.test/cimodule/store.(*Store).Get`"))
      << md.out;

  // The profiles stay usable with pprof's own comparison.
  CommandResult pprof = RunCommand(
      {GoCommand(), "tool", "pprof", "-top", "-diff_base", base, regressed}, 120);
  EXPECT_EQ(pprof.exit_code, 0) << pprof.err;
  EXPECT_TRUE(absl::StrContains(pprof.out, "(*Store).Put")) << pprof.out;
}

// The newest release of the corpus (testdata/go_binaries/versions.txt).
std::string NewestCorpusRelease() {
  std::ifstream in(std::string(GOERRPROF_SOURCE_DIR) + "/testdata/go_binaries/versions.txt");
  std::string line, last;
  while (std::getline(in, line)) {
    if (!line.empty() && line[0] != '#') last = line;
  }
  return last;
}

// A module asking for a newer Go than the installed one makes `go` fetch
// that release and exec it in place (same pid, from whichever thread ran
// the download). The tree must still be followed: the test binaries the
// new release builds are recorded, and equal their truth.
TEST(CiRecord, GoTestAcrossToolchainSwitch) {
  if (!IsRoot()) GTEST_SKIP() << "needs root for BPF";
  const std::string release = NewestCorpusRelease();
  CommandResult local = RunCommand({"env", "GOTOOLCHAIN=local", GoCommand(), "env", "GOVERSION"});
  ASSERT_EQ(local.exit_code, 0) << local.err;
  std::string installed(absl::StripAsciiWhitespace(local.out));
  if (VersionKey(installed) >= VersionKey("go" + release)) {
    GTEST_SKIP() << "the installed " << installed << " is not older than go" << release
                 << ": no toolchain switch to test";
  }
  std::string dir = NewDir("switch");
  std::string module = dir + "/module", cache = dir + "/modcache";
  std::filesystem::copy(ModuleDir(), module, std::filesystem::copy_options::recursive);
  {
    std::ofstream mod(module + "/go.mod", std::ios::app);
    mod << "\ntoolchain go" << release << "\n";
  }
  const std::vector<std::string> vars = {"GOTOOLCHAIN=auto", "GOMODCACHE=" + cache};
  std::string profile, summary;
  // go.mod's toolchain line, with the release not yet fetched: a download.
  ASSERT_NO_FATAL_FAILURE(RecordAndCheck("switch_gomod", vars, &profile, module, &summary));
  EXPECT_TRUE(absl::StrContains(summary, "go: downloading go" + release)) << summary;
  // env and the installed go are not recorded; the test binaries are.
  EXPECT_TRUE(absl::StrContains(summary, " in 2 Go processes (")) << summary;
  EXPECT_TRUE(absl::StrContains(summary, " toolchain, 1 non-Go and 0 failed not recorded)"))
      << summary;
  // GOTOOLCHAIN naming the release, the module as it is (now from the cache).
  ASSERT_NO_FATAL_FAILURE(RecordAndCheck(
      "switch_env", {"GOTOOLCHAIN=go" + release, "GOMODCACHE=" + cache}, &profile, ModuleDir(),
      &summary));
  EXPECT_TRUE(absl::StrContains(summary, " in 2 Go processes (")) << summary;
  // The module cache is read-only by design.
  RunCommand({"chmod", "-R", "u+w", cache});
  std::filesystem::remove_all(dir);
}

TEST(CiRecord, FailingTestExitCodePassesThrough) {
  if (!IsRoot()) GTEST_SKIP() << "needs root for BPF";
  std::string dir = NewDir("failing");
  CommandResult r = RecordGoTest(dir + "/errors.pb.gz", dir, {"GOERRPROF_FAIL=1"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "failing on purpose")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.err, "command exited with 1")) << r.err;
  auto profile = profiler::ReadProfile(dir + "/errors.pb.gz");
  ASSERT_TRUE(profile.ok()) << profile.status();
  EXPECT_GT(profile->sample_size(), 0);
}

// The first instructions of a recorded command are seen: errgen's
// package-level errors.New runs in main's init, before main. Stdin and
// stdout go straight to the command.
TEST(CiRecord, CommandErrorsFromItsFirstInstruction) {
  if (!IsRoot()) GTEST_SKIP() << "needs root for BPF";
  auto corpus = LoadCorpus(false);
  ASSERT_TRUE(corpus.ok()) << corpus.status();
  std::string errgen;
  for (const CorpusBinary& b : *corpus) {
    if (b.program == "errgen" && b.flavour == "stripped") errgen = b.path;
  }
  ASSERT_FALSE(errgen.empty());
  std::string out = NewDir("first") + "/errors.pb.gz";
  auto rec = Child::Spawn({GoerrprofPath(), "record", "--max_overhead=0",
                           "-o", out, "--", errgen, "-wait"});
  ASSERT_TRUE(rec.ok()) << rec.status();
  auto ready = (*rec)->ReadLine(false);  // errgen's own stdout, through goerrprof
  ASSERT_TRUE(ready.ok()) << ready.status();
  ASSERT_TRUE(absl::StartsWith(*ready, "ready ")) << *ready;
  ASSERT_TRUE((*rec)->Write("go\n").ok());  // errgen's stdin, through goerrprof
  auto run = (*rec)->Finish();
  ASSERT_TRUE(run.ok()) << run.status();
  ASSERT_EQ(run->exit_code, 0) << run->err;
  auto truth = ParseJson(run->out);
  ASSERT_TRUE(truth.ok()) << truth.status() << run->out;
  const std::string pid(absl::StripPrefix(*ready, "ready "));
  EXPECT_EQ(absl::StrCat(GetInt(*truth, "pid")), pid);

  auto profile = profiler::ReadProfile(out);
  ASSERT_TRUE(profile.ok()) << profile.status();
  auto str = [&](int64_t i) { return profile->string_table(static_cast<int>(i)); };
  int64_t init_errors = 0, total = 0;
  for (const auto& s : profile->sample()) {
    total += s.value(0);
    std::string message, label_pid;
    for (const auto& l : s.label()) {
      if (str(l.key()) == profiler::kLabelMessage) message = str(l.str());
      if (str(l.key()) == profiler::kLabelPid) label_pid = absl::StrCat(l.num());
    }
    EXPECT_EQ(label_pid, pid);
    if (message == "errgen: created during init") init_errors += s.value(0);
  }
  EXPECT_EQ(init_errors, 1);
  int64_t want = 0;
  for (const auto& sc : Get(*truth, "scenarios").list_value().values()) want += GetInt(sc, "count");
  EXPECT_GE(total, want + 1);
}

// A signal sent to goerrprof (a CI runner's timeout) reaches the command,
// whose death by it is the exit status (128 + signal), and the profile of
// what ran is still written.
TEST(CiRecord, SignalsAreForwarded) {
  if (!IsRoot()) GTEST_SKIP() << "needs root for BPF";
  auto corpus = LoadCorpus(false);
  ASSERT_TRUE(corpus.ok()) << corpus.status();
  std::string errgen;
  for (const CorpusBinary& b : *corpus) {
    if (b.program == "errgen" && b.flavour == "default") errgen = b.path;
  }
  std::string out = NewDir("signal") + "/errors.pb.gz";
  auto rec = Child::Spawn({GoerrprofPath(), "record", "--max_overhead=0",
                           "-o", out, "--", errgen, "-wait"});
  ASSERT_TRUE(rec.ok()) << rec.status();
  auto ready = (*rec)->ReadLine(false);
  ASSERT_TRUE(ready.ok()) << ready.status();
  ASSERT_EQ(kill((*rec)->pid(), SIGTERM), 0);
  auto run = (*rec)->Finish();
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->exit_code, 128 + SIGTERM) << run->err;
  EXPECT_TRUE(absl::StrContains(run->err, "command exited with 143")) << run->err;
  auto profile = profiler::ReadProfile(out);
  EXPECT_TRUE(profile.ok()) << profile.status();
}

TEST(CiRecord, NonGoAndMissingCommands) {
  if (!IsRoot()) GTEST_SKIP() << "needs root for BPF";
  std::string dir = NewDir("nongo");
  CommandResult r = RunCommand({GoerrprofPath(), "record", "--max_overhead=0",
                                "-o", dir + "/a.pb.gz", "--", "sh",
                                "-c", "echo hello; exit 7"});
  EXPECT_EQ(r.exit_code, 7) << r.err;
  EXPECT_EQ(r.out, "hello\n");
  auto empty = profiler::ReadProfile(dir + "/a.pb.gz");
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(empty->sample_size(), 0);

  r = RunCommand({GoerrprofPath(), "record", "--max_overhead=0",
                  "-o", dir + "/b.pb.gz", "--", "/nonexistent/cmd"});
  EXPECT_EQ(r.exit_code, 127) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "cannot run /nonexistent/cmd")) << r.err;

  // Without privileges: one line, and the command does not run.
  r = RunCommand({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", GoerrprofPath(),
                  "record", "--max_overhead=0",
                      "-o", dir + "/c.pb.gz", "--", "sh", "-c", "echo ran"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "goerrprof: loading BPF was refused (EPERM): needs CAP_BPF and CAP_PERFMON "
                   "(goerrprof loads BPF with CAP_BPF and CAP_PERFMON, or as root)\n");

  r = RunCommand({GoerrprofPath(), "record", "--max_overhead=0", "--pid=1", "--", "true"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(r.err, "not both")) << r.err;
}

// The Go toolchain's own processes are left alone unless --toolchain.
TEST(CiRecord, ToolchainOnlyWhenAsked) {
  if (!IsRoot()) GTEST_SKIP() << "needs root for BPF";
  std::string dir = NewDir("toolchain");
  CommandResult skipped =
      RunCommand({GoerrprofPath(), "record", "--max_overhead=0",
                  "-o", dir + "/a.pb.gz", "--", GoCommand(), "env",
                  "GOROOT"});
  EXPECT_EQ(skipped.exit_code, 0) << skipped.err;
  EXPECT_TRUE(absl::StrContains(skipped.err, "in 0 Go processes (1 toolchain,")) << skipped.err;
  CommandResult recorded =
      RunCommand({GoerrprofPath(), "record", "--max_overhead=0",
                  "--toolchain", "-o", dir + "/b.pb.gz", "--",
                  GoCommand(), "env", "GOROOT"});
  EXPECT_EQ(recorded.exit_code, 0) << recorded.err;
  EXPECT_EQ(recorded.out, skipped.out);
  EXPECT_TRUE(absl::StrContains(recorded.err, "in 1 Go processes (0 toolchain,")) << recorded.err;
  auto profile = profiler::ReadProfile(dir + "/b.pb.gz");
  ASSERT_TRUE(profile.ok()) << profile.status();
  bool go_labelled = false;
  for (const auto& s : profile->sample()) {
    for (const auto& l : s.label()) {
      if (profile->string_table(static_cast<int>(l.key())) == profiler::kLabelBinary &&
          profile->string_table(static_cast<int>(l.str())) == "go") {
        go_labelled = true;
      }
    }
  }
  EXPECT_TRUE(go_labelled) << "no sample labelled process.binary=go";
}

}  // namespace
}  // namespace goerrprof::testing
