// Aggregates captured error creations into samples for the pprof writer:
// one sample per distinct (stack, error type, message, chain, goroutine),
// with the number of times it was seen, plus the counters a report needs.
#ifndef GOERRPROF_AGGREGATE_ERROR_PROFILE_H_
#define GOERRPROF_AGGREGATE_ERROR_PROFILE_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "events/captured_error.h"
#include "aggregate/error_render.h"
#include "aggregate/message_policy.h"

namespace goerrprof::profiler {

// The message of events past a site's distinct-message cap.
inline constexpr absl::string_view kOtherMessage = "<other>";

// An error creation is no panic; a panic's value is keyed like an error.
enum class PanicState : uint8_t { kNone, kRecovered, kUnrecovered };

struct SampleKey {
  std::vector<uint64_t> stack;  // file vaddrs, innermost first; [0] is the site
  std::string type;             // error.type: the created error's type
  std::string message;          // error.message
  std::string chain;            // error.chain
  uint64_t goroutine = 0;       // 0 when unknown
  // The goroutine's go statement (file vaddr of g.gopc); 0 when unknown or
  // for the main goroutine, which no go statement made.
  uint64_t created_by = 0;
  // The goroutine's pprof labels, sorted by key.
  std::vector<std::pair<std::string, std::string>> labels;
  // Which process (the writer's list of processes) the stack belongs to.
  uint32_t process = 0;
  PanicState panic = PanicState::kNone;

  auto Tie() const {
    return std::tie(process, stack, type, message, chain, goroutine, created_by, labels, panic);
  }
  bool operator==(const SampleKey& o) const { return Tie() == o.Tie(); }
  template <typename H>
  friend H AbslHashValue(H h, const SampleKey& k) {
    return H::combine(std::move(h), k.Tie());
  }
};

struct ProfileCounters {
  uint64_t events = 0;          // events aggregated (sum of all sample counts)
  uint64_t partial = 0;         // of those, captured incompletely
  uint64_t other_messages = 0;  // of those, relabelled kOtherMessage by the cap
  uint64_t panics = 0;          // of those, panics
  // Events lost before aggregation, by the caller's reason names.
  std::map<std::string, uint64_t> drops;
  uint64_t dropped() const;
};

class ErrorProfile {
 public:
  struct Options {
    // Distinct (message, chain, goroutine) kept per creating site; later new
    // ones count under kOtherMessage (goroutine 0), so a site formatting ids
    // into messages, or a server with a goroutine per request, stays bounded.
    size_t max_messages_per_site = 1000;
    RenderOptions render;
    // What the samples keep of messages and goroutine labels.
    MessagePolicy messages = MessagePolicy::kFull;
  };

  ErrorProfile() : ErrorProfile(Options{}) {}
  explicit ErrorProfile(Options options) : options_(std::move(options)) {}

  // Renders and counts one event of process number `process`. An event
  // without a stack is placed at its ip.
  void Add(const CapturedError& e, uint32_t process = 0);
  // Likewise, rendering with `render` instead of the profile's options (a
  // recording of several processes built by different Go releases).
  void Add(const CapturedError& e, uint32_t process, const RenderOptions& render);
  // A panic (e.kind kPanic or kFatalPanic) whose value `e` holds, placed at
  // its stack (runtime.gopanic or runtime.fatalpanic innermost).
  void AddPanic(const CapturedError& e, uint32_t process, const RenderOptions& render,
                bool recovered);
  // Counts `count` events with labels already rendered; the message policy
  // is applied here, so every sample passes it once. key.stack must not be
  // empty. `partial`: how many of them were captured incompletely.
  void Add(SampleKey key, uint64_t count = 1, uint64_t partial = 0);

  // Records the caller's count of events lost for `reason` (replacing any
  // earlier value: pass cumulative counters). Zero counts are not kept.
  void SetDrops(absl::string_view reason, uint64_t count);

  // Creations at `site` (stack[0]) of process `process` the probes did not
  // see (the overhead budget had taken it off), estimated: replaces any
  // earlier value. The site's samples are scaled up by it in Samples().
  void SetEstimate(uint32_t process, uint64_t site, double missed);
  bool estimated() const { return !estimates_.empty(); }
  // Estimated creations over every site (rounded as the samples are).
  uint64_t estimated_total() const;

  struct Sample {
    const SampleKey* key;
    uint64_t count;  // with its share of an estimate
    uint64_t observed = 0;  // seen by a probe
    bool estimated = false;  // count includes an estimate
  };
  // Every sample, most frequent first, ties in key order (deterministic).
  // Pointers stay valid until the next Add. A site with an estimate shares
  // it among its samples in proportion to their observed counts.
  std::vector<Sample> Samples() const;
  size_t num_samples() const { return samples_.size(); }

  // A sample taken out of the profile: its key and count (estimate included).
  struct Removed {
    SampleKey key;
    uint64_t count = 0;
  };
  // The number renumber[] gives the processes RemoveProcesses takes out.
  static constexpr uint32_t kRemoved = ~uint32_t{0};
  // For a long-running caller whose processes come and go: takes out the
  // samples and estimates of every process p with renumber[p] == kRemoved
  // (a process past renumber's end stays as it is) and renumbers the rest,
  // p becoming renumber[p]. Returns what was taken, keys unchanged (old
  // numbers). counters() still count it: they are cumulative.
  std::vector<Removed> RemoveProcesses(const std::vector<uint32_t>& renumber);

  // Distinct creating sites (stack[0]), ascending.
  const absl::btree_set<uint64_t>& sites() const { return sites_; }
  const ProfileCounters& counters() const { return counters_; }
  const Options& options() const { return options_; }

 private:
  static SampleKey KeyOf(const CapturedError& e, uint32_t process, const RenderOptions& render);

  Options options_;
  absl::flat_hash_map<SampleKey, uint64_t> samples_;
  absl::btree_set<uint64_t> sites_;
  absl::flat_hash_map<uint64_t, absl::flat_hash_set<std::string>> site_messages_;
  ProfileCounters counters_;
  // By (process, site): estimated creations not observed.
  absl::flat_hash_map<std::pair<uint32_t, uint64_t>, double> estimates_;
};

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_AGGREGATE_ERROR_PROFILE_H_
