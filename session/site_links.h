// The error probes of one process, which the overhead budget
// (record/overhead_budget.h) can take off one site at a time and put back:
// detaching is the only way to stop paying a uprobe's trap.
//
// With uprobe_multi the probes are attached in shards of kShardSize, one
// link each. Taking a probe off means replacing its shard's link (a link
// cannot lose one offset): first the probe's link_gen entry is set to a
// generation no link carries, so the program returns at once on its hits
// (the trap is still paid until the old link goes, the rest is not);
// the new link, without it, carries the other generation bit in its
// cookies; once it is in, each remaining probe's generation is set in the
// program's link_gen map and the old link goes.
// The program ignores hits through the stale link, so nothing is counted
// twice or lost in between, and a swap costs a shard's attach, not the
// whole plan's. With perf links (kernels before 6.6) the probe's own link
// goes. A probe put back gets a link of its own (tagged SOLO), which then
// detaches and re-attaches alone. Old links are removed on threads of their
// own (Retire): the target stops paying as their uprobes go, and the grace
// period after that holds up no one.
#ifndef GOERRPROF_SESSION_SITE_LINKS_H_
#define GOERRPROF_SESSION_SITE_LINKS_H_

#include <cstdint>
#include <future>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "session/lifecycle.h"

struct bpf_program;

namespace goerrprof::profiler {

class SiteLinks {
 public:
  // Probes per uprobe_multi link: a swap attaches this many uprobes while
  // the storm it stops still traps; more links cost more to remove.
  static constexpr size_t kShardSize = 128;

  SiteLinks() = default;
  ~SiteLinks() { Remove(); }
  SiteLinks(const SiteLinks&) = delete;
  SiteLinks& operator=(const SiteLinks&) = delete;

  // Attaches every probe as ProbeLinks::Attach does. `ips`: each probe's
  // address as the program keys it (runtime, or the file's for a shared
  // program: the link_gen map's keys); `link_gen_fd`: that map.
  absl::Status Attach(const bpf_program* prog, const ProbeTarget& target,
                      absl::Span<const uint64_t> offsets, absl::Span<const uint64_t> cookies,
                      absl::Span<const uint64_t> ips, bool multi, int link_gen_fd);
  // Takes the probes with these indices (into the offsets given to Attach)
  // off, or puts them back. Probes already in that state are left alone.
  // Putting back a probe whose old link is still being removed (on a slow
  // machine, a second later) is Unavailable: both would count its hits.
  absl::Status Detach(absl::Span<const size_t> probes);
  absl::Status Reattach(absl::Span<const size_t> probes);
  bool attached(size_t probe) const { return probe < state_.size() && state_[probe] != kOff; }
  // Removes every link; shards in parallel (each waits out a grace period).
  void Remove();
  size_t probes_attached() const;
  uint64_t swaps() const { return swaps_; }

 private:
  enum State : uint8_t { kShared, kSolo, kOff };
  struct Shard {
    std::vector<size_t> probes;
    std::vector<size_t> in_link;  // the probes its link counts
    std::unique_ptr<ProbeLinks> link;
    bool gen = false;
  };
  // A link_gen value no link's cookie carries: the probe counts through
  // none of the shared links.
  static constexpr uint32_t kGenOff = 2;
  absl::Status SwapShard(Shard& shard);
  // Sets the probes' entries in the program's link_gen map.
  absl::Status SetGeneration(absl::Span<const size_t> probes, uint32_t gen);
  // Removes a link on a thread of its own: its uprobes go at once, then
  // the removal waits out a grace period (tens of ms) that must not hold
  // up the reading of events. `probes`: those it still counts for (taken
  // off through it); none is put back until it is gone.
  void Retire(std::unique_ptr<ProbeLinks> link, std::vector<size_t> probes);

  const bpf_program* prog_ = nullptr;
  const ProbeTarget* target_ = nullptr;
  bool multi_ = false;
  int gen_fd_ = -1;
  std::vector<uint64_t> offsets_, cookies_, ips_;
  std::vector<State> state_;
  std::vector<uint32_t> shard_of_;  // by probe (multi)
  std::vector<Shard> shards_;       // multi: shards; else one, of perf links
  std::vector<std::unique_ptr<ProbeLinks>> solo_;  // by probe; null unless kSolo
  uint64_t swaps_ = 0;
  struct Retiring {
    std::future<void> done;
    std::vector<size_t> probes;
  };
  std::vector<Retiring> retiring_;
  // Forgets the removals that finished.
  void PruneRetired();
  // Whether a link being removed still counts hits of `probe`.
  bool StillCounted(size_t probe);
};

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_SESSION_SITE_LINKS_H_
