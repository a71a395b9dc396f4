// goerrprof goroutines: a snapshot of every goroutine of a live Go
// process, as a pprof profile, a Go-style text dump, or a leak report.
#include <sys/mman.h>

#include <cstdio>
#include <new>
#include <string>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "google/protobuf/arena.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "goroutines/goroutine_frames.h"
#include "goroutines/goroutine_pprof.h"
#include "goroutines/goroutine_snapshot.h"
#include "goroutines/goroutine_text.h"
#include "pprof/pprof_builder.h"
#include "symbolizer/go_binary.h"
#include "pprof/profile_file.h"

ABSL_FLAG(bool, text, false, "goroutines: print a Go-style dump (debug=2) instead of a profile");
ABSL_FLAG(bool, leaks, false,
          "goroutines: print goroutines waiting longer than --min-wait, grouped by creation "
          "site and stack");
ABSL_FLAG(absl::Duration, min_wait, absl::Minutes(1), "goroutines --leaks: the least wait");
ABSL_FLAG(bool, all, false,
          "goroutines: include runtime (system) goroutines and every frame, like "
          "GOTRACEBACK=system");
// record's -o; its default names the error profile.
ABSL_DECLARE_FLAG(std::string, o);

namespace goerrprof::profiler {
namespace {

constexpr char kRecordDefaultOut[] = "errors.pb.gz";
constexpr char kDefaultOut[] = "goroutines.pb.gz";

// The profile's arena takes its blocks with their pages populated in one
// call: 100 000 goroutines make about 65 MB of messages, and faulting
// them in page by page costs about as much as building them.
void* PopulatedBlock(size_t n) {
  void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE,
                 -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  return p;
}
void FreeBlock(void* p, size_t n) { munmap(p, n); }

// The snapshot is left to the process's exit (kept reachable, not leaked):
// freeing 100 000 goroutines' stacks one by one costs milliseconds for
// nothing.
void KeepUntilExit(Snapshot&& snap) {
  static Snapshot* kept = nullptr;
  delete kept;
  kept = new Snapshot(std::move(snap));
}

std::string Summary(const Snapshot& s) {
  const SnapshotStats& st = s.stats;
  return absl::StrFormat(
      "goerrprof: %d goroutines of pid %d read in %.1f ms (%d system hidden, %d free, %d re-read, "
      "%d skipped as torn, %d stacks truncated, %d label sets unreadable; %d reads)",
      s.goroutines.size(), s.pid, st.elapsed_ns / 1e6, st.system_hidden, st.dead, st.retried,
      st.skipped, st.stacks_truncated, st.labels_unreadable, st.syscalls);
}

}  // namespace

int RunGoroutines(const std::vector<std::string>& args) {
  if (!args.empty()) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("goroutines takes no arguments (got \"", args[0], "\"); use --pid")));
  }
  auto pid = PidFlag();
  if (!pid.ok()) return Fail(pid.status());
  if (*pid == 0) return Fail(absl::InvalidArgumentError("goroutines needs --pid"));
  absl::Duration min_wait = absl::GetFlag(FLAGS_min_wait);
  if (min_wait < absl::ZeroDuration()) {
    return Fail(absl::InvalidArgumentError("--min-wait must not be negative"));
  }
  auto path = TargetPath(args);
  if (!path.ok()) return Fail(path.status());
  auto binary = symbolizer::GoBinary::Open(*path);
  if (!binary.ok()) {
    return Fail(absl::Status(binary.status().code(),
                             absl::StrCat("pid ", *pid, ": ", binary.status().message())));
  }
  SnapshotOptions opts;
  opts.include_system = absl::GetFlag(FLAGS_all);
  auto snap = TakeSnapshot(static_cast<pid_t>(*pid), **binary, opts);
  if (!snap.ok()) return Fail(snap.status());

  if (absl::GetFlag(FLAGS_text) || absl::GetFlag(FLAGS_leaks)) {
    GoFrames frames(**binary, opts.include_system);
    std::string out = absl::GetFlag(FLAGS_leaks)
                          ? FormatLeaks(*snap, frames, absl::ToInt64Nanoseconds(min_wait))
                          : FormatDump(*snap, frames);
    std::fwrite(out.data(), 1, out.size(), stdout);
    std::fflush(stdout);
    std::fprintf(stderr, "%s\n", Summary(*snap).c_str());
    KeepUntilExit(std::move(*snap));
    return 0;
  }
  std::string out = absl::GetFlag(FLAGS_o);
  if (out == kRecordDefaultOut) out = kDefaultOut;
  // On an arena: a sample per goroutine is about ten small messages.
  google::protobuf::ArenaOptions arena_options;
  arena_options.start_block_size = 1 << 20;
  arena_options.max_block_size = 8 << 20;
  arena_options.block_alloc = PopulatedBlock;
  arena_options.block_dealloc = FreeBlock;
  google::protobuf::Arena arena(arena_options);
  auto* profile = google::protobuf::Arena::CreateMessage<perftools::profiles::Profile>(&arena);
  absl::Status s = GoroutineProfileInto(*snap, **binary, profile);
  if (!s.ok()) return Fail(s);
  s = WriteProfileFile(*profile, out);
  if (!s.ok()) return Fail(s);
  std::fprintf(stderr, "%s -> %s\n", Summary(*snap).c_str(), out.c_str());
  KeepUntilExit(std::move(*snap));
  return 0;
}

}  // namespace goerrprof::profiler
