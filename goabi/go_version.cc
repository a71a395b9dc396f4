#include "goabi/go_version.h"

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"

namespace goerrprof::goabi {
namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Reads a run of decimal digits from text at *pos. Nine digits at most keeps
// the value inside int; no Go release number comes near that.
std::optional<int> ReadNumber(std::string_view text, size_t* pos) {
  size_t start = *pos;
  int value = 0;
  while (*pos < text.size() && IsDigit(text[*pos])) {
    if (*pos - start >= 9) return std::nullopt;
    value = value * 10 + (text[*pos] - '0');
    ++*pos;
  }
  if (*pos == start) return std::nullopt;
  return value;
}

// True for what may end a version: nothing, a space-separated tail
// (" X:nocoverageredesign") or a vendor suffix ("-bigcorp", "+auto").
bool ValidEnd(std::string_view tail) {
  if (tail.empty()) return true;
  char c = tail.front();
  if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\0') return true;
  return (c == '-' || c == '+') && tail.size() > 1;
}

// Also allows one pre-release tag first ("rc1", "beta2"); such a build
// counts as the .0 release, whose layouts it already has.
bool ValidTail(std::string_view tail) {
  for (std::string_view tag : {"rc", "beta", "alpha"}) {
    if (tail.substr(0, tag.size()) != tag) continue;
    size_t pos = tag.size();
    return ReadNumber(tail, &pos).has_value() && ValidEnd(tail.substr(pos));
  }
  return ValidEnd(tail);
}

}  // namespace

std::optional<GoVersion> GoVersion::Parse(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) {
    text.remove_prefix(1);
  }
  if (text.substr(0, 2) == "go") text.remove_prefix(2);
  // From here a digit must come first, so "devel go1.22-abcdef ..." fails:
  // a development build's layouts match no release.

  size_t pos = 0;
  GoVersion v;
  std::optional<int> major = ReadNumber(text, &pos);
  if (!major || *major < 1) return std::nullopt;
  // A minor number is required: "go1" alone (Go 1.0) is far too old anyway,
  // and demanding it rejects stray numbers.
  if (pos >= text.size() || text[pos] != '.') return std::nullopt;
  ++pos;
  std::optional<int> minor = ReadNumber(text, &pos);
  if (!minor) return std::nullopt;
  v.major = *major;
  v.minor = *minor;
  if (pos < text.size() && text[pos] == '.') {
    ++pos;
    std::optional<int> patch = ReadNumber(text, &pos);
    if (!patch) return std::nullopt;
    v.patch = *patch;
  }
  if (!ValidTail(text.substr(pos))) return std::nullopt;
  return v;
}

std::string GoVersion::ToString() const {
  return absl::StrCat("go", major, ".", minor, ".", patch);
}

}  // namespace goerrprof::goabi
