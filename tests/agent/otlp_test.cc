// The OTLP path without BPF: endpoints parsed, a pprof profile re-encoded as
// OTLP and POSTed to a real collector (tests/agent/otelcol), which must read
// back exactly its samples, stacks (inlined frames too) and attributes; a
// collector's refusal and an absent one reported; the exporter's counts.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <vector>

#include "agent/otlp_exporter.h"
#include "gtest/gtest.h"
#include "pprof/otlp_profile.h"
#include "tests/agent/otel_collector.h"

namespace goerrprof::testing {
namespace {

using profiler::OtlpEndpoint;
using profiler::ParseOtlpEndpoint;
namespace pp = perftools::profiles;

TEST(OtlpEndpointTest, Parses) {
  struct Case {
    std::string url, host, port, path;
  } cases[] = {
      {"http://collector:4318", "collector", "4318", "/v1development/profiles"},
      {"http://collector:4318/", "collector", "4318", "/v1development/profiles"},
      {"http://collector", "collector", "4318", "/v1development/profiles"},
      {"http://10.0.0.1:9/otlp/profiles", "10.0.0.1", "9", "/otlp/profiles"},
      {"http://[::1]:4318", "::1", "4318", "/v1development/profiles"},
  };
  for (const Case& c : cases) {
    auto e = ParseOtlpEndpoint(c.url);
    ASSERT_TRUE(e.ok()) << c.url << ": " << e.status();
    EXPECT_EQ(e->host, c.host) << c.url;
    EXPECT_EQ(e->port, c.port) << c.url;
    EXPECT_EQ(e->path, c.path) << c.url;
  }
  EXPECT_EQ(ParseOtlpEndpoint("http://[::1]:5/p")->url(), "http://[::1]:5/p");
  for (const char* bad : {"https://collector:4318", "collector:4318", "http://:4318", "http://h:0",
                          "http://h:65536", "http://h:x", "http://[::1", "http://h/a b", ""}) {
    auto e = ParseOtlpEndpoint(bad);
    EXPECT_EQ(e.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

// A profile as BuildPprof makes them: two sample types, a location with an
// inlined frame, one without lines, string and numeric labels.
pp::Profile SmallProfile() {
  pp::Profile p;
  for (const char* s : {"", "errors", "count", "panics", "main.inner", "main.outer", "main.main",
                        "main.go", "error.type", "*main.E", "goroutine", "/bin/x",
                        "0123456789abcdef0123456789abcdef01234567", "panic.recovered", "true"}) {
    p.add_string_table(s);
  }
  auto type = [&](int t, int u) {
    pp::ValueType* v = p.add_sample_type();
    v->set_type(t);
    v->set_unit(u);
  };
  type(1, 2);  // errors/count
  type(3, 2);  // panics/count
  pp::Mapping* m = p.add_mapping();
  m->set_id(1);
  m->set_memory_start(0x400000);
  m->set_memory_limit(0x800000);
  m->set_filename(11);
  m->set_build_id(12);
  for (int i = 0; i < 3; ++i) {
    pp::Function* f = p.add_function();
    f->set_id(10 + i);
    f->set_name(4 + i);
    f->set_system_name(4 + i);
    f->set_filename(7);
  }
  // Location 1: inner inlined into outer; 2: main; 3: no lines.
  pp::Location* l = p.add_location();
  l->set_id(1);
  l->set_mapping_id(1);
  l->set_address(0x401000);
  l->add_line()->set_function_id(10);
  l->mutable_line(0)->set_line(7);
  l->add_line()->set_function_id(11);
  l->mutable_line(1)->set_line(12);
  l = p.add_location();
  l->set_id(2);
  l->set_mapping_id(1);
  l->set_address(0x402000);
  l->add_line()->set_function_id(12);
  l = p.add_location();
  l->set_id(3);
  l->set_mapping_id(1);
  l->set_address(0x40abcd);
  auto sample = [&](std::vector<uint64_t> locs, int64_t errors, int64_t panics, int64_t goroutine) {
    pp::Sample* s = p.add_sample();
    for (uint64_t id : locs) s->add_location_id(id);
    s->add_value(errors);
    s->add_value(panics);
    pp::Label* lb = s->add_label();
    lb->set_key(8);
    lb->set_str(9);
    lb = s->add_label();
    lb->set_key(10);
    lb->set_num(goroutine);
    return s;
  };
  sample({1, 2}, 2, 0, 7);
  sample({1, 2}, 5, 0, 8);
  pp::Label* lb = sample({3, 2}, 0, 1, 0)->add_label();
  lb->set_key(13);
  lb->set_str(14);
  p.set_time_nanos(1'700'000'000'000'000'000);
  p.set_duration_nanos(2'000'000'000);
  return p;
}

TEST(OtlpProfileTest, CollectorReadsEverySample) {
  auto collector = OtelCollector::Start();
  ASSERT_TRUE(collector.ok()) << collector.status();
  profiler::OtlpResource resource;
  resource.attributes = {{"host.name", "node-1"}};
  resource.scope_version = "test";
  auto request = profiler::PprofToOtlp(SmallProfile(), resource);
  ASSERT_TRUE(request.ok()) << request.status();
  auto to = ParseOtlpEndpoint((*collector)->endpoint());
  ASSERT_TRUE(to.ok());
  absl::Status sent = profiler::PostOtlp(*to, *request, absl::Seconds(10));
  ASSERT_TRUE(sent.ok()) << sent;
  // The exporter has written the batch before the receiver answers.
  auto got = (*collector)->Received();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(*got,
            "batch\thost.name=node-1\tgoerrprof/test\n"
            "sample\terrors/count\t2\tmain.inner;main.outer;main.main\terror.type=*main.E\t"
            "goroutine=7\n"
            "sample\terrors/count\t5\tmain.inner;main.outer;main.main\terror.type=*main.E\t"
            "goroutine=8\n"
            "sample\tpanics/count\t1\t0x40abcd;main.main\terror.type=*main.E\tgoroutine=0\t"
            "panic.recovered=true\n"
            "end\n");
  EXPECT_TRUE((*collector)->Stop().ok());
}

TEST(OtlpProfileTest, RefusalsAndAbsenceAreReported) {
  auto collector = OtelCollector::Start();
  ASSERT_TRUE(collector.ok()) << collector.status();
  auto to = ParseOtlpEndpoint((*collector)->endpoint());
  ASSERT_TRUE(to.ok());
  // Not protobuf: the receiver answers 400, and the reason says so.
  absl::Status s = profiler::PostOtlp(*to, std::string("\xff\xff\xff", 3), absl::Seconds(10));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(s.message().find("400"), absl::string_view::npos) << s;
  ASSERT_TRUE((*collector)->Stop().ok());
  // Nobody listens there now.
  s = profiler::PostOtlp(*to, "", absl::Seconds(10));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(s.message().find("connecting"), absl::string_view::npos) << s;

  // Every push is accounted for: none sent; past the queue's 4, or still
  // failing when finished, or after that, each dropped.
  profiler::OtlpExporter exporter(*to);
  for (int i = 0; i < 10; ++i) exporter.Push("x");
  exporter.Finish();
  exporter.Push("after");  // dropped: finished
  profiler::OtlpExporter::Counts c = exporter.counts();
  EXPECT_EQ(c.sent, 0u);
  EXPECT_GE(c.failed, 1u);
  EXPECT_EQ(c.dropped, 11u);
  EXPECT_NE(c.last_error.find("connecting"), std::string::npos) << c.last_error;
}

// A collector that is down when a push is made (restarting, say) gets it
// once it is back: the push is retried, not lost.
TEST(OtlpProfileTest, RetriesUntilTheCollectorIsBack) {
  const int port = FreeLoopbackPort();
  ASSERT_GT(port, 0);
  auto to = ParseOtlpEndpoint("http://127.0.0.1:" + std::to_string(port));
  ASSERT_TRUE(to.ok());
  auto request = profiler::PprofToOtlp(SmallProfile(), {});
  ASSERT_TRUE(request.ok()) << request.status();
  profiler::OtlpExporter exporter(*to);
  exporter.Push(*request);
  // Polled (bounded): the first try has failed, nobody listening.
  auto until = [&](auto done) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (!done(exporter.counts())) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      usleep(10 * 1000);
    }
    return true;
  };
  ASSERT_TRUE(until([](const auto& c) { return c.failed >= 1; }));
  auto collector = OtelCollector::Start(port);
  ASSERT_TRUE(collector.ok()) << collector.status();
  ASSERT_TRUE(until([](const auto& c) { return c.sent == 1; })) << exporter.counts().last_error;
  exporter.Finish();
  EXPECT_EQ(exporter.counts().dropped, 0u);
  auto got = (*collector)->Received();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(std::count(got->begin(), got->end(), '\n'), 5) << *got;  // batch, 3 samples, end
  EXPECT_TRUE((*collector)->Stop().ok());
}

TEST(OtlpProfileTest, DanglingIdsAreRefused) {
  pp::Profile p = SmallProfile();
  p.mutable_location(0)->mutable_line(0)->set_function_id(99);
  EXPECT_EQ(profiler::PprofToOtlp(p, {}).status().code(), absl::StatusCode::kInvalidArgument);
  p = SmallProfile();
  p.mutable_sample(0)->set_location_id(0, 42);
  EXPECT_EQ(profiler::PprofToOtlp(p, {}).status().code(), absl::StatusCode::kInvalidArgument);
  p = SmallProfile();
  p.mutable_function(0)->set_name(1000);
  EXPECT_EQ(profiler::PprofToOtlp(p, {}).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace goerrprof::testing
