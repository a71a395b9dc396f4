// The live side of goerrprof: one running Go process's error probes. It
// loads bpf/errors.bpf.c with its maps and one uprobe per error-creation
// site (session/error_program.h), or joins the program its executable's
// replicas already share, and decodes what the probes send. Destroying it
// (on any path, including a failed Start) stops recording the process: its
// own program and links go, a shared one with its last session.
#ifndef GOERRPROF_SESSION_BPF_SESSION_H_
#define GOERRPROF_SESSION_BPF_SESSION_H_

#include <sys/types.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "bpf/errors_abi.h"
#include "goabi/g_layout.h"
#include "events/captured_error.h"
#include "events/counters.h"
#include "events/decode.h"
#include "plan/layouts.h"
#include "session/error_program.h"
#include "session/lifecycle.h"
#include "session/pid_namespace.h"
#include "symbolizer/error_types.h"

struct errors_bpf;
namespace goerrprof::profiler {
class SharedEventMaps;
}
struct bpf_link;
struct ring_buffer;

namespace goerrprof::symbolizer {
class GoBinary;
}

namespace goerrprof::profiler {

enum class GSource { kNone, kR14, kTls };

struct SessionConfig {
  pid_t pid = 0;
  // The target's executable. Empty: /proc/<pid>/exe. When given it must be
  // the same file (device and inode) the process runs.
  std::string executable;
  std::vector<ErrorLayout> layouts;
  std::vector<ProbeSpec> probes;
  uint32_t max_chain = 8;  // link depth; capped at GEP_MAX_CHAIN
  // Goroutine ids: where g is (GLayout::g_in_r14 / tls_g_offset) and
  // GLayout::goid. goid_offset < 0 records no goroutine ids.
  GSource g_source = GSource::kR14;
  int32_t tls_g_offset = -8;
  int32_t goid_offset = -1;
  // Goroutine context (needs goid_offset): GLayout::gopc, GLayout::labels
  // and label_storage; -1 reads nothing.
  int32_t gopc_offset = -1;
  int32_t labels_offset = -1;
  goabi::LabelStorage label_storage = goabi::LabelStorage::kSortedSlice;
  uint32_t ringbuf_bytes = 8u << 20;  // rounded up to a power of two
  // Records go to this ring, and the probe works in this scratch, shared
  // with other sessions, instead of the session's own (ringbuf_bytes is
  // then the shared ring's size). Poll
  // and Flush deliver nothing: the ring's owner drains it. Must outlive the
  // session's registration (ReleaseRing, or destruction).
  SharedEventMaps* shared_maps = nullptr;
  // With shared_maps: sessions whose processes run the same file share
  // one program and its links (session/error_program.h); the
  // config of the first one serves all. False: a program of its own.
  bool share_program = false;
  // Wake a waiting Poll only when this fraction of the ring is filled (0:
  // after every event). Batching makes a hit several times cheaper; events
  // then reach Poll within its timeout, or at once when the ring fills up.
  double wakeup_fraction = 0.25;
  bool capture_stack = true;
  // Attach every probe through one uprobe_multi link (Linux 6.6+): one
  // syscall to attach, one RCU-tasks-trace grace period to detach. Without
  // it (or on older kernels) each probe is its own perf-event uprobe, and
  // detaching costs a grace period per probe (~0.1-0.2 s each, measured).
  bool uprobe_multi = true;
  // Sleepable program (Linux 5.19+ for uprobes): target pages not yet
  // faulted in (string literals never touched) can be read. Without it the
  // same program loads as a plain uprobe and such reads fail (counted).
  bool sleepable = true;
};

// The goroutine-context fields of a SessionConfig (where g is, goid, gopc,
// labels) from a release's runtime layout.
void ApplyGLayout(const goabi::GLayout& g, SessionConfig* config);

// Everything loading decides besides `config` that changes what the
// verifier walks or what the maps hold. BpfSession and doctor's cost
// measurement (bpf_cost) configure the skeleton through the same function,
// so doctor measures what record loads.
struct ErrorProbeLoad {
  PidNamespaceId target;  // the target's pid, in the namespace its threads see
  size_t n_layouts = 1, n_addr_types = 1, n_sites = 1, n_probes = 1;
  size_t n_targets = 1;   // members of a shared program (target.pid 0)
  bool multi = false;     // expected attach type uprobe_multi
  bool sleepable = true;  // BPF_F_SLEEPABLE (else the non-sleepable variant)
  uint32_t session_id = 0;  // stamped on records (a shared ring's id)
};
absl::Status ConfigureErrorProbe(errors_bpf* skel, const SessionConfig& config,
                                 const ErrorProbeLoad& load);

struct AttachStats {
  std::chrono::nanoseconds load{0};    // open + verify + load the program
  std::chrono::nanoseconds attach{0};  // all uprobes
  size_t probes = 0;
  bool multi = false;  // attached through one uprobe_multi link
  // Layout fields beyond the GEP_MAX_*_FIELDS caps, left out of the map
  // (their strings / wrapped errors will not be captured).
  size_t fields_dropped = 0;
};

class BpfSession {
 public:
  // One-line errors for: no BTF, missing privileges, no such process, a
  // process that exited (before or during attach), a mismatched executable,
  // an unmappable probe address.
  static absl::StatusOr<std::unique_ptr<BpfSession>> Start(const SessionConfig& config);
  ~BpfSession();
  BpfSession(const BpfSession&) = delete;
  BpfSession& operator=(const BpfSession&) = delete;

  // Waits up to timeout_ms (-1: forever, 0: no wait) for events or the
  // target's exit, then delivers the events ready: at most kPollBatch (or
  // kPollBatchNs of reading) while the target runs, so the caller gets back to its own work (the overhead
  // budget, a stop) even when events come faster than it reads them; all
  // of them once it has exited. Returns how many. After target_exited(),
  // one more Poll(0, ...) drains what is left.
  absl::StatusOr<int> Poll(int timeout_ms, absl::FunctionRef<void(const CapturedError&)> callback);
  // Delivers every event in the ring now, however many (before detaching).
  absl::StatusOr<int> Flush(absl::FunctionRef<void(const CapturedError&)> callback);
  static constexpr uint32_t kPollBatch = 4096;
  static constexpr int64_t kPollBatchNs = 4000000;  // or this long
  bool target_exited();
  // A pidfd of the target: readable once it exits, for callers' own loops.
  int exit_fd() const { return target_.pidfd(); }

  // One ring record into an event (a shared ring calls it); false, and
  // counted, when the record is malformed.
  bool Decode(const uint8_t* data, size_t size, CapturedError* ev);
  // Leaves the shared ring (records still coming are its orphans): on the
  // ring's thread, before the session is handed to another to destroy.
  void ReleaseRing();
  // Stops recording this process (its probes may stay, for others sharing
  // them) and freezes Counters(): before reading the final counters.
  void Leave();
  // Whether the program and links are shared with other processes
  // (SetSiteProbed then acts for them all), and which: equal for sessions
  // sharing one.
  bool shares_program() const { return program_ && program_->shared(); }
  const void* program_key() const { return program_.get(); }
  // The processes its program records, this one included.
  size_t program_members() const { return program_ ? program_->members() : 0; }

  // Its events, and the program's kernel counters while this session
  // answers for them (ErrorProgram::Counters: a shared program's, once).
  SessionCounters Counters() const;
  const AttachStats& attach_stats() const { return stats_; }
  uint64_t load_bias() const { return target_.load_bias(); }
  pid_t pid() const { return target_.pid(); }
  // Kernel ids of the loaded programs (for checking cleanup).
  std::vector<uint32_t> prog_ids() const;

  // The overhead budget's levers. A site is CapturedError::site (the
  // probe's address when that is 0); all of its probes go off or come
  // back. NotFound for a site no probe serves.
  absl::Status SetSiteProbed(uint64_t site, bool probed);
  // For a shared program (see ErrorProgram): whether `site` is off for
  // every member, and sites left off by a member that went away.
  bool SiteOff(uint64_t site) const { return program_ && program_->SiteOff(site); }
  void OrphanSite(uint64_t site) {
    if (program_) program_->Orphan(site);
  }
  void RetryOrphanSites() {
    if (program_) program_->RetryOrphans();
  }
  // Probes attached now (the budget takes some off).
  size_t probes_attached() const { return program_ ? program_->probes_attached() : 0; }
  // The probe program's run time as the kernel counts it (while
  // BPF_STATS_RUN_TIME is enabled), and its runs less those that returned
  // at once (foreign and stale hits); {0, 0} when unknown.
  std::pair<uint64_t, uint64_t> ProgramRunTime() const;
  // What one hit costs the probed thread beyond the program's own run time,
  // in ns: the program attached to a function of goerrprof's own and
  // called `calls` times, against the same calls without it (the program
  // returns at once for a foreign process). Its counters are kept apart.
  absl::StatusOr<double> MeasureTrapNs(int calls = 500);

 private:
  BpfSession() = default;
  absl::Status Init(const SessionConfig& config);
  static int OnSample(void* ctx, void* data, size_t size);

  // Joins the shared program under `key`, or makes it; null (and OK) when
  // it is full: the caller makes one of its own.
  absl::StatusOr<std::shared_ptr<ErrorProgram>> JoinShared(
      const SessionConfig& config, const symbolizer::ElfFile& elf, const std::string& key,
      const ErrorProgram::Member& me, bool* joined);

  ProbeTarget target_;
  bool exited_ = false;
  SharedEventMaps* shared_ = nullptr;  // registered under session_id_ while set
  uint32_t session_id_ = 0;
  std::shared_ptr<ErrorProgram> program_;
  bool left_ = false;  // Leave: counters frozen in left_counters_
  std::array<uint64_t, GEP_CTR__COUNT> left_counters_{};
  EventRing ring_;
  AttachStats stats_;
  absl::FunctionRef<void(const CapturedError&)>* callback_ = nullptr;
  uint64_t decode_errors_ = 0;
  uint64_t delivered_ = 0;
  uint32_t batch_ = 0;   // delivered in this drain
  int64_t batch_end_ns_ = 0;  // and when it ends, by time
  bool bounded_ = true;  // pause drains at kPollBatch
  bool paused_ = false;  // the last drain paused with records left
};

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_SESSION_BPF_SESSION_H_
