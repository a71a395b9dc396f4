// One loaded error probe (bpf/errors.bpf.c) with its maps and links. Either
// a process's own (its tgid in the program, links filtered to it), or
// shared by the replicas of one executable (the agent, `record --
// COMMAND`): then its links have no process filter, so they trap in every
// process running the file, and the program records the hits of its
// members only (its `targets` map: tgid -> session id and load bias, by
// which a PIE file's hits are rebased to the file addresses its maps
// hold). Replicas then add no program, link or map; a process running the
// file that is not a member pays the trap and nothing more. Built by
// BpfSession, which keeps what is a process's own: its pid, its ring
// registration, its events.
#ifndef GOERRPROF_SESSION_ERROR_PROGRAM_H_
#define GOERRPROF_SESSION_ERROR_PROGRAM_H_

#include <sys/types.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "bpf/errors_abi.h"
#include "events/captured_error.h"
#include "events/decode.h"
#include "session/lifecycle.h"
#include "session/pid_namespace.h"
#include "session/site_links.h"

struct errors_bpf;
struct bpf_map;

namespace goerrprof::symbolizer {
class ElfFile;
}

namespace goerrprof::profiler {

struct SessionConfig;
struct AttachStats;

class ErrorProgram {
 public:
  // Members a shared program holds at most (its targets map is
  // preallocated); past it, a process gets a program of its own.
  static constexpr uint32_t kMaxMembers = 512;

  // Loads the program for `target` (running `elf`), fills its maps and
  // attaches every probe. `shared`: links for every process running the
  // file, recording only members (the first, `member`, is added before the
  // links go in); else for `target` alone. `member.session`: the id its
  // records carry.
  struct Member {
    const void* who = nullptr;  // the member's session
    PidNamespaceId ns;          // its tgid as the program sees it
    uint32_t session = 0;
    uint64_t bias = 0;          // its load bias (a shared PIE file: one per process)
  };
  static absl::StatusOr<std::shared_ptr<ErrorProgram>> Create(const SessionConfig& config,
                                                              const ProbeTarget& target,
                                                              const symbolizer::ElfFile& elf,
                                                              bool shared, const Member& member);
  ~ErrorProgram();
  ErrorProgram(const ErrorProgram&) = delete;
  ErrorProgram& operator=(const ErrorProgram&) = delete;

  bool shared() const { return shared_; }
  // A shared program's members. AddMember: ResourceExhausted when full.
  absl::Status AddMember(const Member& m);
  // Its hits are no longer recorded. Returns the program's counters it
  // was answerable for (see Counters), which it keeps from then on.
  std::array<uint64_t, GEP_CTR__COUNT> RemoveMember(const void* who);
  size_t members() const;
  // The kernel's counters are the program's, not a member's. One member at
  // a time answers for them (the first; when it leaves, the next one, from
  // the values then), so sums over sessions count each hit once.
  std::array<uint64_t, GEP_CTR__COUNT> Counters(const void* who) const;

  // The overhead budget's lever (BpfSession::SetSiteProbed): for a shared
  // program, for every member at once.
  absl::Status SetSiteProbed(uint64_t site, bool probed);
  // Whether every probe of `site` is off (false for an unknown site).
  bool SiteOff(uint64_t site) const;
  // A site left off by a process that went away, with no one to decide
  // when it comes back: put back now, or, while a removal still holds it
  // (Unavailable), by RetryOrphans (each budget tick of a member).
  void Orphan(uint64_t site);
  void RetryOrphans();
  size_t probes_attached() const { return links_.probes_attached(); }
  std::pair<uint64_t, uint64_t> ProgramRunTime() const;
  absl::StatusOr<double> MeasureTrapNs(int calls);
  std::vector<uint32_t> prog_ids() const;
  // Removes every link now (a session closing its own program).
  void RemoveLinks() { links_.Remove(); }

  const RecordNames& names() const { return names_; }
  struct ProbeInfo {
    uint64_t site = 0;
    EventKind kind = EventKind::kCreation;
  };
  // By probe address (file vaddr): the creating instruction and the kind.
  const absl::flat_hash_map<uint64_t, ProbeInfo>& probe_info() const { return probe_info_; }
  bool multi() const { return multi_; }
  const bpf_map* events_map() const;
  size_t fields_dropped() const { return fields_dropped_; }
  std::chrono::nanoseconds load_time() const { return load_time_; }

 private:
  ErrorProgram() = default;
  absl::Status Load(const SessionConfig& config, const PidNamespaceId& ns, size_t n_sites,
                    bool multi, uint32_t session_id);
  absl::Status Fill(const SessionConfig& config, uint64_t bias);
  std::array<uint64_t, GEP_CTR__COUNT> ReadCounters() const;

  bool shared_ = false;
  errors_bpf* skel_ = nullptr;
  ProbeTarget everyone_;  // a shared program's link target
  SiteLinks links_;
  bool multi_ = false;
  size_t fields_dropped_ = 0;
  std::chrono::nanoseconds load_time_{0};
  // By site (see SetSiteProbed): indices into the probes attached.
  absl::flat_hash_map<uint64_t, std::vector<size_t>> site_probes_;
  absl::flat_hash_map<uint64_t, ProbeInfo> probe_info_;
  RecordNames names_;  // by type address at names_.key_bias, for decoding
  std::vector<uint64_t> orphans_;  // see Orphan
  // Counter values added by MeasureTrapNs's foreign hits, subtracted.
  uint64_t calibration_hits_ = 0;

  // Members (the loop adds and removes them; a session destroyed on the
  // reaper's thread may remove its own).
  mutable std::mutex mu_;
  struct Joined {
    const void* who;
    uint32_t tgid;
    uint32_t session;
  };
  std::vector<Joined> members_;
  const void* answers_ = nullptr;  // the member answerable for the counters
  std::array<uint64_t, GEP_CTR__COUNT> base_{};  // the counters when it began to
};

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_SESSION_ERROR_PROGRAM_H_
