// `goerrprof goroutines` against ground truth: the parked program's own
// debug=2 goroutine dump and its label JSON, on every Go release of the
// corpus (default, stripped, PIE). Ids, states, stacks (functions,
// file:line, +0x offsets, inlined frames), creation sites and parent ids
// must be equal; labels equal the JSON; the pprof output carries the same
// and opens in go tool pprof. main() also registers the corpus checks of
// goroutines_targets_test.cc (churn, esbuild, runtime.allgs); bad input is
// in goroutines_cli_test.cc.
#include <time.h>

#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "pprof/profile_file.h"
#include "tests/goroutines/goroutines_test_util.h"
#include "tests/test_support.h"

namespace goerrprof::testing {
namespace {

namespace pp = perftools::profiles;

void CompareText(const Truth& truth, const std::map<uint64_t, Dumped>& ours,
                 const std::string& text) {
  size_t compared = 0;
  for (const auto& [id, want] : truth.dump) {
    if (id == truth.dumper) continue;
    auto it = ours.find(id);
    if (it == ours.end()) {
      ADD_FAILURE() << "goroutine " << id << " [" << want.state << "] missing";
      continue;
    }
    const Dumped& got = it->second;
    EXPECT_EQ(got.state, want.state) << "goroutine " << id;
    EXPECT_EQ(got.parent, want.parent) << "goroutine " << id;
    EXPECT_EQ(got.marker, want.marker) << "goroutine " << id;
    ASSERT_EQ(got.frames.size(), want.frames.size()) << "goroutine " << id << "\n" << text;
    for (size_t i = 0; i < want.frames.size(); ++i) {
      EXPECT_EQ(got.frames[i], want.frames[i])
          << "goroutine " << id << " frame " << i << ": " << Describe(got.frames[i])
          << " != " << Describe(want.frames[i]);
    }
    ASSERT_EQ(got.creator.has_value(), want.creator.has_value()) << "goroutine " << id;
    if (want.creator) {
      EXPECT_EQ(*got.creator, *want.creator) << "goroutine " << id << ": "
                                             << Describe(*got.creator)
                                             << " != " << Describe(*want.creator);
    }
    ++compared;
  }
  for (const auto& [id, got] : ours) {
    if (id != truth.dumper && !truth.dump.contains(id)) {
      ADD_FAILURE() << "goroutine " << id << " [" << got.state << "] invented";
    }
  }
  EXPECT_GE(compared, 20u);
  // deepWait's stack is longer than Go prints: cut to 100 frames (1.21+
  // with a marker in the middle).
  bool deep = false;
  for (const auto& [id, want] : truth.dump) deep |= want.frames.size() >= 97;
  EXPECT_TRUE(deep) << "the truth has no stack deep enough to be cut";
}

// "# labels: {"k":"v", ...}" lines of our dump, by goroutine.
std::map<uint64_t, Labels> TextLabels(const std::string& text) {
  std::map<uint64_t, Labels> out;
  uint64_t id = 0;
  for (absl::string_view l : absl::StrSplit(text, '\n')) {
    if (absl::ConsumePrefix(&l, "goroutine ")) {
      EXPECT_TRUE(absl::SimpleAtoi(l.substr(0, l.find(' ')), &id));
    } else if (absl::ConsumePrefix(&l, "# labels: ")) {
      auto js = ParseJson(std::string(l));
      EXPECT_TRUE(js.ok()) << l;
      if (!js.ok()) continue;
      for (const auto& [k, v] : js->struct_value().fields()) out[id][k] = v.string_value();
    }
  }
  return out;
}

void ComparePprof(const Truth& truth, const std::string& path) {
  auto p = profiler::ReadProfile(path);
  ASSERT_TRUE(p.ok()) << p.status();
  auto str = [&](int64_t i) { return p->string_table(i); };
  ASSERT_EQ(p->sample_type_size(), 2);
  EXPECT_EQ(str(p->sample_type(0).type()), "goroutines");
  EXPECT_EQ(str(p->sample_type(1).type()), "wait");
  EXPECT_EQ(str(p->sample_type(1).unit()), "nanoseconds");
  std::map<uint64_t, const pp::Location*> locs;
  std::map<uint64_t, const pp::Function*> funcs;
  for (const pp::Location& l : p->location()) locs[l.id()] = &l;
  for (const pp::Function& f : p->function()) funcs[f.id()] = &f;
  size_t seen = 0;
  for (const pp::Sample& s : p->sample()) {
    int64_t id = -1;
    Labels strs, user;
    for (const pp::Label& l : s.label()) {
      std::string k = str(l.key());
      if (k == "goroutine") id = l.num();
      if (l.str() == 0) continue;
      if (absl::StartsWith(k, "goroutine.")) {
        strs[k] = str(l.str());
      } else {
        user[k] = str(l.str());
      }
    }
    ASSERT_GT(id, 0);
    EXPECT_EQ(s.value(0), 1);
    if (static_cast<uint64_t>(id) == truth.dumper) continue;
    auto it = truth.dump.find(id);
    if (it == truth.dump.end()) {
      ADD_FAILURE() << "pprof: goroutine " << id << " invented";
      continue;
    }
    ++seen;
    const Dumped& want = it->second;
    EXPECT_EQ(strs["goroutine.state"], want.state) << id;
    ASSERT_TRUE(want.creator.has_value());
    EXPECT_EQ(strs["goroutine.created_by"], want.creator->function) << id;
    EXPECT_EQ(strs["goroutine.created_at"], absl::StrCat(want.creator->file, ":", want.creator->line))
        << id;
    auto lt = truth.labels.find(id);
    EXPECT_EQ(user, lt == truth.labels.end() ? Labels{} : lt->second) << "labels of " << id;
    // The stack holds every shown frame, in order (runtime frames too).
    std::vector<std::string> fns;
    for (uint64_t lid : s.location_id()) {
      for (const pp::Line& line : locs.at(lid)->line()) {
        fns.push_back(str(funcs.at(line.function_id())->name()));
      }
    }
    size_t k = 0;
    for (const Frame& f : want.frames) {
      while (k < fns.size() && fns[k] != f.function) ++k;
      EXPECT_LT(k, fns.size()) << "pprof stack of " << id << " lacks " << f.function;
    }
  }
  EXPECT_EQ(seen, truth.dump.size() - 1);
}

int64_t MonotonicNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

// Waits we print: "≥D" (lower bound), "D" (exact, sampled mutex parks
// only), "wait unknown". None can exceed the target's lifetime.
void CheckWaits(const std::map<uint64_t, Dumped>& ours, int64_t lifetime_ns) {
  for (const auto& [id, g] : ours) {
    if (g.wait.empty() || g.wait == "wait unknown") continue;
    absl::string_view w = g.wait;
    bool bound = absl::ConsumePrefix(&w, "≥");
    if (!bound) {
      EXPECT_TRUE(g.state == "sync.Mutex.Lock" || g.state == "sync.RWMutex.Lock" ||
                  g.state == "sync.RWMutex.RLock")
          << "exact wait for goroutine " << id << " [" << g.state << "]";
    }
    absl::Duration d;
    ASSERT_TRUE(absl::ParseDuration(w, &d)) << g.wait;
    EXPECT_GE(d, absl::ZeroDuration()) << id;
    EXPECT_LE(absl::ToInt64Nanoseconds(d), lifetime_ns) << "goroutine " << id << " waited "
                                                        << g.wait;
  }
}

}  // namespace

void CheckParked(const CorpusBinary& b) {
  Truth truth;
  int64_t spawned = MonotonicNs();
  // PIE runs also run a GC once everything parked: it stamps g.waitsince,
  // so every wait is known (a lower bound, or exact).
  bool gc = b.flavour == "pie";
  auto child = StartParked(b.path, &truth, gc);
  ASSERT_NE(child, nullptr);
  std::string pid = absl::StrCat("--pid=", child->pid());

  CommandResult text = RunCommand({GoerrprofPath(), "goroutines", pid, "--text"}, kTimeout);
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_TRUE(absl::StrContains(text.err, "0 skipped as torn")) << text.err;
  std::map<uint64_t, Dumped> ours = ParseDump(text.out);
  CompareText(truth, ours, text.out);
  CheckWaits(ours, MonotonicNs() - spawned);
  for (const auto& [id, g] : ours) {
    if (id == truth.dumper) continue;
    if (gc) {
      EXPECT_FALSE(g.wait.empty() || g.wait == "wait unknown") << "goroutine " << id;
    } else {
      // No GC has run (the heap is tiny): only sampled mutex parks are known.
      EXPECT_TRUE(g.wait == "wait unknown" || !absl::StartsWith(g.wait, "≥"))
          << "goroutine " << id << ": " << g.wait;
    }
  }
  // The dumping goroutine is in a syscall (reading stdin) now.
  ASSERT_TRUE(ours.contains(truth.dumper));
  EXPECT_EQ(ours[truth.dumper].state, "syscall");

  // --all: the runtime's own goroutines too, with every frame.
  CommandResult all = RunCommand({GoerrprofPath(), "goroutines", pid, "--text", "--all"}, kTimeout);
  ASSERT_EQ(all.exit_code, 0) << all.err;
  std::map<uint64_t, Dumped> with_system = ParseDump(all.out);
  EXPECT_GT(with_system.size(), ours.size());
  bool forcegc = false;
  for (const auto& [id, g] : with_system) {
    if (!ours.contains(id)) {
      ASSERT_FALSE(g.frames.empty()) << id;
      EXPECT_TRUE(absl::StartsWith(g.frames.front().function, "runtime.")) << id;
    } else {
      EXPECT_GE(g.frames.size(), ours[id].frames.size()) << id;
    }
    for (const Frame& f : g.frames) forcegc |= f.function == "runtime.forcegchelper";
  }
  EXPECT_TRUE(forcegc) << all.out;
  EXPECT_TRUE(absl::StrContains(all.out, "runtime.gopark")) << all.out;

  std::map<uint64_t, Labels> labels = TextLabels(text.out);
  EXPECT_EQ(labels, truth.labels);
  EXPECT_GE(truth.labels.size(), 5u);

  char dir[] = "/tmp/goroutines_test.XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::string out = absl::StrCat(dir, "/g.pb.gz");
  CommandResult prof = RunCommand({GoerrprofPath(), "goroutines", pid, "-o", out}, kTimeout);
  ASSERT_EQ(prof.exit_code, 0) << prof.err;
  ComparePprof(truth, out);

  // Leaks with no minimum: every waiting goroutine, grouped.
  CommandResult leaks =
      RunCommand({GoerrprofPath(), "goroutines", pid, "--leaks", "--min-wait=0"}, kTimeout);
  ASSERT_EQ(leaks.exit_code, 0) << leaks.err;
  size_t waiting = truth.dump.size() - 1;
  EXPECT_TRUE(absl::StartsWith(leaks.out, absl::StrCat(waiting, " goroutines in ")))
      << leaks.out;
  EXPECT_TRUE(absl::StrContains(leaks.out, "\n5 goroutines [chan receive, waiting ≥"))
      << leaks.out;

  if (gc) {
    // Every wait is known and at least a nanosecond: all in groups.
    CommandResult known =
        RunCommand({GoerrprofPath(), "goroutines", pid, "--leaks", "--min-wait=1ns"}, kTimeout);
    ASSERT_EQ(known.exit_code, 0) << known.err;
    EXPECT_TRUE(absl::StartsWith(known.out, absl::StrCat(waiting, " goroutines in ")))
        << known.out;
    EXPECT_FALSE(absl::StrContains(known.out, "not considered")) << known.out;
  }

  // Nothing here has waited an hour: no group, and those whose wait is
  // unknown are counted, not guessed.
  CommandResult none =
      RunCommand({GoerrprofPath(), "goroutines", pid, "--leaks", "--min-wait=1h"}, kTimeout);
  ASSERT_EQ(none.exit_code, 0) << none.err;
  EXPECT_TRUE(absl::StartsWith(none.out, "0 goroutines in 0 groups waiting at least 1h"))
      << none.out;

  // go tool pprof reads it: counts, tags and traces.
  auto run = [&](const std::string& flag) {
    std::vector<std::string> argv = kPprof;
    argv.push_back(flag);
    argv.push_back(out);
    CommandResult r = RunCommand(argv, 300);
    EXPECT_EQ(r.exit_code, 0) << flag << ": " << r.err;
    return r.out;
  };
  std::string top = run("-top");
  EXPECT_TRUE(absl::StrContains(top, "Type: goroutines")) << top;
  EXPECT_TRUE(absl::StrContains(top, absl::StrCat("of ", truth.dump.size(), " total"))) << top;
  std::string tags = run("-tags");
  EXPECT_TRUE(absl::StrContains(tags, "goroutine.created_by")) << tags;
  EXPECT_TRUE(absl::StrContains(tags, "main.spawnLockers")) << tags;
  EXPECT_TRUE(absl::StrContains(tags, "worker")) << tags;
  std::string traces = run("-traces");
  EXPECT_TRUE(absl::StrContains(traces, "main.selectWaiter")) << traces;
  std::remove(out.c_str());
  rmdir(dir);

  ASSERT_TRUE(child->Write("quit\n").ok());
  auto done = child->Finish(kTimeout);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->exit_code, 0) << done->err;
}

}  // namespace goerrprof::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  for (const char* flavour : {"parked-default", "parked-stripped", "parked-pie"}) {
    goerrprof::testing::RegisterCorpusTests("Goroutines", flavour, false,
                                            goerrprof::testing::CheckParked);
  }
  // No Go-corpus program is named "none": esbuild binaries only.
  goerrprof::testing::RegisterCorpusTests("Esbuild", "none", true,
                                          goerrprof::testing::CheckEsbuild);
  for (const char* flavour : {"parked-stripped", "parked-cgo"}) {
    goerrprof::testing::RegisterCorpusTests("Churn", flavour, false,
                                            goerrprof::testing::CheckChurn);
  }
  for (const char* flavour : {"parked-default", "parked-pie", "parked-cgo"}) {
    goerrprof::testing::RegisterCorpusTests("AllgsSymbol", flavour, false,
                                            goerrprof::testing::CheckAllgs);
  }
  for (const char* flavour : {"parked-default", "parked-stripped", "parked-pie", "parked-cgo"}) {
    goerrprof::testing::RegisterCorpusTests("AllocCounter", flavour, false,
                                            goerrprof::testing::CheckAllocCounter);
  }
  return RUN_ALL_TESTS();
}
