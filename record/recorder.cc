#include "record/recorder.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "base/clock.h"
#include "base/status_macros.h"
#include "absl/strings/str_cat.h"
#include "goabi/g_layout.h"
#include "plan/panic_probes.h"
#include "plan/plan_cache.h"
#include "plan/probe_plan.h"
#include "session/capabilities.h"
#include "symbolizer/type_refs.h"

namespace goerrprof::profiler {

absl::StatusOr<std::unique_ptr<ExecutablePlan>> MakeExecutablePlan(const std::string& exe,
                                                                   const RecordOptions& options) {
  auto plan = std::make_unique<ExecutablePlan>();
  auto bin = symbolizer::GoBinary::Open(exe);
  if (!bin.ok()) return bin.status();
  plan->binary = std::move(*bin);
  // The toolchain's own programs: `go`, and the tools under pkg/tool.
  plan->toolchain = absl::StartsWith(plan->binary->build_info().main_path, "cmd/");
  if (plan->toolchain && !options.toolchain) {
    plan->not_recorded = "part of the Go toolchain (--toolchain records it)";
    return plan;
  }
  auto g = goabi::GLayoutFor(plan->binary->version());
  if (!g.ok()) return g.status();
  SessionConfig& c = plan->config;
  PlanCache cache(options.plan_cache_dir);
  if (auto hit = cache.Load(*plan->binary, &plan->cache)) {
    c.layouts = std::move(hit->layouts);
    c.probes = std::move(hit->probes);
    plan->skipped = hit->skipped;
    plan->cache = "hit";
  } else {
    auto reader = plan->binary->types();
    if (!reader.ok()) return reader.status();
    auto candidates = TypeDescriptorRefs(*plan->binary);
    if (!candidates.ok()) return candidates.status();
    auto types = symbolizer::FindErrorTypes(**reader, *candidates);
    if (!types.ok()) return types.status();
    auto probes = PlanCreationProbes(*plan->binary, *types);
    if (!probes.ok()) return probes.status();
    plan->skipped = probes->skipped.size();
    auto layouts = LayoutsFor(*plan->binary, *types);
    if (!layouts.ok()) return layouts.status();
    // Panic values that are not errors: strings, integers.
    auto values = PanicValueLayouts(*plan->binary, *candidates, *layouts);
    if (!values.ok()) return values.status();
    c.layouts = std::move(*layouts);
    for (ErrorLayout& l : *values) c.layouts.push_back(std::move(l));
    c.probes = ProbeSpecsFor(probes->probes);
    for (const ProbeSpec& p : PanicProbeSpecs(*plan->binary, *g)) c.probes.push_back(p);
    if (cache.enabled()) {
      absl::Status stored = cache.Store(*plan->binary, {c.layouts, c.probes, plan->skipped});
      if (!stored.ok()) absl::StrAppend(&plan->cache, "; not stored: ", stored.message());
    }
  }
  c.max_chain = options.max_chain;
  c.ringbuf_bytes = options.ringbuf_bytes;
  ApplyGLayout(*g, &c);
  return plan;
}

namespace {

ErrorProfile::Options ProfileOptions(const RecordOptions& options) {
  ErrorProfile::Options o;
  o.messages = options.messages;
  return o;
}

}  // namespace

Recorder::Recorder(RecordOptions options) : options_(options), profile_(ProfileOptions(options)) {}

Recorder::~Recorder() {
  DetachAll();
  if (run_stats_fd_ >= 0) close(run_stats_fd_);
}

absl::StatusOr<std::string> Recorder::PlanKey(pid_t pid) const {
  // Another user's process, or an unreadable executable: the capability
  // that is missing, named.
  if (absl::Status readable = CheckProcessReadable(pid); !readable.ok()) return readable;
  std::string exe = absl::StrCat("/proc/", pid, "/exe");
  struct stat st;
  if (stat(exe.c_str(), &st) != 0) {
    // An exited but unreaped process keeps /proc/PID without an exe.
    if (errno == ENOENT && access(absl::StrCat("/proc/", pid).c_str(), F_OK) == 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("process ", pid, " has exited; nothing to record"));
    }
    return absl::NotFoundError(absl::StrCat("no process with pid ", pid));
  }
  return PlanKeyOf(st);
}

std::string PlanKeyOf(const struct stat& st) {
  return absl::StrCat(st.st_dev, ":", st.st_ino, ":", st.st_mtim.tv_sec, ".",
                      st.st_mtim.tv_nsec);
}

void Recorder::AddPlan(const std::string& key, const std::string& path,
                       std::shared_ptr<ExecutablePlan> plan) {
  if (plan->cache == "hit") ++plans_cached_;
  plan->path = path;
  plans_[key] = PlanEntry{std::move(plan), ++plan_clock_};
  DropIdlePlans();  // executables looked at once (not Go enough, the toolchain) pile up too
}

absl::StatusOr<std::shared_ptr<ExecutablePlan>> Recorder::PlanFor(pid_t pid) {
  ASSIGN_OR_RETURN(std::string key, PlanKey(pid));
  if (auto it = plans_.find(key); it != plans_.end()) {
    it->second.used = ++plan_clock_;
    return it->second.plan;
  }
  std::string exe = absl::StrCat("/proc/", pid, "/exe");
  auto made = MakeExecutablePlan(exe, options_);
  if (!made.ok()) return made.status();
  std::shared_ptr<ExecutablePlan> plan = std::move(*made);
  char target[PATH_MAX];
  ssize_t n = readlink(exe.c_str(), target, sizeof(target) - 1);
  AddPlan(key, n > 0 ? std::string(target, static_cast<size_t>(n)) : exe, plan);
  return plan;
}

absl::Status Recorder::Attach(pid_t pid) {
  // A process that execs again is a new program: its old probes are done.
  for (Traced& t : processes_) {
    if (t.pid == pid) Close(t);
  }
  auto plan = PlanFor(pid);
  if (!plan.ok()) return plan.status();
  if (!(*plan)->not_recorded.empty()) return absl::UnimplementedError((*plan)->not_recorded);
  SessionConfig config = (*plan)->config;
  config.pid = pid;
  config.executable = absl::StrCat("/proc/", pid, "/exe");
  if (options_.shared_maps) {
    if (!shared_) {
      ASSIGN_OR_RETURN(shared_, SharedEventMaps::Create(options_.ringbuf_bytes));
    }
    config.shared_maps = shared_.get();
    config.ringbuf_bytes = shared_->bytes();
    // Replicas of one executable share one program and its links.
    config.share_program = true;
  }
  auto session = BpfSession::Start(config);
  if (!session.ok()) return session.status();
  Traced t;
  t.pid = pid;
  t.plan = *plan;
  t.render.go_version = (*plan)->binary->version();
  t.probes = (*session)->attach_stats().probes;
  t.session = std::move(*session);
  StartBudget(t);
  if (options_.goroutines) {
    auto parks = ParkTracer::Start(pid, *(*plan)->binary, ParkOptions{});
    if (parks.ok()) {
      t.parks = std::move(*parks);
    } else {
      warnings_.push_back(absl::StrCat("pid ", pid, ": goroutine parks not traced: ",
                                       parks.status().message()));
    }
  }
  if (options_.goroutine_samples) {
    WaitSamplerOptions wo;
    wo.hz = options_.goroutine_hz;
    auto waits = WaitSampler::Start(pid, *(*plan)->binary, wo);
    if (waits.ok()) {
      t.waits = std::move(*waits);
    } else {
      warnings_.push_back(absl::StrCat("pid ", pid, ": goroutine waits not sampled: ",
                                       waits.status().message()));
    }
  }
  processes_.push_back(std::move(t));
  return absl::OkStatus();
}

void Recorder::Close(Traced& t) {
  if (!t.session) return;
  const uint32_t index = static_cast<uint32_t>(&t - processes_.data());
  if (shared_) {
    // Unless the ring was read past an exited process's records already.
    // Its hits from now on are no one's (shared probes stay for the
    // others): not recorded, rather than orphans; then what it made.
    t.session->Leave();
    if (t.close_by_ns < 0 || !shared_->ReadPast(t.exit_pos)) PollShared(0, true).IgnoreError();
    t.session->ReleaseRing();  // its destruction may happen on the reaper's thread
  } else {
    t.session->Flush([&](const CapturedError& e) { Deliver(t, index, e); }).IgnoreError();
  }
  // Nothing ended the process with these: recovered (or still unwinding
  // when the recording stopped).
  FlushPanics(t, index);
  CloseBudget(t, index);
  t.session->Leave();  // its counters final (once: see above)
  t.final_counters = t.session->Counters();
  // Detach: the process runs free (at once, or soon in the background).
  // Bounded: past a few waiting, here (a churn must not pile up sessions,
  // each holding its ring buffer).
  if (options_.detach_in_background && reaper_.pending() < kMaxDetaching) {
    reaper_.Add(std::move(t.session));
  } else {
    t.session.reset();
  }
  if (t.parks) t.parks->Stop();  // goroutines still parked count until now
  if (t.waits) t.waits->Stop();
}

absl::Status Recorder::PollShared(int timeout_ms, bool all) {
  if (!shared_) return absl::OkStatus();
  // Few live sessions; looked up per record.
  absl::flat_hash_map<const BpfSession*, uint32_t> index;
  int also_fd = -1;
  size_t live = 0, running = 0;
  for (size_t i = 0; i < processes_.size(); ++i) {
    if (!processes_[i].session) continue;
    index[processes_[i].session.get()] = static_cast<uint32_t>(i);
    ++live;
    // An exited one's pidfd is readable for good: not something to wait for.
    if (processes_[i].close_by_ns >= 0) continue;
    also_fd = running++ == 0 ? processes_[i].session->exit_fd() : -1;
  }
  // One waiting for the ring to be read past its records: its writer's
  // commit may come without a wakeup, so it is looked at again soon.
  if (running < live) timeout_ms = timeout_ms < 0 ? 1 : std::min(timeout_ms, 1);
  auto deliver = [&](BpfSession& s, const CapturedError& e) {
    auto it = index.find(&s);
    if (it != index.end()) Deliver(processes_[it->second], it->second, e);
  };
  // Alone, its exit ends the wait too; with more, the caller's loop paces.
  absl::StatusOr<int> n =
      all ? shared_->Drain(deliver)
          : shared_->Poll(running == 1 || (running == 0 && live > 0) ? timeout_ms : 0,
                          running == 1 ? also_fd : -1, live, deliver);
  return n.status();
}

absl::Status Recorder::Poll(int timeout_ms) {
  const bool alone = live_sessions() == 1;
  RETURN_IF_ERROR(PollShared(timeout_ms, false));
  for (size_t i = 0; i < processes_.size(); ++i) {
    Traced& t = processes_[i];
    if (!t.session) continue;
    auto polled = shared_ ? absl::StatusOr<int>(0)
                        : t.session->Poll(alone ? timeout_ms : 0, [&](const CapturedError& e) {
                            Deliver(t, static_cast<uint32_t>(i), e);
                          });
    if (!polled.ok() && !absl::IsCancelled(polled.status())) return polled.status();
    if (t.close_by_ns < 0) TickBudget(t);  // an exited one has nothing left to pay
    if (t.parks) {
      auto parked = t.parks->Poll(0);
      if (!parked.ok()) return parked.status();
    }
    if (ExitedLately(t) && ReadyToClose(t)) Close(t);
  }
  RefreshEstimates();
  return absl::OkStatus();
}

bool Recorder::ExitedLately(Traced& t) {
  // Poll's wait already ends at a pidfd's exit; the slower checks (a
  // process killed but still exiting) every so often, not every tick.
  constexpr int64_t kExitCheckNs = 20000000;
  const int64_t now = MonotonicNs();
  if (t.close_by_ns < 0 && now < t.exit_checked_ns + kExitCheckNs) {
    pollfd p = {t.session->exit_fd(), POLLIN, 0};
    if (p.fd < 0 || poll(&p, 1, 0) <= 0) return false;
  }
  t.exit_checked_ns = now;
  return t.session->target_exited();
}

bool Recorder::ReadyToClose(Traced& t) {
  if (!shared_) return true;  // its own ring: all of it is there to read (Close)
  const int64_t now = MonotonicNs();
  if (t.close_by_ns < 0) {
    // Its threads are gone: every record it made was reserved by now.
    t.exit_pos = shared_->reserved();
    t.close_by_ns = now + kExitReadNs;
    // Most often nothing holds the ring back: read now, close now.
    PollShared(0, true).IgnoreError();
  }
  return shared_->ReadPast(t.exit_pos) || now >= t.close_by_ns;
}

namespace {

// A panic value of a type without a layout (a struct, a named type): its
// name from the binary's type data, so the profile says what was thrown.
void NameValueTypes(const symbolizer::GoBinary& binary, CapturedError* e) {
  for (CapturedLink& l : e->links) {
    if (!l.type_name.empty() || l.type == 0) continue;
    auto reader = binary.types();
    if (!reader.ok()) return;
    // Decoding made it a file address already.
    if (auto name = (*reader)->Name(l.type); name.ok()) l.type_name = *name;
  }
}

}  // namespace

void Recorder::Deliver(Traced& t, uint32_t index, const CapturedError& e) {
  const RenderOptions& render = t.render;
  if (e.kind == EventKind::kCreation) {
    if (t.budget) {
      const int64_t ts = e.timestamp_ns > 0 ? static_cast<int64_t>(e.timestamp_ns) : -1;
      t.budget->Count(e.site != 0 ? e.site : e.ip, 1, ts);
    }
    profile_.Add(e, index, render);
    return;
  }
  CapturedError v = e;
  NameValueTypes(*t.plan->binary, &v);
  if (v.kind == EventKind::kPanic) {
    // Whether it is recovered shows later: at fatalpanic, or never. A
    // goroutine that panics again has recovered the earlier panic.
    auto [it, fresh] = t.pending_panics.try_emplace(v.goid, v);
    if (!fresh) {
      profile_.AddPanic(it->second, index, render, true);
      it->second = std::move(v);
    }
    // Bounded: one held per goroutine that panicked; a panic still
    // unwinding while thousands of others are made is not plausible.
    if (t.pending_panics.size() > kMaxPendingPanics) FlushPanics(t, index);
    return;
  }
  // Fatal: the goroutine's pending panic is the one ending the process.
  if (auto it = t.pending_panics.find(v.goid); it != t.pending_panics.end()) {
    profile_.AddPanic(it->second, index, render, false);
    t.pending_panics.erase(it);
  } else {
    profile_.AddPanic(v, index, render, false);  // its gopanic went unseen
  }
}

void Recorder::FlushPanics(Traced& t, uint32_t index) {
  for (const auto& [goid, e] : t.pending_panics) profile_.AddPanic(e, index, t.render, true);
  t.pending_panics.clear();
}

void Recorder::DetachAll() {
  for (Traced& t : processes_) Close(t);
  reaper_.Drain();
}

size_t Recorder::live_sessions() const {
  size_t n = 0;
  for (const Traced& t : processes_) n += t.session != nullptr;
  return n;
}

bool Recorder::exited(pid_t pid) const {
  for (const Traced& t : processes_) {
    if (t.pid == pid) return t.session == nullptr;
  }
  return true;
}

absl::StatusOr<std::shared_ptr<const ExecutablePlan>> Recorder::Plan(pid_t pid) {
  auto plan = PlanFor(pid);
  if (!plan.ok()) return plan.status();
  return std::shared_ptr<const ExecutablePlan>(*plan);
}

void Recorder::Detach(pid_t pid) {
  for (Traced& t : processes_) {
    if (t.pid != pid || !t.session) continue;
    // Gone: its records may still be behind another's; Poll closes it once
    // they are read (ReadyToClose).
    if (t.session->target_exited() && !ReadyToClose(t)) continue;
    Close(t);
  }
}

std::vector<Recorder::TracedProcess> Recorder::traced() const {
  std::vector<TracedProcess> out;
  out.reserve(processes_.size());
  for (const Traced& t : processes_) {
    out.push_back({t.pid, t.plan.get(), t.session != nullptr, t.probes,
                   t.session ? t.session->program_members() : 0});
  }
  return out;
}

uint64_t Recorder::delivered() const {
  uint64_t n = evicted_counters_.delivered;
  for (const Traced& t : processes_) {
    n += (t.session ? t.session->Counters() : t.final_counters).delivered;
  }
  return n;
}

uint64_t Recorder::dropped() const {
  uint64_t n = evicted_counters_.dropped_events() +
               (shared_ ? shared_->orphans() + shared_->malformed() : 0);
  for (const Traced& t : processes_) {
    n += (t.session ? t.session->Counters() : t.final_counters).dropped_events();
  }
  return n;
}

size_t Recorder::probes() const {
  size_t n = 0;
  for (const Traced& t : processes_) n += t.probes;
  return n;
}

size_t Recorder::unplanned() const {
  size_t n = 0;
  for (const auto& [key, entry] : plans_) n += entry.plan->skipped;
  return n;
}

uint64_t Recorder::parks() const {
  uint64_t n = 0;
  for (const Traced& t : processes_) {
    if (t.parks) n += t.parks->counters().totals.parks;
  }
  return n;
}

uint64_t Recorder::park_drops() const {
  uint64_t n = 0;
  for (const Traced& t : processes_) {
    if (t.parks) n += t.parks->counters().dropped();
  }
  return n;
}

uint64_t Recorder::wait_snapshots() const {
  uint64_t n = 0;
  for (const Traced& t : processes_) {
    if (t.waits) n += t.waits->totals().snapshots;
  }
  return n;
}

uint64_t Recorder::wait_snapshots_failed() const {
  uint64_t n = 0;
  for (const Traced& t : processes_) {
    if (t.waits) n += t.waits->totals().snapshots_failed;
  }
  return n;
}

absl::StatusOr<std::vector<std::string>> Recorder::WriteParks(const std::string& path,
                                                             const PprofInfo& info) {
  std::vector<const Traced*> traced;
  for (const Traced& t : processes_) {
    if (t.parks || t.waits) traced.push_back(&t);
  }
  std::vector<std::string> written;
  for (const Traced* t : traced) {
    std::string out = path;
    if (traced.size() > 1) {
      size_t dot = out.find('.', out.rfind('/') + 1);
      if (dot == std::string::npos) dot = out.size();
      out.insert(dot, absl::StrCat(".", t->pid));
    }
    if (t->waits) {
      SampledWaitInfo winfo;
      winfo.binary_path = t->plan->path;
      if (absl::Status s = t->waits->WriteProfile(out, winfo); !s.ok()) return s;
      written.push_back(out);
      continue;
    }
    ParkProfileInfo pinfo;
    pinfo.binary_path = t->plan->path;
    pinfo.time_nanos = info.time_nanos;
    pinfo.duration_nanos = info.duration_nanos;
    if (absl::Status s = t->parks->WriteProfile(out, pinfo); !s.ok()) return s;
    written.push_back(out);
  }
  return written;
}

absl::Status Recorder::Write(const std::string& path, PprofInfo info) {
  // Whole events lost in the kernel or in decoding: counted, never silent.
  SessionCounters total = evicted_counters_;
  for (const Traced& t : processes_) {
    const SessionCounters& c = t.session ? t.session->Counters() : t.final_counters;
    for (int k = 0; k < GEP_CTR__COUNT; ++k) total.bpf[k] += c.bpf[k];
    total.decode_errors += c.decode_errors;
  }
  for (int c = GEP_CTR_DROP_RINGBUF; c <= GEP_CTR_DROP_NO_SITE; ++c) {
    auto counter = static_cast<gep_counter>(c);
    if (total[counter] != 0) profile_.SetDrops(CounterName(counter), total[counter]);
  }
  if (shared_) total.decode_errors += shared_->malformed();
  if (total.decode_errors != 0) profile_.SetDrops("decode_errors", total.decode_errors);
  // Made after their process's session closed, before its probes were off.
  if (shared_ && shared_->orphans() != 0) profile_.SetDrops("after_close", shared_->orphans());
  std::vector<ProfiledProcess> procs;
  for (const Traced& t : processes_) {
    ProfiledProcess& p = procs.emplace_back();
    p.binary = t.plan->binary.get();
    p.path = t.plan->path;
    p.pid = static_cast<uint32_t>(t.pid);
  }
  info.probes_attached = probes();
  info.budget = BudgetSummary();
  return WritePprof(profile_, procs, info, path);
}

}  // namespace goerrprof::profiler
