// `goerrprof record` as a user meets it, with real BPF: the target behaves
// the same whether recorded or not, a real third-party program (esbuild)
// can be recorded, drops are reported, bad input fails with one clear line,
// every way of stopping writes a profile, and nothing stays attached.
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "pprof/pprof_writer.h"
#include "symbolizer/go_binary.h"
#include "tests/test_support.h"
#include "pprof/profile_file.h"

namespace goerrprof::testing {
namespace {

using perftools::profiles::Profile;
using Clock = std::chrono::steady_clock;

constexpr int kTimeout = 60;  // seconds, for every single wait


// The corpus binary built by the newest Go release (esbuild: any version).
std::optional<CorpusBinary> Newest(bool esbuild, const std::string& program,
                                   const std::string& flavour) {
  auto corpus = LoadCorpus(esbuild);
  if (!corpus.ok()) return std::nullopt;
  std::optional<CorpusBinary> best;
  for (const CorpusBinary& b : *corpus) {
    if (!esbuild && (b.program != program || b.flavour != flavour)) continue;
    if (!best || VersionKey(b.go_version) > VersionKey(best->go_version)) best = b;
  }
  return best;
}

CorpusBinary NewestErrgen() {
  auto b = Newest(false, "errgen", "default");
  if (!b) {
    ADD_FAILURE() << "no errgen in " << CorpusDir() << "/manifest.tsv: run scripts/test.sh";
    return {};
  }
  return *b;
}

// The closing line: "goerrprof: <reason>: N errors at S sites, D dropped, P
// probes attached in T (U references unplanned) -> FILE".
struct Summary {
  std::string reason;
  uint64_t errors = 0, sites = 0, dropped = 0, probes = 0;
  std::string file;
};

std::optional<Summary> ParseSummary(const std::string& stderr_text) {
  static const std::regex re(
      R"(^goerrprof: (.+): (\d+) errors at (\d+) sites, (\d+) dropped, (\d+) probes attached )"
      R"(in \S+ \(\d+ references unplanned\) -> (.+)$)");
  std::vector<std::string> lines = absl::StrSplit(stderr_text, '\n', absl::SkipEmpty());
  if (lines.empty()) return std::nullopt;
  std::smatch m;
  if (!std::regex_match(lines.back(), m, re)) return std::nullopt;
  Summary s;
  s.reason = m[1];
  s.errors = std::stoull(m[2]);
  s.sites = std::stoull(m[3]);
  s.dropped = std::stoull(m[4]);
  s.probes = std::stoull(m[5]);
  s.file = m[6];
  return s;
}

// Structural validity: every reference resolves, every function is named.
void ExpectValidProfile(const Profile& p) {
  const int nstr = p.string_table_size();
  ASSERT_GT(nstr, 0);
  EXPECT_EQ(p.string_table(0), "");
  auto str_ok = [&](int64_t i) { return i >= 0 && i < nstr; };
  ASSERT_GE(p.sample_type_size(), 1);
  for (const auto& t : p.sample_type()) EXPECT_TRUE(str_ok(t.type()) && str_ok(t.unit()));
  std::set<uint64_t> mappings, functions, locations;
  for (const auto& m : p.mapping()) {
    EXPECT_NE(m.id(), 0u);
    EXPECT_TRUE(mappings.insert(m.id()).second) << "duplicate mapping " << m.id();
  }
  for (const auto& f : p.function()) {
    EXPECT_NE(f.id(), 0u);
    EXPECT_TRUE(functions.insert(f.id()).second) << "duplicate function " << f.id();
    ASSERT_TRUE(str_ok(f.name()) && str_ok(f.filename())) << "function " << f.id();
    EXPECT_FALSE(p.string_table(f.name()).empty()) << "unnamed function " << f.id();
  }
  for (const auto& l : p.location()) {
    EXPECT_NE(l.id(), 0u);
    EXPECT_TRUE(locations.insert(l.id()).second) << "duplicate location " << l.id();
    if (l.mapping_id() != 0) {
      EXPECT_TRUE(mappings.contains(l.mapping_id())) << l.id();
    }
    for (const auto& line : l.line()) {
      EXPECT_TRUE(functions.contains(line.function_id())) << "location " << l.id();
    }
  }
  for (const auto& s : p.sample()) {
    EXPECT_EQ(s.value_size(), p.sample_type_size());
    EXPECT_GT(s.location_id_size(), 0);
    for (uint64_t id : s.location_id()) EXPECT_TRUE(locations.contains(id)) << "location " << id;
    for (const auto& l : s.label()) EXPECT_TRUE(str_ok(l.key()) && str_ok(l.str()));
  }
  for (int64_t c : p.comment()) EXPECT_TRUE(str_ok(c));
}

std::vector<std::string> Comments(const Profile& p) {
  std::vector<std::string> out;
  for (int64_t c : p.comment()) out.push_back(p.string_table(static_cast<int>(c)));
  return out;
}

// A bad-input failure: non-zero exit without a crash, nothing on stdout,
// exactly one stderr line "goerrprof: ..." that contains one of `wanted`.
void ExpectOneLineError(const CommandResult& r, const std::vector<std::string>& wanted) {
  EXPECT_NE(r.exit_code, 0) << r.err;
  EXPECT_LT(r.exit_code, 128) << "killed by a signal: " << r.err;
  EXPECT_EQ(r.out, "");
  ASSERT_TRUE(absl::EndsWith(r.err, "\n")) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_TRUE(absl::StartsWith(r.err, "goerrprof: ")) << r.err;
  bool found = false;
  for (const std::string& w : wanted) found |= absl::StrContains(r.err, w);
  EXPECT_TRUE(found) << "none of [" << absl::StrJoin(wanted, "; ") << "] in: " << r.err;
}

// fork+exec with a close-on-exec pipe: read() returning EOF means exec has
// happened, so /proc/PID/exe is the new program. stdio is /dev/null.
pid_t SpawnExeced(const std::vector<std::string>& argv) {
  int sync[2];
  if (pipe2(sync, O_CLOEXEC) != 0) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    int devnull = open("/dev/null", O_RDWR);
    dup2(devnull, 0);
    dup2(devnull, 1);
    dup2(devnull, 2);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    char failed = 1;
    (void)!write(sync[1], &failed, 1);
    _exit(127);
  }
  close(sync[1]);
  char c;
  ssize_t n = read(sync[0], &c, 1);  // 0: exec'd; 1: exec failed
  close(sync[0]);
  if (n != 0) {
    waitpid(pid, nullptr, 0);
    return -1;
  }
  return pid;
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Ids of BPF programs and links some process holds an fd to (fdinfo lists
// prog_id / link_id), so those that no process holds can be told apart.
void HeldBpfIds(std::set<uint64_t>* progs, std::set<uint64_t>* links) {
  DIR* proc = opendir("/proc");
  if (!proc) return;
  while (dirent* p = readdir(proc)) {
    int pid = 0;
    if (!absl::SimpleAtoi(p->d_name, &pid)) continue;
    std::string fd_dir = absl::StrCat("/proc/", pid, "/fd");
    DIR* fds = opendir(fd_dir.c_str());
    if (!fds) continue;
    while (dirent* f = readdir(fds)) {
      if (f->d_name[0] == '.') continue;
      char target[64] = {};
      std::string link = absl::StrCat(fd_dir, "/", f->d_name);
      if (readlink(link.c_str(), target, sizeof(target) - 1) <= 0) continue;
      absl::string_view t(target);
      if (t != "anon_inode:bpf-prog" && t != "anon_inode:bpf_link") continue;
      std::string info = ReadFileOrEmpty(absl::StrCat("/proc/", pid, "/fdinfo/", f->d_name));
      for (absl::string_view line : absl::StrSplit(info, '\n')) {
        std::vector<absl::string_view> kv = absl::StrSplit(line, absl::ByAnyChar(":\t "),
                                                           absl::SkipEmpty());
        uint64_t id = 0;
        if (kv.size() != 2 || !absl::SimpleAtoi(kv[1], &id)) continue;
        if (kv[0] == "prog_id") progs->insert(id);
        if (kv[0] == "link_id") links->insert(id);
      }
    }
    closedir(fds);
  }
  closedir(proc);
}

// gep_on_error programs and uprobe_multi links (type 12 in bpftool 7.1's
// JSON, "uprobe_multi" in newer ones) as bpftool lists them.
struct BpfObjects {
  std::set<uint64_t> progs, links;
  std::string error;
};

BpfObjects ListGepObjects() {
  BpfObjects out;
  CommandResult progs = RunCommand({"bpftool", "-j", "prog", "list"}, kTimeout);
  CommandResult links = RunCommand({"bpftool", "-j", "link", "list"}, kTimeout);
  if (progs.exit_code != 0 || links.exit_code != 0) {
    out.error = absl::StrCat("bpftool failed: ", progs.err, links.err);
    return out;
  }
  auto pj = ParseJson(progs.out);
  auto lj = ParseJson(links.out);
  if (!pj.ok() || !lj.ok()) {
    out.error = absl::StrCat("bpftool JSON: ", progs.out.substr(0, 200), links.out.substr(0, 200));
    return out;
  }
  for (const auto& p : pj->list_value().values()) {
    // Unnamed programs have no "name" key (Get would throw).
    if (p.struct_value().fields().contains("name") && GetString(p, "name") == "gep_on_error") {
      out.progs.insert(GetInt(p, "id"));
    }
  }
  for (const auto& l : lj->list_value().values()) {
    const auto& type = Get(l, "type");
    if (type.string_value() == "uprobe_multi" || type.number_value() == 12) {
      out.links.insert(GetInt(l, "id"));
    }
  }
  return out;
}

class RecordCliTest : public ::testing::Test {
 protected:
  // Other sessions may be recording on this machine at the same time, so
  // "left behind" means: listed by bpftool, yet held by no process. The
  // kernel frees a uprobe_multi link's program only after an RCU tasks-trace
  // grace period, so an orphan must persist through every listing for
  // kOrphanSeconds (bpftool's own run time paces the listings).
  void TearDown() override {
    constexpr int kOrphanSeconds = 10;
    std::optional<std::set<uint64_t>> orphan_progs, orphan_links;
    auto deadline = Clock::now() + std::chrono::seconds(kOrphanSeconds);
    int listings = 0;
    do {
      BpfObjects listed = ListGepObjects();
      ASSERT_EQ(listed.error, "");
      ++listings;
      std::set<uint64_t> held_progs, held_links;
      HeldBpfIds(&held_progs, &held_links);
      auto still = [](const std::set<uint64_t>& listed, const std::set<uint64_t>& held,
                      std::optional<std::set<uint64_t>>& orphans) {
        std::set<uint64_t> next;
        for (uint64_t id : listed) {
          if (!held.contains(id) && (!orphans || orphans->contains(id))) next.insert(id);
        }
        orphans = next;
      };
      still(listed.progs, held_progs, orphan_progs);
      still(listed.links, held_links, orphan_links);
    } while ((!orphan_progs->empty() || !orphan_links->empty()) && Clock::now() < deadline);
    EXPECT_TRUE(orphan_progs->empty()) << "gep_on_error programs held by no process for "
                                       << kOrphanSeconds << "s (" << listings << " listings): "
                                       << absl::StrJoin(*orphan_progs, ",");
    EXPECT_TRUE(orphan_links->empty()) << "uprobe_multi links held by no process for "
                                       << kOrphanSeconds << "s: "
                                       << absl::StrJoin(*orphan_links, ",");
    // goerrprof never uses tracefs probes; any entry would be a leak.
    const char* events = "/sys/kernel/tracing/uprobe_events";
    if (access(events, F_OK) == 0) {
      EXPECT_EQ(std::string(absl::StripAsciiWhitespace(ReadFileOrEmpty(events))), "");
    }
  }

  std::string OutPath(const std::string& what) const {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    // The pid keeps concurrent runs of this binary apart.
    std::string path = absl::StrCat(::testing::TempDir(), "record_cli_", getpid(), "_",
                                    info->name(), "_", what, ".pb.gz");
    std::remove(path.c_str());
    return path;
  }
};

// Spawns `goerrprof record --pid PID extra...` and waits for its
// "recording pid" line (all probes attached).
std::unique_ptr<Child> StartRecord(pid_t pid, const std::string& out,
                                   const std::vector<std::string>& extra = {}) {
  std::vector<std::string> argv = {GoerrprofPath(), "record", absl::StrCat("--pid=", pid), "-o",
                                   out};
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto rec = Child::Spawn(argv);
  if (!rec.ok()) {
    ADD_FAILURE() << rec.status();
    return nullptr;
  }
  auto line = (*rec)->ReadLine(true, kTimeout);
  if (!line.ok()) {
    ADD_FAILURE() << "record did not attach: " << line.status();
    return nullptr;
  }
  if (!absl::StartsWith(*line, absl::StrCat("goerrprof: recording pid ", pid, ": "))) {
    ADD_FAILURE() << "unexpected first line: " << *line;
    return nullptr;
  }
  return std::move(*rec);
}

// errgen -wait: spawned and past its "ready <pid>" line.

// --- 1. Safety --------------------------------------------------------------

struct ErrgenRun {
  int exit_code = -1;
  std::string stdout_text;  // normalised
};

// Output with the only run-dependent parts replaced: the pid (ready line and
// JSON "pid") and the refused dial port.
std::string Normalise(std::string text, pid_t pid) {
  text = absl::StrReplaceAll(text, {{absl::StrCat("ready ", pid, "\n"), "ready PID\n"},
                                    {absl::StrCat("\"pid\":", pid, ","), "\"pid\":PID,"}});
  static const std::regex port(R"(127\.0\.0\.1:\d+)");
  return std::regex_replace(text, port, "127.0.0.1:PORT");
}

TEST_F(RecordCliTest, TargetOutputAndExitCodeUnchangedByRecording) {
  CorpusBinary b = NewestErrgen();
  ASSERT_FALSE(b.path.empty());
  ErrgenRun runs[2];
  for (bool profiled : {false, true}) {
    SCOPED_TRACE(profiled ? "profiled" : "plain");
    std::string ready;
    auto errgen = StartErrgen(b.path, 3, &ready, kTimeout);
    ASSERT_NE(errgen, nullptr);
    pid_t pid = errgen->pid();
    std::unique_ptr<Child> rec;
    std::string out = OutPath("safety");
    if (profiled) {
      rec = StartRecord(pid, out);
      ASSERT_NE(rec, nullptr);
    }
    ASSERT_TRUE(errgen->Write("go\n").ok());
    auto run = errgen->Finish(kTimeout);
    ASSERT_TRUE(run.ok()) << run.status();
    runs[profiled].exit_code = run->exit_code;
    runs[profiled].stdout_text = Normalise(absl::StrCat(ready, "\n", run->out), pid);
    EXPECT_EQ(run->err, "");
    if (profiled) {
      auto rec_run = rec->Finish(kTimeout);
      ASSERT_TRUE(rec_run.ok()) << rec_run.status();
      EXPECT_EQ(rec_run->exit_code, 0) << rec_run->err;
      auto summary = ParseSummary(rec_run->err);
      ASSERT_TRUE(summary) << rec_run->err;
      EXPECT_EQ(summary->reason, "target exited");
      EXPECT_GT(summary->errors, 0u);
      std::remove(out.c_str());
    }
  }
  EXPECT_EQ(runs[0].exit_code, 0);
  EXPECT_EQ(runs[1].exit_code, runs[0].exit_code);
  // The normalisation must have had something to do, or it proves nothing.
  EXPECT_TRUE(absl::StartsWith(runs[0].stdout_text, "ready PID\n"));
  EXPECT_TRUE(absl::StrContains(runs[0].stdout_text, "\"pid\":PID,"));
  EXPECT_TRUE(absl::StrContains(runs[0].stdout_text, "127.0.0.1:PORT"));
  EXPECT_GT(runs[0].stdout_text.size(), 1000u);
  EXPECT_TRUE(runs[1].stdout_text == runs[0].stdout_text)
      << "stdout differs when recorded; plain " << runs[0].stdout_text.size() << " bytes, "
      << "recorded " << runs[1].stdout_text.size() << " bytes";
}

// --- 2. esbuild ---------------------------------------------------------------

TEST_F(RecordCliTest, EsbuildResolveErrors) {
  auto es = Newest(true, "", "");
  ASSERT_TRUE(es) << "no esbuild manifest: run scripts/fetch_esbuild.sh";
  SCOPED_TRACE(absl::StrCat("esbuild ", es->flavour, " built by ", es->go_version));
  // esbuild reads the whole entry from stdin before doing anything: it
  // stays blocked until we write and close.
  auto esbuild = Child::Spawn({es->path, "--bundle", "--log-level=error"});
  ASSERT_TRUE(esbuild.ok()) << esbuild.status();
  std::string out = OutPath("esbuild");
  auto rec = StartRecord((*esbuild)->pid(), out);
  ASSERT_NE(rec, nullptr);
  const std::vector<std::string> missing = {"./missing-a", "./missing-b", "./missing-c",
                                            "./missing-d"};
  std::string js;
  for (const std::string& m : missing) js += absl::StrCat("import \"", m, "\"\n");
  ASSERT_TRUE((*esbuild)->Write(js).ok());
  auto es_run = (*esbuild)->Finish(kTimeout);
  ASSERT_TRUE(es_run.ok()) << es_run.status();
  EXPECT_NE(es_run->exit_code, 0);
  for (const std::string& m : missing) {
    EXPECT_TRUE(absl::StrContains(es_run->err, absl::StrCat("Could not resolve \"", m, "\"")))
        << es_run->err;
  }

  auto rec_run = rec->Finish(kTimeout);
  ASSERT_TRUE(rec_run.ok()) << rec_run.status();
  ASSERT_EQ(rec_run->exit_code, 0) << rec_run->err;
  auto summary = ParseSummary(rec_run->err);
  ASSERT_TRUE(summary) << rec_run->err;
  EXPECT_EQ(summary->reason, "target exited");
  EXPECT_EQ(summary->file, out);
  EXPECT_GT(summary->errors, 0u);

  auto profile = profiler::ReadProfile(out);
  ASSERT_TRUE(profile.ok()) << profile.status();
  ExpectValidProfile(*profile);
  ASSERT_GT(profile->sample_size(), 0);

  // The function containing each location's address, per the binary's own
  // pclntab, must be the location's outermost (physical) frame. Non-leaf
  // addresses are return addresses: the call is at address-1.
  auto bin = symbolizer::GoBinary::Open(es->path);
  ASSERT_TRUE(bin.ok()) << bin.status();
  const symbolizer::Pclntab& tab = (*bin)->pclntab();
  auto func_at = [&](uint64_t pc) -> std::string {
    auto i = tab.FindFunc(pc);
    return i ? std::string(tab.FuncName(*i)) : "";
  };
  std::map<uint64_t, std::string> fn_names;
  for (const auto& f : profile->function()) {
    fn_names[f.id()] = profile->string_table(static_cast<int>(f.name()));
  }
  std::map<uint64_t, const perftools::profiles::Location*> locs;
  size_t checked = 0;
  for (const auto& l : profile->location()) {
    locs[l.id()] = &l;
    if (l.line_size() == 0) continue;
    const std::string& outer = fn_names[l.line(l.line_size() - 1).function_id()];
    EXPECT_TRUE(outer == func_at(l.address()) || outer == func_at(l.address() - 1))
        << "location " << l.id() << " at 0x" << std::hex << l.address() << " says " << outer
        << ", the binary says " << func_at(l.address());
    ++checked;
  }
  EXPECT_GT(checked, 0u);
  // Resolution is esbuild's own code: samples must pass through it, by names
  // the binary's function table has.
  std::set<std::string> table;
  for (size_t i = 0; i < tab.num_functions(); ++i) table.insert(std::string(tab.FuncName(i)));
  std::set<std::string> esbuild_funcs;
  int64_t esbuild_samples = 0;
  for (const auto& s : profile->sample()) {
    bool in_esbuild = false;
    for (uint64_t id : s.location_id()) {
      const auto& lines = locs[id]->line();
      if (lines.empty()) continue;
      const std::string& outer = fn_names[lines[lines.size() - 1].function_id()];
      if (absl::StartsWith(outer, "github.com/evanw/esbuild/")) {
        EXPECT_TRUE(table.contains(outer)) << outer;
        esbuild_funcs.insert(outer);
        in_esbuild = true;
      }
    }
    esbuild_samples += in_esbuild ? s.value(0) : 0;
  }
  EXPECT_GT(esbuild_samples, 0) << "no sample passes through github.com/evanw/esbuild/";
  EXPECT_GE(esbuild_funcs.size(), 2u) << absl::StrJoin(esbuild_funcs, ", ");

  CommandResult top = RunCommand(
      {"env", "GOTOOLCHAIN=local", "/usr/local/go/bin/go", "tool", "pprof", "-top", out},
      kTimeout);
  EXPECT_EQ(top.exit_code, 0) << top.err;
  EXPECT_TRUE(absl::StrContains(top.out, "flat%")) << top.out;
  // pprof's own reading of the profile shows esbuild's functions too.
  bool shown = false;
  for (const std::string& f : esbuild_funcs) shown |= absl::StrContains(top.out, f);
  EXPECT_TRUE(shown) << top.out;
  std::remove(out.c_str());
}

// --- 3. Drops ------------------------------------------------------------------

TEST_F(RecordCliTest, RingBufferDropsAreCounted) {
  CorpusBinary b = NewestErrgen();
  ASSERT_FALSE(b.path.empty());
  auto errgen = StartErrgen(b.path, 20, nullptr, kTimeout);
  ASSERT_NE(errgen, nullptr);
  std::string out = OutPath("drops");
  auto rec = StartRecord(errgen->pid(), out, {"--ringbuf_bytes=4096"});
  ASSERT_NE(rec, nullptr);
  // A fast consumer can keep even 4 KiB from overflowing (seen: 3800
  // events, 0 dropped), so stall it while errgen works: the overflow is
  // then certain, not a matter of scheduling.
  ASSERT_EQ(kill(rec->pid(), SIGSTOP), 0);
  int status = 0;
  ASSERT_EQ(waitpid(rec->pid(), &status, WUNTRACED), rec->pid());
  ASSERT_TRUE(WIFSTOPPED(status));
  ASSERT_TRUE(errgen->Write("go\n").ok());
  auto truth_run = errgen->Finish(kTimeout);
  ASSERT_EQ(kill(rec->pid(), SIGCONT), 0);
  ASSERT_TRUE(truth_run.ok()) << truth_run.status();
  ASSERT_EQ(truth_run->exit_code, 0) << truth_run->err;
  auto rec_run = rec->Finish(kTimeout);
  ASSERT_TRUE(rec_run.ok()) << rec_run.status();
  ASSERT_EQ(rec_run->exit_code, 0) << rec_run->err;
  auto summary = ParseSummary(rec_run->err);
  ASSERT_TRUE(summary) << rec_run->err;
  EXPECT_EQ(summary->reason, "target exited");
  EXPECT_GT(summary->dropped, 0u) << rec_run->err;

  auto truth = ParseJson(truth_run->out);
  ASSERT_TRUE(truth.ok()) << truth.status();
  uint64_t created = 0;
  for (const auto& sc : Get(*truth, "scenarios").list_value().values()) {
    created += GetInt(sc, "count");
  }
  EXPECT_GT(created, 0u);
  EXPECT_GE(summary->errors + summary->dropped, created) << rec_run->err;

  auto profile = profiler::ReadProfile(out);
  ASSERT_TRUE(profile.ok()) << profile.status();
  ExpectValidProfile(*profile);
  // The profile states the same total: "drops: reason=N ... (total D)".
  std::string drops_line;
  for (const std::string& c : Comments(*profile)) {
    if (absl::StartsWith(c, "drops: ")) drops_line = c;
  }
  EXPECT_TRUE(absl::EndsWith(drops_line, absl::StrCat("(total ", summary->dropped, ")")))
      << "drops comment: \"" << drops_line << "\"; summary: " << rec_run->err;
  int64_t sampled = 0;
  for (const auto& s : profile->sample()) sampled += s.value(0);
  EXPECT_EQ(static_cast<uint64_t>(sampled), summary->errors);
  std::remove(out.c_str());
}

// --- 4. Bad input -------------------------------------------------------------

TEST_F(RecordCliTest, NoPid) {
  ExpectOneLineError(RunCommand({GoerrprofPath(), "record", "-o", OutPath("x")}, kTimeout),
                     {"--pid"});
}

TEST_F(RecordCliTest, DeadPid) {
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  ASSERT_GT(pid, 0);
  ASSERT_EQ(waitpid(pid, nullptr, 0), pid);  // reaped: the pid is free
  ExpectOneLineError(
      RunCommand({GoerrprofPath(), "record", absl::StrCat("--pid=", pid), "-o", OutPath("x")},
                 kTimeout),
      {absl::StrCat("no process with pid ", pid)});
}

TEST_F(RecordCliTest, NotAGoProcess) {
  pid_t pid = SpawnExeced({"sleep", "600"});
  ASSERT_GT(pid, 0);
  CommandResult r = RunCommand(
      {GoerrprofPath(), "record", absl::StrCat("--pid=", pid), "-o", OutPath("x")}, kTimeout);
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  ExpectOneLineError(r, {"not a Go binary"});
}

TEST_F(RecordCliTest, PidNotANumber) {
  ExpectOneLineError(
      RunCommand({GoerrprofPath(), "record", "--pid=abc", "-o", OutPath("x")}, kTimeout),
      {"invalid pid \"abc\""});
}

TEST_F(RecordCliTest, WithoutPrivileges) {
  CorpusBinary b = NewestErrgen();
  ASSERT_FALSE(b.path.empty());
  auto errgen = StartErrgen(b.path, 1, nullptr, kTimeout);  // root's, blocked on stdin
  ASSERT_NE(errgen, nullptr);
  CommandResult r = RunCommand({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                GoerrprofPath(), "record", absl::StrCat("--pid=", errgen->pid()),
                                "-o", OutPath("x")},
                               kTimeout);
  ExpectOneLineError(r, {"Permission denied", "not allowed", "permission"});
  // The failed attempt left the target alone.
  ASSERT_TRUE(errgen->Write("go\n").ok());
  auto run = errgen->Finish(kTimeout);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->exit_code, 0) << run->err;
}

TEST_F(RecordCliTest, TargetExitsDuringAttach) {
  CorpusBinary b = NewestErrgen();
  ASSERT_FALSE(b.path.empty());
  // No -wait: errgen works and exits at once (a few ms), long before an
  // attach (tens of ms) completes. It stays unreaped until Finish.
  auto errgen = Child::Spawn({b.path, "-n", "1"});
  ASSERT_TRUE(errgen.ok()) << errgen.status();
  CommandResult r = RunCommand(
      {GoerrprofPath(), "record", absl::StrCat("--pid=", (*errgen)->pid()), "-o", OutPath("x")},
      kTimeout);
  ExpectOneLineError(r, {"no process", "exited"});
  auto run = (*errgen)->Finish(kTimeout);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->exit_code, 0) << run->err;
}

// --- 5. Stopping: --duration, SIGTERM, SIGINT -----------------------------------

// Records a blocked errgen until `stop` (a signal, or 0 for --duration=1s),
// then checks the reason, the profile, and that the target runs on intact.
void StopAndCheck(const std::string& out, int stop, const std::string& want_reason) {
  CorpusBinary b = NewestErrgen();
  ASSERT_FALSE(b.path.empty());
  auto errgen = StartErrgen(b.path, 1, nullptr, kTimeout);  // never released while recorded
  ASSERT_NE(errgen, nullptr);
  auto started = Clock::now();
  auto rec = StartRecord(errgen->pid(), out,
                         stop == 0 ? std::vector<std::string>{"--duration=1s"}
                                   : std::vector<std::string>{});
  ASSERT_NE(rec, nullptr);
  auto attached = Clock::now();
  if (stop != 0) {
    ASSERT_EQ(kill(rec->pid(), stop), 0);
  }
  auto rec_run = rec->Finish(kTimeout);
  ASSERT_TRUE(rec_run.ok()) << rec_run.status();
  double took = std::chrono::duration<double>(Clock::now() - started).count();
  EXPECT_EQ(rec_run->exit_code, 0) << rec_run->err;
  auto summary = ParseSummary(rec_run->err);
  ASSERT_TRUE(summary) << rec_run->err;
  EXPECT_EQ(summary->reason, want_reason);
  EXPECT_EQ(summary->file, out);
  EXPECT_GT(summary->probes, 0u);
  if (stop == 0) {
    // Recording starts after the attach line, so at least 1s from there.
    EXPECT_GE(std::chrono::duration<double>(Clock::now() - attached).count(), 1.0);
    EXPECT_LT(took, 20.0);
  } else {
    EXPECT_LT(took, 20.0);
  }
  auto profile = profiler::ReadProfile(out);
  ASSERT_TRUE(profile.ok()) << profile.status();
  ExpectValidProfile(*profile);
  int64_t sampled = 0;
  for (const auto& s : profile->sample()) sampled += s.value(0);
  EXPECT_EQ(static_cast<uint64_t>(sampled), summary->errors);

  // Detached: the target still works normally.
  ASSERT_TRUE(errgen->Write("go\n").ok());
  auto run = errgen->Finish(kTimeout);
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->exit_code, 0) << run->err;
  EXPECT_TRUE(ParseJson(run->out).ok()) << run->out.substr(0, 200);
  std::remove(out.c_str());
}

TEST_F(RecordCliTest, DurationElapses) { StopAndCheck(OutPath("p"), 0, "duration elapsed"); }
TEST_F(RecordCliTest, Sigterm) { StopAndCheck(OutPath("p"), SIGTERM, "terminated"); }
TEST_F(RecordCliTest, Sigint) { StopAndCheck(OutPath("p"), SIGINT, "interrupted"); }

}  // namespace
}  // namespace goerrprof::testing

namespace goerrprof::testing {
namespace {

// A loopback port free at the time of asking (pprof -http cannot report
// the port it chose for :0).
int FreeLoopbackPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a = {};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  int port = -1;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  close(fd);
  return port;
}

// go tool pprof's web UI serves a recorded profile: its top view names the
// creating sites.
TEST_F(RecordCliTest, PprofWebUiServesTheProfile) {
  CorpusBinary eg = NewestErrgen();
  std::string ready;
  auto errgen = StartErrgen(eg.path, 1, &ready, kTimeout);
  ASSERT_NE(errgen, nullptr);
  std::string out = OutPath("http");
  auto rec = StartRecord(errgen->pid(), out);
  ASSERT_NE(rec, nullptr);
  ASSERT_TRUE(errgen->Write("go\n").ok());
  ASSERT_TRUE(errgen->Finish(kTimeout).ok());
  auto recorded = rec->Finish(kTimeout);
  ASSERT_TRUE(recorded.ok() && recorded->exit_code == 0) << recorded->err;

  int port = FreeLoopbackPort();
  ASSERT_GT(port, 0);
  std::string addr = absl::StrCat("127.0.0.1:", port);
  auto pprof = Child::Spawn({"env", "GOTOOLCHAIN=local", "/usr/local/go/bin/go", "tool", "pprof",
                             "-no_browser", absl::StrCat("-http=", addr), out});
  ASSERT_TRUE(pprof.ok()) << pprof.status();
  auto line = (*pprof)->ReadLine(true, kTimeout);  // "Serving web UI on http://…"
  ASSERT_TRUE(line.ok()) << line.status();
  ASSERT_TRUE(absl::StrContains(*line, addr)) << *line;
  CommandResult top = RunCommand({"curl", "-sS", "--max-time", "30", "-o", "-", "-w",
                                  "\nHTTP %{http_code}", absl::StrCat("http://", addr, "/ui/top")});
  EXPECT_EQ(top.exit_code, 0) << top.err;
  EXPECT_TRUE(absl::EndsWith(top.out, "HTTP 200")) << top.out.substr(0, 300);
  EXPECT_TRUE(absl::StrContains(top.out, "main.siteQueryPtr")) << "top view lacks errgen's sites";
  // The Child destructor stops the server.
}

}  // namespace
}  // namespace goerrprof::testing
