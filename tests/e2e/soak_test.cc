// The soak (scripts/soak.sh [MINUTES]): a Go HTTP service on loopback
// (testdata/go_binaries/soaksvc) under a seeded load for MINUTES, recorded
// the whole time with errors and goroutine waits, while a second recorder
// attaches and detaches every round. Each round the profiled service's
// responses equal, byte for byte, those of an unprofiled twin given the
// same requests; each short recording's counts equal what the service
// itself counted during it, and the long one's equal the whole run's; the
// long recorder's RSS does not grow after warm-up.
//
// Env: GOERRPROF_SOAKSVC (the service binary), GOERRPROF_SOAK_SECONDS.
#include <signal.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "pprof/labels.h"
#include "pprof/profile_file.h"
#include "tests/e2e/record_cli_fixture.h"
#include "tests/test_support.h"

namespace goerrprof::testing {
namespace {

constexpr int kRequests = 3000;  // per round and service

struct Counts {
  int64_t parse = 0, invalid = 0, not_found = 0;
  bool operator==(const Counts&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Counts& c) {
  return os << "parse=" << c.parse << " invalid=" << c.invalid << " not_found=" << c.not_found;
}

Counts Minus(const Counts& a, const Counts& b) {
  return {a.parse - b.parse, a.invalid - b.invalid, a.not_found - b.not_found};
}

// The service's own counters (soaksvc -stats).
Counts Stats(const std::string& svc, const std::string& addr) {
  CommandResult r = RunCommand({svc, "-stats", addr}, kTimeout);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  auto v = ParseJson(r.out);
  EXPECT_TRUE(v.ok()) << v.status() << r.out;
  if (!v.ok()) return {};
  return {GetInt(*v, "parse"), GetInt(*v, "invalid"), GetInt(*v, "not_found")};
}

// The service's own creations in a profile: the three kinds by type, under
// the function that makes them.
Counts FromProfile(const std::string& path) {
  auto p = profiler::ReadProfile(path);
  EXPECT_TRUE(p.ok()) << p.status();
  Counts c;
  if (!p.ok()) return c;
  for (const ProfileSample& s : ProfileSamples(*p)) {
    auto type = s.labels.find(profiler::kLabelType);
    if (type == s.labels.end()) continue;
    auto under = [&](const char* fn) {
      for (const std::string& f : s.functions) {
        if (f == fn) return true;
      }
      return false;
    };
    if (type->second == "*strconv.NumError" && under("main.parseID")) c.parse += s.value;
    if (type->second == "*main.ValidationError" && under("main.parseID")) c.invalid += s.value;
    if (type->second == "*fmt.wrapError" && under("main.lookup")) c.not_found += s.value;
  }
  return c;
}

int64_t RssKiB(pid_t pid) {
  std::string status = ReadFileOrEmpty(absl::StrCat("/proc/", pid, "/status"));
  for (absl::string_view line : absl::StrSplit(status, '\n')) {
    if (!absl::ConsumePrefix(&line, "VmRSS:")) continue;
    int64_t kib = 0;
    if (absl::SimpleAtoi(absl::StripSuffix(absl::StripAsciiWhitespace(line), " kB"), &kib)) {
      return kib;
    }
  }
  return -1;
}

// A service started and listening; its address.
std::unique_ptr<Child> StartService(const std::string& svc, std::string* addr) {
  auto c = Child::Spawn({svc});
  EXPECT_TRUE(c.ok()) << c.status();
  if (!c.ok()) return nullptr;
  auto line = (*c)->ReadLine(false, kTimeout);
  EXPECT_TRUE(line.ok()) << line.status();
  if (!line.ok() || !absl::StartsWith(*line, "listening ")) return nullptr;
  *addr = line->substr(std::string("listening ").size());
  return std::move(*c);
}

TEST_F(RecordCliTest, Soak) {
  const char* svc_env = std::getenv("GOERRPROF_SOAKSVC");
  if (svc_env == nullptr) GTEST_SKIP() << "run through scripts/soak.sh (GOERRPROF_SOAKSVC unset)";
  std::string svc = svc_env;
  const char* secs_env = std::getenv("GOERRPROF_SOAK_SECONDS");
  int seconds = 120;
  if (secs_env != nullptr) {
    ASSERT_TRUE(absl::SimpleAtoi(secs_env, &seconds)) << secs_env;
  }

  std::string control_addr, profiled_addr;
  auto control = StartService(svc, &control_addr);
  auto profiled = StartService(svc, &profiled_addr);
  ASSERT_TRUE(control && profiled);
  std::string long_out = OutPath("long");
  auto long_rec = StartRecord(profiled->pid(), long_out, {"--goroutines=trace"});
  ASSERT_TRUE(long_rec);

  auto end = Clock::now() + std::chrono::seconds(seconds);
  std::vector<int64_t> rss;
  Counts start = Stats(svc, profiled_addr);
  int rounds = 0;
  for (int64_t seed = 1; Clock::now() < end; ++seed, ++rounds) {
    SCOPED_TRACE(absl::StrCat("round ", rounds, " (seed ", seed, ")"));
    std::string short_out = OutPath(absl::StrCat("short", rounds % 2));
    Counts before = Stats(svc, profiled_addr);
    auto short_rec = StartRecord(profiled->pid(), short_out, {});
    ASSERT_TRUE(short_rec);
    std::vector<std::string> load = {svc, "-load", "", "-n", absl::StrCat(kRequests), "-seed",
                                      absl::StrCat(seed)};
    load[2] = control_addr;
    CommandResult want = RunCommand(load, kTimeout);
    load[2] = profiled_addr;
    CommandResult got = RunCommand(load, kTimeout);
    ASSERT_EQ(want.exit_code, 0) << want.err;
    ASSERT_EQ(got.exit_code, 0) << got.err;
    ASSERT_EQ(got.out, want.out) << "responses differ under recording";
    Counts during = Minus(Stats(svc, profiled_addr), before);
    kill(short_rec->pid(), SIGINT);
    Summary summary;
    ASSERT_NO_FATAL_FAILURE(FinishRecord(*short_rec, "interrupted", &summary));
    EXPECT_EQ(summary.dropped, 0u);
    EXPECT_EQ(FromProfile(short_out), during);
    EXPECT_EQ(Stats(svc, control_addr), Stats(svc, profiled_addr));
    rss.push_back(RssKiB(long_rec->pid()));
  }
  Counts total = Minus(Stats(svc, profiled_addr), start);
  kill(long_rec->pid(), SIGINT);
  Summary summary;
  std::string said;
  ASSERT_NO_FATAL_FAILURE(FinishRecord(*long_rec, "interrupted", &summary, &said));
  EXPECT_EQ(summary.dropped, 0u) << said;
  EXPECT_EQ(FromProfile(long_out), total);
  // After warm-up (the first quarter of the rounds), the resident set stays
  // within 10% or 4 MiB of where it was.
  ASSERT_GE(rss.size(), 4u) << "too few rounds to judge memory";
  size_t warm = rss.size() / 4;
  int64_t base = rss[warm], peak = 0;
  for (size_t i = warm; i < rss.size(); ++i) peak = std::max(peak, rss[i]);
  EXPECT_LE(peak - base, std::max<int64_t>(4096, base / 10))
      << "RSS (KiB) from warm-up: " << base << " to peak " << peak;
  std::printf("soak: %d rounds of %d requests per service in %ds; %lld+%lld+%lld errors; "
              "recorder RSS %lld KiB after warm-up, peak %lld KiB\n",
              rounds, kRequests, seconds, static_cast<long long>(total.parse),
              static_cast<long long>(total.invalid), static_cast<long long>(total.not_found),
              static_cast<long long>(base), static_cast<long long>(peak));
  control->CloseStdin();
  profiled->CloseStdin();
  EXPECT_TRUE(control->Finish(kTimeout).ok());
  EXPECT_TRUE(profiled->Finish(kTimeout).ok());
}

}  // namespace
}  // namespace goerrprof::testing
