#include "tests/e2e/errgen_truth.h"

#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "pprof/labels.h"
#include "pprof/profile_file.h"
#include "tests/test_support.h"

namespace goerrprof::testing {
namespace {

using perftools::profiles::Profile;

struct Sample {
  // The scenario function errgen called: the outermost main.site* frame
  // (errgen's scenario functions are named so; the helpers they call not).
  std::string site;
  // The frames from the leaf up to `site`, innermost first: the creation.
  std::vector<std::string> leaf;
  std::string type, message, chain;
  int64_t goroutine = 0;
  int64_t count = 0;
  // A panic sample (panics/count): "true"/"false" for panic.recovered, and
  // panic.runtime_error; empty for an error's creation.
  std::string recovered, runtime_error;
  // The creating goroutine: its go statement's function and own labels.
  std::string created_by, created_at;
  std::map<std::string, std::string> labels;
};

std::string LabelText(const std::map<std::string, std::string>& labels) {
  std::string out;
  for (const auto& [k, v] : labels) absl::StrAppend(&out, k, "=", v, ";");
  return out;
}

std::vector<Sample> Samples(const Profile& p) {
  std::vector<Sample> out;
  for (const ProfileSample& s : ProfileSamples(p)) {
    Sample x;
    x.count = s.value;
    if (s.labels.contains(profiler::kLabelPanicRecovered)) {
      EXPECT_EQ(s.values.size(), 2u);
      EXPECT_EQ(s.value, 0) << "a panic counted as an error";
      x.count = s.values.size() > 1 ? s.values[1] : 0;
    } else {
      EXPECT_EQ(s.values.size() > 1 ? s.values[1] : 0, 0) << "an error counted as a panic";
    }
    for (size_t i = 0; i < s.functions.size(); ++i) {
      if (!absl::StartsWith(s.functions[i], "main.site")) continue;
      x.site = s.functions[i];
      x.leaf.assign(s.functions.begin(), s.functions.begin() + i + 1);
    }
    if (x.site.empty()) x.site = "(no main.site* frame)";
    EXPECT_EQ(s.label_count, s.labels.size() + s.num_labels.size()) << "a label key twice";
    for (const auto& [key, value] : s.labels) {
      if (key == profiler::kLabelType) {
        x.type = value;
      } else if (key == profiler::kLabelMessage) {
        x.message = value;
      } else if (key == profiler::kLabelChain) {
        x.chain = value;
      } else if (key == profiler::kLabelCreatedBy) {
        x.created_by = value;
      } else if (key == profiler::kLabelCreatedAt) {
        x.created_at = value;
      } else if (key == profiler::kLabelPanicRecovered) {
        x.recovered = value;
      } else if (key == profiler::kLabelPanicRuntimeError) {
        x.runtime_error = value;
      } else if (key == profiler::kLabelBinary) {
        continue;  // record -- COMMAND's, not the goroutine's
      } else {
        x.labels[key] = value;
      }
    }
    if (auto g = s.num_labels.find(profiler::kLabelGoroutine); g != s.num_labels.end()) {
      x.goroutine = g->second;
    }
    out.push_back(x);
  }
  return out;
}

}  // namespace

void ExpectErrgenTruth(const Profile& profile, const google::protobuf::Value& truth,
                       const TruthText& text) {
  std::vector<Sample> samples = Samples(profile);
  // Per scenario: the returned error (type | message | chain) with its
  // count must match exactly. Other samples under a scenario must be inner
  // links of its truth chain (same type and message: created on the way),
  // or a library-internal transient listed below with the reason.
  std::map<std::string, std::map<std::string, int64_t>> want, got;
  std::map<std::string, std::set<std::string>> links;  // site -> "type | message"
  // site -> key -> the leaf frames errgen knows for that creation.
  std::map<std::string, std::map<std::string, std::string>> want_leaf;
  auto key = [](const std::string& type, const std::string& msg, const std::string& chain,
                const std::map<std::string, std::string>& labels, const std::string& created_by) {
    return absl::StrCat(type, " | ", msg, " | ", chain, " | labels ", LabelText(labels),
                        " | created by ", created_by);
  };
  for (const auto& sc : Get(truth, "scenarios").list_value().values()) {
    std::map<std::string, std::string> labels;
    for (const auto& [k, v] : Get(sc, "labels").struct_value().fields()) {
      if (text.labels) labels[k] = text.text(v.string_value());
    }
    std::vector<std::string> chain;
    for (const auto& link : Get(sc, "chain").list_value().values()) {
      chain.push_back(GetString(link, "type"));
      links[GetString(sc, "function")].insert(
          absl::StrCat(GetString(link, "type"), " | ", text.text(GetString(link, "profile_message")),
                       " | ", LabelText(labels), " | ", GetString(sc, "created_by")));
    }
    // profile_message: Error() for standard types, the documented
    // fields-and-wrapped rendering for errgen's own (their Error() cannot run).
    std::string k = key(GetString(sc, "type"), text.text(GetString(sc, "profile_message")),
                        absl::StrJoin(chain, " > "), labels, GetString(sc, "created_by"));
    want[GetString(sc, "function")][k] += GetInt(sc, "count");
    if (auto leaf = sc.struct_value().fields().find("leaf");
        leaf != sc.struct_value().fields().end()) {
      std::vector<std::string> frames;
      for (const auto& f : leaf->second.list_value().values()) frames.push_back(f.string_value());
      want_leaf[GetString(sc, "function")][k] = absl::StrJoin(frames, " <- ");
    }
  }
  // Errors the standard library creates on the way and drops or converts, so
  // errgen never sees them: true creations, allowed by (site, type) only.
  const std::set<std::string> transients = {
      // Non-blocking connect returns EINPROGRESS before the real result.
      "main.siteDialRefused: syscall.Errno",
      // encoding/json on json/v2 internals (Go 1.25+) builds these, then
      // converts them to *json.SyntaxError.
      "main.siteJSON: *jsonwire.InvalidTextError",
      "main.siteJSON: *jsontext.SyntacticError",
      // Go 1.27's strconv builds a strconv.Error value before its NumError
      // (from 1.26 for floats: atof64 selects it with conditional moves).
      "main.siteAtoi: strconv.Error",
      "main.siteFloatRange: strconv.Error",
      "main.siteIntRange: strconv.Error",
      // Before 1.26, ParseInt drops ParseUint's range *NumError for its own.
      "main.siteIntRange: *strconv.NumError",
      // json v2 wraps the method's error in a SemanticError, which errgen
      // unwraps (counted exactly below).
      "main.siteJSONv2: *json.SemanticError",
      // flag folds strconv.ParseBool's error into its own text (counted
      // exactly below).
      "main.siteFlagBool: *strconv.NumError",
      // From Go 1.26 ParseBool builds a strconv.Error value before it.
      "main.siteFlagBool: strconv.Error",
      // The resolver drops the cut A answer's error for the AAAA address
      // (counted exactly below).
      "main.siteDNSBadAnswer: *net.DNSError",
      // The resolver opens /etc/hosts, resolv.conf, nsswitch.conf: epoll
      // refuses regular files (EPERM), which os notes and drops.
      "main.siteDNSBadAnswer: syscall.Errno",
      // Before Go 1.21 it also looks for /etc/mdns.allow.
      "main.siteDNSBadAnswer: *fs.PathError",
      // The first of the two errors collected, which errgen formats with
      // %v (both are counted exactly below).
      "main.siteAppendCollected: *strconv.NumError",
      // The same reads of the resolver's files for a TXT lookup.
      "main.siteDNSServfail: syscall.Errno",
      "main.siteDNSServfail: *fs.PathError",
      // Its DNSErrors that name another server than the last one asked
      // (counted exactly below).
      "main.siteDNSServfail: *net.DNSError",
      // From Go 1.23 errServerTemporarilyMisbehaving is a *temporaryError
      // variable, boxed into an error by checkHeader at each SERVFAIL.
      "main.siteDNSServfail: *net.temporaryError",
  };
  // Panics: per site, value (type | message) and fate, exactly.
  std::map<std::string, int64_t> want_panics, got_panics;
  auto panic_key = [](const std::string& site, const std::string& type, const std::string& msg,
                      const std::string& recovered, const std::string& runtime_error) {
    return absl::StrCat(site, " | ", type, " | ", msg, " | recovered=", recovered,
                        " | runtime_error=", runtime_error);
  };
  // The runtime creates some of the errors it panics with (a bounds or
  // assertion error, boxed at the fault; on older releases the nil map
  // one): at a runtime-error panic site, a creation of that value is a true
  // one, and then there is one per panic.
  std::map<std::string, int64_t> runtime_panics, runtime_created;
  for (const auto& p : Get(truth, "panics").list_value().values()) {
    if (Get(p, "runtime_error").bool_value()) {
      runtime_panics[absl::StrCat(GetString(p, "function"), " | ", GetString(p, "type"), " | ",
                                  text.text(GetString(p, "profile_message")))] +=
          GetInt(p, "count");
    }
    want_panics[panic_key(GetString(p, "function"), GetString(p, "type"),
                          text.text(GetString(p, "profile_message")),
                          Get(p, "recovered").bool_value() ? "true" : "false",
                          Get(p, "runtime_error").bool_value() ? "true" : "")] +=
        GetInt(p, "count");
  }
  int64_t total = 0;
  size_t leaf_checked = 0;
  // From Go 1.26 internal/strconv.ParseInt returns its own range error from
  // two returns past a merge of the paths that load its itab: probed there
  // with a check of the itab (GEP_LOC_F_CHECK), one per out-of-range call.
  // Likewise json v2's SemanticError, one per call of errgen's siteJSONv2
  // (Go 1.27+): its eight references meet at one checked return, and a path
  // probed earlier as well would count twice.
  // strconv.ParseBool's *NumError under flag: one per call, probed at its
  // reference (a new object beside the itab, carried on through a phi).
  int64_t int_range_calls = 0, int_range_returns = 0, json_v2_calls = 0, json_v2_wraps = 0;
  int64_t flag_calls = 0, flag_num_errors = 0, dns_calls = 0, dns_errors = 0;
  // dns_servfail: tryOneName builds one *net.DNSError into its loop's
  // lastErr per SERVFAIL answer (each attempt of each server), keeping the
  // last; errgen counts the answers it sent.
  int64_t servfail_errors = 0;
  // append_collected: two *strconv.NumError per call, each boxed as it is
  // stored into a slice element (aws-sdk-go's ErrInvalidParams.Add).
  int64_t collected_calls = 0, collected_errors = 0;
  const int64_t servfail_answers = GetInt(truth, "dns_servfail_answers");
  // net's resolver builds one *net.DNSError into lastErr per lookup of
  // errgen's dns_bad_answer, and drops it (a new object probed at its
  // reference), naming the server it asked.
  // (Before Go 1.22 its text there said "marshal".)
  int dns_minor = 0;
  sscanf(GetString(truth, "go_version").c_str(), "go1.%d", &dns_minor);
  // Each server the resolver asked (two when there are no nameservers).
  std::set<std::string> servfail_messages;
  for (const auto& server : Get(truth, "dns_servers").list_value().values()) {
    servfail_messages.insert(text.text(absl::StrCat(
        "lookup servfail.errgen.example. on ", server.string_value(), ": server misbehaving")));
  }
  std::set<std::string> dns_messages;
  for (const auto& server : Get(truth, "dns_servers").list_value().values()) {
    dns_messages.insert(text.text(absl::StrCat(
        "lookup errgen.example. on ", server.string_value(),
        dns_minor >= 22 ? ": cannot unmarshal DNS message" : ": cannot marshal DNS message")));
  }
  for (const auto& sc : Get(truth, "scenarios").list_value().values()) {
    if (GetString(sc, "function") == "main.siteIntRange") int_range_calls += GetInt(sc, "count");
    if (GetString(sc, "function") == "main.siteJSONv2") json_v2_calls += GetInt(sc, "count");
    if (GetString(sc, "function") == "main.siteFlagBool") flag_calls += GetInt(sc, "count");
    if (GetString(sc, "function") == "main.siteDNSBadAnswer") dns_calls += GetInt(sc, "count");
    if (GetString(sc, "function") == "main.siteAppendCollected") {
      collected_calls += GetInt(sc, "count");
    }
  }
  for (const Sample& s : samples) {
    if (s.site == "main.siteFlagBool" && s.type == "*strconv.NumError") {
      EXPECT_EQ(s.message, text.text("strconv.ParseBool: parsing \"maybe\": invalid syntax"));
      flag_num_errors += s.count;
    }
    if (s.site == "main.siteAppendCollected" && s.type == "*strconv.NumError") {
      EXPECT_TRUE(s.message == text.text("strconv.Validate: parsing \"DurationSeconds\": value out of range") ||
                  s.message == text.text("strconv.Validate: parsing \"RoleArn\": value out of range"))
          << s.message;
      EXPECT_EQ(s.chain, "*strconv.NumError > *errors.errorString");
      collected_errors += s.count;
    }
    if (s.site == "main.siteDNSServfail" && s.type == "*net.DNSError") {
      EXPECT_TRUE(servfail_messages.contains(s.message)) << s.message;
      EXPECT_EQ(s.chain, "*net.DNSError");
      servfail_errors += s.count;
    }
    if (s.site == "main.siteDNSBadAnswer" && s.type == "*net.DNSError") {
      EXPECT_TRUE(dns_messages.contains(s.message)) << s.message;
      EXPECT_EQ(s.chain, "*net.DNSError");
      dns_errors += s.count;
    }
    if (s.site == "main.siteIntRange" && s.type == "strconv.Error" && !s.leaf.empty() &&
        s.leaf.front() == "internal/strconv.ParseInt") {
      int_range_returns += s.count;
    }
    if (s.site == "main.siteJSONv2" && s.type == "*json.SemanticError" &&
        s.chain == "*json.SemanticError > *errors.errorString" && !s.leaf.empty() &&
        s.leaf.front() == "encoding/json/v2.newSemanticErrorWithPosition") {
      json_v2_wraps += s.count;
    }
  }
  EXPECT_EQ(json_v2_wraps, json_v2_calls) << "json v2's SemanticErrors (one checked return)";
  EXPECT_GT(flag_calls, 0);
  EXPECT_EQ(flag_num_errors, flag_calls) << "strconv.ParseBool's errors under flag";
  EXPECT_GT(dns_calls, 0);
  EXPECT_EQ(dns_errors, dns_calls) << "net's DNSErrors for a cut answer";
  EXPECT_GT(collected_calls, 0);
  EXPECT_EQ(collected_errors, 2 * collected_calls) << "errors boxed into slice elements";
  EXPECT_GT(servfail_answers, 0);
  EXPECT_EQ(servfail_errors, servfail_answers) << "net's DNSErrors for SERVFAIL (tryOneName's lastErr)";
  int minor = 0;
  if (sscanf(GetString(truth, "go_version").c_str(), "go1.%d", &minor) == 1 && minor >= 26) {
    EXPECT_GT(int_range_calls, 0);
    EXPECT_EQ(int_range_returns, int_range_calls)
        << "internal/strconv.ParseInt's range errors (checked return probes)";
  }
  for (const Sample& s : samples) {
    if (!s.recovered.empty()) {
      got_panics[panic_key(s.site, s.type, s.message, s.recovered, s.runtime_error)] += s.count;
      continue;
    }
    total += s.count;
    EXPECT_GT(s.goroutine, 0) << s.site << " " << s.type;
    // The go statement in runLabelled (goroutines.go) is errgen's only one.
    if (!s.created_by.empty()) {
      EXPECT_TRUE(absl::EndsWith(s.created_at, "errgen/goroutines.go:45")) << s.created_at;
    }
    std::string k = key(s.type, s.message, s.chain, s.labels, s.created_by);
    if (std::string r = absl::StrCat(s.site, " | ", s.type, " | ", s.message);
        runtime_panics.contains(r) && s.chain == s.type) {
      runtime_created[r] += s.count;
    } else if (!want.contains(s.site)) {
      ADD_FAILURE() << "invented: " << s.count << "x " << k << " at " << s.site;
    } else if (want[s.site].contains(k)) {
      got[s.site][k] += s.count;
      // The leaf is the creating instruction, with its inlined frames.
      if (auto w = want_leaf[s.site].find(k); w != want_leaf[s.site].end()) {
        EXPECT_EQ(absl::StrJoin(s.leaf, " <- "), w->second) << s.site << ": " << k;
        ++leaf_checked;
      }
    } else if (!links[s.site].contains(
                   absl::StrCat(s.type, " | ", s.message, " | ", LabelText(s.labels), " | ",
                                s.created_by)) &&
               !transients.contains(absl::StrCat(s.site, ": ", s.type))) {
      ADD_FAILURE() << s.site << " created " << s.count << "x " << k
                    << ", which is not in its truth chain";
    }
  }
  for (const auto& [site, errors] : want) {
    for (const auto& [k, count] : errors) {
      EXPECT_EQ(got[site][k], count) << site << ": " << k;
    }
  }
  for (const auto& [k, n] : want_panics) EXPECT_EQ(got_panics[k], n) << "panic " << k;
  for (const auto& [k, n] : runtime_created) {
    EXPECT_EQ(n, runtime_panics[k]) << "runtime-created errors at " << k;
  }
  for (const auto& [k, n] : got_panics) {
    EXPECT_TRUE(want_panics.contains(k)) << "invented panic: " << n << "x " << k;
  }
  EXPECT_GT(total, 0);
  size_t leaf_known = 0;
  for (const auto& [site, leaves] : want_leaf) leaf_known += leaves.size();
  EXPECT_GE(leaf_checked, leaf_known) << "samples whose leaf frames were checked";
}

void RecordErrgenRun(const CorpusBinary& b, const std::vector<std::string>& flags,
                     ErrgenRecording* recording) {
  // Ends with a panic nothing recovers: its exit status is 2.
  auto errgen = Child::Spawn({b.path, "-wait", "-n", "2", "-fatal-panic"});
  ASSERT_TRUE(errgen.ok()) << errgen.status();
  auto ready = (*errgen)->ReadLine(false);
  ASSERT_TRUE(ready.ok()) << ready.status();
  ASSERT_EQ(*ready, absl::StrCat("ready ", (*errgen)->pid()));

  // The flags in the name keep runs of one binary apart.
  std::string out = absl::StrCat(::testing::TempDir(), "/record_", b.Label(),
                                 absl::StrJoin(flags, ""), ".pb.gz");
  std::vector<std::string> argv = {GoerrprofPath(), "record", "--max_overhead=0",
                                   absl::StrCat("--pid=", (*errgen)->pid()), "-o", out};
  argv.insert(argv.end(), flags.begin(), flags.end());
  auto rec = Child::Spawn(argv);
  ASSERT_TRUE(rec.ok()) << rec.status();
  // "recording pid N: …" means every probe is attached.
  auto attached = (*rec)->ReadLine(true, 120);
  ASSERT_TRUE(attached.ok()) << attached.status();
  ASSERT_TRUE(absl::StrContains(*attached, "recording pid")) << *attached;

  ASSERT_TRUE((*errgen)->Write("go\n").ok());
  auto truth_run = (*errgen)->Finish();
  ASSERT_TRUE(truth_run.ok()) << truth_run.status();
  ASSERT_EQ(truth_run->exit_code, 2) << truth_run->err;
  ASSERT_TRUE(absl::StrContains(truth_run->err, "panic: errgen: fatal panic")) << truth_run->err;
  auto rec_run = (*rec)->Finish();  // stops by itself: the target exited
  ASSERT_TRUE(rec_run.ok()) << rec_run.status();
  ASSERT_EQ(rec_run->exit_code, 0) << rec_run->err;
  EXPECT_TRUE(absl::StrContains(rec_run->err, " 0 dropped")) << rec_run->err;

  auto truth = ParseJson(truth_run->out);
  ASSERT_TRUE(truth.ok()) << truth.status() << truth_run->out;
  auto profile = profiler::ReadProfile(out);
  ASSERT_TRUE(profile.ok()) << profile.status();
  std::remove(out.c_str());
  recording->truth = std::move(*truth);
  recording->profile = std::move(*profile);
  recording->record_stderr = rec_run->err;
}


}  // namespace goerrprof::testing
