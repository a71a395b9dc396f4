// `diff` never keys on messages, so it answers the same whatever
// `record --messages=` the two profiles were made with: full, redact or off
// on either side, the same events compare as no change and the same
// regressions are found, in the same words.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "aggregate/message_policy.h"
#include "pprof/labels.h"
#include "pprof/profile_file.h"
#include "tests/diff/diff_test_util.h"
#include "tests/test_support.h"

namespace goerrprof::testing {
namespace {

using profiler::MessagePolicy;

constexpr MessagePolicy kPolicies[] = {MessagePolicy::kFull, MessagePolicy::kRedact,
                                       MessagePolicy::kOff};

// Base() with messages full of what redaction replaces, a different one per
// event, and goroutines that differ.
std::vector<Event> WithMessages(std::vector<Event> events) {
  for (size_t i = 0; i < events.size(); ++i) {
    events[i].message = absl::StrCat("open /home/alice/", i, ".txt: user alice", i,
                                     "@example.com from 10.0.0.", i, ": \"token-", i, "\"");
    events[i].goroutine = 10 + i;
  }
  return events;
}

// The error.message values of a written profile, and whether any sample
// has none.
std::vector<std::string> Messages(const std::string& path, bool* missing) {
  std::vector<std::string> out;
  *missing = false;
  auto p = profiler::ReadProfile(path);
  EXPECT_TRUE(p.ok()) << p.status();
  if (!p.ok()) return out;
  for (const ProfileSample& s : ProfileSamples(*p)) {
    auto m = s.labels.find(profiler::kLabelMessage);
    if (m == s.labels.end()) {
      *missing = true;
    } else {
      out.push_back(m->second);
    }
  }
  return out;
}

TEST_F(DiffTest, MessagesSettingsCompareAlike) {
  const std::vector<Event> base_events = WithMessages(Base());
  // NEW: the wrap site doubled, a new site, and other messages everywhere.
  std::vector<Event> next_events = base_events;
  next_events[1].count = 200;
  next_events.push_back({&Sites::atoi, &Sites::main_ret, "*strconv.NumError", kAtoiChain, 3});
  next_events = WithMessages(next_events);
  for (Event& e : next_events) e.message += " again";

  std::string reference_same, reference_regressed;
  for (MessagePolicy b : kPolicies) {
    for (MessagePolicy n : kPolicies) {
      const std::string bn(profiler::MessagePolicyName(b)), nn(profiler::MessagePolicyName(n));
      SCOPED_TRACE(absl::StrCat("BASE ", bn, ", NEW ", nn));
      std::string base = Write("base_" + bn, base_events, nullptr, "", 0, b);
      std::string same = Write("same_" + nn, WithMessages(Base()), nullptr, "", 0, n);
      std::string next = Write("next_" + nn, next_events, nullptr, "", 0, n);

      CommandResult r = Diff(base, same);
      EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
      CommandResult g = Diff(base, next);  // the table: it names no file
      EXPECT_EQ(g.exit_code, 1) << g.out << g.err;
      if (reference_same.empty()) {
        reference_same = r.out;
        reference_regressed = g.out;
        continue;
      }
      EXPECT_EQ(r.out, reference_same);
      EXPECT_EQ(g.out, reference_regressed);
    }
  }
  EXPECT_TRUE(reference_same.starts_with("0 regressions")) << reference_same;
  EXPECT_NE(reference_regressed.find("\n2 regressions (1 new site, 1 grown, 0 new chains)"),
            std::string::npos)
      << reference_regressed;

  // The three profiles really differ in what they hold (else this proves
  // nothing): the text, the text redacted, no text.
  bool missing = false;
  std::vector<std::string> full =
      Messages(Write("full", base_events, nullptr, "", 0, MessagePolicy::kFull), &missing);
  EXPECT_FALSE(missing);
  EXPECT_EQ(full.size(), 3u);
  EXPECT_EQ(full[0], "open /home/alice/1.txt: user alice1@example.com from 10.0.0.1: \"token-1\"");
  std::vector<std::string> redacted =
      Messages(Write("redacted", base_events, nullptr, "", 0, MessagePolicy::kRedact), &missing);
  EXPECT_FALSE(missing);
  EXPECT_EQ(redacted, std::vector<std::string>(
                          3, "open /home/\u2026: user <email> from <ip>: \"\u2026\""));
  std::vector<std::string> off =
      Messages(Write("off", base_events, nullptr, "", 0, MessagePolicy::kOff), &missing);
  EXPECT_TRUE(missing);
  EXPECT_TRUE(off.empty());
}

}  // namespace
}  // namespace goerrprof::testing
