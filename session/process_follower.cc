#include "session/process_follower.h"

#include <bpf/libbpf.h>
#include <errno.h>
#include <string.h>

#include <cstring>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "bpf/exec_follow.skel.h"
#include "session/kernel_features.h"
#include "session/libbpf_log.h"
#include "session/pid_namespace.h"
#include "session/uprobe_attach.h"
#include "base/status_macros.h"

namespace goerrprof::profiler {

absl::string_view FollowCounterName(gef_counter c) {
  switch (c) {
    case GEF_CTR_FORKS: return "forks";
    case GEF_CTR_EXECS: return "execs";
    case GEF_CTR_DROP_RINGBUF: return "exec_not_reported";
    case GEF_CTR_DROP_FULL: return "process_not_followed";
    case GEF_CTR_SIGNAL_FAILED: return "exec_not_stopped";
    case GEF_CTR__COUNT: break;
  }
  return "unknown";
}

absl::StatusOr<std::unique_ptr<ProcessFollower>> ProcessFollower::Start(Mode mode) {
  // libbpf's own diagnostics stay off stderr (ours are one line); kept
  // for the load error.
  ScopedLibbpfLog log;
  std::unique_ptr<ProcessFollower> f(new ProcessFollower());
  f->skel_ = exec_follow_bpf__open();
  if (!f->skel_) {
    return absl::InternalError(absl::StrCat("cannot open the exec-follow BPF object: ",
                                            strerror(errno)));
  }
  // Pids in goerrprof's PID namespace (a container's), as /proc and kill() take them.
  auto pidns = OwnPidNamespace();
  if (!pidns.ok()) return pidns.status();
  f->skel_->rodata->pidns_ino = static_cast<uint32_t>(pidns->ino);
  if (mode == Mode::kEveryExec) {
    f->skel_->rodata->every_exec = 1;
    // Nothing is followed: forks and exits need no tracking.
    bpf_program__set_autoload(f->skel_->progs.gef_fork, false);
    bpf_program__set_autoload(f->skel_->progs.gef_exit, false);
  }
  if (int err = exec_follow_bpf__load(f->skel_); err != 0) {
    return LoadFailure(err, "cannot load the exec-follow BPF program", log.Tail(8));
  }
  if (int err = exec_follow_bpf__attach(f->skel_); err != 0) {
    return absl::InternalError(absl::StrCat(
        "cannot attach to the sched_process_fork/exec tracepoints: ", strerror(-err)));
  }
  RETURN_IF_ERROR(f->ring_.Open(f->skel_->maps.follow_events, &ProcessFollower::OnEvent, f.get()));
  return f;
}

ProcessFollower::~ProcessFollower() {
  ring_.Close();
  if (skel_) exec_follow_bpf__destroy(skel_);
}

int ProcessFollower::followed_map_fd() const { return bpf_map__fd(skel_->maps.followed); }

absl::Status ProcessFollower::Follow(pid_t pid) {
  uint32_t key = static_cast<uint32_t>(pid), one = 1;
  if (bpf_map__update_elem(skel_->maps.followed, &key, sizeof(key), &one, sizeof(one), BPF_ANY) !=
      0) {
    return absl::InternalError(absl::StrCat("cannot follow pid ", pid, ": ", strerror(errno)));
  }
  return absl::OkStatus();
}

int ProcessFollower::OnEvent(void* ctx, void* data, size_t size) {
  auto* self = static_cast<ProcessFollower*>(ctx);
  gef_exec_event ev;
  if (size < sizeof(ev) || self->callback_ == nullptr) return 0;
  std::memcpy(&ev, data, sizeof(ev));
  ExecEvent out;
  out.pid = static_cast<pid_t>(ev.pid);
  out.ppid = static_cast<pid_t>(ev.ppid);
  out.stopped = ev.stopped != 0;
  out.timestamp_ns = ev.ts_ns;
  ++self->delivered_;
  (*self->callback_)(out);
  return 0;
}

absl::StatusOr<int> ProcessFollower::Poll(int timeout_ms,
                                          absl::FunctionRef<void(const ExecEvent&)> callback) {
  callback_ = &callback;
  uint64_t before = delivered_;
  absl::Status st = ring_.Wait(timeout_ms).status();
  callback_ = nullptr;
  RETURN_IF_ERROR(st);
  return static_cast<int>(delivered_ - before);
}

std::array<uint64_t, GEF_CTR__COUNT> ProcessFollower::Counters() const {
  std::array<uint64_t, GEF_CTR__COUNT> out{};
  for (uint32_t c = 0; c < GEF_CTR__COUNT; ++c) out[c] = SumPerCpu(skel_->maps.follow_counters, c);
  return out;
}

}  // namespace goerrprof::profiler
