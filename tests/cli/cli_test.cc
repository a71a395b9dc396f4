// The goerrprof executable's inspect and symbolize output, end to end.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "symbolizer/go_binary.h"
#include "tests/test_support.h"

namespace goerrprof::testing {
namespace {

// The newest release's errgen builds, by flavour.
std::string Errgen(const std::string& flavour) {
  auto corpus = LoadCorpus(false);
  std::string path;
  if (!corpus.ok()) return path;
  for (const auto& b : *corpus) {
    if (b.program == "errgen" && b.flavour == flavour) path = b.path;  // last = newest
  }
  return path;
}

TEST(Cli, InspectJsonHasTheDocumentedKeys) {
  for (const std::string flavour : {"default", "stripped", "pie", "cgo"}) {
    std::string bin = Errgen(flavour);
    ASSERT_FALSE(bin.empty()) << "Go corpus missing";
    CommandResult r = RunCommand({GoerrprofPath(), "inspect", "--json", bin});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto j = ParseJson(r.out);
    ASSERT_TRUE(j.ok()) << j.status();
    auto go = symbolizer::GoBinary::Open(bin);
    ASSERT_TRUE(go.ok());
    EXPECT_EQ(GetString(*j, "go_version"), (*go)->build_info().go_version);
    EXPECT_EQ(GetString(*j, "pclntab_version"), "1.20");
    EXPECT_EQ(GetInt(*j, "functions"), (*go)->pclntab().num_functions());
    EXPECT_EQ(Get(*j, "stripped").bool_value(), flavour == "stripped") << flavour;
    EXPECT_EQ(Get(*j, "pie").bool_value(), flavour == "pie") << flavour;
    EXPECT_EQ(Get(*j, "cgo").bool_value(), flavour == "cgo") << flavour;
    EXPECT_GT(Get(*j, "error_types").list_value().values_size(), 10) << flavour;
    // The probe plan: what record attaches, the rest counted by reason.
    const auto& plan = Get(*j, "plan");
    EXPECT_GT(GetInt(plan, "probes"), 100) << flavour;
    int64_t unplanned = 0;
    for (const auto& [reason, n] : Get(plan, "unplanned").struct_value().fields()) {
      unplanned += static_cast<int64_t>(n.number_value());
    }
    EXPECT_LE(unplanned, GetInt(plan, "references")) << flavour;
    EXPECT_LE(GetInt(plan, "possibly_missed"), unplanned) << flavour;
    EXPECT_TRUE(Get(plan, "unplanned").struct_value().fields().contains("comparison")) << flavour;
  }
}

TEST(Cli, InspectByPidReadsTheRunningExecutable) {
  std::string bin = Errgen("stripped");
  ASSERT_FALSE(bin.empty()) << "Go corpus missing";
  int to_child[2], from_child[2];
  ASSERT_EQ(pipe(to_child), 0);
  ASSERT_EQ(pipe(from_child), 0);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(to_child[0], 0);
    dup2(from_child[1], 1);
    close(to_child[1]);
    close(from_child[0]);
    execl(bin.c_str(), bin.c_str(), "-wait", nullptr);
    _exit(127);
  }
  close(to_child[0]);
  close(from_child[1]);
  // "ready <pid>" means errgen has exec'd and now blocks reading stdin, so
  // it stays alive while we inspect.
  FILE* out = fdopen(from_child[0], "r");
  char line[128] = {};
  ASSERT_NE(fgets(line, sizeof(line), out), nullptr);
  ASSERT_EQ(std::string(line), absl::StrCat("ready ", pid, "\n"));
  CommandResult by_pid = RunCommand({GoerrprofPath(), "inspect", "--json", absl::StrCat("--pid=", pid)});
  CommandResult by_path = RunCommand({GoerrprofPath(), "inspect", "--json", bin});
  close(to_child[1]);  // EOF: errgen proceeds and exits
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  fclose(out);
  ASSERT_EQ(by_pid.exit_code, 0) << by_pid.err;
  auto a = ParseJson(by_pid.out), b = ParseJson(by_path.out);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(GetString(*a, "path"), absl::StrCat("/proc/", pid, "/exe"));
  EXPECT_EQ(GetString(*a, "build_id"), GetString(*b, "build_id"));
  EXPECT_EQ(GetInt(*a, "functions"), GetInt(*b, "functions"));
}

TEST(Cli, SymbolizeJsonExpandsInlinedFrames) {
  std::string bin = Errgen("default");
  ASSERT_FALSE(bin.empty()) << "Go corpus missing";
  auto go = symbolizer::GoBinary::Open(bin);
  ASSERT_TRUE(go.ok());
  // Find a PC with inlined frames to compare the CLI against the library.
  const auto& tab = (*go)->pclntab();
  uint64_t inlined_pc = 0;
  for (size_t i = 0; i < tab.num_functions() && !inlined_pc; ++i) {
    if (tab.FuncName(i).rfind("main.", 0) != 0) continue;
    for (uint64_t pc = tab.FuncEntry(i); pc < tab.FuncEnd(i); ++pc) {
      auto f = (*go)->Symbolize(pc);
      if (f.ok() && f->size() >= 2) {
        inlined_pc = pc;
        break;
      }
    }
  }
  ASSERT_NE(inlined_pc, 0u) << "no inlined call in package main";
  std::string addr = absl::StrCat("0x", absl::Hex(inlined_pc));
  CommandResult r = RunCommand({GoerrprofPath(), "symbolize", "--json", bin, addr, "0x1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = ParseJson(r.out);
  ASSERT_TRUE(j.ok()) << j.status();
  const auto& entries = j->list_value().values();
  ASSERT_EQ(entries.size(), 2);
  EXPECT_EQ(GetString(entries[0], "address"), addr);
  auto want = (*go)->Symbolize(inlined_pc);
  const auto& frames = Get(entries[0], "frames").list_value().values();
  ASSERT_EQ(frames.size(), want->size());
  for (int k = 0; k < frames.size(); ++k) {
    EXPECT_EQ(GetString(frames[k], "function"), (*want)[k].function);
    EXPECT_EQ(GetString(frames[k], "file"), (*want)[k].file);
    EXPECT_EQ(GetInt(frames[k], "line"), (*want)[k].line);
  }
  EXPECT_EQ(Get(entries[1], "frames").list_value().values_size(), 0) << "0x1 is in no function";
}

}  // namespace
}  // namespace goerrprof::testing
