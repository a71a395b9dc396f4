// Shared by the suites of `goerrprof diff`: real creating sites of errgen
// binaries, and a fixture that writes profiles of them with the real pprof
// writer and runs the CLI on them.
#ifndef GOERRPROF_TESTS_DIFF_DIFF_TEST_UTIL_H_
#define GOERRPROF_TESTS_DIFF_DIFF_TEST_UTIL_H_

#include <stdlib.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "aggregate/error_profile.h"
#include "pprof/labels.h"
#include "pprof/pprof_writer.h"
#include "pprof/profile_file.h"
#include "symbolizer/go_binary.h"
#include "tests/test_support.h"

namespace goerrprof::testing {

inline constexpr char kWrapChain[] =
    "*fmt.wrapError > *fmt.wrapError > *fmt.wrapError > *errors.errorString";
inline constexpr char kOpenChain[] = "*fs.PathError > syscall.Errno";
inline constexpr char kAtoiChain[] = "*strconv.NumError > *errors.errorString";

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

struct Event {
  uint64_t Sites::*pc;
  uint64_t Sites::*caller;  // the frame above pc (a return address)
  std::string type, chain;
  uint64_t count;
  uint64_t goroutine = 1;
  std::string message = "m";
  profiler::PanicState panic = profiler::PanicState::kNone;
  double estimated = 0;  // creations the overhead budget estimated at the site
};

class DiffTest : public ::testing::Test {
 protected:
  // Loads the two newest errgen-default binaries of the corpus.
  static void SetUpTestSuite();
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

  // Builds a profile of `events` with the real writer, under the message
  // policy `messages` (record --messages); returns its path.
  std::string Write(const std::string& name, const std::vector<Event>& events,
                    const Sites* sites = nullptr, const std::string& binary_label = "",
                    int64_t pid = 0,
                    profiler::MessagePolicy messages = profiler::MessagePolicy::kFull) {
    if (sites == nullptr) sites = newest_;
    profiler::ErrorProfile::Options options;
    options.messages = messages;
    profiler::ErrorProfile profile(options);
    for (const Event& e : events) {
      profiler::SampleKey k;
      k.stack = {sites->*e.pc, sites->*e.caller};
      // fmt.Errorf's callers are called by main.main in turn.
      if (e.caller != &Sites::main_ret) k.stack.push_back(sites->main_ret);
      k.type = e.type;
      k.chain = e.chain;
      k.message = e.message;
      k.goroutine = e.goroutine;
      k.panic = e.panic;
      profile.Add(std::move(k), e.count);
      if (e.estimated > 0) profile.SetEstimate(0, sites->*e.pc, e.estimated);
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
  static void AddProcessLabels(perftools::profiles::Profile* p, const std::string& binary, int64_t pid) {
    auto index = [&](const std::string& s) {
      for (int i = 0; i < p->string_table_size(); ++i) {
        if (p->string_table(i) == s) return static_cast<int64_t>(i);
      }
      p->add_string_table(s);
      return static_cast<int64_t>(p->string_table_size() - 1);
    };
    for (perftools::profiles::Sample& s : *p->mutable_sample()) {
      perftools::profiles::Label* b = s.add_label();
      b->set_key(index(profiler::kLabelBinary));
      b->set_str(index(binary));
      perftools::profiles::Label* n = s.add_label();
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

// Base workload: errors.New inlined ×10, the wrap chain ×100, os.Open ×1.
inline std::vector<Event> Base() {
  return {{&Sites::inl, &Sites::main_ret, "*errors.errorString", "*errors.errorString", 10},
          {&Sites::errorf, &Sites::wrap_ret, "*fmt.wrapError", kWrapChain, 100},
          {&Sites::open, &Sites::main_ret, "*fs.PathError", kOpenChain, 1}};
}

}  // namespace goerrprof::testing

#endif  // GOERRPROF_TESTS_DIFF_DIFF_TEST_UTIL_H_
