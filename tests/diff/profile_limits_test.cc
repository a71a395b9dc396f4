// A profile handed to `diff` costs bounded time and memory: a gzip bomb
// (half a MB that inflates to 512 MB) is refused with one line before it
// is held in memory, and samples that name long stacks of long names are
// summarized in time linear in the file.
#include <unistd.h>
#include <zlib.h>

#include <fstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "diff/profile_diff.h"
#include "gtest/gtest.h"
#include "pprof/profile_file.h"
#include "tests/bounded_child.h"
#include "tests/test_support.h"

namespace goerrprof::testing {
namespace {

// `n` zero bytes, gzipped (one member), written in 1 MB steps.
std::string GzippedZeros(uint64_t n) {
  z_stream z{};
  deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY);
  std::string zeros(1 << 20, '\0'), out;
  char buf[1 << 16];
  for (uint64_t left = n;;) {
    uint64_t step = std::min<uint64_t>(left, zeros.size());
    left -= step;
    z.next_in = reinterpret_cast<Bytef*>(zeros.data());
    z.avail_in = static_cast<uInt>(step);
    int flush = left == 0 ? Z_FINISH : Z_NO_FLUSH;
    int rc;
    do {
      z.next_out = reinterpret_cast<Bytef*>(buf);
      z.avail_out = sizeof(buf);
      rc = deflate(&z, flush);
      out.append(buf, sizeof(buf) - z.avail_out);
    } while (z.avail_out == 0);
    if (left == 0 && rc == Z_STREAM_END) break;
  }
  deflateEnd(&z);
  return out;
}

TEST(ProfileLimits, GzipBombIsRefused) {
  std::string bomb = GzippedZeros(uint64_t{512} << 20);
  ASSERT_LT(bomb.size(), 1u << 20);
  BoundedRun run = RunInChild(
      [&] {
        auto p = profiler::ParseProfile(bomb, "bomb.pb.gz");
        if (p.ok()) return 2;
        return absl::StrContains(p.status().message(), "more than 256 MB") ? 0 : 3;
      },
      30);
  EXPECT_TRUE(run.finished && run.exit_code == 0) << run.Describe();
  EXPECT_LT(run.rss_growth_kb, 64 << 10) << run.Describe();

  std::string path = absl::StrCat(::testing::TempDir(), "/", getpid(), "_bomb.pb.gz");
  std::ofstream(path, std::ios::binary) << bomb;
  CommandResult r = RunCommand({GoerrprofPath(), "diff", path, path}, 60);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "more than 256 MB")) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

// 1000 samples naming 1000 times one location of 10 000 inlined frames of
// one standard-library function with a 64 KB name: every frame of every
// sample used to be looked at (10^10 frames, each copying the name).
TEST(ProfileLimits, SamplesOfManyFramesNamingOneLongName) {
  namespace pp = perftools::profiles;
  pp::Profile p;
  for (const std::string& s : {std::string(), std::string("errors"), std::string("count"),
                               "fmt." + std::string(64 << 10, 'x'), std::string("f.go"),
                               std::string("error.type"), std::string("*errors.errorString")}) {
    p.add_string_table(s);
  }
  pp::ValueType* type = p.add_sample_type();
  type->set_type(1);
  type->set_unit(2);
  pp::Function* f = p.add_function();
  f->set_id(1);
  f->set_name(3);
  f->set_filename(4);
  pp::Location* l = p.add_location();
  l->set_id(1);
  for (int i = 0; i < 10000; ++i) {
    pp::Line* line = l->add_line();
    line->set_function_id(1);
    line->set_line(i);
  }
  for (int i = 0; i < 1000; ++i) {
    pp::Sample* s = p.add_sample();
    for (int k = 0; k < 1000; ++k) s->add_location_id(1);
    s->add_value(1);
    pp::Label* label = s->add_label();
    label->set_key(5);
    label->set_str(6);
  }
  BoundedRun run = RunInChild(
      [&] {
        auto sites = profiler::SummarizeProfile(p);
        return sites.ok() && sites->sites.size() == 1 && sites->total == 1000 ? 0 : 2;
      },
      10);
  EXPECT_TRUE(run.finished && run.exit_code == 0) << run.Describe();
  EXPECT_LT(run.rss_growth_kb, 256 << 10) << run.Describe();
}

}  // namespace
}  // namespace goerrprof::testing
