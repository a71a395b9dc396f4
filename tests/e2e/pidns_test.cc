// goerrprof inside a container's PID namespace, where the pids it sees are
// not the kernel's (which BPF helpers and task->tgid give): `record --pid`,
// `record -- COMMAND` (the exec follower), `record --goroutines` and the
// `goroutines` snapshot, each against its target's own truth. Each case is
// the existing end-to-end test of that path (record_test, ci_record_test,
// record_goroutines_test, goroutines_test), run as a whole inside
// `unshare --pid --fork --mount-proc`: the test process, goerrprof and the
// targets all live in the new namespace, as in a container. This binary is
// the namespace's init: it checks it is in a new namespace with its own
// /proc, runs the test binary as its child and reaps orphans.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "pprof/pprof_writer.h"
#include "tests/test_support.h"
#include "pprof/labels.h"
#include "pprof/profile_file.h"

namespace goerrprof::testing {
namespace {

constexpr char kExecFlag[] = "--pidns_exec";
// PROC_PID_INIT_INO: the initial PID namespace's inode.
constexpr ino_t kInitPidNsIno = 0xEFFFFFFCu;


// The gtest name a corpus test of `suite` has for the newest release's
// `program`-`flavour` binary ("Record.go1_27_4_errgen_default").
std::optional<std::string> NewestCorpusTest(const std::string& suite, const std::string& program,
                                            const std::string& flavour) {
  auto corpus = LoadCorpus(false);
  if (!corpus.ok()) return std::nullopt;
  std::optional<CorpusBinary> best;
  for (const CorpusBinary& b : *corpus) {
    if (b.program != program || b.flavour != flavour) continue;
    if (!best || VersionKey(b.go_version) > VersionKey(best->go_version)) best = b;
  }
  if (!best) return std::nullopt;
  return absl::StrCat(suite, ".", best->Label());
}

std::string SelfExe() {
  char buf[4096] = {};
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

std::string Tail(const std::string& text, size_t lines) {
  std::vector<std::string> all = absl::StrSplit(text, '\n');
  size_t from = all.size() > lines ? all.size() - lines : 0;
  std::string out;
  for (size_t i = from; i < all.size(); ++i) absl::StrAppend(&out, all[i], "\n");
  return out;
}

class PidNamespaceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (BPF, and unshare of a PID namespace)";
    // Impossible where the runtime forbids namespaces (an unprivileged
    // container without CAP_SYS_ADMIN): then there is nothing to test.
    CommandResult probe =
        RunCommand({"unshare", "--pid", "--fork", "--mount-proc", "--kill-child", "true"}, 60);
    if (probe.exit_code != 0) {
      GTEST_SKIP() << "cannot create a PID namespace here (unshare --pid --fork --mount-proc "
                      "true exited with "
                   << probe.exit_code << "): " << probe.err;
    }
  }

  // Runs exactly the gtest `test` of `binary` inside a new PID namespace
  // and expects it to have run and passed.
  void RunInside(const std::string& binary, const std::string& test, int timeout_seconds) {
    const std::string json = absl::StrCat(::testing::TempDir(), "pidns_", getpid(), "_",
                                          ::testing::UnitTest::GetInstance()
                                              ->current_test_info()
                                              ->name(),
                                          ".json");
    std::remove(json.c_str());
    CommandResult r = RunCommand({"unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
                                  SelfExe(), kExecFlag, binary, absl::StrCat("--gtest_filter=", test),
                                  absl::StrCat("--gtest_output=json:", json)},
                                 timeout_seconds);
    const std::string output = Tail(r.out + r.err, 80);
    EXPECT_TRUE(absl::StrContains(r.err, "pidns_test: in PID namespace")) << output;
    EXPECT_EQ(r.exit_code, 0) << test << " failed inside a PID namespace:\n" << output;
    std::ifstream in(json);
    std::stringstream text;
    text << in.rdbuf();
    std::remove(json.c_str());
    auto report = ParseJson(text.str());
    ASSERT_TRUE(report.ok()) << "no gtest report from " << test << ": " << report.status() << "\n"
                             << output;
    // Exactly the one test ran, to completion (not skipped), with no failure.
    std::vector<std::string> ran;
    for (const auto& suite : Get(*report, "testsuites").list_value().values()) {
      for (const auto& t : Get(suite, "testsuite").list_value().values()) {
        std::string name = absl::StrCat(GetString(suite, "name"), ".", GetString(t, "name"));
        ran.push_back(name);
        EXPECT_EQ(GetString(t, "result"), "COMPLETED") << name << "\n" << output;
        EXPECT_FALSE(t.struct_value().fields().contains("failures")) << name << "\n" << output;
      }
    }
    EXPECT_EQ(ran, std::vector<std::string>{test}) << output;
  }
};

// `record --pid` on errgen: counts, types, messages and chains per site
// equal errgen's truth (record_test).
TEST_F(PidNamespaceTest, RecordPid) {
  auto test = NewestCorpusTest("Record", "errgen", "default");
  ASSERT_TRUE(test) << "no errgen in the corpus: run scripts/build_go_corpus.sh";
  RunInside(GOERRPROF_RECORD_TEST, *test, 600);
}

// `record -- errgen`: the follower's pids are the namespace's, errgen's
// init-time error is caught from its first instruction and every sample
// carries the pid errgen reports about itself (ci_record_test).
TEST_F(PidNamespaceTest, RecordCommand) {
  RunInside(GOERRPROF_CI_RECORD_TEST, "CiRecord.CommandErrorsFromItsFirstInstruction", 600);
}

// The README's CI recipe in a container: `record -- go test ./...`, each
// test binary's counts per site and pid equal to the truth it writes.
TEST_F(PidNamespaceTest, RecordGoTest) {
  RunInside(GOERRPROF_CI_RECORD_TEST, "CiRecord.GoTestAgainstTruthAndDiff", 900);
}

// `record --goroutines`: the park profile has every blocking pattern
// parktrace reports about itself (record_goroutines_test).
TEST_F(PidNamespaceTest, RecordGoroutines) {
  RunInside(GOERRPROF_RECORD_GOROUTINES_TEST, "RecordGoroutines.ParkProfileBesideErrors", 600);
}

// The `goroutines` snapshot of parked against its truth (goroutines_test).
TEST_F(PidNamespaceTest, GoroutinesSnapshot) {
  auto test = NewestCorpusTest("Goroutines", "parked", "default");
  ASSERT_TRUE(test) << "no parked in the corpus: run scripts/build_go_corpus.sh";
  RunInside(GOERRPROF_GOROUTINES_TEST, *test, 600);
}

// goerrprof in a container, its command in a namespace nested in the
// container's (a sandbox: `unshare --pid` again): the follower reports the
// command by its pid in goerrprof's namespace, the probe recognises it by
// its pid in its own. Per site, the returned errors (type, message, chain)
// number exactly what errgen reports, and its init-time error is there.
TEST_F(PidNamespaceTest, CommandInNestedNamespace) {
  auto corpus = LoadCorpus(false);
  ASSERT_TRUE(corpus.ok()) << corpus.status();
  std::optional<CorpusBinary> errgen;
  for (const CorpusBinary& b : *corpus) {
    if (b.program != "errgen" || b.flavour != "default") continue;
    if (!errgen || VersionKey(b.go_version) > VersionKey(errgen->go_version)) errgen = b;
  }
  ASSERT_TRUE(errgen) << "no errgen in the corpus: run scripts/build_go_corpus.sh";
  const std::string out = absl::StrCat(::testing::TempDir(), "pidns_nested_", getpid(), ".pb.gz");
  std::remove(out.c_str());
  CommandResult r = RunCommand({"unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
                                GoerrprofPath(), "record", "--max_overhead=0",
                                    "-o", out, "--", "unshare", "--pid",
                                "--fork", "--kill-child", errgen->path, "-n", "1"},
                               300);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, " in 1 Go processes ")) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, ", 0 dropped")) << r.err;
  auto truth = ParseJson(r.out);
  ASSERT_TRUE(truth.ok()) << truth.status() << r.out;
  EXPECT_EQ(GetInt(*truth, "pid"), 1) << "errgen is not its own namespace's init";
  auto profile = profiler::ReadProfile(out);
  std::remove(out.c_str());
  ASSERT_TRUE(profile.ok()) << profile.status();

  // site | type | message | chain -> count
  std::map<std::string, int64_t> want, got;
  for (const auto& sc : Get(*truth, "scenarios").list_value().values()) {
    std::vector<std::string> chain;
    for (const auto& link : Get(sc, "chain").list_value().values()) {
      chain.push_back(GetString(link, "type"));
    }
    want[absl::StrCat(GetString(sc, "function"), " | ", GetString(sc, "type"), " | ",
                      GetString(sc, "profile_message"), " | ", absl::StrJoin(chain, " > "))] +=
        GetInt(sc, "count");
  }
  int64_t init_errors = 0;
  for (const ProfileSample& s : ProfileSamples(*profile)) {
    std::string site;
    for (const std::string& fn : s.functions) {
      if (absl::StartsWith(fn, "main.site")) site = fn;  // the outermost
    }
    auto label = [&](const char* key) {
      auto it = s.labels.find(key);
      return it == s.labels.end() ? std::string() : it->second;
    };
    got[absl::StrCat(site, " | ", label(profiler::kLabelType), " | ",
                     label(profiler::kLabelMessage), " | ", label(profiler::kLabelChain))] +=
        s.value;
    if (label(profiler::kLabelMessage) == "errgen: created during init") init_errors += s.value;
  }
  ASSERT_FALSE(want.empty());
  for (const auto& [key, count] : want) EXPECT_EQ(got[key], count) << key;
  EXPECT_EQ(init_errors, 1);
}

// A new PID namespace that kept the outer /proc (no --mount-proc): /proc/PID
// and kill(PID) would name different processes, so every pid command
// refuses with one line instead of recording nothing or the wrong process.
TEST_F(PidNamespaceTest, OuterProcIsRefused) {
  const std::string out = absl::StrCat(::testing::TempDir(), "pidns_", getpid(), ".pb.gz");
  for (const std::vector<std::string>& cmd :
       {std::vector<std::string>{"record", "--max_overhead=0",
        "--pid=1", "--duration=1s", "-o", out},
        std::vector<std::string>{"goroutines", "--pid=1", "-o", out},
        std::vector<std::string>{"inspect", "--pid=1"},
        std::vector<std::string>{"record", "--max_overhead=0", "-o", out, "--", "true"}}) {
    std::vector<std::string> argv = {"unshare", "--pid", "--fork", "--kill-child",
                                     GoerrprofPath()};
    argv.insert(argv.end(), cmd.begin(), cmd.end());
    CommandResult r = RunCommand(argv, 60);
    SCOPED_TRACE(absl::StrJoin(cmd, " "));
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_TRUE(absl::StartsWith(r.err, "goerrprof: /proc is not a proc of goerrprof's PID "
                                        "namespace"))
        << r.err;
    EXPECT_NE(access(out.c_str(), F_OK), 0) << "wrote " << out;
    std::remove(out.c_str());
  }
}

// As the namespace's init: checks the namespace, runs argv[0] as a child,
// reaps every orphan until that child ends, and exits as it did.
int ExecInside(char** argv) {
  struct stat st;
  if (stat("/proc/self/ns/pid", &st) != 0) {
    std::fprintf(stderr, "pidns_test: cannot stat /proc/self/ns/pid: %s\n", std::strerror(errno));
    return 2;
  }
  if (st.st_ino == kInitPidNsIno) {
    std::fprintf(stderr, "pidns_test: still in the initial PID namespace\n");
    return 2;
  }
  char self[32] = {};
  if (readlink("/proc/self", self, sizeof(self) - 1) <= 0 ||
      std::string(self) != absl::StrCat(getpid())) {
    std::fprintf(stderr, "pidns_test: /proc is not this PID namespace's (/proc/self is %s)\n",
                 self);
    return 2;
  }
  std::fprintf(stderr, "pidns_test: in PID namespace pid:[%lu] as pid %d: running %s\n",
               static_cast<unsigned long>(st.st_ino), getpid(), argv[0]);
  pid_t child = fork();
  if (child < 0) return 2;
  if (child == 0) {
    execv(argv[0], argv);
    std::fprintf(stderr, "pidns_test: cannot run %s: %s\n", argv[0], std::strerror(errno));
    _exit(127);
  }
  for (;;) {
    int status = 0;
    pid_t w = waitpid(-1, &status, 0);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return 2;
    if (w != child) continue;  // an orphan of the test, reaped
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
}

}  // namespace
}  // namespace goerrprof::testing

int main(int argc, char** argv) {
  if (argc >= 3 && std::string(argv[1]) == goerrprof::testing::kExecFlag) {
    return goerrprof::testing::ExecInside(argv + 2);
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
