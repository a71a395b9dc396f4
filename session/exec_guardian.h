// `record -- COMMAND` stops each followed exec until its probes are
// attached (process_follower.h). If goerrprof dies in that window (kill -9,
// the OOM killer), nothing would ever continue the stopped process. The
// guardian is a small process forked at start, in its own process group so
// a group signal does not take it too, holding only a pipe and the
// followed-process map: when goerrprof exits without disarming it, it sends
// SIGCONT to every process still followed, then exits.
#ifndef GOERRPROF_SESSION_EXEC_GUARDIAN_H_
#define GOERRPROF_SESSION_EXEC_GUARDIAN_H_

#include <sys/types.h>

#include "absl/status/statusor.h"

namespace goerrprof::profiler {

class ExecGuardian {
 public:
  // `followed_map_fd`: the exec follower's map of followed tgids.
  static absl::StatusOr<ExecGuardian> Start(int followed_map_fd);
  ExecGuardian(ExecGuardian&& other) noexcept : pipe_(other.pipe_), pid_(other.pid_) {
    other.pipe_ = -1;
    other.pid_ = -1;
  }
  ExecGuardian(const ExecGuardian&) = delete;
  ExecGuardian& operator=(const ExecGuardian&) = delete;
  ~ExecGuardian();  // disarms

  // A clean end: every stopped exec was continued. The guardian exits.
  void Disarm();
  pid_t pid() const { return pid_; }

 private:
  ExecGuardian(int pipe, pid_t pid) : pipe_(pipe), pid_(pid) {}
  int pipe_ = -1;  // write end; closing it without a byte arms the guardian
  pid_t pid_ = -1;
};

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_SESSION_EXEC_GUARDIAN_H_
