#include "agent/error_window.h"

#include <zlib.h>

#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "pprof/pprof_writer.h"

namespace goerrprof::profiler {
namespace {

absl::StatusOr<std::string> Gzip(const std::string& bytes) {
  z_stream z = {};
  // 15 + 16: a gzip header and trailer, as pprof files have.
  if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    return absl::InternalError("deflateInit2 failed");
  }
  std::string out(deflateBound(&z, bytes.size()), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  z.avail_in = static_cast<uInt>(bytes.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  int rc = deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  if (rc != Z_STREAM_END) return absl::InternalError("deflate failed");
  return out;
}

}  // namespace

absl::StatusOr<int> WindowSeconds(const std::string& target) {
  size_t q = target.find('?');
  if (q == std::string::npos) return 30;
  for (absl::string_view param : absl::StrSplit(target.substr(q + 1), '&')) {
    if (!absl::StartsWith(param, "seconds=")) continue;
    int n = 0;
    if (!absl::SimpleAtoi(param.substr(8), &n) || n < 1 || n > kMaxWindowSeconds) {
      return absl::InvalidArgumentError(
          absl::StrCat("seconds must be 1 to ", kMaxWindowSeconds, ", not \"", param.substr(8),
                       "\""));
    }
    return n;
  }
  return 30;
}

ErrorWindow::ErrorWindow(const Recorder& rec, absl::Duration length)
    : start_(absl::Now()), due_(start_ + length) {
  for (const ErrorProfile::Sample& s : rec.profile().Samples()) before_[*s.key] = s.count;
}

absl::StatusOr<std::string> ErrorWindow::Finish(const Recorder& rec) const {
  ErrorProfile::Options options;
  options.messages = rec.profile().options().messages;
  ErrorProfile delta(options);
  for (const ErrorProfile::Sample& s : rec.profile().Samples()) {
    auto it = before_.find(*s.key);
    const uint64_t was = it == before_.end() ? 0 : it->second;
    if (s.count > was) delta.Add(*s.key, s.count - was);
  }
  // Every process ever attached, so the samples' process numbers hold.
  std::vector<ProfiledProcess> processes;
  for (const Recorder::TracedProcess& t : rec.traced()) {
    processes.push_back({t.plan->binary.get(), t.plan->path, static_cast<uint32_t>(t.pid)});
  }
  PprofInfo info;
  info.time_nanos = absl::ToUnixNanos(start_);
  info.duration_nanos = absl::ToInt64Nanoseconds(absl::Now() - start_);
  info.label_processes = true;
  for (const Recorder::TracedProcess& t : rec.traced()) info.probes_attached += t.live ? t.probes : 0;
  auto built = BuildPprof(delta, processes, info);
  if (!built.ok()) return built.status();
  return Gzip(built->SerializeAsString());
}

}  // namespace goerrprof::profiler
