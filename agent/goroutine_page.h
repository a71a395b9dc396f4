// GET /debug/pprof/goroutines?pid=P: a goroutine snapshot of one process
// the agent has attached, as the gzipped pprof profile `goerrprof
// goroutines -o` writes (read from outside: the target is not stopped).
#ifndef GOERRPROF_AGENT_GOROUTINE_PAGE_H_
#define GOERRPROF_AGENT_GOROUTINE_PAGE_H_

#include <sys/types.h>

#include <string>

#include "absl/status/statusor.h"
#include "agent/http_server.h"
#include "record/recorder.h"

namespace goerrprof::profiler {

// ?pid=P from a request target; InvalidArgument without one or when it
// is not a positive number.
absl::StatusOr<pid_t> GoroutinePagePid(const std::string& target);

// The page: 400 for a bad pid, 404 for one the agent has no live session
// with (only attached processes: the agent never reads others' memory), 500
// when the snapshot fails (the process exited meanwhile, say). Runs in the
// agent's loop: a snapshot of a process with 100 000 goroutines takes
// about a second, and delays the loop by that.
HttpResponse GoroutinePage(const std::string& target, const Recorder& rec);

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_AGENT_GOROUTINE_PAGE_H_
