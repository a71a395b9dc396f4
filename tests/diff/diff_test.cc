// `goerrprof diff`: profiles written by the real pprof writer at real PCs of
// errgen's error sites, compared by the CLI: what is a finding, and when it
// regresses (exit codes, table, JSON).
#include <stdlib.h>

#include <algorithm>
#include <memory>
#include <regex>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "goabi/go_version.h"
#include "gtest/gtest.h"
#include "diff/profile_diff.h"
#include "symbolizer/go_binary.h"
#include "tests/diff/diff_test_util.h"
#include "tests/test_support.h"

namespace goerrprof::testing {
namespace {

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

// The first PC of `function` whose innermost frame is `innermost` (the
// function itself, or a function inlined into it) on a real line.
uint64_t FindPc(const symbolizer::GoBinary& bin, absl::string_view function,
                absl::string_view innermost) {
  return FindPcWhere(bin, function, [&](uint64_t, const auto& frames) {
    return !frames.empty() && frames[0].function == innermost && frames[0].line > 0;
  });
}

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

}  // namespace

void DiffTest::SetUpTestSuite() {
  setenv("GOTOOLCHAIN", "local", 1);  // never fetch a toolchain for `go tool`
  std::vector<CorpusBinary> bins = ErrgenBinaries();
  if (bins.size() < 2) return;
  newest_ = LoadSites(bins.back()).release();
  older_ = LoadSites(bins[bins.size() - 2]).release();
}

Sites* DiffTest::newest_ = nullptr;
Sites* DiffTest::older_ = nullptr;

namespace {

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

// A panic is a site of its own: the same function and value type as an
// error creation in BASE is still new when it panics.
TEST_F(DiffTest, NewPanicSiteRegresses) {
  std::vector<Event> events = Base();
  Event panic = events[0];
  panic.count = 2;
  panic.panic = profiler::PanicState::kUnrecovered;
  events.push_back(panic);
  std::string base = Write("base", Base()), next = Write("next", events);
  CommandResult r = Diff(base, next);
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  auto v = Json(base, next, {}, 1);
  ASSERT_EQ(Findings(v).values_size(), 1) << r.out;
  const auto& f = Findings(v).values(0);
  EXPECT_EQ(GetString(f, "kind"), "new_site");
  EXPECT_EQ(GetString(f, "type"), absl::StrCat("panic: ", events[0].type));
  EXPECT_EQ(GetInt(f, "new_count"), 2);
  // Unchanged panics are no change either.
  CommandResult same = Diff(next, Write("again", events));
  EXPECT_EQ(same.exit_code, 0) << same.out << same.err;
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

// Counts the overhead budget estimated (errors.estimated=true) grow only
// beyond the threshold plus --estimate-tolerance (10 points by default).
TEST_F(DiffTest, EstimatedCountsHaveATolerance) {
  std::string base = Write("base", Base());  // the wrap site: 100
  auto est = [&](const std::string& name, uint64_t observed, double missed) {
    std::vector<Event> e = Base();
    e[1].count = observed;
    e[1].estimated = missed;
    return Write(name, e);
  };
  // 100 -> 125 (75 of them estimated): +25%, within 20 + 10.
  std::string e125 = est("e125", 50, 75);
  EXPECT_EQ(Findings(Json(base, e125, {}, 0)).values_size(), 0);
  // The same 125 observed: beyond 20%.
  std::vector<Event> plain = Base();
  plain[1].count = 125;
  EXPECT_EQ(Diff(base, Write("p125", plain)).exit_code, 1);
  // 100 -> 131: beyond 30%, said to be estimated.
  auto v = Json(base, est("e131", 50, 81), {}, 1);
  ASSERT_EQ(Findings(v).values_size(), 1);
  EXPECT_EQ(GetString(Findings(v).values(0), "kind"), "growth");
  EXPECT_EQ(GetInt(Findings(v).values(0), "new_count"), 131);
  CommandResult table = Diff(base, est("e131", 50, 81));
  EXPECT_TRUE(absl::StrContains(table.out, "+31.0% (estimated)")) << table.out;
  // An estimated BASE counts too; the tolerance is a flag.
  std::vector<Event> p160 = Base();
  p160[1].count = 160;  // 125 -> 160: +28%
  EXPECT_EQ(Diff(e125, Write("p160", p160)).exit_code, 0);
  EXPECT_EQ(Diff(Write("p125b", plain), Write("p160", p160)).exit_code, 1);
  EXPECT_EQ(Diff(base, e125, {"--estimate-tolerance=0"}).exit_code, 1);
  EXPECT_EQ(Diff(base, e125, {"--estimate_tolerance", "5.5"}).exit_code, 0);
  EXPECT_EQ(Diff(base, e125, {"--estimate-tolerance=-1"}).exit_code, 2);
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

}  // namespace
}  // namespace goerrprof::testing
