// bench/snapshot driver: `goerrprof goroutines` snapshot time for N parked
// goroutines, side by side in one run with the target's own cost of
// producing the same information (runtime.Stack(all) and the pprof
// debug=2 goroutine profile, which stop the world), and the largest
// scheduling delay a 1 ms ticker inside the target saw during each.
//
// usage: snapshot_bench PARKED_BINARY [N...]   (default 1000 10000 100000)
//        snapshot_bench --pid PID [REPS]        (a running process, for profiling)
// With $GOERRPROF naming the goerrprof executable, also times the whole
// command (`goroutines --pid P -o FILE`: open, snapshot, profile, write).
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/arena.h"
#include "goroutines/goroutine_frames.h"
#include "goroutines/goroutine_pprof.h"
#include "goroutines/goroutine_snapshot.h"
#include "goroutines/goroutine_text.h"
#include "symbolizer/go_binary.h"

namespace gp = goerrprof::profiler;

namespace {

int64_t Now() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

[[noreturn]] void Die(const std::string& msg) {
  std::fprintf(stderr, "snapshot_bench: %s\n", msg.c_str());
  std::exit(1);
}

// The target, talked to by lines over pipes; it dies with us.
class Target {
 public:
  Target(const std::string& path, int n) {
    int in[2], out[2];
    if (pipe(in) != 0 || pipe(out) != 0) Die("pipe");
    pid_ = fork();
    if (pid_ < 0) Die("fork");
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      dup2(in[0], 0);
      dup2(out[1], 1);
      close(in[1]);
      close(out[0]);
      std::string ns = std::to_string(n);
      execl(path.c_str(), path.c_str(), "-bench", "-n", ns.c_str(), nullptr);
      _exit(127);
    }
    close(in[0]);
    close(out[1]);
    in_ = in[1];
    out_ = out[0];
  }
  ~Target() {
    close(in_);
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    close(out_);
  }
  pid_t pid() const { return pid_; }

  std::string Line(int timeout_ms = 300000) {
    for (;;) {
      size_t nl = buf_.find('\n');
      if (nl != std::string::npos) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return line;
      }
      pollfd p = {out_, POLLIN, 0};
      if (poll(&p, 1, timeout_ms) <= 0) Die("target did not answer in time");
      char b[4096];
      ssize_t r = read(out_, b, sizeof(b));
      if (r <= 0) Die("target exited");
      buf_.append(b, r);
    }
  }
  std::string Ask(const std::string& cmd) {
    std::string line = cmd + "\n";
    if (write(in_, line.data(), line.size()) != static_cast<ssize_t>(line.size())) Die("write");
    return Line();
  }

 private:
  pid_t pid_ = -1;
  int in_ = -1, out_ = -1;
  std::string buf_;
};

std::vector<int64_t> Words(const std::string& line) {
  std::vector<int64_t> out;
  std::istringstream in(line);
  std::string w;
  in >> w;
  int64_t v;
  while (in >> v) out.push_back(v);
  return out;
}

int64_t Median(std::vector<int64_t> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double Ms(int64_t ns) { return ns / 1e6; }

// The arena `goerrprof goroutines` builds its profile on.
google::protobuf::ArenaOptions ProfileArenaOptions() {
  google::protobuf::ArenaOptions o;
  o.start_block_size = 1 << 20;
  o.max_block_size = 8 << 20;
  return o;
}

// Wall time of `goerrprof goroutines --pid PID -o OUT`; -1 on failure.
int64_t TimeCommand(const char* goerrprof, pid_t pid) {
  std::string pid_flag = absl::StrCat("--pid=", pid);
  std::string out = absl::StrCat("/tmp/snapshot_bench.", getpid(), ".pb.gz");
  int64_t t0 = Now();
  pid_t c = fork();
  if (c == 0) {
    int null = open("/dev/null", O_WRONLY);
    dup2(null, 2);
    execl(goerrprof, goerrprof, "goroutines", pid_flag.c_str(), "-o", out.c_str(), nullptr);
    _exit(127);
  }
  int status = 0;
  waitpid(c, &status, 0);
  int64_t t = Now() - t0;
  unlink(out.c_str());
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? t : -1;
}

// Snapshots a running process REPS times: medians of the read
// (elapsed_ns), the whole TakeSnapshot, and the pprof profile built.
int RunPid(pid_t pid, int reps) {
  auto bin = goerrprof::symbolizer::GoBinary::Open(absl::StrCat("/proc/", pid, "/exe"));
  if (!bin.ok()) Die(std::string(bin.status().message()));
  std::vector<int64_t> read_ns, snap_ns, pprof_ns;
  size_t count = 0;
  for (int r = 0; r < reps; ++r) {
    int64_t t0 = Now();
    auto snap = gp::TakeSnapshot(pid, **bin, gp::SnapshotOptions{});
    int64_t t1 = Now();
    if (!snap.ok()) Die(std::string(snap.status().message()));
    google::protobuf::Arena arena(ProfileArenaOptions());
    auto* prof = google::protobuf::Arena::CreateMessage<perftools::profiles::Profile>(&arena);
    absl::Status built = gp::GoroutineProfileInto(*snap, **bin, prof);
    int64_t t2 = Now();
    if (!built.ok()) Die(std::string(built.message()));
    read_ns.push_back(snap->stats.elapsed_ns);
    snap_ns.push_back(t1 - t0);
    pprof_ns.push_back(t2 - t1);
    count = snap->goroutines.size();
  }
  std::printf("pid %d: %zu goroutines; median of %d: read (elapsed_ns) %.2f ms, TakeSnapshot %.2f "
              "ms, profile %.2f ms\n",
              pid, count, reps, Ms(Median(read_ns)), Ms(Median(snap_ns)), Ms(Median(pprof_ns)));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 3 && std::string(argv[1]) == "--pid") {
    return RunPid(std::atoi(argv[2]), argc >= 4 ? std::atoi(argv[3]) : 10);
  }
  if (argc < 2) Die("usage: snapshot_bench PARKED_BINARY [N...]");
  std::vector<int> sizes;
  for (int i = 2; i < argc; ++i) sizes.push_back(std::atoi(argv[i]));
  if (sizes.empty()) sizes = {1000, 10000, 100000};
  constexpr int kReps = 5;

  std::printf("%8s %8s | %9s %9s %9s %9s %9s | %10s %10s | %7s | %8s %8s %8s %8s\n", "N",
              "read", "read ms", "snap ms", "1thr ms", "+text ms", "+pprof ms", "Stack ms",
              "debug2 ms", "ratio", "late/idle", "late/ours", "late/1thr", "late/self");
  for (int n : sizes) {
    Target t(argv[1], n);
    std::string ready = t.Line();
    if (ready.rfind("ready ", 0) != 0) Die("unexpected: " + ready);
    auto bin = goerrprof::symbolizer::GoBinary::Open(absl::StrCat("/proc/", t.pid(), "/exe"));
    if (!bin.ok()) Die(std::string(bin.status().message()));
    gp::GoFrames frames(**bin);

    std::vector<int64_t> read_ns, snap_ns, text_ns, pprof_ns, late_ours, late_idle, stack_ns,
        prof_ns, late_self, command_ns, one_ns, late_one;
    const char* goerrprof = getenv("GOERRPROF");
    size_t count = 0;
    for (int r = 0; r < kReps; ++r) {
      // Idle: the ticker's own jitter over a comparable window.
      t.Ask("mark");
      int64_t t0 = Now();
      while (Now() - t0 < 20000000) {
      }
      late_idle.push_back(Words(t.Ask("delay"))[0]);

      t.Ask("mark");
      t0 = Now();
      auto snap = gp::TakeSnapshot(t.pid(), **bin, gp::SnapshotOptions{});
      int64_t t1 = Now();
      if (!snap.ok()) Die(std::string(snap.status().message()));
      std::string text = gp::FormatDump(*snap, frames);
      int64_t t2 = Now();
      // On an arena, as the command builds it.
      google::protobuf::Arena arena(ProfileArenaOptions());
      auto* prof = google::protobuf::Arena::CreateMessage<perftools::profiles::Profile>(&arena);
      absl::Status built = gp::GoroutineProfileInto(*snap, **bin, prof);
      int64_t t3 = Now();
      if (!built.ok()) Die(std::string(built.message()));
      // Give the ticker a tick to report a stall that ended just now.
      while (Now() - t3 < 5000000) {
      }
      late_ours.push_back(Words(t.Ask("delay"))[0]);
      read_ns.push_back(snap->stats.elapsed_ns);
      snap_ns.push_back(t1 - t0);
      text_ns.push_back(t2 - t0);
      pprof_ns.push_back(t3 - t2 + (t1 - t0));
      count = snap->goroutines.size();
      if (snap->stats.skipped != 0) {
        std::fprintf(stderr, "note: %lu goroutines skipped as torn\n",
                     static_cast<unsigned long>(snap->stats.skipped));
      }

      // One reader thread: slower, but leaves the target more CPU.
      t.Ask("mark");
      gp::SnapshotOptions one;
      one.threads = 1;
      t0 = Now();
      auto single = gp::TakeSnapshot(t.pid(), **bin, one);
      one_ns.push_back(Now() - t0);
      if (!single.ok()) Die(std::string(single.status().message()));
      t1 = Now();
      while (Now() - t1 < 5000000) {
      }
      late_one.push_back(Words(t.Ask("delay"))[0]);

      if (goerrprof != nullptr) command_ns.push_back(TimeCommand(goerrprof, t.pid()));

      std::vector<int64_t> self = Words(t.Ask("selfdump"));
      if (self.size() != 4) Die("bad selfdump reply");
      stack_ns.push_back(self[0]);
      prof_ns.push_back(self[1]);
      late_self.push_back(self[3]);
    }
    std::printf(
        "%8d %8zu | %9.2f %9.2f %9.2f %9.2f %9.2f | %10.2f %10.2f | %6.1fx | %8.2f %8.2f %8.2f "
        "%8.2f\n",
        n, count, Ms(Median(read_ns)), Ms(Median(snap_ns)), Ms(Median(one_ns)),
        Ms(Median(text_ns)), Ms(Median(pprof_ns)), Ms(Median(stack_ns)), Ms(Median(prof_ns)),
        static_cast<double>(Median(stack_ns)) / Median(snap_ns), Ms(Median(late_idle)),
        Ms(Median(late_ours)), Ms(Median(late_one)), Ms(Median(late_self)));
    if (!command_ns.empty()) {
      std::printf("%8s goerrprof goroutines --pid -o (whole command): %.2f ms\n", "",
                  Ms(Median(command_ns)));
    }
    std::fflush(stdout);
  }
  std::printf(
      "\nread: the snapshot's own reading time (SnapshotStats::elapsed_ns), snap: the whole\n"
      "TakeSnapshot call (goroutine list located, load bias, sorting too), both the median\n"
      "of %d with two reader threads from 20 000 gs; 1thr: snap with one thread. +text /\n"
      "+pprof: snap plus symbolization into the debug=2-style text / the pprof profile (built\n"
      "on an arena as the command does; not written).\n"
      "Stack / debug2: the target timing runtime.Stack(all) / its debug=2 goroutine profile\n"
      "(both stop the world). ratio: Stack / snap. late/*: the largest lateness (ms) of a 1 ms\n"
      "ticker in the target during an idle 20 ms window, during our snapshot (two threads,\n"
      "one thread), and during its own dump: what the target's goroutines felt.\n",
      kReps);
  return 0;
}
