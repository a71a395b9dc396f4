// `goerrprof doctor` against what can be known without it: the kernel
// features it reports against the test process's own capabilities, the
// files it reads and the mainline release each feature came with; its
// program list against the BPF objects themselves; the verifier margin (every
// program verifies in at most 20% of the kernel's 1,000,000-instruction
// limit, for the settings of every Go release); with --pid, the Go version
// against the corpus manifest and the probe count against what `record`
// attaches; bad input as one line.
#include <signal.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "bpf/errors.skel.h"
#include "bpf/exec_follow.skel.h"
#include "bpf/goroutines.skel.h"
#include "gtest/gtest.h"
#include "session/kernel_features.h"
#include "tests/test_support.h"

namespace goerrprof::testing {
namespace {

using google::protobuf::Value;

constexpr int kTimeout = 120;               // seconds, for every command
constexpr uint64_t kLimit = 1000000;        // the verifier's
constexpr uint64_t kMargin = kLimit / 5;    // the project's: 20% of it

// doctor --json, run once for the tests that read it.
const CommandResult& DoctorJson() {
  static const CommandResult* r =
      new CommandResult(RunCommand({GoerrprofPath(), "doctor", "--json"}, kTimeout));
  return *r;
}

std::optional<Value> DoctorReport() {
  const CommandResult& r = DoctorJson();
  auto v = ParseJson(r.out);
  if (!v.ok()) {
    ADD_FAILURE() << v.status() << "\nstdout: " << r.out << "\nstderr: " << r.err;
    return std::nullopt;
  }
  return *v;
}

// --- Independent answers to what doctor probes. ---

std::vector<int> KernelVersion() {
  utsname u;
  uname(&u);
  std::vector<int> v;
  absl::string_view rel = u.release;
  rel = rel.substr(0, rel.find_first_not_of("0123456789."));
  for (absl::string_view p : absl::StrSplit(rel, '.', absl::SkipEmpty())) {
    int n = 0;
    (void)absl::SimpleAtoi(p, &n);
    v.push_back(n);
  }
  v.resize(3, 0);
  return v;
}

bool AtLeast(const std::vector<int>& v, int a, int b, int c = 0) {
  return std::vector<int>{v[0], v[1], v[2]} >= std::vector<int>{a, b, c};
}

uint64_t OwnEffectiveCaps() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (absl::StartsWith(line, "CapEff:")) return std::stoull(line.substr(7), nullptr, 16);
  }
  return 0;
}

// The verdict each check should have here. Kernel features by the mainline
// release that brought them: true of Debian's kernels, which is what this
// runs on (a distribution backporting one would differ, and doctor be right).
std::map<std::string, std::string> ExpectedVerdicts() {
  std::map<std::string, std::string> want;
  uint64_t caps = OwnEffectiveCaps();
  auto cap = [&](int c) { return (caps >> c) & 1; };
  want["privileges"] = cap(21) || (cap(38) && cap(39)) ? "ok" : "FAIL";
  // CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN) for record; CAP_SYS_PTRACE
  // and CAP_DAC_READ_SEARCH for some targets only.
  want["capabilities"] = !(cap(21) || (cap(38) && cap(39))) ? "FAIL"
                         : cap(19) && cap(2)                ? "ok"
                                                            : "warn";
  struct stat st;
  want["btf"] = stat("/sys/kernel/btf/vmlinux", &st) == 0 ? "ok" : "FAIL";
  std::ifstream lockdown("/sys/kernel/security/lockdown");
  std::string modes;
  std::getline(lockdown, modes);
  want["lockdown"] = absl::StrContains(modes, "[confidentiality]") ? "FAIL" : "ok";
  if (want["privileges"] != "ok") return want;  // the rest cannot be probed
  std::vector<int> v = KernelVersion();
  auto needed = [&](bool have) { return have ? "ok" : "FAIL"; };
  auto optional = [&](bool have) { return have ? "ok" : "warn"; };
  want["ring_buffer"] = needed(AtLeast(v, 5, 8));
  want["atomics"] = needed(AtLeast(v, 5, 12));
  want["attach_cookie"] = needed(AtLeast(v, 5, 15));
  want["bpf_loop"] = needed(AtLeast(v, 5, 17));
  want["sleepable_uprobes"] = optional(AtLeast(v, 6, 0));
  // 6.6 brought them; the per-process pid filter came with 6.10, 6.9.5, 6.6.35.
  want["uprobe_multi"] = optional(AtLeast(v, 6, 10) || (v[0] == 6 && v[1] == 9 && v[2] >= 5) ||
                                  (v[0] == 6 && v[1] == 6 && v[2] >= 35));
  return want;
}

// "object/program" of every program in the BPF objects, read from them.
template <typename Skel>
void AddPrograms(const char* object, Skel* (*open)(), void (*destroy)(Skel*),
                 std::set<std::string>* out) {
  Skel* skel = open();
  ASSERT_NE(skel, nullptr) << object;
  bpf_program* prog;
  bpf_object__for_each_program(prog, skel->obj) {
    out->insert(absl::StrCat(object, "/", bpf_program__name(prog)));
  }
  destroy(skel);
}

std::set<std::string> ObjectPrograms() {
  std::set<std::string> out;
  AddPrograms("errors", errors_bpf__open, errors_bpf__destroy, &out);
  AddPrograms("goroutines", goroutines_bpf__open, goroutines_bpf__destroy, &out);
  AddPrograms("exec_follow", exec_follow_bpf__open, exec_follow_bpf__destroy, &out);
  return out;
}

TEST(Doctor, ExitsZeroWithEveryCheckAsTheSystemSays) {
  const CommandResult& r = DoctorJson();
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  auto report = DoctorReport();
  ASSERT_TRUE(report);
  EXPECT_TRUE(Get(*report, "ok").bool_value());
  std::map<std::string, std::string> want = ExpectedVerdicts();
  std::set<std::string> names;
  for (const Value& c : Get(*report, "checks").list_value().values()) {
    std::string name = GetString(c, "name");
    names.insert(name);
    EXPECT_FALSE(GetString(c, "detail").empty()) << name;
    if (want.count(name)) {
      EXPECT_EQ(GetString(c, "status"), want[name]) << name << ": " << GetString(c, "detail");
    }
  }
  std::set<std::string> every = {"privileges", "btf",      "lockdown",          "ring_buffer",
                                 "bpf_loop",   "attach_cookie", "atomics", "sleepable_uprobes",
                                 "uprobe_multi", "capabilities"};
  EXPECT_EQ(names, every);
}

TEST(Doctor, ListsEveryProgramOfTheObjects) {
  auto report = DoctorReport();
  ASSERT_TRUE(report);
  std::set<std::string> listed;
  for (const Value& p : Get(*report, "programs").list_value().values()) {
    listed.insert(GetString(p, "name"));
    EXPECT_EQ(GetString(p, "name"), GetString(p, "object") + "/" + GetString(p, "program"));
  }
  EXPECT_EQ(listed, ObjectPrograms());
}

// The verifier margin: every program under every setting of every Go
// release verifies within 20% of the limit, so a newer kernel's verifier
// (which prunes less) or a patch-level change does not push it over.
TEST(Doctor, EveryProgramVerifiesWithinTheMargin) {
  auto report = DoctorReport();
  ASSERT_TRUE(report);
  const auto& programs = Get(*report, "programs").list_value().values();
  ASSERT_FALSE(programs.empty());
  std::string figures;
  for (const Value& p : programs) {
    absl::StrAppend(&figures, "\n  ", GetString(p, "name"), ": ", GetInt(p, "verified_insns"),
                    " insns, loaded=", Get(p, "loaded").bool_value(), ", at ",
                    GetString(p, "settings"));
  }
  for (const Value& p : programs) {
    std::string name = GetString(p, "name");
    uint64_t insns = static_cast<uint64_t>(GetInt(p, "verified_insns"));
    EXPECT_TRUE(Get(p, "loaded").bool_value())
        << name << " does not load: " << GetString(p, "detail") << "\nmeasured:" << figures;
    EXPECT_GT(insns, 0u) << name << "\nmeasured:" << figures;
    EXPECT_LE(insns, kMargin) << name << ": " << insns << " verified insns, over the margin of "
                              << kMargin << " (20% of " << kLimit << ") with "
                              << GetString(p, "settings") << "\nmeasured:" << figures;
    EXPECT_GT(GetInt(p, "loads"), 0) << name;
  }
}

// The text form says the same, one line per check.
TEST(Doctor, TextHasOneLinePerCheckLikeTheJson) {
  auto report = DoctorReport();
  ASSERT_TRUE(report);
  CommandResult r = RunCommand({GoerrprofPath(), "doctor"}, kTimeout);
  EXPECT_EQ(r.exit_code, DoctorJson().exit_code) << r.err;
  std::vector<std::string> lines = absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  ASSERT_FALSE(lines.empty());
  EXPECT_TRUE(absl::StartsWith(lines[0], "goerrprof doctor: Linux ")) << lines[0];
  std::vector<std::string> want;
  for (const char* list : {"checks", "programs"}) {
    for (const Value& c : Get(*report, list).list_value().values()) {
      std::string status = GetString(c, "status");  // left-aligned in 4 columns
      status.resize(std::max<size_t>(status.size(), 4), ' ');
      want.push_back(absl::StrCat(status, " ", GetString(c, "name"), ": ", GetString(c, "detail")));
    }
  }
  EXPECT_EQ(std::vector<std::string>(lines.begin() + 1, lines.end()), want);
  static const std::regex insns(
      R"(^ok   errors/gep_on_error: \d+ verified insns \(\d+\.\d% of 1000000\), )"
      R"(max over \d+ settings, at: .*)");
  bool seen = false;
  for (const std::string& l : lines) seen = seen || std::regex_match(l, insns);
  EXPECT_TRUE(seen) << r.out;
}

// errgen -wait: running, blocked on stdin, until the Child goes.

// "goerrprof: recording pid P: N probes attached in T" from record.
std::optional<uint64_t> RecordedProbes(pid_t pid) {
  std::string out = absl::StrCat(::testing::TempDir(), "doctor_test_", getpid(), ".pb.gz");
  CommandResult r = RunCommand({GoerrprofPath(), "record", "--max_overhead=0",
                                absl::StrCat("--pid=", pid),
                                "--duration=100ms", "-o", out},
                               kTimeout);
  unlink(out.c_str());
  static const std::regex re(R"(goerrprof: recording pid \d+: (\d+) probes attached in )");
  std::smatch m;
  if (!std::regex_search(r.err, m, re)) {
    ADD_FAILURE() << "record said: " << r.err;
    return std::nullopt;
  }
  return std::stoull(m[1]);
}

void DoctorOnErrgen(const CorpusBinary& b) {
  std::unique_ptr<Child> errgen = StartErrgen(b.path, 1, nullptr, kTimeout);
  ASSERT_NE(errgen, nullptr);
  CommandResult r =
      RunCommand({GoerrprofPath(), "doctor", "--json", absl::StrCat("--pid=", errgen->pid())},
                 kTimeout);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  auto report = ParseJson(r.out);
  ASSERT_TRUE(report.ok()) << report.status() << r.err;
  const Value& target = Get(*report, "target");
  EXPECT_EQ(GetString(target, "go_version"), b.go_version);
  EXPECT_EQ(GetInt(target, "pid"), errgen->pid());
  EXPECT_TRUE(Get(target, "supported").bool_value()) << r.out;
  EXPECT_GT(GetInt(target, "probes"), 0);
  EXPECT_GT(GetInt(target, "error_types"), 0);
  for (const Value& c : Get(target, "checks").list_value().values()) {
    EXPECT_EQ(GetString(c, "status"), "ok")
        << GetString(c, "name") << ": " << GetString(c, "detail");
  }
  // As many probes as record attaches to the same process.
  std::optional<uint64_t> recorded = RecordedProbes(errgen->pid());
  ASSERT_TRUE(recorded);
  EXPECT_EQ(static_cast<uint64_t>(GetInt(target, "probes")), *recorded);
}

// What record says when a load fails: the required features this kernel
// lacks, as a 5.10 kernel would have them (the probes' own checks, with
// those three features turned missing).
TEST(DoctorExplains, LoadFailureNamesTheMissingFeatures) {
  std::vector<profiler::FeatureCheck> checks = profiler::KernelFeatures();
  ASSERT_TRUE(profiler::KernelSupports(profiler::KernelFeature::kPrivileges));
  for (profiler::FeatureCheck& c : checks) {
    if (c.name == "bpf_loop" || c.name == "attach_cookie" || c.name == "atomics" ||
        c.name == "sleepable_uprobes" || c.name == "uprobe_multi") {
      c.supported = false;
    }
  }
  absl::Status load = absl::InternalError("BPF program failed to load: Invalid argument");
  absl::Status explained = profiler::ExplainLoadFailure(load, checks);
  EXPECT_EQ(explained.code(), load.code());
  EXPECT_EQ(explained.message(),
            "this kernel lacks bpf_loop (needs Linux 5.17+), attach_cookie (needs Linux 5.15+), "
            "atomics (needs Linux 5.12+); see `goerrprof doctor`");
  EXPECT_TRUE(profiler::IsMissingKernelFeature(explained));
  // Only optional ones missing, or nothing: the load's own error stands.
  for (profiler::FeatureCheck& c : checks) c.supported = c.supported || c.required;
  EXPECT_EQ(profiler::ExplainLoadFailure(load, checks), load);
  EXPECT_FALSE(profiler::IsMissingKernelFeature(load));
  // Without privileges nothing was probed: not blamed on the kernel.
  for (profiler::FeatureCheck& c : checks) {
    c.supported = c.name != "privileges" && c.name != "bpf_loop";
  }
  EXPECT_EQ(profiler::ExplainLoadFailure(load, checks), load);
}

TEST(DoctorBadInput, NoSuchPidIsOneLine) {
  std::ifstream in("/proc/sys/kernel/pid_max");
  int64_t pid_max = 0;
  in >> pid_max;
  ASSERT_GT(pid_max, 0);
  // pids are below pid_max: this one never exists.
  CommandResult r =
      RunCommand({GoerrprofPath(), "doctor", absl::StrCat("--pid=", pid_max)}, kTimeout);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, absl::StrCat("goerrprof: no process with pid ", pid_max, "\n"));
}

TEST(DoctorBadInput, NotGoIsOneLine) {
  // This test binary is C++.
  CommandResult r =
      RunCommand({GoerrprofPath(), "doctor", absl::StrCat("--pid=", getpid())}, kTimeout);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_EQ(r.out, "");
  EXPECT_TRUE(absl::StartsWith(r.err, "goerrprof: ") && absl::StrContains(r.err, "not a Go binary"))
      << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

TEST(DoctorBadInput, BadPidAndArgumentsAreOneLine) {
  for (const std::vector<std::string>& argv :
       {std::vector<std::string>{GoerrprofPath(), "doctor", "--pid=abc"},
        std::vector<std::string>{GoerrprofPath(), "doctor", "extra"}}) {
    CommandResult r = RunCommand(argv, kTimeout);
    EXPECT_NE(r.exit_code, 0) << argv.back();
    EXPECT_EQ(r.out, "") << argv.back();
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

}  // namespace
}  // namespace goerrprof::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  goerrprof::testing::RegisterCorpusTests("DoctorPid", "errgen-default", false,
                                          goerrprof::testing::DoctorOnErrgen);
  return RUN_ALL_TESTS();
}
