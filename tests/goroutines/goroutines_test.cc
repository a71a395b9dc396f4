// `goerrprof goroutines` against ground truth: the parked program's own
// debug=2 goroutine dump and its label JSON, on every Go release of the
// corpus (default, stripped, PIE). Ids, states, stacks (functions,
// file:line, +0x offsets, inlined frames), creation sites and parent ids
// must be equal; labels equal the JSON; the pprof output carries the same
// and opens in go tool pprof. Also: runtime.allgs found from code equals
// the symbol, and bad input gets one line and a non-zero exit.
#include <signal.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "goabi/g_layout.h"
#include "goroutines/goroutine_locate.h"
#include "pprof/pprof_builder.h"
#include "pprof/pprof_writer.h"
#include "symbolizer/go_binary.h"
#include "tests/test_support.h"
#include "pprof/profile_file.h"

namespace goerrprof::testing {
namespace {

namespace pp = perftools::profiles;

constexpr int kTimeout = 120;
const std::vector<std::string> kPprof = {"env", "GOTOOLCHAIN=local", "/usr/local/go/bin/go",
                                         "tool", "pprof"};

struct Frame {
  std::string function, file;
  int64_t line = 0;
  int64_t offset = -1;  // -1: none printed
  bool operator==(const Frame&) const = default;
};

struct Dumped {
  uint64_t id = 0;
  std::string state;
  std::string wait;  // what follows the state in the header, if anything
  std::string marker;  // a "..." line: frames left out
  std::vector<Frame> frames;
  std::optional<Frame> creator;
  uint64_t parent = 0;
};

std::string Describe(const Frame& f) {
  return absl::StrCat(f.function, " ", f.file, ":", f.line, f.offset >= 0 ? " +" : "",
                      f.offset >= 0 ? absl::StrCat(f.offset) : "");
}

// "\t/path/file.go:12 +0x1d"
bool ParseFileLine(absl::string_view s, Frame* f) {
  if (!absl::ConsumePrefix(&s, "\t")) return false;
  size_t sp = s.find(" +0x");
  absl::string_view loc = s.substr(0, sp);
  if (sp != absl::string_view::npos) {
    uint64_t off;
    if (!absl::SimpleHexAtoi(s.substr(sp + 4), &off)) return false;
    f->offset = static_cast<int64_t>(off);
  }
  size_t colon = loc.rfind(':');
  if (colon == absl::string_view::npos) return false;
  f->file = std::string(loc.substr(0, colon));
  return absl::SimpleAtoi(loc.substr(colon + 1), &f->line);
}

// "pkg.(*T).m(0x1, {0x2, 0x3})" -> "pkg.(*T).m": drop the final
// parenthesised group.
std::string FunctionOf(absl::string_view s) {
  if (!absl::EndsWith(s, ")")) return std::string(s);
  int depth = 0;
  for (size_t i = s.size(); i-- > 0;) {
    if (s[i] == ')') ++depth;
    if (s[i] == '(' && --depth == 0) return std::string(s.substr(0, i));
  }
  return std::string(s);
}

// Parses Go's debug=2 dump, or ours (same shape, plus "# ..." lines).
std::map<uint64_t, Dumped> ParseDump(const std::string& text) {
  std::map<uint64_t, Dumped> out;
  for (absl::string_view block : absl::StrSplit(text, "\n\n", absl::SkipWhitespace())) {
    std::vector<absl::string_view> lines = absl::StrSplit(block, '\n', absl::SkipEmpty());
    if (lines.empty()) continue;
    Dumped d;
    absl::string_view h = lines[0];
    EXPECT_TRUE(absl::ConsumePrefix(&h, "goroutine ")) << block;
    size_t sp = h.find(' ');
    EXPECT_TRUE(absl::SimpleAtoi(h.substr(0, sp), &d.id)) << block;
    size_t open = h.find('['), close = h.rfind(']');
    absl::string_view state = h.substr(open + 1, close - open - 1);
    if (size_t comma = state.find(", "); comma != absl::string_view::npos) {
      d.wait = std::string(state.substr(comma + 2));
    }
    state = state.substr(0, state.find(','));
    d.state = std::string(absl::StripSuffix(state, " (scan)"));
    for (size_t i = 1; i < lines.size(); ++i) {
      absl::string_view l = lines[i];
      if (absl::StartsWith(l, "#") || absl::StartsWith(l, "\tgoroutine running") ||
          absl::StartsWith(l, "...")) {
        if (absl::StartsWith(l, "...")) d.marker = std::string(l);
        continue;
      }
      Frame f;
      bool creator = absl::ConsumePrefix(&l, "created by ");
      if (creator) {
        size_t in = l.find(" in goroutine ");
        if (in != absl::string_view::npos) {
          EXPECT_TRUE(absl::SimpleAtoi(l.substr(in + 14), &d.parent)) << l;
          l = l.substr(0, in);
        }
        f.function = std::string(l);
      } else {
        f.function = FunctionOf(l);
      }
      EXPECT_LT(i + 1, lines.size()) << block;
      if (i + 1 >= lines.size()) break;
      EXPECT_TRUE(ParseFileLine(lines[++i], &f)) << lines[i];
      if (creator) {
        d.creator = f;
      } else {
        d.frames.push_back(f);
      }
    }
    out[d.id] = d;
  }
  return out;
}

using Labels = std::map<std::string, std::string>;

struct Truth {
  std::map<uint64_t, Dumped> dump;
  std::map<uint64_t, Labels> labels;
  uint64_t dumper = 0;  // running at dump time
};

// Starts parked and reads its truth; the child stays blocked on stdin.
std::unique_ptr<Child> StartParked(const std::string& path, Truth* truth, bool gc = false) {
  std::vector<std::string> argv = {path};
  if (gc) argv.push_back("-gc");
  auto child = Child::Spawn(argv);
  EXPECT_TRUE(child.ok()) << child.status();
  if (!child.ok()) return nullptr;
  auto ready = (*child)->ReadLine(false, kTimeout);
  EXPECT_TRUE(ready.ok() && absl::StartsWith(*ready, "ready ")) << ready.status();
  if (!ready.ok()) return nullptr;
  std::string dump;
  for (;;) {
    auto line = (*child)->ReadLine(false, kTimeout);
    EXPECT_TRUE(line.ok()) << line.status();
    if (!line.ok()) return nullptr;
    if (absl::StartsWith(*line, "{\"labels\"")) {
      auto js = ParseJson(*line);
      EXPECT_TRUE(js.ok()) << js.status();
      if (!js.ok()) return nullptr;
      for (const auto& [id, kv] : Get(*js, "labels").struct_value().fields()) {
        Labels& l = truth->labels[std::stoull(id)];
        for (const auto& [k, v] : kv.struct_value().fields()) l[k] = v.string_value();
      }
      break;
    }
    absl::StrAppend(&dump, *line, "\n");
  }
  truth->dump = ParseDump(dump);
  for (const auto& [id, d] : truth->dump) {
    if (d.state == "running") truth->dumper = id;
  }
  EXPECT_NE(truth->dumper, 0u) << "no running goroutine in the truth dump";
  return std::move(*child);
}

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

// The allgs address found from allgadd's code is the symbol's.
void CheckAllgs(const CorpusBinary& b) {
  auto bin = symbolizer::GoBinary::Open(b.path);
  ASSERT_TRUE(bin.ok()) << bin.status();
  auto found = profiler::FindAllgs(**bin);
  ASSERT_TRUE(found.ok()) << found.status();
  auto sym = (*bin)->elf().LookupSymbol("runtime.allgs");
  ASSERT_TRUE(sym.has_value()) << "no runtime.allgs symbol in " << b.path;
  EXPECT_EQ(*found, *sym);
}

void ExpectOneLineError(const CommandResult& r, const std::vector<std::string>& any_of) {
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(absl::StartsWith(r.err, "goerrprof: ")) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  bool matched = false;
  for (const std::string& s : any_of) matched |= absl::StrContains(r.err, s);
  EXPECT_TRUE(matched) << r.err;
  EXPECT_EQ(r.out, "");
}

// A target that never stops changing (goroutines born and dying, stacks
// copied, mutexes handed over): every snapshot must succeed and show only
// well-formed goroutines; what could not be read consistently is counted.
void CheckChurn(const CorpusBinary& b) {
  constexpr int kWorkers = 40;
  auto child = Child::Spawn({b.path, "-churn", absl::StrCat(kWorkers)});
  ASSERT_TRUE(child.ok()) << child.status();
  auto ready = (*child)->ReadLine(false, kTimeout);
  ASSERT_TRUE(ready.ok() && absl::StartsWith(*ready, "ready ")) << ready.status();
  auto bin = symbolizer::GoBinary::Open(b.path);
  ASSERT_TRUE(bin.ok()) << bin.status();
  auto layout = goabi::GLayoutFor((*bin)->version());
  ASSERT_TRUE(layout.ok());
  std::set<std::string> states;
  for (std::string_view w : layout->wait_reasons) states.insert(std::string(w));
  for (std::string_view w : layout->status_names) states.insert(std::string(w));
  states.erase("");
  std::string pid = absl::StrCat("--pid=", (*child)->pid());
  uint64_t skipped = 0, retried = 0, truncated = 0, preempted = 0;
  for (int i = 0; i < 25; ++i) {
    // Every other snapshot with --all: runtime frames, asyncPreempt among them.
    std::vector<std::string> argv = {GoerrprofPath(), "goroutines", pid, "--text"};
    if (i % 2 == 1) argv.push_back("--all");
    CommandResult r = RunCommand(argv, kTimeout);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    // "goerrprof: N goroutines of pid P read in X ms (H system hidden, F free,
    // R re-read, S skipped as torn, T stacks truncated, ...)"
    std::vector<std::string> words = absl::StrSplit(r.err, absl::ByAnyChar(" (,"), absl::SkipEmpty());
    ASSERT_GE(words.size(), 20u) << r.err;
    uint64_t shown = 0, sk = 0, re = 0, tr = 0;
    ASSERT_TRUE(absl::SimpleAtoi(words[1], &shown)) << r.err;
    for (size_t k = 1; k < words.size(); ++k) {
      if (words[k] == "re-read") {
        ASSERT_TRUE(absl::SimpleAtoi(words[k - 1], &re));
      }
      if (words[k] == "skipped") {
        ASSERT_TRUE(absl::SimpleAtoi(words[k - 1], &sk));
      }
      if (words[k] == "stacks") {
        ASSERT_TRUE(absl::SimpleAtoi(words[k - 1], &tr));
      }
    }
    skipped += sk, retried += re, truncated += tr;
    std::map<uint64_t, Dumped> gs = ParseDump(r.out);
    EXPECT_EQ(gs.size(), shown);
    EXPECT_GE(shown + sk, static_cast<uint64_t>(kWorkers + 1)) << r.err;
    for (const auto& [id, g] : gs) {
      EXPECT_TRUE(states.contains(g.state)) << "goroutine " << id << " [" << g.state << "]";
      // A signal-injected call: the walk goes on into the interrupted
      // function (main.spin here, or a churner).
      for (size_t k = 0; k < g.frames.size(); ++k) {
        if (g.frames[k].function != "runtime.asyncPreempt") continue;
        ++preempted;
        ASSERT_LT(k + 1, g.frames.size()) << "goroutine " << id << " ends at asyncPreempt";
        EXPECT_TRUE(absl::StartsWith(g.frames[k + 1].function, "main."))
            << "goroutine " << id << ": " << Describe(g.frames[k + 1]);
      }
      for (const Frame& f : g.frames) {
        EXPECT_TRUE(f.function.find('.') != std::string::npos) << id << ": " << Describe(f);
        EXPECT_FALSE(f.file.empty()) << id;
        EXPECT_GT(f.line, 0) << id << ": " << Describe(f);
      }
      if (g.creator) {
        EXPECT_GT(g.creator->line, 0) << id;
        // Hidden runtime goroutines are created by the runtime (--all).
        EXPECT_TRUE(absl::StartsWith(g.creator->function, "main.") ||
                    (i % 2 == 1 && absl::StartsWith(g.creator->function, "runtime.")))
            << id << ": " << g.creator->function;
      }
    }
  }
  std::printf(
      "churn %s: 25 snapshots, %lu re-read, %lu skipped, %lu stacks truncated, %lu stacks "
      "through asyncPreempt\n",
      b.Label().c_str(), static_cast<unsigned long>(retried), static_cast<unsigned long>(skipped),
      static_cast<unsigned long>(truncated), static_cast<unsigned long>(preempted));
  ASSERT_TRUE((*child)->Write("quit\n").ok());
  auto done = (*child)->Finish(kTimeout);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->exit_code, 0) << done->err;
}

// Release builds of esbuild (stripped; Go 1.16 to 1.26, including the
// 1.16-1.18 layouts the parked corpus lacks), blocked reading stdin: the
// main goroutine is in a syscall under io.ReadAll, and with --all the
// runtime's forcegc helper is parked in "force gc (idle)".
void CheckEsbuild(const CorpusBinary& b) {
  auto child = Child::Spawn({b.path});
  ASSERT_TRUE(child.ok()) << child.status();
  std::string pid = absl::StrCat("--pid=", (*child)->pid());
  std::map<uint64_t, Dumped> gs;
  std::string last;
  // Poll (bounded) until esbuild has reached its read of stdin.
  for (int i = 0; i < 500; ++i) {
    CommandResult r = RunCommand({GoerrprofPath(), "goroutines", pid, "--text", "--all"}, kTimeout);
    last = r.out + r.err;
    if (r.exit_code != 0) continue;  // still starting (not yet a Go runtime to read)
    gs = ParseDump(r.out);
    bool reading = false;
    if (gs.contains(1) && gs[1].state == "syscall") {
      for (const Frame& f : gs[1].frames) reading |= f.function == "io.ReadAll";
    }
    if (reading) break;
    gs.clear();
  }
  ASSERT_FALSE(gs.empty()) << "esbuild never showed main blocked in io.ReadAll:\n" << last;
  const Dumped& main = gs[1];
  EXPECT_TRUE(absl::StartsWith(main.frames.front().function, "syscall.")) << last;
  // --all shows runtime frames too: the walk reached runtime.main.
  EXPECT_EQ(main.frames.back().function, "runtime.main") << last;
  bool fd_read = false, main_main = false;
  for (const Frame& f : main.frames) {
    fd_read |= f.function == "internal/poll.(*FD).Read";
    main_main |= f.function == "main.main";
  }
  EXPECT_TRUE(main_main) << last;
  EXPECT_TRUE(fd_read) << last;
  bool forcegc = false;
  for (const auto& [id, g] : gs) {
    for (const Frame& f : g.frames) {
      if (f.function == "runtime.forcegchelper") {
        forcegc = true;
        EXPECT_EQ(g.state, "force gc (idle)") << last;
      }
    }
  }
  EXPECT_TRUE(forcegc) << last;
  EXPECT_TRUE(absl::StrContains(last, " 0 skipped as torn")) << last;
  (*child)->CloseStdin();
  auto done = (*child)->Finish(kTimeout);
  ASSERT_TRUE(done.ok()) << done.status();
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
  ExpectOneLineError(r, {"Permission denied", "permission", "not allowed"});
  ASSERT_TRUE(child->Write("quit\n").ok());
  auto done = child->Finish(kTimeout);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->exit_code, 0) << done->err;
}

}  // namespace
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
  return RUN_ALL_TESTS();
}
