// Destroys closed BpfSessions on a thread of its own. Detaching a session's
// probes can take long: on kernels without uprobe_multi (before 6.6) every
// probe is a perf link, and closing each waits for an RCU grace period
// (hundreds of probes: seconds, far more under emulation). A caller with a
// loop to keep (the agent: scrapes, exec events, other processes) hands
// sessions here instead of destroying them where it stands.
#ifndef GOERRPROF_RECORD_SESSION_REAPER_H_
#define GOERRPROF_RECORD_SESSION_REAPER_H_

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>

#include "session/bpf_session.h"

namespace goerrprof::profiler {

class SessionReaper {
 public:
  SessionReaper() = default;
  ~SessionReaper() { Drain(); }
  SessionReaper(const SessionReaper&) = delete;
  SessionReaper& operator=(const SessionReaper&) = delete;

  // Destroyed soon, in order; the thread starts with the first one.
  void Add(std::unique_ptr<BpfSession> session);
  // Returns once every session added so far is destroyed (its probes
  // detached); the thread ends, and starts again with the next Add.
  void Drain();
  // Sessions added and not yet destroyed.
  size_t pending() const;

 private:
  void Run();

  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::deque<std::unique_ptr<BpfSession>> queue_;
  size_t busy_ = 0;  // being destroyed now
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_RECORD_SESSION_REAPER_H_
