#include "aggregate/message_policy.h"

#include <arpa/inet.h>

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace goerrprof::profiler {
namespace {

bool IsWord(char c) { return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_'; }
bool IsDigit(char c) { return absl::ascii_isdigit(static_cast<unsigned char>(c)); }
bool IsHex(char c) { return absl::ascii_isxdigit(static_cast<unsigned char>(c)); }

// Where a path (or a URL) stops: Go joins "op path: cause", and quotes,
// brackets and separators around a path are not part of it.
bool EndsPath(char c) {
  return absl::ascii_isspace(static_cast<unsigned char>(c)) ||
         absl::string_view("\"'`,;:()[]{}<>").find(c) != absl::string_view::npos;
}

// Parses with the C library so that every IPv6 spelling is judged alike.
bool IsIpv4(absl::string_view s) {
  in_addr a;
  return inet_pton(AF_INET, std::string(s).c_str(), &a) == 1;
}
bool IsIpv6(absl::string_view s) {
  in6_addr a;
  return inet_pton(AF_INET6, std::string(s).c_str(), &a) == 1;
}

class Redactor {
 public:
  explicit Redactor(absl::string_view s) : s_(s) {}

  // The whole redacted text, uncut, and where each rule's output ends.
  std::string Run(std::vector<size_t>* piece_ends) {
    size_t i = 0;
    while (i < s_.size()) {
      i = Step(i);
      if (piece_ends) piece_ends->push_back(out_.size());
    }
    return std::move(out_);
  }

 private:
  bool WordStart(size_t i) const { return i == 0 || !IsWord(s_[i - 1]); }
  char At(size_t i) const { return i < s_.size() ? s_[i] : '\0'; }

  // Applies the first rule matching at i; returns where the next begins.
  size_t Step(size_t i) {
    const char c = s_[i];
    if (c == '"' || c == '`' || (c == '\'' && WordStart(i))) {
      if (size_t end = Quoted(i); end != 0) return end;
    }
    if (WordStart(i)) {
      for (size_t (Redactor::*rule)(size_t) :
           {&Redactor::Url, &Redactor::Email, &Redactor::Ipv6, &Redactor::Ipv4,
            &Redactor::AbsolutePath, &Redactor::RelativePath, &Redactor::Hex}) {
        if (size_t end = (this->*rule)(i); end != 0) return end;
      }
    }
    if (IsDigit(c)) {
      size_t end = i;
      while (end < s_.size() && IsDigit(s_[end])) ++end;
      out_ += "<num>";
      return end;
    }
    // One character, whole when it is a UTF-8 sequence.
    size_t end = i + 1;
    if (static_cast<unsigned char>(c) >= 0xC0) {
      while (end < s_.size() && (static_cast<unsigned char>(s_[end]) & 0xC0) == 0x80) ++end;
    }
    absl::StrAppend(&out_, s_.substr(i, end - i));
    return end;
  }

  // Each rule returns the end of its match and appends its replacement, or
  // returns 0 and appends nothing.

  size_t Quoted(size_t i) {
    const char q = s_[i];
    for (size_t j = i + 1; j < s_.size(); ++j) {
      if (s_[j] == '\\' && q != '`') {
        ++j;
        continue;
      }
      // A ' closes only where no word goes on (users' data, 'x'y).
      if (s_[j] != q || (q == '\'' && IsWord(At(j + 1)))) continue;
      absl::StrAppend(&out_, absl::string_view(&q, 1), j == i + 1 ? "" : kElided,
                      absl::string_view(&q, 1));
      return j + 1;
    }
    if (q == '\'') return 0;  // an apostrophe
    // Never closed (cut by the probe, or a stray quote): all of it may be
    // the quoted text.
    absl::StrAppend(&out_, absl::string_view(&q, 1), kElided);
    return s_.size();
  }

  size_t Url(size_t i) {
    if (!absl::ascii_isalpha(static_cast<unsigned char>(s_[i]))) return 0;
    size_t j = i + 1;
    while (j < s_.size() && (IsWord(s_[j]) || s_[j] == '+' || s_[j] == '.' || s_[j] == '-')) ++j;
    if (s_.substr(j, 3) != "://") return 0;
    size_t end = j + 3;
    while (end < s_.size() && !absl::ascii_isspace(static_cast<unsigned char>(s_[end])) &&
           absl::string_view("\"'`<>").find(s_[end]) == absl::string_view::npos) {
      ++end;
    }
    // Punctuation closing the sentence is not the URL's.
    while (end > j + 3 && absl::string_view(".,;:)]}").find(s_[end - 1]) != absl::string_view::npos) {
      --end;
    }
    absl::StrAppend(&out_, s_.substr(i, j + 3 - i), kElided);
    return end;
  }

  size_t Email(size_t i) {
    auto local = [](char c) { return IsWord(c) || absl::string_view(".%+-").find(c) != absl::string_view::npos; };
    size_t j = i;
    while (j < s_.size() && local(s_[j])) ++j;
    if (j == i || At(j) != '@') return 0;
    // Domain: labels of letters, digits and '-', at least two.
    size_t end = j + 1, labels = 0;
    for (size_t k = end;;) {
      size_t label = k;
      while (k < s_.size() && (absl::ascii_isalnum(static_cast<unsigned char>(s_[k])) || s_[k] == '-')) ++k;
      if (k == label) break;
      ++labels;
      end = k;
      if (At(k) != '.') break;
      ++k;
    }
    if (labels < 2 || IsWord(At(end))) return 0;
    out_ += "<email>";
    return end;
  }

  size_t Ipv6(size_t i) {
    if (i > 0 && s_[i - 1] == ':') return 0;  // inside a longer run of colons
    size_t j = i, colons = 0;
    while (j < s_.size() && (IsHex(s_[j]) || s_[j] == ':' || s_[j] == '.')) colons += s_[j++] == ':';
    if (colons < 2) return 0;
    // The run may end in the ':' of "addr: cause" or a sentence's '.'.
    size_t end = j;
    while (!IsIpv6(s_.substr(i, end - i))) {
      if (end <= i + 2 || (s_[end - 1] != ':' && s_[end - 1] != '.')) return 0;
      --end;
    }
    if (IsWord(At(end))) return 0;
    if (At(end) == '%') {  // a zone: fe80::1%eth0
      while (++end < s_.size() && (IsWord(s_[end]) || s_[end] == '.' || s_[end] == '-')) {
      }
    }
    out_ += "<ip>";
    return end;
  }

  size_t Ipv4(size_t i) {
    if (i > 0 && s_[i - 1] == '.') return 0;  // 1.2.3.4.5 holds no address
    size_t end = i;
    while (end < s_.size() && (IsDigit(s_[end]) || s_[end] == '.')) ++end;
    while (end > i && s_[end - 1] == '.') --end;  // a sentence's full stop
    if (end == i || IsWord(At(end)) || !IsIpv4(s_.substr(i, end - i))) return 0;
    out_ += "<ip>";
    return end;
  }

  // The end of a path token starting at i.
  size_t PathEnd(size_t i) const {
    while (i < s_.size() && !EndsPath(s_[i])) ++i;
    return i;
  }

  // "/" + the redacted first element, "/…" when more elements follow.
  size_t AbsolutePath(size_t i) {
    if (s_[i] != '/') return 0;
    size_t end = PathEnd(i), first = i;
    while (first < end && s_[first] == '/') ++first;
    if (first == end) return 0;  // slashes only
    size_t first_end = s_.find('/', first);
    if (first_end == absl::string_view::npos || first_end > end) first_end = end;
    absl::StrAppend(&out_, "/", RedactText(s_.substr(first, first_end - first)));
    size_t rest = first_end;
    while (rest < end && s_[rest] == '/') ++rest;
    if (rest < end) {
      absl::StrAppend(&out_, "/", kElided);
    } else if (first_end < end) {
      out_ += "/";
    }
    return end;
  }

  size_t RelativePath(size_t i) {
    size_t end = PathEnd(i);
    absl::string_view token = s_.substr(i, end - i);
    size_t slash = token.find('/');
    if (slash == 0 || slash == absl::string_view::npos || slash + 1 == token.size()) return 0;
    absl::string_view first = token.substr(0, slash);
    bool home = first == "." || first == ".." || first == "~";
    size_t slashes = 0;
    for (char c : token) slashes += c == '/';
    if (!home && slashes < 2) return 0;
    absl::StrAppend(&out_, home ? std::string(first) : RedactText(first), "/", kElided);
    return end;
  }

  size_t Hex(size_t i) {
    if (s_[i] == '0' && (At(i + 1) == 'x' || At(i + 1) == 'X') && IsHex(At(i + 2))) {
      size_t end = i + 2;
      while (end < s_.size() && IsHex(s_[end])) ++end;
      out_ += "<hex>";
      return end;
    }
    size_t end = i;
    bool digit = false, letter = false;
    for (; end < s_.size() && IsHex(s_[end]); ++end) (IsDigit(s_[end]) ? digit : letter) = true;
    if (!digit || !letter || IsWord(At(end))) return 0;
    out_ += "<hex>";
    return end;
  }

  absl::string_view s_;
  std::string out_;
};

}  // namespace

absl::StatusOr<MessagePolicy> ParseMessagePolicy(absl::string_view name) {
  for (MessagePolicy p : {MessagePolicy::kFull, MessagePolicy::kRedact, MessagePolicy::kOff}) {
    if (name == MessagePolicyName(p)) return p;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("invalid --messages \"", name, "\": full, redact or off"));
}

absl::string_view MessagePolicyName(MessagePolicy policy) {
  switch (policy) {
    case MessagePolicy::kFull: return "full";
    case MessagePolicy::kRedact: return "redact";
    case MessagePolicy::kOff: return "off";
  }
  return "full";
}

std::string MessagePolicyComment(MessagePolicy policy) {
  switch (policy) {
    case MessagePolicy::kFull:
      return "messages: full (error messages and goroutine labels as the target held them)";
    case MessagePolicy::kRedact:
      return absl::StrCat("messages: redacted (numbers, hex, e-mail and IP addresses, quoted "
                          "text, URLs and path tails replaced; cut at ", kRedactedMaxBytes,
                          " bytes)");
    case MessagePolicy::kOff:
      return "messages: off (no error messages, no goroutine labels)";
  }
  return "";
}

std::string RedactText(absl::string_view text) {
  const bool long_input = text.size() > kRedactedMaxInput;
  if (long_input) text = text.substr(0, kRedactedMaxInput);
  std::vector<size_t> ends;
  std::string out = Redactor(text).Run(&ends);
  if (!long_input && out.size() <= kRedactedMaxBytes) return out;
  // Cut at the last rule's end that leaves room for the mark.
  size_t keep = 0;
  for (size_t e : ends) {
    if (e + kElided.size() <= kRedactedMaxBytes) keep = e;
  }
  out.resize(keep);
  // One mark says both "elided" and "cut" (and keeps redaction idempotent).
  if (!absl::EndsWith(out, kElided)) absl::StrAppend(&out, kElided);
  return out;
}

}  // namespace goerrprof::profiler
