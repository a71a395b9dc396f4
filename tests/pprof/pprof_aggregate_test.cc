// The aggregation of captured errors into samples: by stack, labels and
// goroutine, with a budget of messages per site, and the drop counters.
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "aggregate/error_profile.h"
#include "tests/pprof/pprof_test_util.h"

namespace goerrprof::testing {
namespace {

using profiler::CapturedError;
using profiler::ErrorProfile;

CapturedError Event(std::vector<uint64_t> stack, const std::string& msg, uint64_t goid) {
  Tree t;
  t.Add(-1, "*errors.errorString", {{"s", msg}});
  CapturedError e = t.error();
  e.ip = stack.empty() ? 0 : stack[0];
  e.stack = std::move(stack);
  e.goid = goid;
  return e;
}

TEST(ErrorProfile, AggregatesByStackLabelsAndGoroutine) {
  ErrorProfile p;
  for (int i = 0; i < 3; ++i) p.Add(Event({0x401000, 0x402000}, "a", 1));
  p.Add(Event({0x401000, 0x402000}, "a", 2));  // other goroutine
  p.Add(Event({0x401000, 0x402100}, "a", 1));  // other caller
  p.Add(Event({0x401000, 0x402000}, "b", 1));  // other message
  CapturedError no_stack = Event({}, "c", 0);
  no_stack.ip = 0x403000;
  no_stack.flags = GEP_EV_STACK_FAILED;
  p.Add(no_stack);

  EXPECT_EQ(p.counters().events, 7u);
  EXPECT_EQ(p.num_samples(), 5u);
  EXPECT_THAT(std::vector<uint64_t>(p.sites().begin(), p.sites().end()),
              ::testing::ElementsAre(0x401000, 0x403000));
  std::vector<ErrorProfile::Sample> samples = p.Samples();
  ASSERT_EQ(samples.size(), 5u);
  EXPECT_EQ(samples[0].count, 3u);
  EXPECT_EQ(samples[0].key->message, "a");
  EXPECT_EQ(samples[0].key->goroutine, 1u);
  EXPECT_EQ(samples[0].key->type, "*errors.errorString");
  EXPECT_EQ(samples[0].key->chain, "*errors.errorString");
  EXPECT_EQ(samples[4].key->stack, std::vector<uint64_t>{0x403000});
}

// Panics are samples of their own, keyed by their fate, and counted apart.
TEST(ErrorProfile, PanicsAreTheirOwnSamples) {
  ErrorProfile p;
  CapturedError e = Event({0x401000, 0x402000}, "boom", 1);
  p.Add(e);
  p.AddPanic(e, 0, {}, true);
  p.AddPanic(e, 0, {}, true);
  p.AddPanic(e, 0, {}, false);
  EXPECT_EQ(p.counters().events, 4u);
  EXPECT_EQ(p.counters().panics, 3u);
  std::map<profiler::PanicState, uint64_t> by_state;
  for (const ErrorProfile::Sample& s : p.Samples()) {
    EXPECT_EQ(s.key->message, "boom");
    by_state[s.key->panic] += s.count;
  }
  EXPECT_EQ(by_state, (std::map<profiler::PanicState, uint64_t>{
                          {profiler::PanicState::kNone, 1},
                          {profiler::PanicState::kRecovered, 2},
                          {profiler::PanicState::kUnrecovered, 1}}));
}

TEST(ErrorProfile, CapsMessagesPerSite) {
  ErrorProfile::Options options;
  options.max_messages_per_site = 2;
  ErrorProfile p(options);
  for (int i = 0; i < 5; ++i) p.Add(Event({0x401000}, absl::StrCat("id ", i), 1));
  p.Add(Event({0x401000}, "id 1", 1));  // seen before: kept
  p.Add(Event({0x405000}, "id 4", 1));  // another site has its own budget
  EXPECT_EQ(p.counters().events, 7u);
  EXPECT_EQ(p.counters().other_messages, 3u);
  std::map<std::string, uint64_t> by_message;
  for (const auto& s : p.Samples()) by_message[absl::StrCat(s.key->stack[0], " ", s.key->message)] += s.count;
  EXPECT_EQ(by_message, (std::map<std::string, uint64_t>{{"4198400 id 0", 1},
                                                         {"4198400 id 1", 2},
                                                         {"4198400 <other>", 3},
                                                         {"4214784 id 4", 1}}));
}

// A server runs each request on a new goroutine: goroutine ids count
// against the same cap as messages, so samples stay bounded.
TEST(ErrorProfile, CapsGoroutinesPerSite) {
  ErrorProfile::Options options;
  options.max_messages_per_site = 3;
  ErrorProfile p(options);
  for (uint64_t goid = 1; goid <= 10; ++goid) p.Add(Event({0x401000}, "same", goid));
  EXPECT_EQ(p.counters().events, 10u);
  EXPECT_EQ(p.counters().other_messages, 7u);
  std::map<std::string, uint64_t> by_key;
  for (const auto& s : p.Samples()) {
    by_key[absl::StrCat(s.key->message, " g", s.key->goroutine, " ", s.key->chain)] += s.count;
  }
  ASSERT_EQ(by_key.size(), 4u);
  EXPECT_EQ(by_key["<other> g0 <other>"], 7u);
  EXPECT_EQ(p.Samples().size(), 4u);
}

TEST(ErrorProfile, Drops) {
  ErrorProfile p;
  p.SetDrops("ringbuf_full", 3);
  p.SetDrops("decode", 1);
  p.SetDrops("ringbuf_full", 5);
  p.SetDrops("unused", 0);
  EXPECT_EQ(p.counters().drops,
            (std::map<std::string, uint64_t>{{"decode", 1}, {"ringbuf_full", 5}}));
  EXPECT_EQ(p.counters().dropped(), 6u);
}

// The agent's eviction: a process's samples and estimates leave, handed
// back with their estimate shares; the others are renumbered.
TEST(ErrorProfile, RemoveProcessesRenumbersTheRest) {
  ErrorProfile p;
  for (uint32_t proc = 0; proc < 3; ++proc) {
    for (uint32_t i = 0; i <= proc; ++i) p.Add(Event({0x401000, 0x402000}, "a", 1), proc);
  }
  p.Add(Event({0x405000}, "b", 1), 1);
  p.SetEstimate(1, 0x401000, 4);  // process 1's site: 2 seen, 4 missed
  p.SetEstimate(2, 0x401000, 3);
  std::vector<ErrorProfile::Removed> removed =
      p.RemoveProcesses({0, ErrorProfile::kRemoved, 1});
  ASSERT_EQ(removed.size(), 2u);
  uint64_t total = 0;
  for (const ErrorProfile::Removed& r : removed) {
    EXPECT_EQ(r.key.process, 1u);  // as it was
    total += r.count;
  }
  EXPECT_EQ(total, 2u + 4u + 1u);
  // Left: process 0 (1 error), and process 2 now numbered 1 (3 + 3 estimated).
  std::map<uint32_t, uint64_t> left;
  for (const ErrorProfile::Sample& s : p.Samples()) left[s.key->process] += s.count;
  EXPECT_EQ(left, (std::map<uint32_t, uint64_t>{{0, 1}, {1, 6}}));
  EXPECT_EQ(p.counters().events, 7u);  // cumulative: the removed still counted
  // Nothing to remove: unchanged.
  EXPECT_TRUE(p.RemoveProcesses({0, 1}).empty());
  EXPECT_EQ(p.num_samples(), 2u);
}

}  // namespace
}  // namespace goerrprof::testing
