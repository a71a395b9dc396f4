// `goerrprof record`: attach to a running Go process, capture every error
// creation until Ctrl-C, SIGTERM, --duration or the target's exit, then
// write a pprof profile. One lifecycle: plan → start session → poll →
// write; the session's destructor detaches every probe on every path.
#include <limits.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "goabi/g_layout.h"
#include "profiler/bpf_session.h"
#include "profiler/commands.h"
#include "profiler/error_profile.h"
#include "profiler/flags.h"
#include "profiler/pprof_writer.h"
#include "profiler/probe_plan.h"
#include "symbolizer/go_binary.h"

ABSL_FLAG(absl::Duration, duration, absl::ZeroDuration(),
          "record: stop after this long (0: until Ctrl-C or the target exits)");
ABSL_FLAG(std::string, o, "errors.pb.gz", "record: the profile to write");
ABSL_FLAG(int32_t, max_chain, 8, "record: how deep to follow Unwrap chains");
ABSL_FLAG(int64_t, ringbuf_bytes, 8 << 20,
          "record: kernel ring buffer size; events that do not fit are dropped and counted");

namespace goerrprof::profiler {
namespace {

volatile sig_atomic_t g_stop_signal = 0;

void OnStopSignal(int sig) { g_stop_signal = sig; }

void InstallStopHandlers() {
  struct sigaction sa = {};
  sa.sa_handler = OnStopSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

struct Plan {
  std::unique_ptr<symbolizer::GoBinary> binary;
  std::vector<symbolizer::ErrorType> types;
  SessionConfig config;
  size_t skipped = 0;
};

absl::StatusOr<Plan> MakePlan(pid_t pid) {
  Plan plan;
  std::string exe = absl::StrCat("/proc/", pid, "/exe");
  auto bin = symbolizer::GoBinary::Open(exe);
  if (!bin.ok()) {
    // An exited but unreaped process keeps /proc/PID without an exe.
    char target[PATH_MAX];
    if (readlink(exe.c_str(), target, sizeof(target)) < 0 && errno == ENOENT) {
      return absl::FailedPreconditionError(
          absl::StrCat("process ", pid, " has exited; nothing to record"));
    }
    return bin.status();
  }
  plan.binary = std::move(*bin);
  auto reader = plan.binary->types();
  if (!reader.ok()) return reader.status();
  auto types = symbolizer::FindErrorTypes(**reader);
  if (!types.ok()) return types.status();
  plan.types = std::move(*types);
  auto probes = PlanCreationProbes(*plan.binary, plan.types);
  if (!probes.ok()) return probes.status();
  plan.skipped = probes->skipped.size();
  auto layouts = LayoutsFor(*plan.binary, plan.types);
  if (!layouts.ok()) return layouts.status();
  auto g = goabi::GLayoutFor(plan.binary->version());
  if (!g.ok()) return g.status();

  SessionConfig& c = plan.config;
  c.pid = pid;
  c.executable = exe;
  c.layouts = std::move(*layouts);
  for (const CreationProbe& p : probes->probes) {
    ProbeSpec spec;
    spec.vaddr = p.addr;
    spec.cookie = p.cookie;
    // Where the frame is gone (or never made) the frame-pointer walk would
    // skip the caller: its return address is taken from [rsp].
    if (p.frameless) spec.cookie |= GEP_LOC_F_FRAMELESS;
    spec.eface = p.kind == CreationProbe::kEface;
    // A statically known word (GEP_LOC_CONST) is given by the plan.
    if (GEP_LOC_KIND(p.tab_loc) == GEP_LOC_CONST) spec.const_type = p.type;
    c.probes.push_back(spec);
  }
  c.max_chain = static_cast<uint32_t>(absl::GetFlag(FLAGS_max_chain));
  c.ringbuf_bytes = static_cast<uint32_t>(absl::GetFlag(FLAGS_ringbuf_bytes));
  c.g_source = g->g_in_r14 ? GSource::kR14 : GSource::kTls;
  c.tls_g_offset = g->tls_g_offset;
  c.goid_offset = g->goid;
  c.gopc_offset = g->gopc;
  c.labels_offset = g->labels;
  c.label_storage = g->label_storage;
  return plan;
}

void PrintStatus(const SessionCounters& c, absl::Duration elapsed) {
  std::fprintf(stderr, "\rgoerrprof: %llu errors, %llu dropped, %.1fs   ",
               static_cast<unsigned long long>(c.delivered),
               static_cast<unsigned long long>(c.dropped_events()),
               absl::ToDoubleSeconds(elapsed));
}

}  // namespace

int RunRecord(const std::vector<std::string>& args) {
  auto pid_flag = PidFlag();
  if (!pid_flag.ok()) return Fail(pid_flag.status());
  int64_t pid = *pid_flag;
  if (pid == 0) return Fail(absl::InvalidArgumentError("record needs --pid PID"));
  if (auto path = TargetPath(args); !path.ok()) return Fail(path.status());
  auto plan = MakePlan(static_cast<pid_t>(pid));
  if (!plan.ok()) return Fail(plan.status());

  InstallStopHandlers();
  absl::Time start = absl::Now();
  auto session = BpfSession::Start(plan->config);
  if (!session.ok()) return Fail(session.status());
  absl::Duration attach_time = absl::Now() - start;

  std::fprintf(stderr, "goerrprof: recording pid %lld: %zu probes attached in %s\n",
               static_cast<long long>(pid), (*session)->attach_stats().probes,
               absl::FormatDuration(attach_time).c_str());
  ErrorProfile::Options options;
  options.render.go_version = plan->binary->version();  // errno texts vary by release
  ErrorProfile profile(options);
  absl::Duration limit = absl::GetFlag(FLAGS_duration);
  bool tty = isatty(STDERR_FILENO);
  absl::Time recording = absl::Now(), last_status = absl::InfinitePast();
  std::string stop_reason = "interrupted";
  for (;;) {
    auto polled = (*session)->Poll(100, [&](const CapturedError& e) { profile.Add(e); });
    if (!polled.ok() && !absl::IsCancelled(polled.status())) return Fail(polled.status());
    absl::Time now = absl::Now();
    if (tty && now - last_status > absl::Milliseconds(250)) {
      PrintStatus((*session)->Counters(), now - recording);
      last_status = now;
    }
    if (g_stop_signal != 0) {
      stop_reason = g_stop_signal == SIGINT ? "interrupted" : "terminated";
      break;
    }
    if (limit > absl::ZeroDuration() && now - recording >= limit) {
      stop_reason = "duration elapsed";
      break;
    }
    if ((*session)->target_exited()) {
      (*session)->Poll(0, [&](const CapturedError& e) { profile.Add(e); }).IgnoreError();
      stop_reason = "target exited";
      break;
    }
  }
  absl::Duration recorded = absl::Now() - recording;
  SessionCounters counters = (*session)->Counters();
  size_t probes = (*session)->attach_stats().probes;
  session->reset();  // detach before writing: the target runs free again
  if (tty) std::fputc('\n', stderr);

  // Whole events lost in the kernel or in decoding: counted, never silent.
  for (int c = GEP_CTR_DROP_RINGBUF; c <= GEP_CTR_DROP_NO_SITE; ++c) {
    auto counter = static_cast<gep_counter>(c);
    if (counters[counter] != 0) profile.SetDrops(CounterName(counter), counters[counter]);
  }
  if (counters.decode_errors != 0) profile.SetDrops("decode_errors", counters.decode_errors);
  PprofInfo info;
  info.time_nanos = absl::ToUnixNanos(recording);
  info.duration_nanos = absl::ToInt64Nanoseconds(recorded);
  info.probes_attached = probes;
  std::string out = absl::GetFlag(FLAGS_o);
  if (auto s = WritePprof(profile, *plan->binary, info, out); !s.ok()) return Fail(s);
  std::fprintf(stderr,
               "goerrprof: %s: %llu errors at %zu sites, %llu dropped, %zu probes attached "
               "in %s (%zu references unplanned) -> %s\n",
               stop_reason.c_str(), static_cast<unsigned long long>(counters.delivered),
               profile.sites().size(), static_cast<unsigned long long>(counters.dropped_events()),
               probes, absl::FormatDuration(attach_time).c_str(), plan->skipped, out.c_str());
  return 0;
}

}  // namespace goerrprof::profiler
