// `goerrprof agent`: finds the Go processes of a node by rescanning /proc,
// attaches each through one Recorder (plans shared per executable) and
// keeps, per process, why it is or is not recorded. Never stops, traces or
// writes a process: discovery only reads /proc, probes only read memory.
#ifndef GOERRPROF_AGENT_AGENT_H_
#define GOERRPROF_AGENT_AGENT_H_

#include <sys/types.h>

#include <array>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/cgroup.h"
#include "agent/proc_scan.h"
#include "record/recorder.h"

namespace goerrprof::profiler {

enum class ProcessStatus {
  kAttached,
  kNotGo,
  kUnsupported,  // Go, but not recordable (release, missing tables, ...)
  kFailed,       // planned, but attaching failed
  kExcluded,     // --include/--exclude, or the Go toolchain
  kOverLimit,    // --max-processes or --max-memory reached; retried when below again
  kPlanning,     // its executable is being planned (off the loop); attached after
  kIgnored,      // not counted: kernel threads, zombies, the agent and its children
};
inline constexpr size_t kNumStatuses = 7;  // the counted ones, kAttached..kPlanning
const char* StatusName(ProcessStatus s);  // "attached", "not_go", ...

struct AgentOptions {
  RecordOptions record;
  size_t max_processes = 256;
  // A soft cap on the agent's resident memory (0: none): at or past it, a
  // newly found process is not attached but waits as over_limit, like one
  // past max_processes. Planning a new executable happens before the
  // check, so the cap can be passed by one plan's worth.
  uint64_t max_memory_bytes = 0;
  // ECMAScript regexes (std::regex), each matched in full against the
  // executable's base name or its full path (as the process sees it). An
  // empty include takes everything; exclude wins over include.
  std::string include, exclude;
  // The same for the cgroup path (agent/cgroup.h), matched in full:
  // --include-cgroup='.*/kubepods.*', --exclude-cgroup='.*docker-[0-9a-f]{64}\.scope'.
  // A process must pass both kinds of filter.
  std::string include_cgroup, exclude_cgroup;
  std::string proc_dir = "/proc";
};

class Agent {
 public:
  ~Agent();
  // InvalidArgument for a bad regex.
  static absl::StatusOr<std::unique_ptr<Agent>> Create(AgentOptions options);

  // One pass over /proc: new processes (and ones that exec'd, or reuse a
  // pid) are classified and attached; gone ones are forgotten.
  void Rescan();
  // A process that just exec'd (the follower's every-exec events): looked
  // at at once, as Rescan would.
  void OnExec(pid_t pid);
  // Delivers captured events; sessions of exited processes are closed.
  absl::Status Poll() { return recorder_.Poll(0); }
  // How long the caller may wait before the next Poll (the budget's tick).
  int max_wait_ms(int wanted) const { return recorder_.max_wait_ms(wanted); }
  void DetachAll() { recorder_.DetachAll(); }
  // From now on a new executable is planned on a thread of the agent's own
  // (MakeExecutablePlan), so the loop (scrapes, windows, other processes)
  // never waits for it; its processes count as planning meanwhile, and
  // CollectPlans attaches them. Before it, planning is inline (the
  // start-up scan attaches what runs before the agent says it is ready).
  void PlanInBackground();
  // Takes the plans finished since the last call and classifies the
  // processes that waited for them. Returns how many plans came.
  size_t CollectPlans();
  // Forgets exited processes (Recorder::EvictClosed); the caller folds
  // what it serves of them (metrics, open windows) from the result.
  Recorder::Evicted EvictExited() { return recorder_.EvictClosed(); }

  const Recorder& recorder() const { return recorder_; }
  // Processes by status, kAttached..kPlanning (kAttached: live sessions).
  std::array<size_t, kNumStatuses> StatusCounts() const;
  // Told one line per attach, and per process that could not be attached.
  void set_log(std::function<void(const std::string&)> log) { log_ = std::move(log); }
  // The cgroup (container, pod) an attached pid was in when attached;
  // nullptr for one never attached, or forgotten by the Recorder.
  const CgroupIdentity* CgroupOf(pid_t pid) const;

 private:
  struct Tracked {
    ProcEntry entry;
    ProcessStatus status = ProcessStatus::kIgnored;
  };
  // A decision about an executable that holds for every process of it.
  struct ExeVerdict {
    ProcessStatus status;
    std::string why;
  };
  explicit Agent(AgentOptions options);
  ProcessStatus Classify(const ProcEntry& e);
  // Classify's second half, once the executable's plan is made or failed.
  ProcessStatus Decide(const ProcEntry& e, const std::string& path, CgroupIdentity cgroup,
                       absl::StatusOr<std::shared_ptr<const ExecutablePlan>> plan,
                       absl::Time start);
  void Examine(const ProcEntry& e);
  bool Selected(const std::string& path, const std::string& cgroup) const;
  bool StillThere(const ProcEntry& e) const;
  // Room for one more attached process: under --max-processes and the
  // memory cap.
  bool HasRoom();
  void Log(const std::string& line) {
    if (log_) log_(line);
  }

  AgentOptions options_;
  std::regex include_, exclude_, include_cgroup_, exclude_cgroup_;
  pid_t self_ = 0;
  Recorder recorder_;
  absl::flat_hash_map<pid_t, Tracked> tracked_;
  // By ProcEntry::exe_key: not Go, unsupported, the toolchain; so each such
  // executable is opened once, not once per process.
  absl::flat_hash_map<std::string, ExeVerdict> verdicts_;
  std::function<void(const std::string&)> log_;
  bool over_memory_ = false;  // said once each time the cap is reached
  // By pid, for processes the Recorder still has (their samples are
  // labelled with it): read once, when attached.
  absl::flat_hash_map<pid_t, CgroupIdentity> cgroups_;

  // Background planning (PlanInBackground): one worker, jobs by plan key.
  struct PlanJob {
    std::string key;
    pid_t pid = 0;
  };
  struct PlanDone {
    std::string key;
    std::string path;  // the file planned, as the kernel names it
    // The file was no longer the one the key names (the process exec'd,
    // exited, its pid reused): nothing is known; its processes plan again.
    bool stale = false;
    absl::StatusOr<std::unique_ptr<ExecutablePlan>> plan;
  };
  static PlanDone MakePlan(const std::string& key, pid_t pid, const RecordOptions& options);
  // Classifies the processes waiting for a plan again (after one came).
  void Reclassify();
  void PlanWorker();
  bool background_ = false;
  std::thread worker_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<PlanJob> jobs_;     // guarded by mu_
  std::vector<PlanDone> done_;   // guarded by mu_
  bool stopping_ = false;        // guarded by mu_
  // Keys being planned (loop thread only); files that failed to plan (not
  // Go, unsupported), by key, for Decide to give each process of them.
  absl::flat_hash_set<std::string> planning_;
  absl::flat_hash_map<std::string, absl::Status> plan_failed_;
  static constexpr size_t kMaxPlanFailures = 1024;
};

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_AGENT_AGENT_H_
