// Follows the process tree of a command for `record -- COMMAND`: every
// process forked from a followed one is followed too, and each exec of a
// followed process is reported with the process stopped before its first
// instruction (bpf/exec_follow.bpf.c), so the caller can attach to the new
// executable and then continue it. In Mode::kEveryExec it only reports
// every exec of the PID namespace, stopping nothing (the agent's
// discovery). Destroying the follower detaches.
#ifndef GOERRPROF_SESSION_PROCESS_FOLLOWER_H_
#define GOERRPROF_SESSION_PROCESS_FOLLOWER_H_

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <memory>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "bpf/follow_abi.h"
#include "session/lifecycle.h"

struct exec_follow_bpf;
struct ring_buffer;

namespace goerrprof::profiler {

struct ExecEvent {
  pid_t pid = 0;
  pid_t ppid = 0;
  // Stopped by SIGSTOP before its first instruction: the caller must send
  // SIGCONT once it has attached (or decided not to).
  bool stopped = false;
  uint64_t timestamp_ns = 0;  // CLOCK_MONOTONIC
};

class ProcessFollower {
 public:
  enum class Mode {
    kFollow,     // the tree of followed processes; each exec stopped (record --)
    kEveryExec,  // every exec in our PID namespace, never stopped (agent discovery)
  };
  // One-line errors for missing privileges or kernel support.
  static absl::StatusOr<std::unique_ptr<ProcessFollower>> Start(Mode mode = Mode::kFollow);
  ~ProcessFollower();
  ProcessFollower(const ProcessFollower&) = delete;
  ProcessFollower& operator=(const ProcessFollower&) = delete;

  // Adds a process (before it execs: the command's child waits for this).
  absl::Status Follow(pid_t pid);
  // Waits up to timeout_ms for exec reports, then delivers all ready ones.
  absl::StatusOr<int> Poll(int timeout_ms, absl::FunctionRef<void(const ExecEvent&)> callback);
  // The map of followed tgids, for the ExecGuardian (exec_guardian.h).
  int followed_map_fd() const;
  // Summed over CPUs, by gef_counter.
  std::array<uint64_t, GEF_CTR__COUNT> Counters() const;

 private:
  ProcessFollower() = default;
  static int OnEvent(void* ctx, void* data, size_t size);

  exec_follow_bpf* skel_ = nullptr;
  EventRing ring_;
  uint64_t delivered_ = 0;
  absl::FunctionRef<void(const ExecEvent&)>* callback_ = nullptr;
};

absl::string_view FollowCounterName(gef_counter c);

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_SESSION_PROCESS_FOLLOWER_H_
