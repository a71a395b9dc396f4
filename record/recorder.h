// The recording side of `goerrprof record`: attaches error probes to one or
// more Go processes (a --pid, or every Go process a command runs), feeds
// what they capture into one ErrorProfile, and writes it. Plans are made
// once per executable and reused for every process running it.
#ifndef GOERRPROF_RECORD_RECORDER_H_
#define GOERRPROF_RECORD_RECORDER_H_

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "session/bpf_session.h"
#include "session/shared_maps.h"
#include "aggregate/error_profile.h"
#include "goroutines/alloc_counter.h"
#include "record/overhead_budget.h"
#include "session/park_session.h"
#include "record/session_reaper.h"
#include "record/wait_sampler.h"
#include "pprof/pprof_writer.h"
#include "symbolizer/go_binary.h"

namespace goerrprof::profiler {

struct RecordOptions {
  uint32_t max_chain = 8;
  uint32_t ringbuf_bytes = 8u << 20;
  // Attach to the Go toolchain's own programs too (go, compile, link, vet:
  // main packages under cmd/); off, a `go test` records only the tests.
  bool toolchain = false;
  // Trace goroutine parks too (ParkTracer; about three traps per park).
  bool goroutines = false;
  // Or sample goroutine waits from outside snapshots (WaitSampler), this
  // many times a second.
  bool goroutine_samples = false;
  int goroutine_hz = 19;
  // What the profile keeps of messages and goroutine labels (user data).
  MessagePolicy messages = MessagePolicy::kFull;
  // Where plans are cached (plan/plan_cache.h); empty: not cached.
  std::string plan_cache_dir;
  // What the error probes may cost each target, as a fraction of one CPU
  // (record/overhead_budget.h); 0: no limit.
  double max_overhead = 0;
  // Destroy closed sessions (detach their probes) on a thread of their own
  // (record/session_reaper.h), for a caller whose loop must not wait on
  // it; DetachAll still returns with every probe off.
  bool detach_in_background = false;
  // Every process's error probe shares one ring of ringbuf_bytes and one
  // scratch (session/shared_maps.h) instead of its own: for callers that
  // attach many processes (the agent, `record -- COMMAND`).
  bool shared_maps = false;
};
// Sessions detaching in the background at most; past it, Close detaches
// where it stands.
inline constexpr size_t kMaxDetaching = 4;

// What was learnt about one executable (by device and inode).
struct ExecutablePlan {
  std::unique_ptr<symbolizer::GoBinary> binary;  // null: not recordable
  std::string path;                              // as /proc/PID/exe named it
  SessionConfig config;                          // pid left 0
  size_t skipped = 0;                            // references left unplanned
  std::string not_recorded;                      // why binary is null / skipped
  std::string cache;  // "hit", or why the plan cache missed ("absent", …)
  bool toolchain = false;
  // Trace goroutine parks too (ParkTracer; about three traps per park).
  bool goroutines = false;
  // The budget could not read its allocation counts (said once per
  // executable, not per process: an agent sees thousands).
  bool allocs_warned = false;
};

class Recorder {
 public:
  explicit Recorder(RecordOptions options);
  ~Recorder();

  // Plans (or reuses the plan of its executable) and attaches. Errors: the
  // process is not recorded (not Go, unsupported, exited, no privileges);
  // nothing stays attached. Unimplemented for the toolchain when skipped.
  absl::Status Attach(pid_t pid);
  // Delivers what every live session has (each waits up to timeout_ms only
  // when it is the sole session), and closes the sessions of exited
  // processes after draining them.
  absl::Status Poll(int timeout_ms);
  // Drains and detaches every session; the target processes run free.
  void DetachAll();

  size_t live_sessions() const;
  // Processes ever attached, the evicted ones included.
  size_t processes() const { return processes_.size() + evicted_; }
  uint64_t delivered() const;
  // In the profile so far: error creations, and panics.
  uint64_t errors() const { return profile_.counters().events - profile_.counters().panics; }
  uint64_t panics() const { return profile_.counters().panics; }
  uint64_t dropped() const;
  size_t probes() const;         // attached over all processes
  size_t unplanned() const;      // references left unplanned, over executables
  size_t plans_cached() const { return plans_cached_; }  // executables planned from the cache
  const ErrorProfile& profile() const { return profile_; }
  // True when pid's session is gone because the process exited.
  bool exited(pid_t pid) const;

  // For a long-running caller (goerrprof agent): the plan of pid's
  // executable, made or reused as Attach would (errors as Attach's).
  absl::StatusOr<std::shared_ptr<const ExecutablePlan>> Plan(pid_t pid);
  // For a caller that plans off its own loop (the agent): the key of pid's
  // executable in the plan table (device, inode, mtime), errors as
  // Attach's; whether a plan is kept under it; and a plan that
  // MakeExecutablePlan made elsewhere for the file, kept under
  // it, the file's path as the process named it. Attach then uses it.
  absl::StatusOr<std::string> PlanKey(pid_t pid) const;
  bool HasPlan(const std::string& key) const { return plans_.contains(key); }
  void AddPlan(const std::string& key, const std::string& path,
               std::shared_ptr<ExecutablePlan> plan);
  // Drains and detaches pid's live session, if any (the process exec'd).
  // One whose process has exited closes in Poll, once the shared ring has
  // been read past its records (ReadyToClose).
  void Detach(pid_t pid);
  // Every process ever attached, in SampleKey::process order.
  struct TracedProcess {
    pid_t pid = 0;
    const ExecutablePlan* plan = nullptr;
    bool live = false;  // its session is attached
    size_t probes = 0;
    // Processes recorded through its probes, itself included (replicas
    // share them: session/error_program.h); 0 when not live.
    size_t sharing = 0;
  };
  std::vector<TracedProcess> traced() const;

  // What EvictClosed hands over: the processes it forgot and their samples.
  struct Evicted {
    struct Process {
      pid_t pid = 0;
      std::shared_ptr<const ExecutablePlan> plan;  // keeps its binary for symbolizing
      uint32_t index = 0;  // its SampleKey::process until now
    };
    std::vector<Process> processes;
    // Their samples, key.process still the old number (a Process::index).
    std::vector<ErrorProfile::Removed> samples;
    // Every old number -> the new one; ErrorProfile::kRemoved for the forgotten.
    std::vector<uint32_t> renumber;
    bool empty() const { return processes.empty(); }
  };
  // For a caller that runs while processes come and go (the agent): forgets
  // every process whose session is closed (so drained), and its samples;
  // the rest are renumbered. Counters stay summed (delivered(), dropped(),
  // errors()). Plans of executables no remaining process runs are dropped
  // past the kMaxIdlePlans most recently used (replicas restarting keep
  // theirs). The caller folds what it still needs from the result.
  Evicted EvictClosed();
  // Processes whose session is closed but that are still remembered.
  size_t closed_sessions() const { return processes_.size() - live_sessions(); }
  // Closed sessions whose probes are still being detached (in the background).
  size_t detaching() const { return reaper_.pending(); }
  uint64_t evicted() const { return evicted_; }
  static constexpr size_t kMaxIdlePlans = 16;

  // Records the kernel and decode counters as drops, then writes.
  absl::Status Write(const std::string& path, PprofInfo info);
  // With options.goroutines (or goroutine_samples: the sampled wait
  // profile): each process's park profile, to `path` when
  // one process was traced, else to `path` with ".<pid>" before its
  // extension (go tool pprof merges files given together). Returns the
  // files written.
  absl::StatusOr<std::vector<std::string>> WriteParks(const std::string& path,
                                                      const PprofInfo& info);
  // Park tracing's counters summed over processes, for the summary line.
  uint64_t parks() const;
  uint64_t park_drops() const;
  // Wait sampling's snapshots summed over processes: taken, and failed.
  uint64_t wait_snapshots() const;
  uint64_t wait_snapshots_failed() const;
  // With a budget: how long Poll may wait so the budget reacts in time.
  int max_wait_ms(int wanted) const;
  // The budget's summary (empty without one): for the profile's comment
  // and the summary line.
  std::string BudgetSummary() const;
  // Sites the budget took off, over processes.
  size_t budget_sites_off() const;
  // Things that went wrong without stopping the recording, one line each.
  const std::vector<std::string>& warnings() const { return warnings_; }

 private:
  struct Traced {
    pid_t pid = 0;
    std::shared_ptr<ExecutablePlan> plan;
    std::unique_ptr<BpfSession> session;  // null once closed
    std::unique_ptr<ParkTracer> parks;    // with options.goroutines; stopped on close
    std::unique_ptr<WaitSampler> waits;   // with options.goroutine_samples; stopped on close
    SessionCounters final_counters;        // kept when the session closes
    std::unique_ptr<OverheadBudget> budget;  // with options.max_overhead
    clockid_t cpu_clock = -1;  // the process's CPU clock; -1: unknown
    int64_t last_cpu_ns = -1;  // its last reading (a reaped process has none)
    int64_t exit_checked_ns = INT64_MIN / 2;  // ExitedLately's last look
    // Its allocation count, the budget's measure of work (null: unknown).
    std::unique_ptr<AllocCounter> allocs;
    int64_t last_allocs = -1;
    // When it was read (monotonic, and the target's CPU time then), and
    // allocations per ns of CPU between the last two readings: the count
    // at exit is extrapolated from there (memory is gone by then).
    int64_t allocs_read_ns = 0, allocs_cpu_ns = -1;
    double allocs_per_cpu_ns = -1;
    int64_t rate_allocs0 = -1, rate_cpu0 = -1;  // where that rate's span began
    OverheadBudget::Stats budget_stats;  // kept when the session closes
    size_t probes = 0;
    RenderOptions render;  // by its Go release: errno texts vary
    // Panics not yet known to be recovered or fatal, by goroutine.
    absl::flat_hash_map<uint64_t, CapturedError> pending_panics;
    // Exited, with a shared ring: the ring position every record it made
    // ends at or before, and when to close regardless (-1: not exited).
    uint64_t exit_pos = 0;
    int64_t close_by_ns = -1;
  };
  static constexpr size_t kMaxPendingPanics = 4096;
  // How long an exited process's session waits for the shared ring to be
  // read past its records: another writer's record not yet committed (its
  // program preempted, a VM's vCPU descheduled) holds back every record
  // behind it. Past this, what is left is lost and counted (orphans).
  static constexpr int64_t kExitReadNs = 2000000000;
  // Whether an exited process's session may close now: no shared ring, or
  // the ring read past its records, or kExitReadNs gone.
  // Whether the process has exited, looked at no more than every 20 ms
  // once it is known alive (Poll runs every tick).
  bool ExitedLately(Traced& t);
  bool ReadyToClose(Traced& t);
  absl::StatusOr<std::shared_ptr<ExecutablePlan>> PlanFor(pid_t pid);
  // With options.shared_maps: delivers what the ring holds to each record's
  // process; `all`: everything now (a session closes), else one batch.
  absl::Status PollShared(int timeout_ms, bool all);
  void Close(Traced& t);
  // One event of process `index`: an error into the profile; a panic held
  // until its fate is known (FlushPanics: recovered).
  void Deliver(Traced& t, uint32_t index, const CapturedError& e);
  void FlushPanics(Traced& t, uint32_t index);

  RecordOptions options_;
  ErrorProfile profile_;
  // With options.shared_maps, made at the first attach. Before processes_:
  // their sessions leave it when they close.
  std::unique_ptr<SharedEventMaps> shared_;
  std::vector<std::string> warnings_;
  std::vector<Traced> processes_;
  // By "dev:ino:mtime" of the executable; `used` orders idle plans for eviction.
  struct PlanEntry {
    std::shared_ptr<ExecutablePlan> plan;
    uint64_t used = 0;
  };
  absl::flat_hash_map<std::string, PlanEntry> plans_;
  uint64_t plan_clock_ = 0;
  void DropIdlePlans();
  // What evicted processes leave behind in the sums.
  size_t evicted_ = 0;
  SessionCounters evicted_counters_;
  OverheadBudget::Stats evicted_budget_;
  size_t plans_cached_ = 0;
  // The budget's price of one hit: the trap (measured once) plus the
  // program's mean run time (from the kernel's stats while they are on).
  double trap_ns_ = -1;
  int run_stats_fd_ = -1;
  // Last: destroyed first, so sessions it still holds are detached before
  // anything else of the Recorder goes.
  SessionReaper reaper_;
  void StartBudget(Traced& t);
  void TickBudget(Traced& t);
  // Replicas sharing t's program (BpfSession::shares_program) whose budget
  // has seen `site`, with their readings now: they follow t's actions.
  struct MateReading {
    Traced* t = nullptr;
    int64_t now_ns = 0, cpu_ns = -1, work = -1;
  };
  std::vector<MateReading> MatesOf(Traced& t, uint64_t site);
  // t is closing: the sites it took off go to a replica still sharing them.
  void HandOverSites(Traced& t);
  // t's budget brought in line with its shared program's links.
  void Reconcile(Traced& t);
  void CloseBudget(Traced& t, uint32_t index);
  // The live processes' estimates into the profile, at most once a second:
  // the agent serves counts of processes that may never exit.
  void RefreshEstimates();
  int64_t estimates_at_ns_ = 0;
  static int64_t TargetCpuNs(Traced& t);
  static int64_t TargetAllocs(Traced& t, int64_t* at_ns = nullptr);
};

// The key of an executable in a Recorder's plan table (Recorder::PlanKey):
// device, inode and modification time.
std::string PlanKeyOf(const struct stat& st);

// The plan for one Go executable: its probes, layouts and goroutine layout.
absl::StatusOr<std::unique_ptr<ExecutablePlan>> MakeExecutablePlan(const std::string& exe,
                                                                   const RecordOptions& options);

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_RECORD_RECORDER_H_
