// `record --messages=full|redact|off` on errgen, with real BPF: the profile
// equals errgen's own truth with each truth message and goroutine label
// value passed through what the setting exports (RedactText for redact,
// nothing for off), counts merged where texts redact alike; the profile
// says which setting made it.
#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "aggregate/message_policy.h"
#include "pprof/labels.h"
#include "tests/e2e/errgen_truth.h"
#include "tests/test_support.h"

namespace goerrprof::testing {
namespace {

using profiler::MessagePolicy;

// Labels goerrprof sets itself; any other is a goroutine's own.
bool OwnLabel(const std::string& key) {
  static const std::set<std::string> own = {
      profiler::kLabelType,           profiler::kLabelMessage,
      profiler::kLabelChain,          profiler::kLabelCreatedBy,
      profiler::kLabelCreatedAt,      profiler::kLabelPanicRecovered,
      profiler::kLabelPanicRuntimeError};
  return own.contains(key);
}

class RecordMessagesTest : public ::testing::Test {
 protected:
  // Records the newest default errgen under `policy` and checks it against
  // the truth as that policy exports it; returns the number of samples.
  size_t RecordAndCheck(MessagePolicy policy, ErrgenRecording* r) {
    auto errgen = NewestCorpusBinary(false, "errgen", "default");
    if (!errgen) {
      ADD_FAILURE() << "no errgen in " << CorpusDir() << ": run scripts/test.sh";
      return 0;
    }
    std::string flag = absl::StrCat("--messages=", profiler::MessagePolicyName(policy));
    RecordErrgenRun(*errgen, {flag}, r);
    if (::testing::Test::HasFatalFailure()) return 0;
    TruthText text;
    if (policy == MessagePolicy::kRedact) text.text = profiler::RedactText;
    if (policy == MessagePolicy::kOff) {
      text.text = [](const std::string&) { return std::string(); };
      text.labels = false;
    }
    ExpectErrgenTruth(r->profile, r->truth, text);
    std::vector<std::string> comments;
    for (int64_t c : r->profile.comment()) {
      comments.push_back(r->profile.string_table(static_cast<int>(c)));
    }
    EXPECT_NE(std::find(comments.begin(), comments.end(),
                        profiler::MessagePolicyComment(policy)),
              comments.end());
    return static_cast<size_t>(r->profile.sample_size());
  }
};

TEST_F(RecordMessagesTest, EachSettingExportsWhatItSays) {
  ErrgenRecording full, redacted, off;
  const size_t n_full = RecordAndCheck(MessagePolicy::kFull, &full);
  const size_t n_redacted = RecordAndCheck(MessagePolicy::kRedact, &redacted);
  const size_t n_off = RecordAndCheck(MessagePolicy::kOff, &off);
  ASSERT_FALSE(HasFailure());

  // Redaction merges samples whose texts differ only in numbers, paths...;
  // off merges by everything but the text.
  EXPECT_GT(n_full, n_redacted);
  EXPECT_GT(n_redacted, n_off);
  EXPECT_GT(n_off, 0u);

  // Every rule met errgen's real messages and labels, and no digit is left.
  std::set<std::string> redacted_texts;
  bool goroutine_labels = false;
  for (const ProfileSample& s : ProfileSamples(redacted.profile)) {
    for (const auto& [key, value] : s.labels) {
      if (key != profiler::kLabelMessage && OwnLabel(key)) continue;
      goroutine_labels |= key != profiler::kLabelMessage;
      redacted_texts.insert(value);
      EXPECT_EQ(profiler::RedactText(value), value);
      EXPECT_FALSE(std::any_of(value.begin(), value.end(),
                               [](char c) { return absl::ascii_isdigit(c); }))
          << key << "=" << value;
    }
  }
  EXPECT_TRUE(goroutine_labels);
  for (const char* want : {
           "open /nonexistent/\u2026: no such file or directory",
           "dial tcp <ip>:<num>: connect: connection refused",
           "strconv.Atoi: parsing \"\u2026\": invalid syntax",
           "invalid character '\u2026' looking for beginning of object key string",
           "outer <num>: middle: inner: root cause",
           "req-<num>",
           "value <num>/<num>",
       }) {
    EXPECT_TRUE(redacted_texts.contains(want)) << want;
  }

  // Off: no message label, no goroutine label; types, chains and the
  // panics' fate stay.
  size_t typed = 0;
  for (const ProfileSample& s : ProfileSamples(off.profile)) {
    for (const auto& [key, value] : s.labels) {
      EXPECT_TRUE(OwnLabel(key) && key != profiler::kLabelMessage) << key << "=" << value;
    }
    typed += s.labels.contains(profiler::kLabelType) && s.labels.contains(profiler::kLabelChain);
  }
  EXPECT_EQ(typed, n_off);
}

}  // namespace
}  // namespace goerrprof::testing
