#include "agent/goroutine_page.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "agent/error_window.h"
#include "goroutines/goroutine_pprof.h"
#include "goroutines/goroutine_snapshot.h"

namespace goerrprof::profiler {

absl::StatusOr<pid_t> GoroutinePagePid(const std::string& target) {
  size_t q = target.find('?');
  if (q != std::string::npos) {
    for (absl::string_view param : absl::StrSplit(target.substr(q + 1), '&')) {
      if (!absl::ConsumePrefix(&param, "pid=")) continue;
      int32_t pid = 0;
      if (!absl::SimpleAtoi(param, &pid) || pid <= 0) {
        return absl::InvalidArgumentError(absl::StrCat("pid must be a process id, not \"", param,
                                                       "\""));
      }
      return static_cast<pid_t>(pid);
    }
  }
  return absl::InvalidArgumentError("needs ?pid=P, an attached process");
}

HttpResponse GoroutinePage(const std::string& target, const Recorder& rec) {
  HttpResponse r;
  auto pid = GoroutinePagePid(target);
  if (!pid.ok()) {
    r.status = 400;
    r.body = absl::StrCat(pid.status().message(), "\n");
    return r;
  }
  // Its live session's binary: the plan the agent attached with, so the
  // snapshot reads the very executable the process runs.
  const symbolizer::GoBinary* binary = nullptr;
  for (const Recorder::TracedProcess& t : rec.traced()) {
    if (t.pid == *pid && t.live) binary = t.plan->binary.get();
  }
  if (binary == nullptr) {
    r.status = 404;
    r.body = absl::StrCat("pid ", *pid, " is not attached by this agent\n");
    return r;
  }
  absl::StatusOr<std::string> gz = [&]() -> absl::StatusOr<std::string> {
    auto snap = TakeSnapshot(*pid, *binary, SnapshotOptions{});
    if (!snap.ok()) return snap.status();
    auto profile = GoroutineProfile(*snap, *binary);
    if (!profile.ok()) return profile.status();
    return Gzip(profile->SerializeAsString());
  }();
  if (!gz.ok()) {
    r.status = 500;
    r.body = absl::StrCat("pid ", *pid, ": ", gz.status().message(), "\n");
    return r;
  }
  r.content_type = "application/octet-stream";
  r.body = std::move(*gz);
  return r;
}

}  // namespace goerrprof::profiler
