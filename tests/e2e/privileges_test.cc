// Least privilege (session/capabilities.h, README "Privileges"): goerrprof
// run as a user other than root (kUser) with exactly the capabilities the
// README and doctor name works on another user's process (kOther's errgen,
// its executable unreadable to kUser), against errgen's own truth; with any
// one of them removed it fails in one line naming it. The command of
// record -- COMMAND inherits none of them. Needs root (setpriv changes uid).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "pprof/labels.h"
#include "pprof/profile_file.h"
#include "tests/e2e/errgen_truth.h"
#include "tests/test_support.h"

namespace goerrprof::testing {
namespace {

constexpr int kTimeout = 120;  // seconds, for every single wait
constexpr uid_t kUser = 59101;   // runs goerrprof
constexpr uid_t kOther = 59102;  // runs the target

// What each command needs here (setpriv's names): the target is kOther's,
// its executable readable by kOther alone.
const std::vector<std::string> kRecordCaps = {"bpf", "perfmon", "sys_ptrace", "dac_read_search"};
const std::vector<std::string> kSnapshotCaps = {"sys_ptrace", "dac_read_search"};
// record -- COMMAND: the command is kUser's own.
const std::vector<std::string> kCommandCaps = {"bpf", "perfmon"};

std::string CapName(const std::string& setpriv_name) {
  return absl::StrCat("CAP_", absl::AsciiStrToUpper(setpriv_name));
}

// argv run as `uid` with exactly `caps`: inheritable and ambient, so they
// survive the exec of goerrprof (as AmbientCapabilities= in a systemd unit).
std::vector<std::string> As(uid_t uid, const std::vector<std::string>& caps,
                            const std::vector<std::string>& argv) {
  std::string set = "-all";
  for (const std::string& c : caps) absl::StrAppend(&set, ",+", c);
  std::vector<std::string> out = {"setpriv",       absl::StrCat("--reuid=", uid),
                                  absl::StrCat("--regid=", uid), "--clear-groups",
                                  "--inh-caps=" + set, "--ambient-caps=" + set, "--"};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

std::vector<std::string> Without(std::vector<std::string> caps, const std::string& cap) {
  std::erase(caps, cap);
  return caps;
}

class PrivilegesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root (setpriv changes user)";
    auto errgen = NewestCorpusBinary(false, "errgen", "default");
    ASSERT_TRUE(errgen) << "no errgen in " << CorpusDir() << ": run scripts/test.sh";
    errgen_ = *errgen;
    std::string tmpl = absl::StrCat(::testing::TempDir(), "privileges_XXXXXX");
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    out_ = dir_ + "/out";  // kUser's
    std::string target_dir = dir_ + "/target";
    ASSERT_EQ(chmod(dir_.c_str(), 0755), 0);
    ASSERT_EQ(mkdir(out_.c_str(), 0700), 0);
    ASSERT_EQ(chown(out_.c_str(), kUser, kUser), 0);
    ASSERT_EQ(mkdir(target_dir.c_str(), 0755), 0);
    // kOther's executable, which kUser may not read.
    target_exe_ = target_dir + "/errgen";
    std::filesystem::copy_file(errgen_.path, target_exe_);
    ASSERT_EQ(chown(target_exe_.c_str(), kOther, kOther), 0);
    ASSERT_EQ(chmod(target_exe_.c_str(), 0700), 0);
  }

  void TearDown() override {
    target_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  // kOther's errgen -wait, ready (blocked on stdin until "go").
  pid_t StartTarget() {
    auto t = Child::Spawn({"setpriv", absl::StrCat("--reuid=", kOther),
                           absl::StrCat("--regid=", kOther), "--clear-groups", target_exe_,
                           "-wait", "-n", "1"});
    if (!t.ok()) {
      ADD_FAILURE() << t.status();
      return 0;
    }
    auto ready = (*t)->ReadLine(false, kTimeout);
    if (!ready.ok() || *ready != absl::StrCat("ready ", (*t)->pid())) {
      ADD_FAILURE() << "errgen not ready: " << (ready.ok() ? *ready : ready.status().ToString());
      return 0;
    }
    target_ = std::move(*t);
    return target_->pid();
  }

  // Runs goerrprof as kUser with `caps`; it must fail with exactly `line`.
  void ExpectRefused(const std::vector<std::string>& caps, const std::vector<std::string>& args,
                     const std::string& line) {
    std::vector<std::string> argv = {GoerrprofPath()};
    argv.insert(argv.end(), args.begin(), args.end());
    CommandResult r = RunCommand(As(kUser, caps, argv), kTimeout);
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(r.err, absl::StrCat("goerrprof: ", line, "\n"));
  }

  std::string BpfRefused(const std::string& cap) const {
    return absl::StrCat("loading BPF was refused (EPERM): needs ", CapName(cap),
                        " (goerrprof loads BPF with CAP_BPF and CAP_PERFMON, or as root)");
  }
  std::string PtraceRefused(pid_t pid) const {
    return absl::StrCat("process ", pid,
                        " is another user's or more privileged: reading it needs CAP_SYS_PTRACE");
  }
  std::string ReadRefused(pid_t pid) const {
    return absl::StrCat("cannot read ", target_exe_, ", the executable of process ", pid,
                        ": needs CAP_DAC_READ_SEARCH");
  }

  CorpusBinary errgen_;
  std::string dir_, out_, target_exe_;
  std::unique_ptr<Child> target_;
};

TEST_F(PrivilegesTest, RecordPidWithExactlyItsCapabilities) {
  pid_t pid = StartTarget();
  ASSERT_NE(pid, 0);
  const std::vector<std::string> record = {"record", "--max_overhead=0",
                                           absl::StrCat("--pid=", pid), "-o",
                                           out_ + "/errors.pb.gz"};
  // One fewer, each: one line naming it, and nothing written.
  for (const std::string& cap : kRecordCaps) {
    SCOPED_TRACE("without " + cap);
    std::string why = cap == "sys_ptrace"        ? PtraceRefused(pid)
                      : cap == "dac_read_search" ? ReadRefused(pid)
                                                 : BpfRefused(cap);
    ExpectRefused(Without(kRecordCaps, cap), record, why);
    EXPECT_FALSE(std::filesystem::exists(out_ + "/errors.pb.gz"));
  }

  std::vector<std::string> argv = {GoerrprofPath()};
  argv.insert(argv.end(), record.begin(), record.end());
  auto rec = Child::Spawn(As(kUser, kRecordCaps, argv));
  ASSERT_TRUE(rec.ok()) << rec.status();
  auto attached = (*rec)->ReadLine(true, kTimeout);
  ASSERT_TRUE(attached.ok()) << attached.status();
  ASSERT_TRUE(absl::StartsWith(*attached, absl::StrCat("goerrprof: recording pid ", pid, ": ")))
      << *attached;
  ASSERT_TRUE(target_->Write("go\n").ok());
  auto truth_run = target_->Finish(kTimeout);
  ASSERT_TRUE(truth_run.ok()) << truth_run.status();
  ASSERT_EQ(truth_run->exit_code, 0) << truth_run->err;
  auto rec_run = (*rec)->Finish(kTimeout);
  ASSERT_TRUE(rec_run.ok()) << rec_run.status();
  ASSERT_EQ(rec_run->exit_code, 0) << rec_run->err;
  EXPECT_TRUE(absl::StrContains(rec_run->err, "goerrprof: target exited: ")) << rec_run->err;

  auto truth = ParseJson(truth_run->out);
  ASSERT_TRUE(truth.ok()) << truth.status();
  auto profile = profiler::ReadProfile(out_ + "/errors.pb.gz");
  ASSERT_TRUE(profile.ok()) << profile.status();
  ExpectErrgenTruth(*profile, *truth);
}

TEST_F(PrivilegesTest, GoroutinesWithExactlyItsCapabilities) {
  pid_t pid = StartTarget();
  ASSERT_NE(pid, 0);
  const std::string out = out_ + "/goroutines.pb.gz";
  const std::vector<std::string> snapshot = {"goroutines", absl::StrCat("--pid=", pid), "-o",
                                             out};
  ExpectRefused(Without(kSnapshotCaps, "sys_ptrace"), snapshot, PtraceRefused(pid));
  ExpectRefused(Without(kSnapshotCaps, "dac_read_search"), snapshot, ReadRefused(pid));
  // inspect --pid reads the same and needs the same.
  ExpectRefused(Without(kSnapshotCaps, "sys_ptrace"), {"inspect", absl::StrCat("--pid=", pid)},
                PtraceRefused(pid));
  EXPECT_FALSE(std::filesystem::exists(out));

  std::vector<std::string> argv = {GoerrprofPath()};
  argv.insert(argv.end(), snapshot.begin(), snapshot.end());
  CommandResult r = RunCommand(As(kUser, kSnapshotCaps, argv), kTimeout);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  static const std::regex line(R"(goerrprof: (\d+) goroutines of pid (\d+) read in .* -> (.+)\n)");
  std::smatch m;
  ASSERT_TRUE(std::regex_match(r.err, m, line)) << r.err;
  EXPECT_EQ(m[2], absl::StrCat(pid));
  EXPECT_EQ(m[3], out);
  auto profile = profiler::ReadProfile(out);
  ASSERT_TRUE(profile.ok()) << profile.status();
  // errgen -wait: main, blocked reading stdin, at least.
  EXPECT_EQ(static_cast<int64_t>(profile->sample_size()), std::stoll(m[1])) << r.err;
  EXPECT_GE(profile->sample_size(), 1);
  CommandResult inspect =
      RunCommand(As(kUser, kSnapshotCaps, {GoerrprofPath(), "inspect", "--json",
                                           absl::StrCat("--pid=", pid)}),
                 kTimeout);
  ASSERT_EQ(inspect.exit_code, 0) << inspect.err;
  auto json = ParseJson(inspect.out);
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_EQ(GetString(*json, "go_version"), errgen_.go_version);
}

TEST_F(PrivilegesTest, RecordCommandWithExactlyItsCapabilities) {
  const std::string out = out_ + "/command.pb.gz";
  // The command is kUser's own errgen (the corpus copy, readable by all).
  const std::vector<std::string> record = {"record", "--max_overhead=0",
                                           "-o", out, "--", errgen_.path, "-n", "1"};
  for (const std::string& cap : kCommandCaps) {
    SCOPED_TRACE("without " + cap);
    ExpectRefused(Without(kCommandCaps, cap), record, BpfRefused(cap));  // the command never ran
  }
  std::vector<std::string> argv = {GoerrprofPath()};
  argv.insert(argv.end(), record.begin(), record.end());
  CommandResult r = RunCommand(As(kUser, kCommandCaps, argv), kTimeout);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "in 1 Go processes")) << r.err;
  auto truth = ParseJson(r.out);
  ASSERT_TRUE(truth.ok()) << truth.status() << r.out;
  auto profile = profiler::ReadProfile(out);
  ASSERT_TRUE(profile.ok()) << profile.status();
  // Followed from its first instruction (stopped at exec, continued once
  // attached): its package init's error too, and every scenario's.
  int64_t total = 0, init = 0, want = 0;
  for (const ProfileSample& s : ProfileSamples(*profile)) {
    total += s.value;
    auto m = s.labels.find(profiler::kLabelMessage);
    if (m != s.labels.end() && m->second == "errgen: created during init") init += s.value;
  }
  for (const auto& sc : Get(*truth, "scenarios").list_value().values()) want += GetInt(sc, "count");
  EXPECT_EQ(init, 1);
  EXPECT_GT(want, 0);
  EXPECT_GE(total, want + 1);
}

// The command runs without goerrprof's capabilities; run directly under
// the same setpriv, it would have them (the control).
TEST_F(PrivilegesTest, CommandInheritsNoCapability) {
  const std::vector<std::string> grep = {"grep", "-E", "^Cap(Prm|Eff|Amb):", "/proc/self/status"};
  CommandResult control = RunCommand(As(kUser, kRecordCaps, grep), kTimeout);
  ASSERT_EQ(control.exit_code, 0) << control.err;
  EXPECT_EQ(control.out,
            "CapPrm:\t000000c000080004\nCapEff:\t000000c000080004\nCapAmb:\t000000c000080004\n");

  std::vector<std::string> argv = {GoerrprofPath(), "record", "--max_overhead=0",
                                   "-o", out_ + "/grep.pb.gz", "--"};
  argv.insert(argv.end(), grep.begin(), grep.end());
  CommandResult r = RunCommand(As(kUser, kRecordCaps, argv), kTimeout);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "CapPrm:\t0000000000000000\nCapEff:\t0000000000000000\nCapAmb:\t0000000000000000\n");
}

// doctor names the capabilities present and missing, in one line.
TEST_F(PrivilegesTest, DoctorNamesTheCapabilities) {
  auto line = [&](const std::vector<std::string>& caps) {
    CommandResult r = RunCommand(As(kUser, caps, {GoerrprofPath(), "doctor"}), kTimeout);
    for (absl::string_view l : absl::StrSplit(r.out, '\n')) {
      if (absl::StrContains(l, " capabilities: ")) return absl::StrCat(r.exit_code, " ", l);
    }
    return absl::StrCat(r.exit_code, " no capabilities line: ", r.out, r.err);
  };
  EXPECT_EQ(line(kRecordCaps),
            "0 ok   capabilities: present: CAP_BPF, CAP_PERFMON, CAP_SYS_PTRACE, "
            "CAP_DAC_READ_SEARCH; missing: none");
  EXPECT_EQ(line(kCommandCaps),
            "0 warn capabilities: present: CAP_BPF, CAP_PERFMON; missing: CAP_SYS_PTRACE (for "
            "another user's or a more privileged process), CAP_DAC_READ_SEARCH (for a process "
            "whose executable this user cannot read)");
  EXPECT_EQ(line({"perfmon", "sys_ptrace"}),
            "1 FAIL capabilities: present: CAP_PERFMON, CAP_SYS_PTRACE; missing: CAP_BPF (to "
            "load BPF: record, doctor), CAP_DAC_READ_SEARCH (for a process whose executable "
            "this user cannot read)");
}

}  // namespace
}  // namespace goerrprof::testing
