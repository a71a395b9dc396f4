// `goerrprof agent`: a node agent. Finds the Go processes of this machine
// (rescanning /proc), records their error creations, and serves the counts
// as Prometheus metrics until SIGINT, SIGTERM or --duration. On the way out
// every probe is detached.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "agent/agent.h"
#include "agent/error_window.h"
#include "agent/goroutine_counts.h"
#include "agent/goroutine_page.h"
#include "agent/http_server.h"
#include "agent/metrics.h"
#include "agent/otlp_exporter.h"
#include "cli/commands.h"
#include "plan/plan_cache.h"
#include "pprof/otlp_profile.h"
#include "session/pid_namespace.h"
#include "session/process_follower.h"

// Shared with record (same meaning): defined in record_command.cc.
ABSL_DECLARE_FLAG(absl::Duration, duration);
ABSL_DECLARE_FLAG(std::string, plan_cache);
ABSL_DECLARE_FLAG(std::string, max_overhead);
ABSL_DECLARE_FLAG(int32_t, max_chain);
ABSL_DECLARE_FLAG(int64_t, ringbuf_bytes);
ABSL_DECLARE_FLAG(bool, toolchain);
ABSL_DECLARE_FLAG(std::string, goroutines);
ABSL_DECLARE_FLAG(std::string, messages);

ABSL_FLAG(std::string, listen, "127.0.0.1:9464",
          "agent: where /metrics is served (host:port; port 0 picks a free one)");
ABSL_FLAG(int32_t, max_processes, 256,
          "agent: most processes attached at once; more are counted as over_limit");
ABSL_FLAG(int32_t, max_memory, 0,
          "agent: a soft cap on the agent's resident memory in MiB (0: none); at or past it "
          "new processes are not attached but counted as over_limit until it is below again");
ABSL_FLAG(int32_t, max_sites, 200,
          "agent: most goerrprof_errors_total series per binary; the rest sum under \"other\"");
ABSL_FLAG(absl::Duration, rescan, absl::ZeroDuration(),
          "agent: how often /proc is rescanned (0: every 2s when exec events report new "
          "programs at once, every 250ms without them)");
ABSL_FLAG(std::string, include, "",
          "agent: record only executables whose base name or full path fully matches this "
          "ECMAScript regex (empty: all)");
ABSL_FLAG(std::string, exclude, "",
          "agent: never record executables whose base name or full path fully matches this "
          "ECMAScript regex");
ABSL_FLAG(std::string, include_cgroup, "",
          "agent: record only processes whose cgroup path (the 0:: line of /proc/PID/cgroup) "
          "fully matches this ECMAScript regex (empty: all)");
ABSL_FLAG(std::string, exclude_cgroup, "",
          "agent: never record processes whose cgroup path fully matches this ECMAScript regex");

ABSL_FLAG(std::string, otlp_endpoint, "",
          "agent: push the errors of every --otlp-interval to this OpenTelemetry collector as "
          "an OTLP profile over OTLP/HTTP (http://host:port[/path]; the path "
          "/v1development/profiles when none; empty: off)");
ABSL_FLAG(absl::Duration, otlp_interval, absl::Seconds(60),
          "agent: how much time each OTLP push covers (1s to 1h)");

namespace goerrprof::profiler {
namespace {

volatile sig_atomic_t g_agent_stop = 0;

void OnAgentStop(int sig) { g_agent_stop = sig; }

// How often /proc is rescanned for new processes: often without exec
// events, else only to catch what they cannot tell (exits, for eviction).
constexpr absl::Duration kRescanAlone = absl::Milliseconds(250);
constexpr absl::Duration kRescanWithExecs = absl::Seconds(2);

absl::StatusOr<AgentOptions> AgentOptionsFromFlags() {
  AgentOptions o;
  o.record.max_chain = static_cast<uint32_t>(absl::GetFlag(FLAGS_max_chain));
  o.record.ringbuf_bytes = static_cast<uint32_t>(absl::GetFlag(FLAGS_ringbuf_bytes));
  o.record.toolchain = absl::GetFlag(FLAGS_toolchain);
  // Detaching an exited process's probes must not stall scrapes (per-probe
  // perf links before Linux 6.6 take an RCU grace period each).
  o.record.detach_in_background = true;
  o.record.shared_maps = true;  // one ring and one scratch, not one per process
  // Messages reach /debug/pprof/errors and OTLP only when asked for: on a
  // node they are user data, and each site keeps up to 1 000 of them.
  o.record.messages = MessagePolicy::kOff;
  if (!absl::GetFlag(FLAGS_messages).empty()) {
    auto messages = ParseMessagePolicy(absl::GetFlag(FLAGS_messages));
    if (!messages.ok()) return messages.status();
    o.record.messages = *messages;
  }
  std::string pct(absl::StripSuffix(absl::GetFlag(FLAGS_max_overhead), "%"));
  double v = 0;
  if (!absl::SimpleAtod(pct, &v) || !(v >= 0) || v > 100) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--max-overhead must be a percentage from 0 to 100, not \"",
        absl::GetFlag(FLAGS_max_overhead), "\""));
  }
  o.record.max_overhead = v / 100;
  std::string cache = absl::GetFlag(FLAGS_plan_cache);
  o.record.plan_cache_dir = cache == "auto" ? PlanCache::DefaultDir() : cache == "off" ? "" : cache;
  if (absl::GetFlag(FLAGS_max_processes) < 1) {
    return absl::InvalidArgumentError("--max-processes must be at least 1");
  }
  o.max_processes = static_cast<size_t>(absl::GetFlag(FLAGS_max_processes));
  if (absl::GetFlag(FLAGS_max_memory) < 0) {
    return absl::InvalidArgumentError("--max-memory must be 0 (none) or a size in MiB");
  }
  o.max_memory_bytes = static_cast<uint64_t>(absl::GetFlag(FLAGS_max_memory)) << 20;
  o.include = absl::GetFlag(FLAGS_include);
  o.exclude = absl::GetFlag(FLAGS_exclude);
  o.include_cgroup = absl::GetFlag(FLAGS_include_cgroup);
  o.exclude_cgroup = absl::GetFlag(FLAGS_exclude_cgroup);
  return o;
}

// Profile windows in progress, by request id; at most this many at once.
constexpr size_t kMaxWindows = 4;
using Windows = std::map<uint64_t, std::unique_ptr<ErrorWindow>>;

HttpResponse Serve(const std::string& target, uint64_t id, Agent& agent, ErrorMetrics& errors,
                   ErrorMetrics& panics, Windows& windows, const OtlpExporter* otlp, GoroutineCounts* goroutines) {
  HttpResponse r;
  std::string path = target.substr(0, target.find('?'));
  if (path == "/debug/pprof/errors") {
    auto seconds = WindowSeconds(target);
    if (!seconds.ok()) {
      r.status = 400;
      r.body = absl::StrCat(seconds.status().message(), "\n");
    } else if (windows.size() >= kMaxWindows) {
      r.status = 503;
      r.body = "too many profiles in progress\n";
    } else {
      windows[id] = std::make_unique<ErrorWindow>(agent.recorder(), absl::Seconds(*seconds));
      r.deferred = true;
    }
    return r;
  }
  if (path == "/debug/pprof/goroutines") return GoroutinePage(target, agent.recorder());
  if (path != "/metrics") {
    r.status = 404;
    r.body = "not found; try /metrics, /debug/pprof/errors?seconds=N or "
             "/debug/pprof/goroutines?pid=P\n";
    return r;
  }
  for (ErrorMetrics* m : {&errors, &panics}) {
    absl::Status s = m->Update(agent.recorder());
    if (s.ok()) continue;
    // The rest of the page is still worth serving; the counts stand as last made.
    std::fprintf(stderr, "goerrprof: agent: counting errors: %s\n",
                 std::string(s.message()).c_str());
  }
  r.content_type = "text/plain; version=0.0.4; charset=utf-8";
  if (goroutines != nullptr) goroutines->Refresh(agent.recorder());
  r.body = RenderMetrics(agent, errors, panics, windows.size(), otlp, goroutines);
  return r;
}

// The errors of one period, pushed as OTLP; nothing for a period without
// errors (a collector drops empty batches anyway).
void PushWindow(const ErrorWindow& w, const Recorder& rec, const ErrorWindow::ContainerOf& cof,
                const OtlpResource& resource, OtlpExporter& otlp) {
  auto profile = w.Build(rec, cof);
  absl::StatusOr<std::string> request =
      profile.ok() ? PprofToOtlp(*profile, resource) : profile.status();
  if (!request.ok()) {
    std::fprintf(stderr, "goerrprof: agent: OTLP profile: %s\n",
                 std::string(request.status().message()).c_str());
    return;
  }
  if (profile->sample_size() > 0) otlp.Push(std::move(*request));
}

}  // namespace

int RunAgent(const std::vector<std::string>& args) {
  if (!args.empty()) return Fail(absl::InvalidArgumentError("agent takes no arguments"));
  auto options = AgentOptionsFromFlags();
  if (!options.ok()) return Fail(options.status());
  // sample: goroutine counts from outside snapshots; park tracing's three
  // traps per park are no thing to put on every process of a node.
  const std::string goroutine_mode = absl::GetFlag(FLAGS_goroutines);
  if (goroutine_mode != "off" && goroutine_mode != "sample") {
    return Fail(absl::InvalidArgumentError(absl::StrCat(
        "agent: --goroutines must be sample or off, not \"", goroutine_mode, "\"")));
  }
  std::unique_ptr<GoroutineCounts> goroutines;
  if (goroutine_mode == "sample") goroutines = std::make_unique<GoroutineCounts>();
  if (absl::GetFlag(FLAGS_max_sites) < 1) {
    return Fail(absl::InvalidArgumentError("--max-sites must be at least 1"));
  }
  std::unique_ptr<OtlpExporter> otlp;
  OtlpResource resource;
  const absl::Duration otlp_every = absl::GetFlag(FLAGS_otlp_interval);
  if (!absl::GetFlag(FLAGS_otlp_endpoint).empty()) {
    auto to = ParseOtlpEndpoint(absl::GetFlag(FLAGS_otlp_endpoint));
    if (!to.ok()) return Fail(to.status());
    if (otlp_every < absl::Seconds(1) || otlp_every > absl::Hours(1)) {
      return Fail(absl::InvalidArgumentError("--otlp-interval must be from 1s to 1h"));
    }
    otlp = std::make_unique<OtlpExporter>(*to);
    char host[256] = {};
    if (gethostname(host, sizeof(host) - 1) == 0) resource.attributes.emplace_back("host.name", host);
  }
  // /proc must be this PID namespace's own for its pids to be what we attach.
  if (absl::Status s = CheckProcIsOurs(); !s.ok()) return Fail(s);
  auto agent = Agent::Create(*options);
  if (!agent.ok()) return Fail(agent.status());
  (*agent)->set_log([](const std::string& line) {
    std::fprintf(stderr, "goerrprof: agent: %s\n", line.c_str());
  });
  auto server = HttpServer::Listen(absl::GetFlag(FLAGS_listen));
  if (!server.ok()) return Fail(server.status());
  ErrorMetrics errors(static_cast<size_t>(absl::GetFlag(FLAGS_max_sites)));
  ErrorMetrics panics(static_cast<size_t>(absl::GetFlag(FLAGS_max_sites)), /*panics=*/true);

  struct sigaction sa = {};
  sa.sa_handler = OnAgentStop;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);

  // New programs are looked at as they exec (an exec tracepoint, stopping
  // nothing); without it (no privilege, an old kernel) only the rescan finds them.
  std::unique_ptr<ProcessFollower> execs;
  if (auto f = ProcessFollower::Start(ProcessFollower::Mode::kEveryExec); f.ok()) {
    execs = std::move(*f);
  } else {
    std::fprintf(stderr, "goerrprof: agent: no exec events (%s): rescanning /proc only\n",
                 std::string(f.status().message()).c_str());
  }
  absl::Duration rescan = absl::GetFlag(FLAGS_rescan);
  if (rescan <= absl::ZeroDuration()) rescan = execs ? kRescanWithExecs : kRescanAlone;
  auto container_of = [&](pid_t pid, std::string* container, std::string* pod) {
    if (const CgroupIdentity* c = (*agent)->CgroupOf(pid)) {
      *container = c->container_id;
      *pod = c->pod_uid;
    }
  };

  const absl::Time start = absl::Now();
  (*agent)->Rescan();  // the processes already running
  // The readiness line (tests and scripts wait for it): startup scan done,
  // /metrics answering.
  std::fprintf(stderr, "goerrprof: agent: listening on %s (%zu processes attached)\n",
               (*server)->address().c_str(), (*agent)->recorder().live_sessions());
  // From here on a new executable is planned off this loop: scrapes and
  // the other processes never wait for it (up to a second for a large one
  // without a cached plan).
  (*agent)->PlanInBackground();
  const absl::Duration limit = absl::GetFlag(FLAGS_duration);
  absl::Time next_scan = absl::Now() + rescan;
  Windows windows;
  auto handler = [&](const std::string&, const std::string& target, uint64_t id) {
    return Serve(target, id, **agent, errors, panics, windows, otlp.get(), goroutines.get());
  };
  // The OTLP push's period in progress; the next starts as it ends, so
  // consecutive pushes cover every error once.
  std::unique_ptr<ErrorWindow> period;
  if (otlp) period = std::make_unique<ErrorWindow>((*agent)->recorder(), otlp_every);
  std::string stop = "interrupted";
  for (;;) {
    absl::Time now = absl::Now();
    int wait_ms = static_cast<int>(absl::ToInt64Milliseconds(next_scan - now));
    wait_ms = std::max(0, std::min(wait_ms, (*agent)->max_wait_ms(50)));
    // A window ends on time (give or take a poll).
    for (const auto& [id, w] : windows) {
      wait_ms = std::min<int>(wait_ms, std::max<int64_t>(0, absl::ToInt64Milliseconds(w->due() - now)));
    }
    if (period) {
      wait_ms = std::min<int>(wait_ms,
                              std::max<int64_t>(0, absl::ToInt64Milliseconds(period->due() - now)));
    }
    (*server)->Poll(wait_ms, handler);
    if (execs) {
      auto n = execs->Poll(0, [&](const ExecEvent& e) { (*agent)->OnExec(e.pid); });
      if (!n.ok()) {
        std::fprintf(stderr, "goerrprof: agent: exec events: %s\n",
                     std::string(n.status().message()).c_str());
      }
    }
    (*agent)->CollectPlans();
    if (absl::Status s = (*agent)->Poll(); !s.ok()) {
      std::fprintf(stderr, "goerrprof: agent: %s\n", std::string(s.message()).c_str());
    }
    now = absl::Now();
    for (auto it = windows.begin(); it != windows.end();) {
      if (now < it->second->due()) {
        ++it;
        continue;
      }
      HttpResponse r;
      auto profile = it->second->Finish((*agent)->recorder(), container_of);
      if (profile.ok()) {
        r.content_type = "application/octet-stream";
        r.body = std::move(*profile);
      } else {
        r.status = 500;
        r.body = absl::StrCat(profile.status().message(), "\n");
      }
      (*server)->Complete(it->first, r);
      windows.erase(it++);
    }
    if (period && now >= period->due()) {
      PushWindow(*period, (*agent)->recorder(), container_of, resource, *otlp);
      period = std::make_unique<ErrorWindow>((*agent)->recorder(), otlp_every);
    }
    if (now >= next_scan) {
      // Exited processes are forgotten (memory follows the live ones), what
      // is served of them folded in first; before Rescan, which drops what
      // the agent knows of them (their cgroups).
      if ((*agent)->recorder().closed_sessions() > 0) {
        Recorder::Evicted gone = (*agent)->EvictExited();
        for (ErrorMetrics* m : {&errors, &panics}) {
          if (absl::Status s = m->Fold(gone); !s.ok()) {
            std::fprintf(stderr, "goerrprof: agent: counting errors of exited processes: %s\n",
                         std::string(s.message()).c_str());
          }
        }
        for (auto& [id, w] : windows) w->Fold(gone, container_of);
        if (period) period->Fold(gone, container_of);
      }
      (*agent)->Rescan();
      next_scan = now + rescan;
    }
    if (g_agent_stop != 0) {
      stop = g_agent_stop == SIGINT ? "interrupted" : "terminated";
      break;
    }
    if (limit > absl::ZeroDuration() && now - start >= limit) {
      stop = "duration elapsed";
      break;
    }
  }
  (*agent)->DetachAll();  // every probe off: the targets run free
  const Recorder& rec = (*agent)->recorder();
  if (otlp) {
    // The last period's errors too; then what is queued is sent (bounded
    // by the exporter's timeout) before the summary counts it.
    PushWindow(*period, rec, container_of, resource, *otlp);
    otlp->Finish();
    OtlpExporter::Counts c = otlp->counts();
    std::fprintf(stderr, "goerrprof: agent: OTLP to %s: %llu sent, %llu failed, %llu dropped%s%s\n",
                 otlp->endpoint().url().c_str(), static_cast<unsigned long long>(c.sent),
                 static_cast<unsigned long long>(c.failed),
                 static_cast<unsigned long long>(c.dropped), c.failed > 0 ? "; last: " : "",
                 c.last_error.c_str());
  }
  std::fprintf(stderr,
               "goerrprof: agent: %s after %s: %llu errors in %zu processes, %llu dropped\n",
               stop.c_str(), absl::FormatDuration(absl::Trunc(absl::Now() - start,
                                                             absl::Milliseconds(1))).c_str(),
               static_cast<unsigned long long>(rec.errors()), rec.processes(),
               static_cast<unsigned long long>(rec.dropped()));
  return 0;
}

}  // namespace goerrprof::profiler
