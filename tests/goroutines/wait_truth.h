// The sampled wait profile (record --goroutines=sample) against parked's
// truth: every goroutine of the truth dump but the dumper (main, later
// reading stdin in main.serve) is keyed by its first main.* frame and its
// wait reason, in the dump and in the profile alike.
#ifndef GOERRPROF_TESTS_GOROUTINES_WAIT_TRUTH_H_
#define GOERRPROF_TESTS_GOROUTINES_WAIT_TRUTH_H_

#include <cstdint>
#include <map>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "tests/goroutines/goroutines_test_util.h"
#include "tests/test_support.h"

namespace goerrprof::testing {

// "main.waitOn|chan receive" -> goroutines (truth) or samples (profile).
using WaitKeys = std::map<std::string, int64_t>;

inline WaitKeys TruthWaitKeys(const Truth& truth) {
  WaitKeys keys;
  for (const auto& [id, d] : truth.dump) {
    if (id == truth.dumper) continue;
    std::string fn = "(none)";
    for (const Frame& f : d.frames) {
      if (absl::StartsWith(f.function, "main.")) {
        fn = f.function;
        break;
      }
    }
    ++keys[absl::StrCat(fn, "|", d.state)];
  }
  return keys;
}

// The profile's samples (its first value) by key; main's own goroutine
// (main.main, main.serve) apart in *main_samples.
inline WaitKeys ProfileWaitKeys(const perftools::profiles::Profile& p, int64_t* main_samples) {
  WaitKeys keys;
  *main_samples = 0;
  for (const ProfileSample& s : ProfileSamples(p)) {
    std::string fn = "(none)";
    for (const std::string& f : s.functions) {
      if (absl::StartsWith(f, "main.")) {
        fn = f;
        break;
      }
    }
    if (fn == "main.main" || fn == "main.serve") {
      *main_samples += s.value;
      continue;
    }
    auto reason = s.labels.find("goroutine.wait_reason");
    keys[absl::StrCat(fn, "|", reason == s.labels.end() ? "" : reason->second)] += s.value;
  }
  return keys;
}

// "name=value" from the profile's comments; -1 when absent.
inline int64_t CommentCounter(const perftools::profiles::Profile& p, const std::string& name) {
  for (int64_t c : p.comment()) {
    for (absl::string_view word : absl::StrSplit(p.string_table(static_cast<int>(c)), ' ')) {
      if (absl::ConsumePrefix(&word, name + "=")) {
        int64_t v = 0;
        if (absl::SimpleAtoi(word, &v)) return v;
      }
    }
  }
  return -1;
}

// Every truth key has exactly goroutines x snapshots samples (parked's
// goroutines wait for the whole run), nothing else is in the profile, and
// so each key's share of the samples equals its share of the goroutines.
inline void ExpectExactShares(const WaitKeys& truth, const WaitKeys& got, int64_t snapshots,
                              int64_t torn) {
  ASSERT_GT(snapshots, 0);
  int64_t truth_total = 0, got_total = 0;
  for (const auto& [k, n] : truth) truth_total += n;
  for (const auto& [k, n] : got) got_total += n;
  for (const auto& [key, n] : truth) {
    auto it = got.find(key);
    int64_t samples = it == got.end() ? 0 : it->second;
    // A goroutine skipped as torn misses that snapshot's sample.
    EXPECT_LE(samples, n * snapshots) << key;
    EXPECT_GE(samples, n * snapshots - torn) << key;
    double want = static_cast<double>(n) / truth_total;
    double share = got_total > 0 ? static_cast<double>(samples) / got_total : 0;
    EXPECT_NEAR(share, want, 0.01) << key;
  }
  for (const auto& [key, n] : got) EXPECT_TRUE(truth.contains(key)) << "unexpected " << key;
}

}  // namespace goerrprof::testing

#endif  // GOERRPROF_TESTS_GOROUTINES_WAIT_TRUTH_H_
