// `goerrprof record`: capture every error creation of a running Go process
// (--pid) until Ctrl-C, SIGTERM, --duration or its exit; or of every Go
// process a command runs (`record -- COMMAND ARGS...`) until the command
// exits. Then write one pprof profile. The Recorder's sessions detach every
// probe on every path.
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "base/fault_point.h"
#include "cli/commands.h"
#include "session/capabilities.h"
#include "session/kernel_features.h"
#include "session/exec_guardian.h"
#include "session/process_follower.h"
#include "plan/plan_cache.h"
#include "pprof/profile_file.h"
#include "record/recorder.h"

ABSL_FLAG(absl::Duration, duration, absl::ZeroDuration(),
          "record: stop after this long (0: until Ctrl-C or the target exits)");
ABSL_FLAG(std::string, o, "errors.pb.gz", "record: the profile to write");
ABSL_FLAG(std::string, plan_cache, "auto",
          "record: where probe plans are cached (auto: $XDG_CACHE_HOME/goerrprof/plans; off)");
ABSL_FLAG(std::string, max_overhead, "1%",
          "record: what the error probes may cost each target process, in percent of one CPU "
          "(\"1%\", \"0.5\"); sites over it are detached for a while and their counts "
          "estimated (errors.estimated=true); 0: no limit, every creation observed");
ABSL_FLAG(int32_t, max_chain, 8, "record: how deep to follow Unwrap chains");
ABSL_FLAG(int64_t, ringbuf_bytes, 8 << 20,
          "record: kernel ring buffer size; events that do not fit are dropped and counted");
// A string: sample, trace or off. A bare --goroutines means sample (main
// rewrites it before absl parses: NormalizeRecordFlags).
ABSL_FLAG(std::string, goroutines, "off",
          "record: also profile where goroutines wait, why and for how long: sample (outside "
          "snapshots --hz times a second, no probe; a bare --goroutines), trace (every park, "
          "its waker and exact times: uprobes on the scheduler, costly for code that blocks "
          "often) or off");
ABSL_FLAG(int32_t, hz, 19, "record --goroutines=sample: snapshots per second (1-1000)");
ABSL_FLAG(std::string, goroutines_o, "",
          "record --goroutines: the wait profile (default: goroutines.pb.gz beside -o)");
ABSL_FLAG(bool, toolchain, false,
          "record -- COMMAND: also record the Go toolchain's own processes (go, compile, vet...)");
ABSL_FLAG(std::string, messages, "",
          "record, agent: what the profile keeps of error messages and goroutine labels (user "
          "data): full, redact (numbers, addresses, quoted text, path tails replaced; cut "
          "short) or off (none); default full for record, off for agent");

namespace goerrprof::profiler {
namespace {

volatile sig_atomic_t g_stop_signal = 0;
volatile pid_t g_command_pid = 0;

void OnStopSignal(int sig) { g_stop_signal = sig; }

void InstallStopHandlers() {
  struct sigaction sa = {};
  sa.sa_handler = OnStopSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

// Command mode: signals sent to goerrprof by a process (kill, a CI runner's
// timeout) go on to the command. Those from the terminal (si_code
// SI_KERNEL) reached the command already: it is in our process group.
constexpr int kForwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};

void OnForwardSignal(int sig, siginfo_t* info, void*) {
  if (info != nullptr && info->si_code > 0) return;
  if (g_command_pid > 0) kill(g_command_pid, sig);
}

void InstallForwarders() {
  struct sigaction sa = {};
  sa.sa_sigaction = OnForwardSignal;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  for (int sig : kForwarded) sigaction(sig, &sa, nullptr);
}

absl::StatusOr<RecordOptions> OptionsFromFlags() {
  RecordOptions o;
  const std::string policy = absl::GetFlag(FLAGS_messages);
  auto messages = ParseMessagePolicy(policy.empty() ? "full" : policy);
  if (!messages.ok()) return messages.status();
  o.messages = *messages;
  o.max_chain = static_cast<uint32_t>(absl::GetFlag(FLAGS_max_chain));
  o.ringbuf_bytes = static_cast<uint32_t>(absl::GetFlag(FLAGS_ringbuf_bytes));
  o.toolchain = absl::GetFlag(FLAGS_toolchain);
  {
    std::string pct(absl::StripSuffix(absl::GetFlag(FLAGS_max_overhead), "%"));
    double v = 0;
    if (!absl::SimpleAtod(pct, &v) || !(v >= 0) || v > 100) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--max-overhead must be a percentage from 0 to 100, not \"",
          absl::GetFlag(FLAGS_max_overhead), "\""));
    }
    o.max_overhead = v / 100;
  }
  std::string mode = absl::GetFlag(FLAGS_goroutines);
  if (mode != "sample" && mode != "trace" && mode != "off") {
    return absl::InvalidArgumentError(
        absl::StrCat("--goroutines must be sample, trace or off, not \"", mode, "\""));
  }
  o.goroutines = mode == "trace";
  o.goroutine_samples = mode == "sample";
  o.goroutine_hz = absl::GetFlag(FLAGS_hz);
  if (o.goroutine_hz < 1 || o.goroutine_hz > 1000) {
    return absl::InvalidArgumentError(
        absl::StrCat("--hz must be between 1 and 1000, not ", o.goroutine_hz));
  }
  std::string cache = absl::GetFlag(FLAGS_plan_cache);
  o.plan_cache_dir = cache == "auto" ? PlanCache::DefaultDir() : cache == "off" ? "" : cache;
  return o;
}

void WarnOverhead(const RecordOptions& options) {
  if (options.goroutines) std::fprintf(stderr, "%s\n", ParkTracer::OverheadWarning().c_str());
}

// --goroutines_o, or goroutines.pb.gz in the directory of the errors profile.
std::string ParksPath(const std::string& errors_path) {
  std::string flag = absl::GetFlag(FLAGS_goroutines_o);
  if (!flag.empty()) return flag;
  size_t slash = errors_path.rfind('/');
  return (slash == std::string::npos ? "" : errors_path.substr(0, slash + 1)) +
         "goroutines.pb.gz";
}

// The overhead budget's line, when it had to act; its failures.
void PrintBudget(const Recorder& rec) {
  for (const std::string& w : rec.warnings()) {
    if (absl::StrContains(w, "overhead budget")) std::fprintf(stderr, "goerrprof: %s\n", w.c_str());
  }
  if (rec.budget_sites_off() > 0) {
    std::fprintf(stderr, "goerrprof: %s\n", rec.BudgetSummary().c_str());
  }
}

// Writes the park (or sampled wait) profiles and says so; "" when neither
// was asked for.
std::string WriteParks(Recorder& rec, const std::string& errors_path, const PprofInfo& info) {
  const std::string mode = absl::GetFlag(FLAGS_goroutines);
  if (mode == "off") return "";
  for (const std::string& w : rec.warnings()) std::fprintf(stderr, "goerrprof: %s\n", w.c_str());
  auto written = rec.WriteParks(ParksPath(errors_path), info);
  if (!written.ok()) {
    std::fprintf(stderr, "goerrprof: %s\n", std::string(written.status().message()).c_str());
    return mode == "sample" ? "; goroutine waits not written" : "; goroutine parks not written";
  }
  if (mode == "sample") {
    return absl::StrCat("; ", rec.wait_snapshots(), " goroutine snapshots at ",
                        absl::GetFlag(FLAGS_hz), " Hz, ", rec.wait_snapshots_failed(),
                        " failed -> ",
                        written->empty() ? "nothing written" : absl::StrJoin(*written, " "));
  }
  return absl::StrCat("; ", rec.parks(), " goroutine parks, ", rec.park_drops(), " dropped -> ",
                      written->empty() ? "nothing written" : absl::StrJoin(*written, " "));
}

// Writes the profile to `wanted`; when that fails at the end (disk full,
// directory gone), to $TMPDIR or /tmp instead, so what was recorded is not
// lost. Says so in one line, sets *failure, and returns where it went
// (empty: nowhere).
std::string WriteOrRescue(Recorder& rec, const std::string& wanted, const PprofInfo& info,
                          absl::Status* failure) {
  *failure = rec.Write(wanted, info);
  if (failure->ok()) return wanted;
  const char* dir = std::getenv("TMPDIR");
  std::string rescue = absl::StrCat(dir != nullptr && *dir != '\0' ? dir : "/tmp",
                                    "/goerrprof-", getpid(), ".pb.gz");
  bool saved = rescue != wanted && rec.Write(rescue, info).ok();
  std::fprintf(stderr, "goerrprof: %s%s\n", std::string(failure->message()).c_str(),
               saved ? absl::StrCat("; the profile was saved to ", rescue, " instead").c_str()
                     : "");
  return saved ? rescue : "";
}

// Fails a recording before it starts when its output cannot be written.
absl::Status CheckOutput() {
  absl::Status s = CheckWritable(absl::GetFlag(FLAGS_o));
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat(s.message(), "; nothing recorded"));
}

void PrintStatus(const Recorder& rec, absl::Duration elapsed) {
  std::fprintf(stderr, "\rgoerrprof: %llu errors, %llu dropped, %.1fs   ",
               static_cast<unsigned long long>(rec.delivered()),
               static_cast<unsigned long long>(rec.dropped()), absl::ToDoubleSeconds(elapsed));
}

// A kernel without something the probes need gets that named, as `doctor`
// names it ("record: this kernel lacks bpf_loop (needs Linux 5.17+); ...").
int FailRecord(const absl::Status& status) {
  if (!IsMissingKernelFeature(status)) return Fail(status);
  std::fprintf(stderr, "goerrprof: record: %s\n", std::string(status.message()).c_str());
  return 1;
}

int RecordPid(pid_t pid, const RecordOptions& options) {
  if (absl::Status s = CheckOutput(); !s.ok()) return Fail(s);
  WarnOverhead(options);
  Recorder rec(options);
  InstallStopHandlers();
  absl::Time start = absl::Now();
  if (absl::Status s = rec.Attach(pid); !s.ok()) return FailRecord(s);
  absl::Duration attach_time = absl::Now() - start;
  std::fprintf(stderr, "goerrprof: recording pid %d: %zu probes attached in %s%s\n", pid,
               rec.probes(), absl::FormatDuration(attach_time).c_str(),
               rec.plans_cached() > 0 ? " (plan from cache)" : "");
  FaultPoint("attached");

  absl::Duration limit = absl::GetFlag(FLAGS_duration);
  bool tty = isatty(STDERR_FILENO);
  absl::Time recording = absl::Now(), last_status = absl::InfinitePast();
  std::string stop_reason = "interrupted";
  for (;;) {
    if (absl::Status s = rec.Poll(rec.max_wait_ms(100)); !s.ok()) return Fail(s);
    absl::Time now = absl::Now();
    if (tty && now - last_status > absl::Milliseconds(250)) {
      PrintStatus(rec, now - recording);
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
    if (rec.exited(pid)) {
      stop_reason = "target exited";
      break;
    }
  }
  absl::Duration recorded = absl::Now() - recording;
  rec.DetachAll();  // detach before writing: the target runs free again
  if (tty) std::fputc('\n', stderr);

  PprofInfo info;
  info.time_nanos = absl::ToUnixNanos(recording);
  info.duration_nanos = absl::ToInt64Nanoseconds(recorded);
  std::string wanted = absl::GetFlag(FLAGS_o);
  absl::Status failure;
  std::string out = WriteOrRescue(rec, wanted, info, &failure);
  std::string parks = WriteParks(rec, wanted, info);
  PrintBudget(rec);
  std::fprintf(stderr,
               "goerrprof: %s: %llu errors and %llu panics at %zu sites, %llu dropped, %zu probes "
               "attached in %s (%zu references unplanned) -> %s%s\n",
               stop_reason.c_str(), static_cast<unsigned long long>(rec.errors()),
               static_cast<unsigned long long>(rec.panics()),
               rec.profile().sites().size(), static_cast<unsigned long long>(rec.dropped()),
               rec.probes(), absl::FormatDuration(attach_time).c_str(), rec.unplanned(),
               out.empty() ? "nothing written" : out.c_str(), parks.c_str());
  return failure.ok() ? 0 : 1;
}

// fork + exec of the command, held at a gate until it is followed so its
// own exec is seen. Returns the child's pid.
absl::StatusOr<pid_t> SpawnGated(const std::vector<std::string>& command, ProcessFollower& f) {
  int gate[2];
  if (pipe2(gate, O_CLOEXEC) != 0) return absl::InternalError("pipe2 failed");
  std::vector<char*> argv;
  for (const std::string& a : command) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = fork();
  if (pid < 0) return absl::InternalError(absl::StrCat("fork failed: ", strerror(errno)));
  if (pid == 0) {
    close(gate[1]);
    char c;
    while (read(gate[0], &c, 1) < 0 && errno == EINTR) {
    }
    for (int sig : kForwarded) signal(sig, SIG_DFL);
    DropTracingCapabilitiesBeforeExec();  // the command gets none of ours
    execvp(argv[0], argv.data());
    int err = errno;
    std::fprintf(stderr, "goerrprof: cannot run %s: %s\n", argv[0], strerror(err));
    _exit(err == ENOENT ? 127 : 126);
  }
  close(gate[0]);
  absl::Status followed = f.Follow(pid);
  close(gate[1]);  // releases the child either way
  if (!followed.ok()) return followed;
  return pid;
}

int RecordCommand(const std::vector<std::string>& command, const RecordOptions& options) {
  if (absl::GetFlag(FLAGS_duration) != absl::ZeroDuration()) {
    return Fail(absl::InvalidArgumentError("--duration does not apply to record -- COMMAND"));
  }
  auto follower = ProcessFollower::Start();  // a missing privilege is said first
  if (!follower.ok()) return FailRecord(follower.status());
  if (absl::Status s = CheckOutput(); !s.ok()) return Fail(s);
  // Forked before any probe is attached, so it holds none of their links.
  auto guardian = ExecGuardian::Start((*follower)->followed_map_fd());
  if (!guardian.ok()) return Fail(guardian.status());
  WarnOverhead(options);
  // A command may run many Go processes at once (go test ./...): one ring.
  RecordOptions shared = options;
  shared.shared_maps = true;
  Recorder rec(shared);
  InstallForwarders();
  absl::Time start = absl::Now();
  auto child = SpawnGated(command, **follower);
  if (!child.ok()) return Fail(child.status());
  g_command_pid = *child;

  size_t go_recorded = 0, toolchain = 0, not_go = 0, failed = 0;
  auto on_exec = [&](const ExecEvent& ev) {
    absl::Status s = rec.Attach(ev.pid);
    if (s.ok()) {
      ++go_recorded;
    } else if (absl::IsUnimplemented(s)) {
      ++toolchain;
    } else if (absl::IsInvalidArgument(s) || absl::IsNotFound(s) ||
               absl::IsFailedPrecondition(s)) {
      ++not_go;  // not a Go executable (or already gone)
    } else {
      ++failed;
      std::fprintf(stderr, "goerrprof: pid %d not recorded: %s\n", ev.pid,
                   std::string(s.message()).c_str());
    }
    if (s.ok()) FaultPoint("attached");
    if (ev.stopped) {
      FaultPoint("exec-stopped");
      kill(ev.pid, SIGCONT);
    }
  };
  int status = 0;
  for (;;) {
    auto polled = (*follower)->Poll(rec.max_wait_ms(50), on_exec);
    if (!polled.ok()) {
      std::fprintf(stderr, "goerrprof: %s\n", std::string(polled.status().message()).c_str());
    }
    if (absl::Status s = rec.Poll(0); !s.ok()) {
      std::fprintf(stderr, "goerrprof: %s\n", std::string(s.message()).c_str());
    }
    pid_t w = waitpid(*child, &status, WNOHANG);
    if (w == *child) break;
    if (w < 0 && errno != EINTR) break;
  }
  g_command_pid = 0;
  // Execs reported before the command ended still wait for their SIGCONT.
  (*follower)->Poll(0, on_exec).IgnoreError();
  guardian->Disarm();  // every stopped exec has been continued
  auto follow_counters = (*follower)->Counters();
  follower->reset();
  absl::Duration recorded = absl::Now() - start;
  rec.DetachAll();

  int code = WIFEXITED(status) ? WEXITSTATUS(status)
             : WIFSIGNALED(status) ? 128 + WTERMSIG(status)
                                   : 1;
  // Processes the follower could not report or stop are counted, not hidden.
  std::vector<std::string> misses;
  for (int c = GEF_CTR_DROP_RINGBUF; c < GEF_CTR__COUNT; ++c) {
    if (follow_counters[c] != 0) {
      misses.push_back(absl::StrCat(FollowCounterName(static_cast<gef_counter>(c)), "=",
                                    follow_counters[c]));
    }
  }
  PprofInfo info;
  info.time_nanos = absl::ToUnixNanos(start);
  info.duration_nanos = absl::ToInt64Nanoseconds(recorded);
  info.label_processes = true;
  std::string wanted = absl::GetFlag(FLAGS_o);
  absl::Status failure;
  std::string out = WriteOrRescue(rec, wanted, info, &failure);
  std::string parks = WriteParks(rec, wanted, info);
  PrintBudget(rec);
  std::fprintf(stderr,
               "goerrprof: command exited with %d: %llu errors and %llu panics at %zu sites in %zu "
               "Go processes "
               "(%zu toolchain, %zu non-Go and %zu failed not recorded), %llu dropped%s%s -> "
               "%s%s\n",
               code, static_cast<unsigned long long>(rec.errors()),
               static_cast<unsigned long long>(rec.panics()),
               rec.profile().sites().size(), go_recorded, toolchain, not_go, failed,
               static_cast<unsigned long long>(rec.dropped()), misses.empty() ? "" : ", ",
               absl::StrJoin(misses, " ").c_str(), out.empty() ? "nothing written" : out.c_str(),
               parks.c_str());
  if (!failure.ok() && code == 0) code = 1;
  return code;
}

}  // namespace

int RunRecord(const std::vector<std::string>& args, const std::vector<std::string>& command) {
  auto pid_flag = PidFlag();
  if (!pid_flag.ok()) return Fail(pid_flag.status());
  auto options = OptionsFromFlags();
  if (!options.ok()) return Fail(options.status());
  if (!command.empty()) {
    if (*pid_flag != 0 || !args.empty()) {
      return Fail(absl::InvalidArgumentError("record takes --pid PID or -- COMMAND, not both"));
    }
    return RecordCommand(command, *options);
  }
  if (*pid_flag == 0) {
    return Fail(absl::InvalidArgumentError("record needs --pid PID or -- COMMAND ARGS..."));
  }
  if (auto path = TargetPath(args); !path.ok()) return Fail(path.status());
  return RecordPid(static_cast<pid_t>(*pid_flag), *options);
}

std::vector<std::string> NormalizeRecordFlags(std::vector<std::string> argv) {
  std::vector<std::string> out;
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a == "--") {  // the command's own arguments follow
      out.insert(out.end(), argv.begin() + i, argv.end());
      break;
    }
    if (a == "--goroutines" || a == "-goroutines") {
      const bool word = i + 1 < argv.size() &&
                        (argv[i + 1] == "sample" || argv[i + 1] == "trace" || argv[i + 1] == "off");
      out.push_back(absl::StrCat("--goroutines=", word ? argv[++i] : "sample"));
    } else if (a == "--nogoroutines" || a == "-nogoroutines") {
      out.push_back("--goroutines=off");
    } else {
      out.push_back(a);
    }
  }
  return out;
}

}  // namespace goerrprof::profiler
