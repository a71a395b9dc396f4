// `goerrprof diff` on what goes in and out besides the table: Markdown, bad
// and malformed input (one line, exit 2, never a crash), and the profiles as
// `go tool pprof -diff_base` reads them.
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <regex>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "diff/profile_diff.h"
#include "pprof/profile_file.h"
#include "tests/diff/diff_test_util.h"
#include "tests/test_support.h"

namespace goerrprof::testing {
namespace {

namespace pp = perftools::profiles;

constexpr char kGo[] = "/usr/local/go/bin/go";

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
