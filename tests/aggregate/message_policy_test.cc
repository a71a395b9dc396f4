// The message policy (record --messages): the redaction rules case by case,
// errgen's own messages, the cut, and the policy applied where samples are
// keyed (redacted texts merge; off keeps no text) and written.
#include <algorithm>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "aggregate/error_profile.h"
#include "aggregate/message_policy.h"
#include "pprof/labels.h"
#include "pprof/pprof_writer.h"
#include "tests/test_support.h"

namespace goerrprof::testing {
namespace {

using profiler::ErrorProfile;
using profiler::kRedactedMaxBytes;
using profiler::MessagePolicy;
using profiler::RedactText;
using profiler::SampleKey;

struct Case {
  const char* in;
  const char* want;
};

void ExpectRedacts(const std::vector<Case>& cases) {
  for (const Case& c : cases) {
    EXPECT_EQ(RedactText(c.in), c.want) << "input: " << c.in;
    // A redacted text is a fixed point.
    EXPECT_EQ(RedactText(c.want), c.want) << "input: " << c.in;
  }
}

TEST(RedactText, KeepsTextWithoutData) {
  ExpectRedacts({
      {"", ""},
      {"no rows", "no rows"},
      {"unexpected EOF", "unexpected EOF"},
      {"connect: connection refused", "connect: connection refused"},
      {"i/o timeout", "i/o timeout"},
      {"application/json", "application/json"},
      {"can't open: users' data", "can't open: users' data"},
      {"<nil>: <?>...", "<nil>: <?>..."},
      {"deadbeef cafe face", "deadbeef cafe face"},  // words of hex letters only
      {"a\nb\tc", "a\nb\tc"},
      {"größe überschritten ✓", "größe überschritten ✓"},
      {"db.internal.corp: no such host", "db.internal.corp: no such host"},
      {"bob@localhost", "bob@localhost"},  // no dot in the domain
  });
}

TEST(RedactText, Numbers) {
  ExpectRedacts({
      {"user 12345 not found", "user <num> not found"},
      {"after 3 retries in 2.5s", "after <num> retries in <num>.<num>s"},
      {"id=42,", "id=<num>,"},
      {"user42", "user<num>"},
      {"int64 overflow", "int<num> overflow"},
      {"-7", "-<num>"},
      {"12:30:45", "<num>:<num>:<num>"},  // no IPv6 address
      {"1.2.3.4.5", "<num>.<num>.<num>.<num>.<num>"},  // no IPv4 address
      {"value 3/4", "value <num>/<num>"},  // one slash: no path
  });
}

TEST(RedactText, Hex) {
  ExpectRedacts({
      {"pointer 0x7ffc1234abcd", "pointer <hex>"},
      {"0XDEAD", "<hex>"},
      {"0x", "<num>x"},  // no digits after the prefix
      {"commit 3f2a9c1", "commit <hex>"},
      {"id 123e4567-e89b-12d3-a456-426614174000", "id <hex>-<hex>-<hex>-<hex>-<num>"},
      {"sha256:9f86d081884c7d65", "sha<num>:<hex>"},
      {"mac 00:1a:2b:3c:4d:5e", "mac <num>:<hex>:<hex>:<hex>:<hex>:<hex>"},
      {"a1b2x", "a<num>b<num>x"},  // not all hex: digits only
  });
}

TEST(RedactText, EmailAddresses) {
  ExpectRedacts({
      {"no user alice@example.com", "no user <email>"},
      {"to: <alice.smith+tag@mail.example.co.uk>", "to: <<email>>"},
      {"user=bob_99@corp-mail.io,", "user=<email>,"},
      {"alice@example.com.", "<email>."},
  });
}

TEST(RedactText, IpAddresses) {
  ExpectRedacts({
      {"dial tcp 127.0.0.1:42095: connect: connection refused",
       "dial tcp <ip>:<num>: connect: connection refused"},
      {"read tcp 10.0.0.1:5432->10.0.0.2:40312: read: connection reset by peer",
       "read tcp <ip>:<num>-><ip>:<num>: read: connection reset by peer"},
      {"from 192.168.1.255.", "from <ip>."},
      {"999.1.1.1", "<num>.<num>.<num>.<num>"},  // no such address
      {"dial tcp [::1]:443: refused", "dial tcp [<ip>]:<num>: refused"},
      {"listen 2001:db8::ff00:42:8329: in use", "listen <ip>: in use"},
      {"fe80::1%eth0 down", "<ip> down"},
      {"::ffff:192.0.2.1", "<ip>"},
      {"host 2001:0db8:85a3:0000:0000:8a2e:0370:7334", "host <ip>"},
  });
}

TEST(RedactText, QuotedText) {
  ExpectRedacts({
      {"strconv.Atoi: parsing \"x\": invalid syntax",
       "strconv.Atoi: parsing \"\u2026\": invalid syntax"},
      {"invalid character 'b' looking for beginning of object key string",
       "invalid character '\u2026' looking for beginning of object key string"},
      {"bad \"a \\\"quoted\\\" 42\" here", "bad \"\u2026\" here"},  // escapes stay inside
      {"query `SELECT * FROM users WHERE id=7` failed", "query `\u2026` failed"},
      {"empty \"\" and ''", "empty \"\" and ''"},
      {"parsing \"abcdef...", "parsing \"\u2026"},  // never closed: the rest
      {"Get \"https://user:pw@example.com/a?q=1\": EOF", "Get \"\u2026\": EOF"},
  });
}

TEST(RedactText, Paths) {
  ExpectRedacts({
      {"open /home/alice/secret.txt: no such file or directory",
       "open /home/\u2026: no such file or directory"},
      {"open /nonexistent/goerrprof/missing-0.txt: no such file or directory",
       "open /nonexistent/\u2026: no such file or directory"},
      {"stat /etc: permission denied", "stat /etc: permission denied"},
      {"mkdir /tmp/: exists", "mkdir /tmp/: exists"},
      {"/", "/"},
      {"open //srv//data/x", "open /srv/\u2026"},
      {"lstat /tmp42/x (deleted)", "lstat /tmp<num>/\u2026 (deleted)"},
      {"load ./conf/app.yaml, retry", "load ./\u2026, retry"},
      {"../secrets.env", "../\u2026"},
      {"~/.ssh/id_rsa", "~/\u2026"},
      {"read data/users/alice.json", "read data/\u2026"},
      {"2024/01/02", "<num>/\u2026"},
      {"file:/var/lib/x", "file:/var/\u2026"},
      {"at /src/main.go:42", "at /src/\u2026:<num>"},
  });
}

TEST(RedactText, Urls) {
  ExpectRedacts({
      {"fetch https://api.example.com/v1/users/42?token=abc: 404",
       "fetch https://\u2026: <num>"},
      {"postgres://bob:hunter2@db:5432/prod failed", "postgres://\u2026 failed"},
      {"(see http://x.io/a).", "(see http://\u2026)."},
  });
}

// errgen's real messages (its truth JSON) and their redacted forms.
TEST(RedactText, ErrgenMessages) {
  ExpectRedacts({
      {"errgen: errors.New inlined", "errgen: errors.New inlined"},
      {"errgen: plain errorf 2", "errgen: plain errorf <num>"},
      {"outer 3: middle: inner: root cause", "outer <num>: middle: inner: root cause"},
      {"bad request 6", "bad request <num>"},
      {"q7: no rows", "q<num>: no rows"},
      {"batch 8: inner: no rows\nunexpected EOF", "batch <num>: inner: no rows\nunexpected EOF"},
      {"two causes 12: no rows; EOF", "two causes <num>: no rows; EOF"},
      {"first 13\nno rows", "first <num>\nno rows"},
      {"labels 1: no rows", "labels <num>: no rows"},
      {"boom 11", "boom <num>"},
      {"40", "<num>"},
      {"runtime error: invalid memory address or nil pointer dereference",
       "runtime error: invalid memory address or nil pointer dereference"},
      {"req-0", "req-<num>"},
      {"value 10/1", "value <num>/<num>"},
  });
}

TEST(RedactText, CutToTheStatedLength) {
  // Plain text: cut at a character, the mark included in the length.
  std::string long_text(300, 'a');
  std::string r = RedactText(long_text);
  EXPECT_EQ(r, absl::StrCat(std::string(kRedactedMaxBytes - 3, 'a'), "\u2026"));
  EXPECT_EQ(r.size(), kRedactedMaxBytes);
  // Exactly the limit: nothing cut.
  EXPECT_EQ(RedactText(std::string(kRedactedMaxBytes, 'b')), std::string(kRedactedMaxBytes, 'b'));
  // Never inside a placeholder: "x " repeated, then numbers.
  std::string words;
  for (int i = 0; i < 100; ++i) absl::StrAppend(&words, i, " ");
  r = RedactText(words);
  EXPECT_LE(r.size(), kRedactedMaxBytes);
  std::string want;
  for (int i = 0; i < 32; ++i) want += "<num> ";
  EXPECT_EQ(r, absl::StrCat(want, "<num>\u2026"));  // 192 + 5 + 3 bytes
  EXPECT_EQ(RedactText(r), r);
  // Never inside a UTF-8 sequence: the first é would end at byte 198.
  r = RedactText(absl::StrCat(std::string(196, 'x'), "\u00e9\u00e9\u00e9\u00e9\u00e9"));
  EXPECT_EQ(r, absl::StrCat(std::string(196, 'x'), "\u2026"));
  std::string accents;
  for (int i = 0; i < 120; ++i) accents += "\u00e9";  // 240 bytes
  r = RedactText(accents);
  std::string want_accents;
  for (int i = 0; i < 98; ++i) want_accents += "\u00e9";  // 196 bytes + 3
  EXPECT_EQ(r, absl::StrCat(want_accents, "\u2026"));
  EXPECT_EQ(RedactText(r), r);
  // A long path shrinks below the limit, but input past the read limit is
  // cut all the same.
  std::string path = "/home/" + std::string(profiler::kRedactedMaxInput - 6, 'p');
  EXPECT_EQ(RedactText(path), "/home/\u2026");
  EXPECT_EQ(RedactText(path + " tail"), "/home/\u2026");  // one mark for both
  EXPECT_EQ(RedactText(path + " 7 tail"), "/home/\u2026");
  EXPECT_EQ(RedactText(std::string(profiler::kRedactedMaxInput, '1') + "1"), "<num>\u2026");
}

TEST(MessagePolicy, ParsesItsNames) {
  for (MessagePolicy p : {MessagePolicy::kFull, MessagePolicy::kRedact, MessagePolicy::kOff}) {
    auto parsed = profiler::ParseMessagePolicy(profiler::MessagePolicyName(p));
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(*parsed, p);
  }
  auto bad = profiler::ParseMessagePolicy("redacted");
  EXPECT_EQ(bad.status().message(), "invalid --messages \"redacted\": full, redact or off");
}

SampleKey Key(const std::string& message, std::vector<std::pair<std::string, std::string>> labels) {
  SampleKey k;
  k.stack = {0x401000, 0x402000};
  k.type = "*fs.PathError";
  k.chain = "*fs.PathError > syscall.Errno";
  k.message = message;
  k.goroutine = 7;
  k.labels = std::move(labels);
  return k;
}

ErrorProfile Profile(MessagePolicy policy) {
  ErrorProfile::Options o;
  o.messages = policy;
  ErrorProfile p(o);
  p.Add(Key("open /home/alice/a.txt: no such file or directory", {{"user", "alice-1"}}), 2);
  p.Add(Key("open /home/bob/b.txt: no such file or directory", {{"user", "alice-2"}}), 3);
  return p;
}

TEST(MessagePolicy, AppliedWhereSamplesAreKeyed) {
  ErrorProfile full = Profile(MessagePolicy::kFull);
  ASSERT_EQ(full.num_samples(), 2u);
  EXPECT_EQ(full.Samples()[0].key->message, "open /home/bob/b.txt: no such file or directory");
  EXPECT_EQ(full.Samples()[0].key->labels[0].second, "alice-2");

  // Both redact alike: one sample of 5.
  ErrorProfile redacted = Profile(MessagePolicy::kRedact);
  ASSERT_EQ(redacted.num_samples(), 1u);
  const ErrorProfile::Sample s = redacted.Samples()[0];
  EXPECT_EQ(s.count, 5u);
  EXPECT_EQ(s.key->message, "open /home/\u2026: no such file or directory");
  EXPECT_EQ(s.key->labels,
            (std::vector<std::pair<std::string, std::string>>{{"user", "alice-<num>"}}));
  EXPECT_EQ(s.key->type, "*fs.PathError");
  EXPECT_EQ(s.key->chain, "*fs.PathError > syscall.Errno");

  ErrorProfile off = Profile(MessagePolicy::kOff);
  ASSERT_EQ(off.num_samples(), 1u);
  EXPECT_EQ(off.Samples()[0].count, 5u);
  EXPECT_EQ(off.Samples()[0].key->message, "");
  EXPECT_TRUE(off.Samples()[0].key->labels.empty());
  EXPECT_EQ(off.Samples()[0].key->goroutine, 7u);
  EXPECT_EQ(off.counters().events, 5u);
}

// The written profile: no error.message label at all under off, and a
// comment naming the setting.
TEST(MessagePolicy, WrittenProfile) {
  auto errgen = NewestCorpusBinary(false, "errgen", "default");
  ASSERT_TRUE(errgen) << "no errgen in " << CorpusDir() << ": run scripts/test.sh";
  auto bin = symbolizer::GoBinary::Open(errgen->path);
  ASSERT_TRUE(bin.ok()) << bin.status();
  struct Want {
    MessagePolicy policy;
    std::map<std::string, std::string> labels;
    std::string comment;
  };
  const std::vector<Want> wants = {
      {MessagePolicy::kFull,
       {{"error.type", "*fs.PathError"},
        {"error.chain", "*fs.PathError > syscall.Errno"},
        {"error.message", "open /home/bob/b.txt: no such file or directory"},
        {"user", "alice-2"}},
       "messages: full (error messages and goroutine labels as the target held them)"},
      {MessagePolicy::kRedact,
       {{"error.type", "*fs.PathError"},
        {"error.chain", "*fs.PathError > syscall.Errno"},
        {"error.message", "open /home/\u2026: no such file or directory"},
        {"user", "alice-<num>"}},
       "messages: redacted (numbers, hex, e-mail and IP addresses, quoted text, URLs and path "
       "tails replaced; cut at 200 bytes)"},
      {MessagePolicy::kOff,
       {{"error.type", "*fs.PathError"}, {"error.chain", "*fs.PathError > syscall.Errno"}},
       "messages: off (no error messages, no goroutine labels)"},
  };
  for (const Want& w : wants) {
    SCOPED_TRACE(profiler::MessagePolicyName(w.policy));
    auto p = profiler::BuildPprof(Profile(w.policy), **bin, profiler::PprofInfo{});
    ASSERT_TRUE(p.ok()) << p.status();
    std::vector<ProfileSample> samples = ProfileSamples(*p);
    ASSERT_FALSE(samples.empty());
    EXPECT_EQ(samples[0].labels, w.labels);
    EXPECT_EQ(samples[0].num_labels.at(profiler::kLabelGoroutine), 7);
    EXPECT_EQ(samples[0].label_count, w.labels.size() + 1);
    std::vector<std::string> comments;
    for (int64_t c : p->comment()) comments.push_back(p->string_table(static_cast<int>(c)));
    EXPECT_NE(std::find(comments.begin(), comments.end(), w.comment), comments.end());
  }
}

}  // namespace
}  // namespace goerrprof::testing
