// `goerrprof diff`: profiles written by the real pprof writer at real PCs of
// errgen's error sites, compared by the CLI (exit codes, table, Markdown,
// JSON) and by `go tool pprof -diff_base`.
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "goabi/go_version.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "aggregate/error_profile.h"
#include "pprof/pprof_writer.h"
#include "diff/profile_diff.h"
#include "symbolizer/go_binary.h"
#include "tests/test_support.h"
#include "pprof/labels.h"
#include "pprof/profile_file.h"

namespace goerrprof::testing {
namespace {

namespace pp = perftools::profiles;
using profiler::ErrorProfile;
using profiler::SampleKey;

constexpr char kGo[] = "/usr/local/go/bin/go";
constexpr char kWrapChain[] =
    "*fmt.wrapError > *fmt.wrapError > *fmt.wrapError > *errors.errorString";
constexpr char kOpenChain[] = "*fs.PathError > syscall.Errno";
constexpr char kAtoiChain[] = "*strconv.NumError > *errors.errorString";

// errgen binaries of the corpus, default flavour, newest Go release last.
std::vector<CorpusBinary> ErrgenBinaries() {
  std::vector<CorpusBinary> out;
  auto corpus = LoadCorpus(false);
  if (!corpus.ok()) return out;
  for (const CorpusBinary& b : *corpus) {
    if (b.program == "errgen" && b.flavour == "default") out.push_back(b);
  }
  std::sort(out.begin(), out.end(), [](const CorpusBinary& a, const CorpusBinary& b) {
    auto va = goabi::GoVersion::Parse(a.go_version), vb = goabi::GoVersion::Parse(b.go_version);
    return va && vb && *va < *vb;
  });
  return out;
}

std::optional<size_t> FindFunction(const symbolizer::GoBinary& bin, absl::string_view name) {
  const symbolizer::Pclntab& t = bin.pclntab();
  for (size_t i = 0; i < t.num_functions(); ++i) {
    if (t.FuncName(i) == name) return i;
  }
  return std::nullopt;
}

// The first PC of `function` whose innermost frame is `innermost` (the
// function itself, or a function inlined into it) on a real line.
uint64_t FindPc(const symbolizer::GoBinary& bin, absl::string_view function,
                absl::string_view innermost) {
  auto f = FindFunction(bin, function);
  if (!f) return 0;
  for (uint64_t pc = bin.pclntab().FuncEntry(*f) + 1; pc < bin.pclntab().FuncEnd(*f); ++pc) {
    auto frames = bin.Symbolize(pc);
    if (frames.ok() && !frames->empty() && (*frames)[0].function == innermost &&
        (*frames)[0].line > 0) {
      return pc;
    }
  }
  return 0;
}

// Real creating sites of one errgen binary, and where each is reported.
struct Sites {
  std::unique_ptr<symbolizer::GoBinary> bin;
  std::string path;
  // Creating PCs: errors.New inlined into main.siteNewInline; fmt.Errorf;
  // main.siteOpenMissing and main.siteAtoi themselves.
  uint64_t inl = 0, errorf = 0, open = 0, atoi = 0;
  // fmt.Errorf, or fmt.errorf (Go 1.26+, where fmt.Errorf is an inlined
  // wrapper around it).
  std::string errorf_name;
  // Return addresses in main.main, main.siteWrapChain and main.wrapMiddle.
  uint64_t main_ret = 0, wrap_ret = 0, middle_ret = 0;
  // file:line of the innermost (or outermost) frame at pc.
  std::string Location(uint64_t pc, bool outer = false) const {
    auto frames = bin->Symbolize(pc);
    const auto& f = outer ? frames->back() : frames->front();
    return absl::StrCat(f.file, ":", f.line);
  }
};

std::unique_ptr<Sites> LoadSites(const CorpusBinary& b) {
  auto s = std::make_unique<Sites>();
  auto bin = symbolizer::GoBinary::Open(b.path);
  if (!bin.ok()) {
    ADD_FAILURE() << bin.status();
    return nullptr;
  }
  s->bin = std::move(*bin);
  s->path = b.path;
  s->inl = FindPc(*s->bin, "main.siteNewInline", "errors.New");
  for (const char* name : {"fmt.Errorf", "fmt.errorf"}) {
    s->errorf = FindPc(*s->bin, name, name);
    s->errorf_name = name;
    if (s->errorf != 0) break;
  }
  s->open = FindPc(*s->bin, "main.siteOpenMissing", "main.siteOpenMissing");
  s->atoi = FindPc(*s->bin, "main.siteAtoi", "main.siteAtoi");
  // pc-1 of a return address is in the calling function.
  s->main_ret = FindPc(*s->bin, "main.main", "main.main") + 1;
  // Where fmt.Errorf is inlined into the caller, a call from inside it, so
  // the origin is the location's outer Line.
  for (auto [ret, fn] : {std::pair{&s->wrap_ret, "main.siteWrapChain"},
                         std::pair{&s->middle_ret, "main.wrapMiddle"}}) {
    *ret = FindPc(*s->bin, fn, "fmt.Errorf");
    if (*ret == 0) *ret = FindPc(*s->bin, fn, fn);
    *ret += 1;
  }
  if (!s->inl || !s->errorf || !s->open || !s->atoi || s->main_ret == 1 || s->wrap_ret == 1 ||
      s->middle_ret == 1) {
    ADD_FAILURE() << b.path << ": a site PC of the test was not found";
    return nullptr;
  }
  return s;
}

struct Event {
  uint64_t Sites::*pc;
  uint64_t Sites::*caller;  // the frame above pc (a return address)
  std::string type, chain;
  uint64_t count;
  uint64_t goroutine = 1;
  std::string message = "m";
};

class DiffTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    setenv("GOTOOLCHAIN", "local", 1);  // never fetch a toolchain for `go tool`
    std::vector<CorpusBinary> bins = ErrgenBinaries();
    if (bins.size() < 2) return;
    newest_ = LoadSites(bins.back()).release();
    older_ = LoadSites(bins[bins.size() - 2]).release();
  }
  static void TearDownTestSuite() {
    delete newest_;
    delete older_;
    newest_ = older_ = nullptr;
  }
  void SetUp() override {
    ASSERT_NE(newest_, nullptr) << "need two errgen-default binaries in the corpus at "
                                << CorpusDir() << " (build it with scripts/build_go_corpus.sh)";
    ASSERT_NE(older_, nullptr);
    char dir[] = "/tmp/gep_diff_XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
  }
  void TearDown() override {
    if (!dir_.empty()) RunCommand({"rm", "-rf", dir_});
  }

  // Builds a profile of `events` with the real writer; returns its path.
  std::string Write(const std::string& name, const std::vector<Event>& events,
                    const Sites* sites = nullptr, const std::string& binary_label = "",
                    int64_t pid = 0) {
    if (sites == nullptr) sites = newest_;
    ErrorProfile profile;
    for (const Event& e : events) {
      SampleKey k;
      k.stack = {sites->*e.pc, sites->*e.caller};
      // fmt.Errorf's callers are called by main.main in turn.
      if (e.caller != &Sites::main_ret) k.stack.push_back(sites->main_ret);
      k.type = e.type;
      k.chain = e.chain;
      k.message = e.message;
      k.goroutine = e.goroutine;
      profile.Add(std::move(k), e.count);
    }
    profiler::PprofInfo info;
    info.duration_nanos = 1000000000;
    auto p = profiler::BuildPprof(profile, *sites->bin, info);
    EXPECT_TRUE(p.ok()) << p.status();
    if (!binary_label.empty()) AddProcessLabels(&*p, binary_label, pid);
    std::string path = absl::StrCat(dir_, "/", name, ".pb.gz");
    EXPECT_TRUE(profiler::WriteProfileFile(*p, path).ok());
    return path;
  }

  // The labels `record -- COMMAND` puts on each sample of a process.
  static void AddProcessLabels(pp::Profile* p, const std::string& binary, int64_t pid) {
    auto index = [&](const std::string& s) {
      for (int i = 0; i < p->string_table_size(); ++i) {
        if (p->string_table(i) == s) return static_cast<int64_t>(i);
      }
      p->add_string_table(s);
      return static_cast<int64_t>(p->string_table_size() - 1);
    };
    for (pp::Sample& s : *p->mutable_sample()) {
      pp::Label* b = s.add_label();
      b->set_key(index(profiler::kLabelBinary));
      b->set_str(index(binary));
      pp::Label* n = s.add_label();
      n->set_key(index(profiler::kLabelPid));
      n->set_num(pid);
    }
  }

  CommandResult Diff(const std::string& base, const std::string& next,
                     std::vector<std::string> flags = {}) {
    std::vector<std::string> argv = {GoerrprofPath(), "diff"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    argv.push_back(base);
    argv.push_back(next);
    return RunCommand(argv);
  }

  // --json, parsed; the findings array.
  google::protobuf::Value Json(const std::string& base, const std::string& next,
                               std::vector<std::string> flags, int want_exit) {
    flags.push_back("--json");
    CommandResult r = Diff(base, next, flags);
    EXPECT_EQ(r.exit_code, want_exit) << r.out << r.err;
    EXPECT_EQ(r.err, "");
    auto v = ParseJson(r.out);
    EXPECT_TRUE(v.ok()) << v.status() << r.out;
    return v.ok() ? *v : google::protobuf::Value();
  }

  static const google::protobuf::ListValue& Findings(const google::protobuf::Value& v) {
    return Get(v, "findings").list_value();
  }

  std::string dir_;
  static Sites* newest_;
  static Sites* older_;
};

Sites* DiffTest::newest_ = nullptr;
Sites* DiffTest::older_ = nullptr;

// Base workload: errors.New inlined ×10, the wrap chain ×100, os.Open ×1.
std::vector<Event> Base() {
  return {{&Sites::inl, &Sites::main_ret, "*errors.errorString", "*errors.errorString", 10},
          {&Sites::errorf, &Sites::wrap_ret, "*fmt.wrapError", kWrapChain, 100},
          {&Sites::open, &Sites::main_ret, "*fs.PathError", kOpenChain, 1}};
}

TEST_F(DiffTest, IdenticalProfilesHaveNoFindings) {
  std::string base = Write("base", Base());
  for (const std::string& next : {base, Write("same", Base())}) {
    CommandResult r = Diff(base, next);
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_EQ(r.err, "");
    EXPECT_EQ(r.out,
              "0 regressions (0 new sites, 0 grown, 0 new chains); 0 vanished sites, 0 vanished "
              "chains. BASE: 111 errors at 3 sites; NEW: 111 errors at 3 sites. Rule: new sites "
              "and chains regress; growth regresses beyond +20% and by at least 5 errors.\n");
    auto v = Json(base, next, {}, 0);
    EXPECT_EQ(Findings(v).values_size(), 0);
    EXPECT_EQ(GetInt(v, "regressions"), 0);
    EXPECT_EQ(GetInt(Get(v, "base"), "errors"), 111);
    EXPECT_EQ(GetInt(Get(v, "new"), "sites"), 3);
  }
}

// Messages, goroutines, pids and binary names differ from run to run; the
// same sites with the same counts are no change.
TEST_F(DiffTest, RunToRunLabelsAreIgnored) {
  std::string base = Write("base", Base(), newest_, "errgen.test", 4242);
  std::vector<Event> events = Base();
  // The wrap site's 100 spread over two goroutines and two messages.
  events[1].count = 60;
  events.push_back(events[1]);
  events.back().count = 40;
  events.back().goroutine = 77;
  events.back().message = "outer 7: middle: inner: root cause";
  std::string next = Write("next", events, newest_, "other.test", 999);
  CommandResult r = Diff(base, next);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_TRUE(absl::StartsWith(r.out, "0 regressions")) << r.out;
}

// Keys are function names: a rebuild with another Go release moves every
// PC, and the same events are still no change.
TEST_F(DiffTest, RebuiltBinaryMatchesByName) {
  ASSERT_NE(older_->errorf, newest_->errorf);  // otherwise this proves nothing
  std::string base = Write("base", Base(), older_);
  std::string next = Write("next", Base(), newest_);
  CommandResult r = Diff(base, next);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_TRUE(absl::StartsWith(r.out, "0 regressions")) << r.out;
}

TEST_F(DiffTest, NewSiteRegresses) {
  std::vector<Event> events = Base();
  events.push_back({&Sites::atoi, &Sites::main_ret, "*strconv.NumError", kAtoiChain, 3});
  std::string base = Write("base", Base()), next = Write("next", events);

  CommandResult r = Diff(base, next);
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_EQ(r.err, "");
  std::vector<std::string> lines = absl::StrSplit(r.out, '\n');
  ASSERT_GE(lines.size(), 4u) << r.out;
  // Header and one row, columns aligned (two spaces between them).
  std::string loc = newest_->Location(newest_->atoi);
  std::regex row(absl::StrCat("FAIL +new site +main\\.siteAtoi +", loc,
                              " +\\*strconv\\.NumError +0 +3 +new"));
  EXPECT_TRUE(std::regex_match(lines[1], row)) << r.out;
  EXPECT_TRUE(absl::StartsWith(lines[0], "RESULT  FINDING   SITE")) << r.out;
  EXPECT_EQ(lines[0].find("TYPE / CHAIN"), lines[1].find("*strconv.NumError")) << r.out;
  EXPECT_EQ(lines[2], "");
  EXPECT_TRUE(absl::StartsWith(lines[3], "1 regression (1 new site, 0 grown, 0 new chains)"))
      << r.out;

  auto v = Json(base, next, {}, 1);
  ASSERT_EQ(Findings(v).values_size(), 1);
  const auto& f = Findings(v).values(0);
  EXPECT_EQ(GetString(f, "kind"), "new_site");
  EXPECT_TRUE(Get(f, "regression").bool_value());
  EXPECT_EQ(GetString(f, "function"), "main.siteAtoi");
  EXPECT_EQ(GetString(f, "type"), "*strconv.NumError");
  EXPECT_EQ(GetString(f, "location"), loc);
  EXPECT_EQ(GetInt(f, "base_count"), 0);
  EXPECT_EQ(GetInt(f, "new_count"), 3);
  EXPECT_EQ(Get(f, "change_percent").kind_case(), google::protobuf::Value::kNullValue);
  EXPECT_EQ(GetInt(v, "regressions"), 1);
}

// The site's function is the innermost inlined frame: errors.New, not the
// function it was inlined into, which is its origin (the first frame outside
// the standard library); the same function with another error type is
// another site.
TEST_F(DiffTest, SiteIsInnermostFunctionAndType) {
  std::vector<Event> events = Base();
  events.push_back({&Sites::inl, &Sites::main_ret, "*main.codeError", "*main.codeError", 2});
  auto v = Json(Write("base", Base()), Write("next", events), {}, 1);
  ASSERT_EQ(Findings(v).values_size(), 1);
  const auto& f = Findings(v).values(0);
  EXPECT_EQ(GetString(f, "kind"), "new_site");
  EXPECT_EQ(GetString(f, "function"), "errors.New");
  EXPECT_EQ(GetString(f, "origin"), "main.siteNewInline");
  EXPECT_EQ(GetString(f, "type"), "*main.codeError");
  // Where the origin made it: the line in main.siteNewInline.
  EXPECT_EQ(GetString(f, "location"), newest_->Location(newest_->inl, /*outer=*/true));
  EXPECT_TRUE(absl::StrContains(GetString(f, "location"), "errgen/scenarios.go:"));
}

// fmt.Errorf called from a function that never made errors before is a new
// site, though fmt.Errorf is one function: the origin is part of the key.
TEST_F(DiffTest, NewCallerOfStandardLibraryIsNewSite) {
  std::vector<Event> events = Base();
  events.push_back({&Sites::errorf, &Sites::middle_ret, "*fmt.wrapError", kWrapChain, 1});
  std::string base = Write("base", Base()), next = Write("next", events);
  auto v = Json(base, next, {}, 1);
  ASSERT_EQ(Findings(v).values_size(), 1);
  const auto& f = Findings(v).values(0);
  EXPECT_EQ(GetString(f, "kind"), "new_site");
  EXPECT_EQ(GetString(f, "function"), newest_->errorf_name);
  EXPECT_EQ(GetString(f, "origin"), "main.wrapMiddle");
  EXPECT_EQ(GetString(f, "location"), newest_->Location(newest_->middle_ret - 1, true));
  EXPECT_EQ(GetInt(f, "new_count"), 1);
  CommandResult r = Diff(base, next);
  EXPECT_TRUE(std::regex_search(
      r.out, std::regex(R"(\nFAIL +new site +fmt\.[eE]rrorf from main\.wrapMiddle +\S+scenarios\.go:\d+ +\*fmt\.wrapError +0 +1 +new\n)")))
      << r.out;
}

TEST(InStandardLibrary, ByImportPath) {
  using profiler::InStandardLibrary;
  for (const char* f : {"fmt.Errorf", "errors.New", "runtime.gopanic", "net/http.(*Client).Do",
                        "internal/poll.(*FD).Read", "vendor/golang.org/x/net/http2.F",
                        "slices.Sort[go.shape.*github.com/x/y.T]", "crosscall2", "0x401000"}) {
    EXPECT_TRUE(InStandardLibrary(f)) << f;
  }
  for (const char* f : {"main.main", "main.(*T).Error", "main.main.func1",
                        "github.com/a/b.F", "goerrprof.test/gobin.F",
                        "example.com/m/pkg.G[go.shape.int]", "gopkg.in/yaml%2ev3.Unmarshal"}) {
    EXPECT_FALSE(InStandardLibrary(f)) << f;
  }
}

TEST_F(DiffTest, VanishedSiteIsReportedNotARegression) {
  std::vector<Event> events = Base();
  events.pop_back();  // os.Open no longer fails
  std::string base = Write("base", Base()), next = Write("next", events);
  auto v = Json(base, next, {}, 0);
  ASSERT_EQ(Findings(v).values_size(), 1);
  const auto& f = Findings(v).values(0);
  EXPECT_EQ(GetString(f, "kind"), "vanished_site");
  EXPECT_FALSE(Get(f, "regression").bool_value());
  EXPECT_EQ(GetString(f, "function"), "main.siteOpenMissing");
  EXPECT_EQ(GetString(f, "location"), newest_->Location(newest_->open));
  EXPECT_EQ(GetInt(f, "base_count"), 1);
  EXPECT_EQ(GetInt(f, "new_count"), 0);
  EXPECT_EQ(Get(f, "change_percent").number_value(), -100);
  CommandResult r = Diff(base, next);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(\nok +vanished site +main\.siteOpenMissing .* 1 +0 +gone\n)")))
      << r.out;
}

// Growth: relative to BASE beyond the threshold, and by at least the floor.
TEST_F(DiffTest, GrowthThresholdAndFloor) {
  auto with = [&](const std::string& name, uint64_t inl, uint64_t wrap, uint64_t open) {
    std::vector<Event> e = Base();
    e[0].count = inl;
    e[1].count = wrap;
    e[2].count = open;
    return Write(name, e);
  };
  std::string base = Write("base", Base());  // 10, 100, 1

  // 10 -> 30: +200%.
  auto v = Json(base, with("g30", 30, 100, 1), {}, 1);
  ASSERT_EQ(Findings(v).values_size(), 1);
  const auto& f = Findings(v).values(0);
  EXPECT_EQ(GetString(f, "kind"), "growth");
  EXPECT_EQ(GetString(f, "function"), "errors.New");
  EXPECT_EQ(GetString(f, "origin"), "main.siteNewInline");
  EXPECT_EQ(GetInt(f, "base_count"), 10);
  EXPECT_EQ(GetInt(f, "new_count"), 30);
  EXPECT_EQ(Get(f, "change_percent").number_value(), 200);
  CommandResult table = Diff(base, with("g30", 30, 100, 1));
  EXPECT_TRUE(std::regex_search(table.out, std::regex(R"(\nFAIL +growth +errors\.New from main\.siteNewInline .* 10 +30 +\+200\.0%\n)")))
      << table.out;

  // 1 -> 2 is +100% but one error: under the floor (default 5)...
  std::string one_more = with("one_more", 10, 100, 2);
  EXPECT_EQ(Findings(Json(base, one_more, {}, 0)).values_size(), 0);
  // ...which is a flag (dashed or not).
  v = Json(base, one_more, {"--min-increase=1"}, 1);
  ASSERT_EQ(Findings(v).values_size(), 1);
  EXPECT_EQ(GetString(Findings(v).values(0), "function"), "main.siteOpenMissing");
  EXPECT_EQ(GetInt(v, "min_increase"), 1);
  EXPECT_EQ(Diff(base, one_more, {"--min_increase", "2"}).exit_code, 0);

  // 100 -> 119 and 100 -> 120 are within 20%; 121 is beyond.
  EXPECT_EQ(Findings(Json(base, with("w119", 10, 119, 1), {}, 0)).values_size(), 0);
  EXPECT_EQ(Findings(Json(base, with("w120", 10, 120, 1), {}, 0)).values_size(), 0);
  v = Json(base, with("w121", 10, 121, 1), {}, 1);
  ASSERT_EQ(Findings(v).values_size(), 1);
  EXPECT_EQ(GetString(Findings(v).values(0), "function"), newest_->errorf_name);
  EXPECT_EQ(GetString(Findings(v).values(0), "origin"), "main.siteWrapChain");
  EXPECT_EQ(Get(Findings(v).values(0), "change_percent").number_value(), 21);
  // --threshold moves the line.
  v = Json(base, with("w119", 10, 119, 1), {"--threshold=10"}, 1);
  ASSERT_EQ(Findings(v).values_size(), 1);
  EXPECT_EQ(Get(v, "threshold_percent").number_value(), 10);
  EXPECT_EQ(Diff(base, with("w121", 10, 121, 1), {"--threshold", "21.5"}).exit_code, 0);
  EXPECT_EQ(Diff(base, with("w121", 10, 121, 1), {"--threshold", "20.5"}).exit_code, 1);
  // Shrinking is never a finding.
  EXPECT_EQ(Findings(Json(base, with("less", 1, 50, 1), {}, 0)).values_size(), 0);
}

// A new chain under an existing site regresses; a chain that no longer
// occurs is reported.
TEST_F(DiffTest, ChainChanges) {
  std::vector<Event> events = Base();
  // os.Open's site now also fails with a different cause.
  events.push_back({&Sites::open, &Sites::main_ret, "*fs.PathError", "*fs.PathError > *errors.errorString", 1});
  std::string base = Write("base", Base());
  auto v = Json(base, Write("added", events), {}, 1);
  ASSERT_EQ(Findings(v).values_size(), 1);
  const auto& f = Findings(v).values(0);
  EXPECT_EQ(GetString(f, "kind"), "new_chain");
  EXPECT_TRUE(Get(f, "regression").bool_value());
  EXPECT_EQ(GetString(f, "function"), "main.siteOpenMissing");
  EXPECT_EQ(GetString(f, "type"), "*fs.PathError");
  EXPECT_EQ(GetString(f, "chain"), "*fs.PathError > *errors.errorString");
  EXPECT_EQ(GetInt(f, "new_count"), 1);

  // The old chain replaced by the new one: one of each.
  events.erase(events.begin() + 2);
  v = Json(base, Write("replaced", events), {}, 1);
  ASSERT_EQ(Findings(v).values_size(), 2);
  EXPECT_EQ(GetString(Findings(v).values(0), "kind"), "new_chain");
  EXPECT_EQ(GetString(Findings(v).values(1), "kind"), "vanished_chain");
  EXPECT_FALSE(Get(Findings(v).values(1), "regression").bool_value());
  EXPECT_EQ(GetString(Findings(v).values(1), "chain"), kOpenChain);
  EXPECT_EQ(GetInt(Findings(v).values(1), "base_count"), 1);

  // Only a vanished chain: exit 0.
  std::vector<Event> wrap_only = Base();
  wrap_only[1].count = 50;
  wrap_only.push_back({&Sites::errorf, &Sites::wrap_ret, "*fmt.wrapError", "*fmt.wrapError > *fs.PathError", 50});
  std::string two_chains = Write("two_chains", wrap_only);
  wrap_only.back().chain = kWrapChain;  // same site, one chain again, same count
  v = Json(two_chains, Write("one_chain", wrap_only), {}, 0);
  ASSERT_EQ(Findings(v).values_size(), 1);
  EXPECT_EQ(GetString(Findings(v).values(0), "kind"), "vanished_chain");
  EXPECT_EQ(GetString(Findings(v).values(0), "chain"), "*fmt.wrapError > *fs.PathError");
}

// Regressions first, each group largest change first.
TEST_F(DiffTest, FindingsAreOrdered) {
  std::vector<Event> events = {
      {&Sites::inl, &Sites::main_ret, "*errors.errorString", "*errors.errorString", 40},   // growth +30
      {&Sites::atoi, &Sites::main_ret, "*strconv.NumError", kAtoiChain, 7},                 // new +7
      {&Sites::open, &Sites::main_ret, "*fs.PathError", kOpenChain, 1},                     // same
      {&Sites::open, &Sites::main_ret, "*fs.PathError", "*fs.PathError > *errors.errorString", 2},  // new chain +2
  };  // wrap (100) vanished
  auto v = Json(Write("base", Base()), Write("next", events), {}, 1);
  std::vector<std::string> got;
  for (const auto& f : Findings(v).values()) {
    got.push_back(absl::StrCat(GetString(f, "kind"), " ", GetString(f, "function"), " ",
                               GetString(f, "origin")));
  }
  EXPECT_EQ(got, (std::vector<std::string>{"growth errors.New main.siteNewInline",
                                           "new_site main.siteAtoi ",
                                           "new_chain main.siteOpenMissing ",
                                           absl::StrCat("vanished_site ", newest_->errorf_name,
                                                        " main.siteWrapChain")}));
  EXPECT_EQ(GetInt(v, "regressions"), 3);
}

TEST_F(DiffTest, MarkdownAndBinaries) {
  std::vector<Event> events = Base();
  events[0].count = 30;
  std::string base = Write("base", Base(), newest_, "errgen.test", 10);
  std::string next = Write("next", events, newest_, "errgen.test", 20);
  CommandResult r = Diff(base, next, {"--markdown"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(r.out,
            absl::StrCat(
                "### goerrprof diff: 1 regression\n\n"
                "| Result | Finding | Site | Location | Type / chain | Base | New | Change | "
                "Binaries |\n"
                "|---|---|---|---|---|--:|--:|--:|---|\n"
                "| **FAIL** | growth | `errors.New from main.siteNewInline` | `",
                newest_->Location(newest_->inl, /*outer=*/true),
                "` | `*errors.errorString` | 10 | 30 | +200.0% | `errgen.test` |\n\n"
                "1 regression (0 new sites, 1 grown, 0 new chains); 0 vanished sites, 0 vanished "
                "chains. BASE: 111 errors at 3 sites; NEW: 131 errors at 3 sites. Rule: new sites "
                "and chains regress; growth regresses beyond +20% and by at least 5 errors.\n"));
  // Pipes in labels are escaped so the table keeps its columns.
  events.push_back({&Sites::atoi, &Sites::main_ret, "*main.a|b", "*main.a|b", 1});
  r = Diff(base, Write("pipe", events), {"--markdown"});
  EXPECT_TRUE(absl::StrContains(r.out, "| `*main.a\\|b` | 0 | 1 | new |")) << r.out;
  // Nothing changed.
  r = Diff(base, base, {"--markdown"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_TRUE(absl::StartsWith(r.out, "### goerrprof diff: no regressions\n\n0 regressions"))
      << r.out;

  auto v = Json(base, next, {}, 1);
  ASSERT_EQ(Findings(v).values_size(), 1);
  const auto& bins = Get(Findings(v).values(0), "binaries").list_value();
  ASSERT_EQ(bins.values_size(), 1);
  EXPECT_EQ(bins.values(0).string_value(), "errgen.test");
}

TEST_F(DiffTest, BadInputExitsTwo) {
  std::string good = Write("good", Base());
  std::string text = dir_ + "/text.txt";
  std::ofstream(text) << "not a profile at all\n";
  // A valid pprof profile of another kind: CPU time, no errors/count.
  pp::Profile cpu;
  cpu.add_string_table("");
  cpu.add_string_table("cpu");
  cpu.add_string_table("nanoseconds");
  cpu.add_sample_type()->set_type(1);
  cpu.mutable_sample_type(0)->set_unit(2);
  std::string cpu_path = dir_ + "/cpu.pb.gz";
  ASSERT_TRUE(profiler::WriteProfileFile(cpu, cpu_path).ok());
  // An error profile whose sample points at a string that does not exist.
  auto broken = profiler::ReadProfile(good);
  ASSERT_TRUE(broken.ok());
  broken->mutable_sample(0)->mutable_label(0)->set_str(1 << 20);
  std::string broken_path = dir_ + "/broken.pb.gz";
  ASSERT_TRUE(profiler::WriteProfileFile(*broken, broken_path).ok());

  // A gzipped profile cut short.
  std::string truncated = dir_ + "/truncated.pb.gz";
  {
    std::ifstream in(good, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::ofstream(truncated, std::ios::binary) << bytes.substr(0, bytes.size() / 2);
  }

  struct Case {
    std::vector<std::string> argv;
    std::string message;
  };
  const std::string missing = dir_ + "/missing.pb.gz";
  std::vector<Case> cases = {
      {{good, missing}, "cannot open " + missing},
      {{text, good}, text + ": not a pprof profile"},
      {{truncated, good}, truncated + ": corrupt or truncated gzip data"},
      {{good, cpu_path},
       cpu_path + ": not an error profile (no errors/count sample type; has cpu/nanoseconds)"},
      {{good, broken_path}, broken_path + ": malformed profile: index outside the string table"},
      {{"--threshold=abc", good, good}, "invalid --threshold \"abc\""},
      {{"--threshold=-5", good, good}, "invalid threshold -5"},
      {{"--threshold=nan", good, good}, "invalid threshold nan"},
      {{"--min-increase=x", good, good}, "invalid --min-increase \"x\""},
      {{"--min-increase=-1", good, good}, "invalid minimum increase -1"},
      {{good}, "want two profiles, BASE and NEW (got 1 arguments)"},
      {{good, good, good}, "want two profiles, BASE and NEW (got 3 arguments)"},
      {{"--json", "--markdown", good, good}, "--json and --markdown exclude each other"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> argv = {GoerrprofPath(), "diff"};
    argv.insert(argv.end(), c.argv.begin(), c.argv.end());
    CommandResult r = RunCommand(argv);
    EXPECT_EQ(r.exit_code, 2) << absl::StrJoin(c.argv, " ") << "\n" << r.err;
    EXPECT_EQ(r.out, "");
    EXPECT_TRUE(absl::StartsWith(r.err, "goerrprof: diff: ")) << r.err;
    EXPECT_TRUE(absl::StrContains(r.err, c.message)) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
}

// Broken references inside a profile are errors, never a crash (this runs
// in-process, under the sanitizers in CI).
TEST_F(DiffTest, MalformedProfilesAreErrors) {
  auto good = profiler::ReadProfile(Write("good", Base()));
  ASSERT_TRUE(good.ok());
  auto sites = profiler::SummarizeProfile(*good);
  ASSERT_TRUE(sites.ok()) << sites.status();
  EXPECT_EQ(sites->total, 111);
  EXPECT_EQ(sites->sites.size(), 3u);

  struct Case {
    std::function<void(pp::Profile*)> mutate;
    std::string message;
  };
  const std::vector<Case> cases = {
      {[](pp::Profile* p) { p->mutable_sample(0)->set_location_id(0, 999); },
       "malformed profile: sample names a missing location"},
      {[](pp::Profile* p) { p->mutable_location(0)->mutable_line(0)->set_function_id(999); },
       "malformed profile: location names a missing function"},
      {[](pp::Profile* p) { p->mutable_function(0)->set_name(-3); },
       "malformed profile: index outside the string table"},
      {[](pp::Profile* p) { p->mutable_sample_type(0)->set_unit(1 << 30); },
       "malformed profile: sample type outside the string table"},
      {[](pp::Profile* p) { p->mutable_sample(1)->clear_value(); },
       "malformed profile: sample without an errors/count value"},
      {[](pp::Profile* p) { p->mutable_sample(1)->set_value(0, -4); },
       "malformed profile: negative error count (a diff, not a recording?)"},
      {[](pp::Profile* p) {
         p->mutable_sample(0)->set_value(0, std::numeric_limits<int64_t>::max());
       },
       "malformed profile: error counts overflow"},
  };
  for (const Case& c : cases) {
    pp::Profile p = *good;
    c.mutate(&p);
    auto r = profiler::SummarizeProfile(p);
    ASSERT_FALSE(r.ok()) << c.message;
    EXPECT_EQ(r.status().message(), c.message);
  }
  // A sample without a stack, or whose innermost location has no lines,
  // still counts (it is a profile of errors, however poor).
  pp::Profile p = *good;
  p.mutable_sample(0)->clear_location_id();
  uint64_t unsymbolized = 0;
  for (pp::Location& l : *p.mutable_location()) {
    if (l.id() == p.sample(1).location_id(0)) {
      l.clear_line();
      unsymbolized = l.address();
    }
  }
  ASSERT_NE(unsymbolized, 0u);
  auto poor = profiler::SummarizeProfile(p);
  ASSERT_TRUE(poor.ok()) << poor.status();
  EXPECT_EQ(poor->total, 111);
  std::vector<std::string> functions;
  for (const auto& [key, stats] : poor->sites) {
    functions.push_back(absl::StrCat(key.function, "|", key.origin));
  }
  // Unsymbolized: named by address, its origin found further out.
  EXPECT_THAT(functions, ::testing::IsSupersetOf(
                             {std::string("<no stack>|"),
                              absl::StrCat("0x", absl::Hex(unsymbolized), "|main.main")}));
}

// The profiles stay pprof profiles: `go tool pprof -diff_base` shows the
// same change (flat counts at the innermost function).
TEST_F(DiffTest, GoToolPprofDiffBase) {
  if (access(kGo, X_OK) != 0) GTEST_SKIP() << "no " << kGo;
  std::vector<Event> events = Base();
  events[0].count = 30;                                            // errors.New +20
  events[2] = {&Sites::atoi, &Sites::main_ret, "*strconv.NumError", kAtoiChain, 3};  // new +3, os.Open -1
  std::string base = Write("base", Base()), next = Write("next", events);
  CommandResult r =
      RunCommand({kGo, "tool", "pprof", "-top", "-diff_base", base, next}, 300);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "Type: errors")) << r.out;
  // Percentages are of BASE's total (111): +20 +3 -1.
  EXPECT_TRUE(absl::StrContains(r.out, "Showing nodes accounting for 22, 19.82% of 111 total"))
      << r.out;
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(\n\s+20\s+18\.02%.*errors\.New \(inline\)\n)")))
      << r.out;
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(\n\s+3\s+2\.70%.*main\.siteAtoi\n)")))
      << r.out;
  EXPECT_TRUE(std::regex_search(r.out, std::regex(R"(\n\s+-1\s+0\.9\d*%.*main\.siteOpenMissing\n)")))
      << r.out;
}

}  // namespace
}  // namespace goerrprof::testing
