// `goerrprof record` as a user meets it, with real BPF: the target behaves
// the same whether recorded or not, a real third-party program (esbuild)
// can be recorded, drops are reported; bad input fails with one clear line
// (record_cli_input_test.cc), every way of stopping writes a profile
// (record_cli_output_test.cc); and nothing stays attached (the fixture).
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <memory>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "gtest/gtest.h"
#include "pprof/profile_file.h"
#include "symbolizer/go_binary.h"
#include "tests/e2e/record_cli_fixture.h"
#include "tests/test_support.h"

namespace goerrprof::testing {
namespace {

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
      Summary summary;
      ASSERT_NO_FATAL_FAILURE(FinishRecord(*rec, "target exited", &summary));
      EXPECT_GT(summary.errors, 0u);
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
  auto es = NewestCorpusBinary(true, "", "");
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

  Summary summary;
  ASSERT_NO_FATAL_FAILURE(FinishRecord(*rec, "target exited", &summary));
  EXPECT_EQ(summary.file, out);
  EXPECT_GT(summary.errors, 0u);

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
  Summary summary;
  std::string said;  // goerrprof's stderr
  ASSERT_NO_FATAL_FAILURE(FinishRecord(*rec, "target exited", &summary, &said));
  EXPECT_GT(summary.dropped, 0u) << said;

  auto truth = ParseJson(truth_run->out);
  ASSERT_TRUE(truth.ok()) << truth.status();
  uint64_t created = 0;
  for (const auto& sc : Get(*truth, "scenarios").list_value().values()) {
    created += GetInt(sc, "count");
  }
  EXPECT_GT(created, 0u);
  EXPECT_GE(summary.errors + summary.dropped, created) << said;

  auto profile = profiler::ReadProfile(out);
  ASSERT_TRUE(profile.ok()) << profile.status();
  ExpectValidProfile(*profile);
  // The profile states the same total: "drops: reason=N ... (total D)".
  std::string drops_line;
  for (const std::string& c : Comments(*profile)) {
    if (absl::StartsWith(c, "drops: ")) drops_line = c;
  }
  EXPECT_TRUE(absl::EndsWith(drops_line, absl::StrCat("(total ", summary.dropped, ")")))
      << "drops comment: \"" << drops_line << "\"; summary: " << said;
  int64_t sampled = 0;
  for (const auto& s : profile->sample()) sampled += s.value(0);
  EXPECT_EQ(static_cast<uint64_t>(sampled), summary.errors);
  std::remove(out.c_str());
}

}  // namespace
}  // namespace goerrprof::testing
