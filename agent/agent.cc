#include "agent/agent.h"

#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace goerrprof::profiler {

const char* StatusName(ProcessStatus s) {
  switch (s) {
    case ProcessStatus::kAttached: return "attached";
    case ProcessStatus::kNotGo: return "not_go";
    case ProcessStatus::kUnsupported: return "unsupported";
    case ProcessStatus::kFailed: return "failed";
    case ProcessStatus::kExcluded: return "excluded";
    case ProcessStatus::kOverLimit: return "over_limit";
    case ProcessStatus::kPlanning: return "planning";
    case ProcessStatus::kIgnored: return "ignored";
  }
  return "?";
}

absl::StatusOr<std::unique_ptr<Agent>> Agent::Create(AgentOptions options) {
  std::unique_ptr<Agent> a(new Agent(std::move(options)));
  try {
    if (!a->options_.include.empty()) a->include_ = std::regex(a->options_.include);
    if (!a->options_.exclude.empty()) a->exclude_ = std::regex(a->options_.exclude);
  } catch (const std::regex_error& e) {
    return absl::InvalidArgumentError(absl::StrCat("bad --include/--exclude regex: ", e.what()));
  }
  try {
    const AgentOptions& o = a->options_;
    if (!o.include_cgroup.empty()) a->include_cgroup_ = std::regex(o.include_cgroup);
    if (!o.exclude_cgroup.empty()) a->exclude_cgroup_ = std::regex(o.exclude_cgroup);
  } catch (const std::regex_error& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad --include-cgroup/--exclude-cgroup regex: ", e.what()));
  }
  return a;
}

Agent::Agent(AgentOptions options)
    : options_(std::move(options)), self_(getpid()), recorder_(options_.record) {}

bool Agent::Selected(const std::string& path, const std::string& cgroup) const {
  const std::string base = path.substr(path.rfind('/') + 1);
  auto matches = [&](const std::regex& re) {
    return std::regex_match(base, re) || std::regex_match(path, re);
  };
  if (!options_.include.empty() && !matches(include_)) return false;
  if (!options_.exclude.empty() && matches(exclude_)) return false;
  if (!options_.include_cgroup.empty() && !std::regex_match(cgroup, include_cgroup_)) return false;
  return options_.exclude_cgroup.empty() || !std::regex_match(cgroup, exclude_cgroup_);
}

const CgroupIdentity* Agent::CgroupOf(pid_t pid) const {
  auto it = cgroups_.find(pid);
  return it == cgroups_.end() ? nullptr : &it->second;
}

bool Agent::StillThere(const ProcEntry& e) const {
  auto now = ReadProcEntry(options_.proc_dir, e.pid);
  return now && now->start_time == e.start_time && now->exe_key == e.exe_key;
}

bool Agent::HasRoom() {
  if (recorder_.live_sessions() >= options_.max_processes) return false;
  if (options_.max_memory_bytes == 0) return true;
  const uint64_t rss = SelfResidentBytes();
  const bool over = rss >= options_.max_memory_bytes;
  if (over && !over_memory_) {
    Log(absl::StrCat("memory cap reached (resident ", rss >> 20, " MiB, --max-memory ",
                     options_.max_memory_bytes >> 20, " MiB): new processes wait as over_limit"));
  }
  over_memory_ = over;
  return !over;
}

ProcessStatus Agent::Classify(const ProcEntry& e) {
  // Ourselves and what we start (a test harness's helpers, say) are never
  // targets; nor is anything without an executable.
  if (e.pid == self_ || e.ppid == self_ || e.exe_key.empty()) return ProcessStatus::kIgnored;
  const std::string path = ExecutablePath(options_.proc_dir, e.pid);
  if (path.empty()) return ProcessStatus::kIgnored;
  // Filters first: an excluded executable is never even opened. The
  // cgroup is read once per process (and exec): one moved later keeps it.
  CgroupIdentity cgroup = ReadCgroup(options_.proc_dir, e.pid);
  if (!Selected(path, cgroup.path)) return ProcessStatus::kExcluded;
  if (auto v = verdicts_.find(e.exe_key); v != verdicts_.end()) return v->second.status;

  absl::Time start = absl::Now();
  if (background_) {
    // A new executable goes to the worker; its processes wait as planning.
    // (A key that cannot be had, the process gone or unreadable, is left
    // to Recorder::Plan, which says so at once.)
    auto key = recorder_.PlanKey(e.pid);
    if (key.ok() && !recorder_.HasPlan(*key)) {
      if (auto f = plan_failed_.find(*key); f != plan_failed_.end()) {
        return Decide(e, path, std::move(cgroup), f->second, start);
      }
      if (planning_.insert(*key).second) {
        {
          std::lock_guard<std::mutex> lock(mu_);
          jobs_.push_back({*key, e.pid});
        }
        cv_.notify_one();
      }
      return ProcessStatus::kPlanning;
    }
  }
  return Decide(e, path, std::move(cgroup), recorder_.Plan(e.pid), start);
}

ProcessStatus Agent::Decide(const ProcEntry& e, const std::string& path, CgroupIdentity cgroup,
                            absl::StatusOr<std::shared_ptr<const ExecutablePlan>> plan,
                            absl::Time start) {
  if (!plan.ok()) {
    if (!StillThere(e)) return ProcessStatus::kIgnored;  // gone while we looked
    // This process's, not its executable's (another user's, without
    // CAP_SYS_PTRACE): not remembered for the executable.
    if (absl::IsPermissionDenied(plan.status())) {
      Log(absl::StrCat("pid ", e.pid, " (", path, ") not attached: ", plan.status().message()));
      return ProcessStatus::kFailed;
    }
    // GoBinary::Open's "not a Go binary" (NotFound) or a file that is no
    // ELF it can read (InvalidArgument); anything else is Go it cannot do.
    const bool not_go = absl::IsNotFound(plan.status()) || absl::IsInvalidArgument(plan.status());
    ExeVerdict v{not_go ? ProcessStatus::kNotGo : ProcessStatus::kUnsupported,
                 std::string(plan.status().message())};
    if (!not_go) Log(absl::StrCat("pid ", e.pid, " (", path, ") unsupported: ", v.why));
    verdicts_[e.exe_key] = v;
    return v.status;
  }
  if (!(*plan)->not_recorded.empty()) {
    ExeVerdict v{(*plan)->toolchain ? ProcessStatus::kExcluded : ProcessStatus::kUnsupported,
                 (*plan)->not_recorded};
    verdicts_[e.exe_key] = v;
    return v.status;
  }
  // Past the limit only after planning: a process that is not Go is no
  // candidate (and the plan stays with the Recorder for the retry).
  if (!HasRoom()) return ProcessStatus::kOverLimit;
  if (absl::Status s = recorder_.Attach(e.pid); !s.ok()) {
    if (!StillThere(e)) return ProcessStatus::kIgnored;
    Log(absl::StrCat("pid ", e.pid, " (", path, ") not attached: ", s.message()));
    return ProcessStatus::kFailed;
  }
  cgroups_[e.pid] = std::move(cgroup);
  size_t probes = 0, sharing = 0;
  for (const Recorder::TracedProcess& t : recorder_.traced()) {
    if (t.pid == e.pid && t.live) {
      probes = t.probes;
      sharing = t.sharing;
    }
  }
  Log(absl::StrCat("attached pid ", e.pid, " (", path, "): ", probes, " probes in ",
                   absl::FormatDuration(absl::Now() - start),
                   (*plan)->cache == "hit" ? " (plan from cache)" : "",
                   sharing > 1 ? absl::StrCat(" (probes shared with ", sharing - 1,
                                              sharing == 2 ? " other process)" : " others)")
                               : ""));
  return ProcessStatus::kAttached;
}

Agent::~Agent() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
}

void Agent::PlanInBackground() {
  if (background_) return;
  background_ = true;
  // The loop takes SIGINT and SIGTERM (its poll ends): never the worker.
  sigset_t block, old;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &block, &old);
  worker_ = std::thread([this] { PlanWorker(); });
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

Agent::PlanDone Agent::MakePlan(const std::string& key, pid_t pid, const RecordOptions& options) {
  PlanDone d;
  d.key = key;
  // The file the key names, before and after: a process that exec'd or
  // exited meanwhile, or a reused pid, must not have another file planned
  // under it. (The plan opens /proc/PID/exe itself, as Recorder::Plan
  // does; the file's path is what the process runs.)
  const std::string exe = absl::StrCat("/proc/", pid, "/exe");
  auto same = [&] {
    struct stat st;
    return stat(exe.c_str(), &st) == 0 && PlanKeyOf(st) == key;
  };
  char target[PATH_MAX];
  ssize_t n = readlink(exe.c_str(), target, sizeof(target) - 1);
  if (!same() || n <= 0) {
    d.stale = true;
    return d;
  }
  d.path.assign(target, static_cast<size_t>(n));
  // MakeExecutablePlan reads the file and the plan cache only; the
  // Recorder is the loop's.
  d.plan = MakeExecutablePlan(exe, options);
  if (!same()) {
    d.stale = true;
    d.plan = absl::UnavailableError("stale");
  }
  return d;
}

void Agent::PlanWorker() {
  for (;;) {
    PlanJob job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !jobs_.empty(); });
      if (stopping_) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    PlanDone d = MakePlan(job.key, job.pid, options_.record);
    std::lock_guard<std::mutex> lock(mu_);
    done_.push_back(std::move(d));
  }
}

void Agent::Reclassify() {
  for (auto& [pid, t] : tracked_) {
    if (t.status == ProcessStatus::kPlanning) t.status = Classify(t.entry);
  }
}

size_t Agent::CollectPlans() {
  std::vector<PlanDone> done;
  {
    std::lock_guard<std::mutex> lock(mu_);
    done.swap(done_);
  }
  for (PlanDone& d : done) {
    planning_.erase(d.key);
    if (d.stale) {
      Reclassify();  // its processes plan again, through a live one
      continue;
    }
    if (d.plan.ok()) {
      recorder_.AddPlan(d.key, d.path, std::shared_ptr<ExecutablePlan>(std::move(*d.plan)));
    } else if (!absl::IsPermissionDenied(d.plan.status())) {
      // The file's own verdict (not Go, unsupported), for each of its
      // processes; a permission is each process's, found again by it.
      if (plan_failed_.size() >= kMaxPlanFailures) plan_failed_.clear();
      plan_failed_[d.key] = d.plan.status();
    }
    // At once, before another plan of the batch could evict this one.
    Reclassify();
  }
  return done.size();
}

void Agent::Examine(const ProcEntry& e) {
  auto it = tracked_.find(e.pid);
  if (it != tracked_.end()) {
    const ProcEntry& old = it->second.entry;
    const bool same = old.start_time == e.start_time && old.exe_key == e.exe_key;
    const bool retry = it->second.status == ProcessStatus::kOverLimit && HasRoom();
    if (same && !retry) return;
    // Another program now (exec, or a reused pid): its old probes are done.
    if (!same && it->second.status == ProcessStatus::kAttached) recorder_.Detach(e.pid);
  }
  tracked_[e.pid] = Tracked{e, Classify(e)};
}

void Agent::OnExec(pid_t pid) {
  if (auto e = ReadProcEntry(options_.proc_dir, pid)) Examine(*e);
}

void Agent::Rescan() {
  std::vector<ProcEntry> now = ScanProcesses(options_.proc_dir);
  absl::flat_hash_set<pid_t> present;
  for (const ProcEntry& e : now) {
    present.insert(e.pid);
    Examine(e);
  }
  for (auto it = tracked_.begin(); it != tracked_.end();) {
    if (present.contains(it->first)) {
      ++it;
      continue;
    }
    // Gone: Poll closes an exited process's session after draining it; a
    // detach here is for the rare one that went between two polls.
    if (it->second.status == ProcessStatus::kAttached) recorder_.Detach(it->first);
    tracked_.erase(it++);
  }
  // Verdicts are per executable ever looked at: past a bound, only those of
  // executables some process here still runs are kept.
  constexpr size_t kMaxVerdicts = 1024;
  if (verdicts_.size() > kMaxVerdicts) {
    absl::flat_hash_set<std::string> running;
    for (const auto& [pid, t] : tracked_) running.insert(t.entry.exe_key);
    absl::erase_if(verdicts_, [&](const auto& kv) { return !running.contains(kv.first); });
  }
  // Kept while the Recorder keeps the process (its samples may still be
  // served), so this map never outgrows its list.
  if (!cgroups_.empty()) {
    absl::flat_hash_set<pid_t> known;
    for (const Recorder::TracedProcess& t : recorder_.traced()) known.insert(t.pid);
    absl::erase_if(cgroups_, [&](const auto& kv) { return !known.contains(kv.first); });
  }
}

std::array<size_t, kNumStatuses> Agent::StatusCounts() const {
  std::array<size_t, kNumStatuses> n{};
  for (const auto& [pid, t] : tracked_) {
    auto i = static_cast<size_t>(t.status);
    if (t.status != ProcessStatus::kAttached && i < kNumStatuses) ++n[i];
  }
  // Attached means a live session: an exited process still in /proc (a
  // zombie) is not.
  n[static_cast<size_t>(ProcessStatus::kAttached)] = recorder_.live_sessions();
  return n;
}

}  // namespace goerrprof::profiler
