// The pprof writer checked by reading its output with the real
// `go tool pprof` and with ReadProfile, on errgen's build flavours.
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "aggregate/error_profile.h"
#include "goabi/go_version.h"
#include "pprof/pprof_writer.h"
#include "pprof/profile_file.h"
#include "symbolizer/go_binary.h"
#include "tests/pprof/pprof_test_util.h"
#include "tests/test_support.h"

namespace goerrprof::testing {
namespace {

using profiler::CapturedError;
using profiler::ErrorProfile;
using ::testing::HasSubstr;
namespace pp = perftools::profiles;

std::optional<CorpusBinary> NewestCorpusBinary(const std::string& program,
                                               const std::string& flavour) {
  auto corpus = LoadCorpus(false);
  if (!corpus.ok()) return std::nullopt;
  std::optional<CorpusBinary> best;
  std::optional<goabi::GoVersion> best_version;
  for (const CorpusBinary& b : *corpus) {
    if (b.program != program || b.flavour != flavour) continue;
    auto v = goabi::GoVersion::Parse(b.go_version);
    if (v && (!best_version || *best_version < *v)) {
      best = b;
      best_version = v;
    }
  }
  return best;
}

// Symbolized frames as "function file:line", innermost first.
std::vector<std::string> FrameStrings(const symbolizer::GoBinary& bin, uint64_t pc) {
  std::vector<std::string> out;
  auto frames = bin.Symbolize(pc);
  if (!frames.ok()) return out;
  for (const auto& f : *frames) out.push_back(absl::StrCat(f.function, " ", f.file, ":", f.line));
  return out;
}

// First PC of `function` whose innermost frame is in `inlined`.
uint64_t FindInlinedPc(const symbolizer::GoBinary& bin, absl::string_view function,
                       absl::string_view inlined) {
  return FindPcWhere(bin, function, [&](uint64_t, const auto& frames) {
    return frames.size() >= 2 && frames[0].function == inlined;
  });
}

// A PC of `function` with a source line (not alignment padding), past its
// entry.
uint64_t FindPc(const symbolizer::GoBinary& bin, absl::string_view function) {
  return FindPcWhere(bin, function, [](uint64_t, const auto& at) {
    return at.size() == 1 && at.back().line > 0;
  });
}

// A return-address-like PC in `function`: one where the line of pc-1
// differs from that of pc (both real lines), so symbolizing pc-1 is
// observable.
uint64_t FindLineBoundary(const symbolizer::GoBinary& bin, absl::string_view function) {
  return FindPcWhere(bin, function, [&](uint64_t pc, const auto& at) {
    auto before = bin.Symbolize(pc - 1);
    return before.ok() && before->back().line > 0 && at.back().line > 0 &&
           before->back().line != at.back().line;
  });
}

// Over build flavours: PIE, and cgo's text segment that is not the first.
class PprofTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    auto b = NewestCorpusBinary("errgen", GetParam());
    ASSERT_TRUE(b) << "no errgen-" << GetParam() << " in the corpus at " << CorpusDir()
                   << " (build it with scripts/build_corpus.sh)";
    corpus_ = *b;
    auto bin = symbolizer::GoBinary::Open(corpus_.path);
    ASSERT_TRUE(bin.ok()) << bin.status();
    bin_ = std::move(*bin);
    setenv("GOTOOLCHAIN", "local", 1);  // never fetch a toolchain for `go tool`

    inl_pc_ = FindInlinedPc(*bin_, "main.siteNewInline", "errors.New");
    ASSERT_NE(inl_pc_, 0u) << "no inlined errors.New in main.siteNewInline";
    wrap_pc_ = FindPc(*bin_, "main.siteWrapChain");
    open_pc_ = FindPc(*bin_, "main.siteOpenMissing");
    ret_pc_ = FindLineBoundary(*bin_, "main.main");
    ASSERT_NE(wrap_pc_, 0u);
    ASSERT_NE(open_pc_, 0u);
    ASSERT_NE(ret_pc_, 0u);

    char dir[] = "/tmp/gep_pprof_XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    path_ = dir_ + "/errors.pb.gz";
  }
  void TearDown() override {
    if (dir_.empty()) return;
    unlink(path_.c_str());
    rmdir(dir_.c_str());
  }

  // Ten events: errors.New inlined ×3 (goroutine 1) and ×2 (goroutine 2),
  // a four-link wrap chain ×4 (goroutine 7), one os.Open error (goroutine
  // unknown), each called from main.main.
  ErrorProfile SampleProfile() {
    ErrorProfile p;
    auto event = [&](std::vector<uint64_t> stack, uint64_t goid, Tree& t) {
      CapturedError e = t.error();
      e.ip = stack[0];
      e.stack = std::move(stack);
      e.goid = goid;
      p.Add(e);
    };
    Tree inl;
    inl.Add(-1, "*errors.errorString", {{"s", "errgen: errors.New inlined"}});
    for (int i = 0; i < 3; ++i) event({inl_pc_, ret_pc_}, 1, inl);
    for (int i = 0; i < 2; ++i) event({inl_pc_, ret_pc_}, 2, inl);
    Tree wrap;
    int outer = wrap.Add(-1, "*fmt.wrapError", {{"msg", "outer 0: middle: inner: root cause"}});
    int middle = wrap.Add(outer, "*fmt.wrapError", {{"msg", "middle: inner: root cause"}});
    int inner = wrap.Add(middle, "*fmt.wrapError", {{"msg", "inner: root cause"}});
    wrap.Add(inner, "*errors.errorString", {{"s", "root cause"}});
    for (int i = 0; i < 4; ++i) event({wrap_pc_, ret_pc_}, 7, wrap);
    Tree open;
    int pe = open.Add(-1, "*fs.PathError",
                      {{"Op", "open"}, {"Path", "/nonexistent/goerrprof/missing-0.txt"}});
    open.Add(pe, "syscall.Errno", {}, 2);
    event({open_pc_, ret_pc_}, 0, open);
    p.SetDrops("ringbuf_full", 2);
    p.SetDrops("decode_errors", 1);
    return p;
  }

  profiler::PprofInfo Info() const {
    profiler::PprofInfo info;
    info.time_nanos = 1700000000000000000;
    info.duration_nanos = 2500000000;
    info.probes_attached = 42;
    return info;
  }

  CommandResult Pprof(std::vector<std::string> args) {
    std::vector<std::string> argv = {kGo, "tool", "pprof"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back(path_);
    return RunCommand(argv, 300);
  }

  CorpusBinary corpus_;
  std::unique_ptr<symbolizer::GoBinary> bin_;
  uint64_t inl_pc_ = 0, wrap_pc_ = 0, open_pc_ = 0, ret_pc_ = 0;
  std::string dir_, path_;
};

std::string Str(const pp::Profile& p, int64_t i) { return p.string_table(i); }

struct ReadSample {
  int64_t count = 0;
  std::vector<uint64_t> addresses;
  std::map<std::string, std::string> str_labels;
  std::map<std::string, int64_t> num_labels;
};

std::vector<ReadSample> Samples(const pp::Profile& p) {
  std::map<uint64_t, uint64_t> address;
  for (const pp::Location& l : p.location()) address[l.id()] = l.address();
  std::vector<ReadSample> out;
  for (const pp::Sample& s : p.sample()) {
    ReadSample r;
    r.count = s.value(0);
    for (uint64_t id : s.location_id()) r.addresses.push_back(address.at(id));
    for (const pp::Label& l : s.label()) {
      // goroutine is the one numeric label.
      if (Str(p, l.key()) == "goroutine") {
        EXPECT_EQ(l.str(), 0);
        r.num_labels[Str(p, l.key())] = l.num();
      } else {
        EXPECT_EQ(l.num(), 0);
        r.str_labels[Str(p, l.key())] = Str(p, l.str());
      }
    }
    out.push_back(std::move(r));
  }
  return out;
}

TEST_P(PprofTest, ReadBack) {
  ErrorProfile profile = SampleProfile();
  ASSERT_TRUE(profiler::WritePprof(profile, *bin_, Info(), path_).ok());
  auto read = profiler::ReadProfile(path_);
  ASSERT_TRUE(read.ok()) << read.status();
  const pp::Profile& p = *read;

  // errors/count (the default), then panics/count.
  ASSERT_EQ(p.sample_type_size(), 2);
  EXPECT_EQ(Str(p, p.sample_type(0).type()), "errors");
  EXPECT_EQ(Str(p, p.sample_type(0).unit()), "count");
  EXPECT_EQ(Str(p, p.sample_type(1).type()), "panics");
  EXPECT_EQ(Str(p, p.sample_type(1).unit()), "count");
  EXPECT_EQ(Str(p, p.default_sample_type()), "errors");
  EXPECT_EQ(Str(p, p.period_type().type()), "errors");
  EXPECT_EQ(Str(p, p.period_type().unit()), "count");
  EXPECT_EQ(p.period(), 1);
  EXPECT_EQ(p.time_nanos(), 1700000000000000000);
  EXPECT_EQ(p.duration_nanos(), 2500000000);

  // Samples: exact counts, stacks and labels, most frequent first.
  std::vector<ReadSample> samples = Samples(p);
  ASSERT_EQ(samples.size(), 4u);
  EXPECT_EQ(samples[0].count, 4);
  EXPECT_EQ(samples[0].addresses, (std::vector<uint64_t>{wrap_pc_, ret_pc_ - 1}));
  EXPECT_EQ(samples[0].str_labels,
            (std::map<std::string, std::string>{
                {"error.type", "*fmt.wrapError"},
                {"error.message", "outer 0: middle: inner: root cause"},
                {"error.chain",
                 "*fmt.wrapError > *fmt.wrapError > *fmt.wrapError > *errors.errorString"}}));
  EXPECT_EQ(samples[0].num_labels, (std::map<std::string, int64_t>{{"goroutine", 7}}));
  EXPECT_EQ(samples[1].count, 3);
  EXPECT_EQ(samples[1].num_labels.at("goroutine"), 1);
  EXPECT_EQ(samples[1].str_labels.at("error.message"), "errgen: errors.New inlined");
  EXPECT_EQ(samples[2].count, 2);
  EXPECT_EQ(samples[2].num_labels.at("goroutine"), 2);
  EXPECT_EQ(samples[2].addresses, (std::vector<uint64_t>{inl_pc_, ret_pc_ - 1}));
  EXPECT_EQ(samples[3].count, 1);
  EXPECT_EQ(samples[3].num_labels.at("goroutine"), 0);
  EXPECT_EQ(samples[3].str_labels.at("error.message"),
            "open /nonexistent/goerrprof/missing-0.txt: no such file or directory");
  EXPECT_EQ(samples[3].str_labels.at("error.chain"), "*fs.PathError > syscall.Errno");
  for (const pp::Sample& s : p.sample()) {
    std::vector<std::string> keys;
    for (const pp::Label& l : s.label()) keys.push_back(Str(p, l.key()));
    EXPECT_THAT(keys, ::testing::UnorderedElementsAre("error.type", "error.message",
                                                      "error.chain", "goroutine"));
  }

  // Locations: one per PC, lines are the inlined frames innermost first;
  // return addresses keep their address but describe the call (pc-1).
  ASSERT_EQ(p.location_size(), 4);
  std::map<uint64_t, uint64_t> fn_index;
  for (int i = 0; i < p.function_size(); ++i) fn_index[p.function(i).id()] = i;
  for (const pp::Location& l : p.location()) {
    const bool ret = l.address() == ret_pc_;
    std::vector<std::string> lines;
    for (const pp::Line& line : l.line()) {
      const pp::Function& f = p.function(fn_index.at(line.function_id()));
      EXPECT_EQ(Str(p, f.name()), Str(p, f.system_name()));
      lines.push_back(absl::StrCat(Str(p, f.name()), " ", Str(p, f.filename()), ":", line.line()));
    }
    EXPECT_EQ(lines, FrameStrings(*bin_, ret ? l.address() - 1 : l.address()))
        << std::hex << l.address();
    ASSERT_FALSE(lines.empty());
    EXPECT_THAT(lines.back(), ::testing::Not(::testing::EndsWith(":0")));
    EXPECT_EQ(l.mapping_id(), 1u);
    if (l.address() == inl_pc_) {
      ASSERT_GE(lines.size(), 2u);
      EXPECT_THAT(lines[0], ::testing::StartsWith("errors.New "));
      EXPECT_THAT(lines.back(), ::testing::StartsWith("main.siteNewInline "));
    }
  }
  EXPECT_NE(FrameStrings(*bin_, ret_pc_ - 1), FrameStrings(*bin_, ret_pc_));

  // One mapping over the executable segment, naming the binary.
  ASSERT_EQ(p.mapping_size(), 1);
  const pp::Mapping& m = p.mapping(0);
  EXPECT_EQ(m.id(), 1u);
  bool covered = false;
  for (const symbolizer::ElfSegment& seg : bin_->elf().loads()) {
    if (seg.flags & 1 /* PF_X */) {
      EXPECT_EQ(m.memory_start(), seg.vaddr);
      EXPECT_EQ(m.memory_limit(), seg.vaddr + seg.memsz);
      EXPECT_EQ(m.file_offset(), seg.offset);
      covered = true;
    }
  }
  EXPECT_TRUE(covered);
  EXPECT_LE(m.memory_start(), inl_pc_);
  EXPECT_GT(m.memory_limit(), inl_pc_);
  EXPECT_EQ(Str(p, m.filename()), corpus_.path);
  const std::string& want_id = bin_->elf().gnu_build_id().empty() ? bin_->elf().go_build_id()
                                                                   : bin_->elf().gnu_build_id();
  EXPECT_FALSE(want_id.empty());
  EXPECT_EQ(Str(p, m.build_id()), want_id);
  EXPECT_TRUE(m.has_functions() && m.has_filenames() && m.has_line_numbers() &&
              m.has_inline_frames());

  std::vector<std::string> comments;
  for (int64_t c : p.comment()) comments.push_back(Str(p, c));
  EXPECT_EQ(comments, (std::vector<std::string>{
                          absl::StrCat("goerrprof: error creations in ", corpus_.path),
                          absl::StrCat("go version: ", corpus_.go_version),
                          "duration: 2.5s",
                          "probes attached: 42",
                          "messages: full (error messages and goroutine labels as the target "
                          "held them)",
                          "drops: decode_errors=1 ringbuf_full=2 (total 3)",
                          "counts: events=10 samples=4 sites=3 partial=0 other_messages=0 "
                          "dropped=3 panics=0",
                      }));
}

TEST_P(PprofTest, GoToolPprof) {
  if (access(kGo, X_OK) != 0) GTEST_SKIP() << "no " << kGo;
  ASSERT_TRUE(profiler::WritePprof(SampleProfile(), *bin_, Info(), path_).ok());

  CommandResult top = Pprof({"-top"});
  ASSERT_EQ(top.exit_code, 0) << top.err;
  EXPECT_THAT(top.out, HasSubstr("Type: errors"));
  EXPECT_THAT(top.out, HasSubstr("of 10 total"));
  // Flat counts belong to the innermost (inlined) frames.
  EXPECT_TRUE(std::regex_search(top.out, std::regex(R"(\n\s+5\s+50\.00%.*errors\.New \(inline\))")))
      << top.out;
  EXPECT_TRUE(std::regex_search(top.out, std::regex(R"(\n\s+4\s+40\.00%.*main\.siteWrapChain\n)")))
      << top.out;
  EXPECT_TRUE(std::regex_search(top.out, std::regex(R"(\n\s+0\s+0%\s+100%\s+10\s+100%\s+main\.main\n)")))
      << top.out;

  CommandResult traces = Pprof({"-traces"});
  ASSERT_EQ(traces.exit_code, 0) << traces.err;
  // Each trace lists its labels, then the count and the frames.
  EXPECT_THAT(traces.out,
              HasSubstr("error.chain:  *fmt.wrapError > *fmt.wrapError > *fmt.wrapError > "
                        "*errors.errorString\n"
                        "error.message:  outer 0: middle: inner: root cause\n"
                        "error.type:  *fmt.wrapError\n"
                        " goroutine:  7\n"
                        "         4   main.siteWrapChain\n"
                        "             main.main\n"));
  EXPECT_THAT(traces.out, HasSubstr(" goroutine:  2\n"
                                    "         2   errors.New (inline)\n"
                                    "             main.siteNewInline\n"
                                    "             main.main\n"));
  // pprof drops a numeric label of 0 when decoding: no goroutine is shown
  // for the event whose goroutine id is unknown.
  EXPECT_THAT(traces.out, HasSubstr("error.type:  *fs.PathError\n"
                                    "         1   main.siteOpenMissing\n"));
  EXPECT_THAT(traces.out, HasSubstr("errors.New"));

  CommandResult raw = Pprof({"-raw"});
  ASSERT_EQ(raw.exit_code, 0) << raw.err;
  EXPECT_THAT(raw.out, HasSubstr("PeriodType: errors count"));
  EXPECT_THAT(raw.out, HasSubstr("probes attached: 42"));
  EXPECT_THAT(raw.out, HasSubstr(absl::StrCat(absl::Hex(inl_pc_))));
  EXPECT_THAT(raw.out, HasSubstr(corpus_.path));

  // -tagfocus takes a regexp: anchored, it keeps exactly one type.
  CommandResult focus = Pprof({"-top", R"(-tagfocus=error.type=^\*errors\.errorString$)"});
  ASSERT_EQ(focus.exit_code, 0) << focus.err;
  EXPECT_THAT(focus.out, HasSubstr("Showing nodes accounting for 5, 50.00% of 10 total"));
  EXPECT_THAT(focus.out, HasSubstr("errors.New"));
  EXPECT_THAT(focus.out, ::testing::Not(HasSubstr("siteWrapChain")));
  EXPECT_THAT(focus.out, ::testing::Not(HasSubstr("siteOpenMissing")));
  CommandResult by_goroutine = Pprof({"-top", "-tagfocus=goroutine=7"});
  ASSERT_EQ(by_goroutine.exit_code, 0) << by_goroutine.err;
  EXPECT_THAT(by_goroutine.out, HasSubstr("Showing nodes accounting for 4, 40.00% of 10 total"));
  EXPECT_THAT(by_goroutine.out, HasSubstr("main.siteWrapChain"));
  EXPECT_THAT(by_goroutine.out, ::testing::Not(HasSubstr("errors.New")));

  CommandResult tags = Pprof({"-tags"});
  ASSERT_EQ(tags.exit_code, 0) << tags.err;
  EXPECT_THAT(tags.out, HasSubstr("error.type: Total 10"));
  EXPECT_TRUE(std::regex_search(tags.out, std::regex(R"(\n\s+5 \(50\.00%\): \*errors\.errorString\n)")))
      << tags.out;
  EXPECT_THAT(tags.out, HasSubstr("goroutine: Total 9 of 10"));  // 0 (unknown) not shown
  EXPECT_TRUE(std::regex_search(tags.out, std::regex(R"(\n\s+4 \(40\.00%\): 7\n)")))
      << tags.out;
  EXPECT_THAT(tags.out, HasSubstr("error.chain: Total 10"));
  EXPECT_THAT(tags.out, HasSubstr("error.message: Total 10"));

  // pprof accepts the mapping (build ID, address range) for symbolizing
  // from the binary itself; the creating sites resolve to the same
  // functions. (How it expands inlining depends on the tools it finds.)
  CommandResult force = Pprof({"-symbolize=force", "-raw"});
  ASSERT_EQ(force.exit_code, 0) << force.err;
  EXPECT_THAT(force.err, ::testing::Not(HasSubstr("mismatch")));
  EXPECT_THAT(force.err, ::testing::Not(HasSubstr("failed")));
  for (uint64_t pc : {wrap_pc_, open_pc_, inl_pc_}) {
    std::string loc = absl::StrCat(": 0x", absl::Hex(pc), " M=1 ");
    size_t at = force.out.find(loc);
    ASSERT_NE(at, std::string::npos) << loc << "\n" << force.out;
    std::string rest = force.out.substr(at + loc.size());
    std::string want = FrameStrings(*bin_, pc).back();
    want = want.substr(0, want.find(' '));
    // This location's lines run to the next location or the mappings.
    std::smatch next;
    if (std::regex_search(rest, next, std::regex(R"(\n\s*\d+: 0x|\nMappings)"))) {
      rest = rest.substr(0, next.position(0));
    }
    EXPECT_THAT(rest, ::testing::HasSubstr(want)) << force.out;
  }
}

TEST_P(PprofTest, WriteIsAtomicAndReportsErrors) {
  ASSERT_TRUE(profiler::WritePprof(SampleProfile(), *bin_, Info(), path_).ok());
  ErrorProfile empty;
  ASSERT_TRUE(profiler::WritePprof(empty, *bin_, Info(), path_).ok());  // replaces
  auto read = profiler::ReadProfile(path_);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->sample_size(), 0);
  // Nothing but the profile is left in the directory.
  CommandResult ls = RunCommand({"ls", "-A", dir_});
  EXPECT_EQ(ls.out, "errors.pb.gz\n");

  absl::Status bad = profiler::WritePprof(empty, *bin_, Info(), "/nonexistent-dir/x.pb.gz");
  EXPECT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.message()), HasSubstr("/nonexistent-dir/x.pb.gz"));
  EXPECT_FALSE(profiler::ReadProfile("/nonexistent-dir/x.pb.gz").ok());
}

// The overhead budget's estimate: the site's samples share it in proportion
// to what was observed, carry errors.estimated=true and their observed
// count as a third value; other samples are as observed.
TEST_P(PprofTest, EstimatedCountsBesideObserved) {
  ErrorProfile profile = SampleProfile();
  profile.SetEstimate(0, wrap_pc_, 6);
  profiler::PprofInfo info = Info();
  info.budget = "overhead budget: test";
  ASSERT_TRUE(profiler::WritePprof(profile, *bin_, info, path_).ok());
  auto read = profiler::ReadProfile(path_);
  ASSERT_TRUE(read.ok()) << read.status();
  const pp::Profile& p = *read;
  ASSERT_EQ(p.sample_type_size(), 3);
  EXPECT_EQ(Str(p, p.sample_type(2).type()), "errors_observed");
  EXPECT_EQ(Str(p, p.default_sample_type()), "errors");
  std::map<uint64_t, std::pair<int64_t, int64_t>> by_site;  // estimated, observed
  std::map<uint64_t, bool> labelled;
  std::map<uint64_t, uint64_t> address;
  for (const pp::Location& l : p.location()) address[l.id()] = l.address();
  for (const pp::Sample& s : p.sample()) {
    ASSERT_EQ(s.value_size(), 3);
    uint64_t site = address.at(s.location_id(0));
    by_site[site].first += s.value(0);
    by_site[site].second += s.value(2);
    for (const pp::Label& l : s.label()) {
      if (Str(p, l.key()) == "errors.estimated") labelled[site] = Str(p, l.str()) == "true";
    }
  }
  EXPECT_EQ(by_site.size(), 3u);
  for (const auto& [site, counts] : by_site) {
    bool wrap = counts.second == 4;
    EXPECT_EQ(counts.first, wrap ? 10 : counts.second) << std::hex << site;
    EXPECT_EQ(labelled[site], wrap) << std::hex << site;
  }
  std::string comments;
  for (int64_t c : p.comment()) absl::StrAppend(&comments, Str(p, c), "\n");
  EXPECT_THAT(comments, HasSubstr("overhead budget: test\n"));
  EXPECT_THAT(comments, HasSubstr("panics=0 estimated=6\n"));
}

INSTANTIATE_TEST_SUITE_P(Flavours, PprofTest, ::testing::Values("default", "pie", "cgo"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace goerrprof::testing
