#include "session/libbpf_log.h"

#include <bpf/libbpf.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace goerrprof::profiler {
namespace {

thread_local std::string* tls_libbpf_log = nullptr;

constexpr size_t kKeepBytes = 1u << 20;

int LibbpfPrint(enum libbpf_print_level level, const char* fmt, va_list args) {
  static const bool verbose = std::getenv("GOERRPROF_LIBBPF_DEBUG") != nullptr;
  if (verbose) {
    va_list copy;
    va_copy(copy, args);
    vfprintf(stderr, fmt, copy);
    va_end(copy);
  }
  if (level == LIBBPF_DEBUG || tls_libbpf_log == nullptr) return 0;
  // libbpf prints a whole verifier log with one call: size the buffer to
  // it, or the tail (the part that explains the failure) is lost.
  va_list measure;
  va_copy(measure, args);
  int n = vsnprintf(nullptr, 0, fmt, measure);
  va_end(measure);
  if (n <= 0) return 0;
  std::string msg(static_cast<size_t>(n) + 1, '\0');
  vsnprintf(msg.data(), msg.size(), fmt, args);
  msg.resize(static_cast<size_t>(n));
  std::string& log = *tls_libbpf_log;
  log += msg;
  if (log.size() > kKeepBytes) log.erase(0, log.size() - kKeepBytes / 2);
  return 0;
}

// The number right after `at` in text, if digits follow.
std::optional<uint64_t> NumberAt(absl::string_view text, size_t at) {
  size_t end = at;
  while (end < text.size() && absl::ascii_isdigit(static_cast<unsigned char>(text[end]))) ++end;
  uint64_t v = 0;
  if (end == at || !absl::SimpleAtoi(text.substr(at, end - at), &v)) return std::nullopt;
  return v;
}

}  // namespace

ScopedLibbpfLog::ScopedLibbpfLog() {
  static std::once_flag once;
  std::call_once(once, [] { libbpf_set_print(LibbpfPrint); });
  previous_ = tls_libbpf_log;
  tls_libbpf_log = &log_;
}

ScopedLibbpfLog::~ScopedLibbpfLog() { tls_libbpf_log = previous_; }

std::string ScopedLibbpfLog::Tail(size_t lines) const {
  std::vector<absl::string_view> all;
  for (absl::string_view l : absl::StrSplit(log_, '\n')) {
    l = absl::StripAsciiWhitespace(l);
    if (!l.empty() && !absl::StartsWith(l, "--") && !absl::StartsWith(l, "processed")) {
      all.push_back(l);
    }
  }
  size_t from = all.size() > lines ? all.size() - lines : 0;
  return absl::StrJoin(all.begin() + from, all.end(), " | ");
}

std::optional<uint64_t> ScopedLibbpfLog::ProcessedInsns() const {
  // The verifier's own words: "processed N insns (limit ...)" after a
  // verdict, "BPF program is too large. Processed N insn" at the limit.
  const absl::string_view log(log_);
  std::optional<uint64_t> last;
  size_t last_at = 0;
  for (absl::string_view word : {"processed ", "Processed "}) {
    size_t at = log.rfind(word);
    if (at == absl::string_view::npos || (last && at < last_at)) continue;
    if (auto n = NumberAt(log, at + word.size())) {
      last = n;
      last_at = at;
    }
  }
  return last;
}

std::string ScopedLibbpfLog::FailedProgram() const {
  constexpr absl::string_view kPrefix = "prog '";
  size_t at = absl::string_view(log_).rfind(kPrefix);
  if (at == absl::string_view::npos) return "";
  size_t start = at + kPrefix.size();
  size_t end = log_.find('\'', start);
  if (end == std::string::npos) return "";
  return log_.substr(start, end - start);
}

}  // namespace goerrprof::profiler
