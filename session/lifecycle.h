// The lifecycle every goerrprof session shares around its own skeleton:
//
//   ProbeTarget::Open   the process: a pidfd, /proc/PID/exe, the load bias
//   open → configure rodata and maps → load        (the session's own code,
//                                                   under a ScopedLibbpfLog)
//   ProbeLinks::Attach  one uprobe_multi link, or one link per probe
//   EventRing::Wait     poll the ring buffer (and the target's exit)
//   cleanup             destructors in reverse: links first (nothing new
//                       arrives), then the ring, the skeleton, the pidfd
//
// so the error, park and exec-follow sessions differ only in what their
// programs are told and how their records decode.
#ifndef GOERRPROF_SESSION_LIFECYCLE_H_
#define GOERRPROF_SESSION_LIFECYCLE_H_

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

struct bpf_link;
struct bpf_map;
struct bpf_program;
struct ring_buffer;

namespace goerrprof::symbolizer {
class ElfFile;
}

namespace goerrprof::profiler {

// Whether `pid` has exited, or is exiting (killed, not yet reaped): attach
// then fails before the pidfd says so.
bool ProcessGone(int pidfd, pid_t pid);

// The live process a session attaches to. Attaching goes through
// /proc/PID/exe: it names the exact inode the process runs, even deleted or
// in another mount namespace.
class ProbeTarget {
 public:
  // One-line errors: no such process, not allowed, exited; `executable`
  // (when not empty) is not what the process runs.
  static absl::StatusOr<ProbeTarget> Open(pid_t pid, const std::string& executable);
  ProbeTarget() = default;
  ProbeTarget(ProbeTarget&& o) noexcept { *this = std::move(o); }
  ProbeTarget& operator=(ProbeTarget&& o) noexcept;
  ~ProbeTarget();

  // Every process that runs `member`'s executable file, now or later: the
  // target of links that several processes share. It holds the file open
  // (attach_path() stays valid after `member` exits) and has no pid.
  static absl::StatusOr<ProbeTarget> Everyone(const ProbeTarget& member);

  // Where `elf` (the process's executable) is loaded; sets load_bias().
  absl::Status FindLoadBias(const symbolizer::ElfFile& elf);

  // -1 for Everyone().
  pid_t pid() const { return pid_; }
  // Readable once the process exits (-1 when pidfds are unavailable).
  int pidfd() const { return pidfd_; }
  const std::string& attach_path() const { return attach_path_; }
  const std::string& exe_link() const { return exe_link_; }  // its path, as readlink shows it
  uint64_t load_bias() const { return bias_; }
  bool gone() const { return pid_ > 0 && ProcessGone(pidfd_, pid_); }
  // The file as uprobes see it: "major:minor:inode:mtime" of what the
  // process maps (a container's overlay file: its layer's), set by
  // FindLoadBias. Equal for every process running the same file; empty
  // when that cannot be told (an overlay file on 6.8+ without the kernel's
  // answer).
  const std::string& file_key() const { return file_key_; }

 private:
  pid_t pid_ = 0;
  int pidfd_ = -1;
  int exe_fd_ = -1;  // Everyone(): the file, held open
  std::string file_key_;
  std::string attach_path_;
  std::string exe_link_;
  struct stat exe_st_ = {};
  uint64_t bias_ = 0;
};

// The uprobes of one program in one process. Destroying them removes the
// uprobes; Remove() does so early (stop, then drain the ring).
class ProbeLinks {
 public:
  ProbeLinks() = default;
  ~ProbeLinks() { Remove(); }
  ProbeLinks(const ProbeLinks&) = delete;
  ProbeLinks& operator=(const ProbeLinks&) = delete;

  // `prog` at `offsets` (file offsets in the target's executable) with
  // their cookies: entry probes only, never a uretprobe on Go code. For
  // ProbeTarget::Everyone(), links without a process filter. With
  // `multi`, one uprobe_multi link (the program must have been loaded for
  // it); Unimplemented when the kernel refuses that link type. Otherwise one
  // perf link per probe, stopping early when the target exits.
  absl::Status Attach(const bpf_program* prog, const ProbeTarget& target,
                      absl::Span<const uint64_t> offsets, absl::Span<const uint64_t> cookies,
                      bool multi);
  void Remove();
  // One probe's own link (without `multi`: the i-th offset attached), moved
  // out to be removed by the caller; null when there is none.
  std::unique_ptr<ProbeLinks> Release(size_t i);
  size_t size() const { return multi_fd_ >= 0 ? 1 : links_.size(); }

 private:
  int multi_fd_ = -1;
  std::vector<bpf_link*> links_;
};

// A sample callback returning this stops a drain after its record (which
// counts as consumed); the rest waits for the next Wait or Drain.
inline constexpr int kPauseDrain = -125;  // -ECANCELED

// One BPF ring buffer, read by poll(2) beside an optional descriptor (the
// target's pidfd) and drained on demand.
class EventRing {
 public:
  using SampleFn = int (*)(void* ctx, void* data, size_t size);
  EventRing() = default;
  ~EventRing() { Close(); }
  EventRing(const EventRing&) = delete;
  EventRing& operator=(const EventRing&) = delete;

  absl::Status Open(const bpf_map* map, SampleFn fn, void* ctx);
  absl::Status OpenFd(int map_fd, SampleFn fn, void* ctx);
  void Close();
  bool open() const { return ring_ != nullptr; }
  int fd() const;

  // Waits up to timeout_ms (-1: forever, 0: not at all) for records, or for
  // `also_fd` (when >= 0) to become readable, then consumes every record
  // ready. Returns whether `also_fd` was readable. EINTR is no error.
  absl::StatusOr<bool> Wait(int timeout_ms, int also_fd = -1);
  // Consumes every record ready, without waiting.
  absl::Status Drain();

 private:
  ring_buffer* ring_ = nullptr;
};

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_SESSION_LIFECYCLE_H_
