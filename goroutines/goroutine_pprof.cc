#include "goroutines/goroutine_pprof.h"

#include <array>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "goabi/g_layout.h"
#include "goroutines/goroutine_frames.h"
#include "pprof/pprof_builder.h"
#include "pprof/labels.h"

namespace goerrprof::profiler {
namespace {

namespace pp = perftools::profiles;

// The builder's string and location ids, looked up once per distinct
// value: goroutines share most stacks, states and creation sites. Strings
// are interned in the order a plain walk would first use them, so the
// profile is the same as one built sample by sample with the builder.
class SampleIds {
 public:
  SampleIds(PprofBuilder& b, const symbolizer::GoBinary& binary, int bin)
      : b_(b), binary_(binary), bin_(bin), frames_(binary) {
    keys_.fill(-1);
  }

  enum Key { kGoroutine, kParent, kState, kWaitReason, kWait, kCreatedBy, kCreatedAt, kNumKeys };
  int64_t KeyId(Key k) {
    static constexpr std::array<const char*, kNumKeys> kNames = {
        kLabelGoroutine, kLabelParent,    kLabelState,    kLabelWaitReason,
        kLabelWait,      kLabelCreatedBy, kLabelCreatedAt};
    if (keys_[k] < 0) keys_[k] = b_.String(kNames[k]);
    return keys_[k];
  }

  // A static text (goabi's tables, literals): keyed by where it lies.
  // Neighbouring goroutines mostly share theirs: a few are remembered.
  int64_t StaticString(absl::string_view s) {
    for (const Recent& r : recent_) {
      if (r.data == s.data() && r.size == s.size()) return r.id;
    }
    auto [it, inserted] = statics_.try_emplace(std::make_pair(s.data(), s.size()), 0);
    if (inserted) it->second = b_.String(s);
    recent_[next_recent_++ % recent_.size()] = {s.data(), s.size(), it->second};
    return it->second;
  }

  // The location ids of a stack.
  absl::Span<const uint64_t> Stack(const std::vector<uint64_t>& stack) {
    if (have_last_ && stack == last_stack_) return last_ids_;
    auto [it, inserted] = stacks_.try_emplace(stack);
    if (inserted) {
      it->second.reserve(stack.size());
      for (size_t i = 0; i < stack.size(); ++i) {
        it->second.push_back(b_.Location(bin_, stack[i], frames_.IsReturnAddress(stack, i)));
      }
    }
    last_stack_ = stack;
    last_ids_ = it->second;
    have_last_ = true;
    return last_ids_;
  }

  // (function, file:line) string ids of a creation site; {-1, -1} when
  // it cannot be named.
  std::pair<int64_t, int64_t> Creator(uint64_t gopc) {
    auto [it, inserted] = creators_.try_emplace(gopc, -1, -1);
    if (inserted) {
      auto site = CreatedBy(binary_, gopc);
      if (site.ok() && !site->function.empty()) {
        KeyId(kCreatedBy);
        it->second.first = b_.String(site->function);
        KeyId(kCreatedAt);
        it->second.second = b_.String(absl::StrCat(site->file, ":", site->line));
      }
    }
    return it->second;
  }

 private:
  PprofBuilder& b_;
  const symbolizer::GoBinary& binary_;
  int bin_;
  GoFrames frames_;
  std::array<int64_t, kNumKeys> keys_;
  absl::flat_hash_map<std::pair<const char*, size_t>, int64_t> statics_;
  struct Recent {
    const char* data = nullptr;
    size_t size = 0;
    int64_t id = 0;
  };
  std::array<Recent, 4> recent_{};
  size_t next_recent_ = 0;
  absl::flat_hash_map<std::vector<uint64_t>, std::vector<uint64_t>> stacks_;
  std::vector<uint64_t> last_stack_;
  std::vector<uint64_t> last_ids_;
  bool have_last_ = false;
  absl::flat_hash_map<uint64_t, std::pair<int64_t, int64_t>> creators_;
};

void AddLabel(pp::Sample* s, int64_t key, int64_t str) {
  pp::Label* l = s->add_label();
  l->set_key(key);
  l->set_str(str);
}

}  // namespace

absl::Status GoroutineProfileInto(const Snapshot& snap, const symbolizer::GoBinary& binary,
                                  perftools::profiles::Profile* out) {
  out->Clear();
  PprofBuilder b;
  b.AddSampleType("goroutines", "count");
  b.AddSampleType("wait", "nanoseconds");
  b.profile().set_time_nanos(snap.time_nanos);
  // pprof shows the last sample type unless told: counts are the default.
  b.profile().set_default_sample_type(b.String("goroutines"));
  auto bin = b.AddBinary(binary, absl::StrCat("/proc/", snap.pid, "/exe"));
  if (!bin.ok()) return bin.status();
  SampleIds ids(b, binary, *bin);
  // Samples go straight into *out (on its arena when it has one); the
  // builder's tables are merged in at the end.
  out->mutable_sample()->Reserve(static_cast<int>(snap.goroutines.size()));
  for (const Goroutine& g : snap.goroutines) {
    pp::Sample* s = out->add_sample();
    absl::Span<const uint64_t> locs = ids.Stack(g.stack);
    s->mutable_location_id()->Reserve(static_cast<int>(locs.size()));
    for (uint64_t id : locs) s->add_location_id(id);
    s->mutable_value()->Reserve(2);
    s->add_value(1);
    bool known = g.wait_kind == WaitKnowledge::kLowerBound || g.wait_kind == WaitKnowledge::kExact;
    s->add_value(known ? g.wait_ns : 0);
    s->mutable_label()->Reserve(static_cast<int>(7 + g.labels.size()));
    pp::Label* l = s->add_label();
    l->set_key(ids.KeyId(SampleIds::kGoroutine));
    l->set_num(static_cast<int64_t>(g.id));
    if (g.parent_id != 0) {
      l = s->add_label();
      l->set_key(ids.KeyId(SampleIds::kParent));
      l->set_num(static_cast<int64_t>(g.parent_id));
    }
    int64_t key = ids.KeyId(SampleIds::kState);
    AddLabel(s, key, ids.StaticString(g.state));
    if (!g.wait_reason.empty()) {
      key = ids.KeyId(SampleIds::kWaitReason);
      AddLabel(s, key, ids.StaticString(g.wait_reason));
    }
    if (g.wait_kind != WaitKnowledge::kNotWaiting) {
      key = ids.KeyId(SampleIds::kWait);
      AddLabel(s, key,
               ids.StaticString(g.wait_kind == WaitKnowledge::kExact        ? "exact"
                                : g.wait_kind == WaitKnowledge::kLowerBound ? "lower bound"
                                                                            : "unknown"));
    }
    if (g.gopc != 0 && g.id != 1) {  // Go names no creator for the main goroutine
      auto [fn, at] = ids.Creator(g.gopc);
      if (fn >= 0) {
        AddLabel(s, ids.KeyId(SampleIds::kCreatedBy), fn);
        AddLabel(s, ids.KeyId(SampleIds::kCreatedAt), at);
      }
    }
    for (const auto& [k, v] : g.labels) {
      key = b.String(k);
      AddLabel(s, key, b.String(v));
    }
  }
  std::string go_version = binary.build_info().go_version;
  if (go_version.empty()) go_version = binary.version().ToString();
  const SnapshotStats& st = snap.stats;
  b.AddComment(absl::StrCat("goerrprof: goroutine snapshot of pid ", snap.pid));
  b.AddComment(absl::StrCat("go version: ", go_version));
  b.AddComment("wait: goroutine.wait=lower bound (g.waitsince, stamped by the GC after parking), "
               "exact (sampled sync.Mutex/RWMutex parks, g.trackingStamp), unknown (value 0)");
  b.AddComment(absl::StrFormat(
      "counts: goroutines=%d allgs=%d dead=%d system_hidden=%d retried=%d skipped=%d "
      "stacks_truncated=%d labels_unreadable=%d read_ns=%d",
      snap.goroutines.size(), st.allgs, st.dead, st.system_hidden, st.retried, st.skipped,
      st.stacks_truncated, st.labels_unreadable, st.elapsed_ns));
  // The builder's profile has no samples: merging adds its tables and
  // fields to the samples already in *out.
  out->MergeFrom(b.profile());
  return absl::OkStatus();
}

absl::StatusOr<perftools::profiles::Profile> GoroutineProfile(
    const Snapshot& snap, const symbolizer::GoBinary& binary) {
  perftools::profiles::Profile p;
  absl::Status s = GoroutineProfileInto(snap, binary, &p);
  if (!s.ok()) return s;
  return p;
}

}  // namespace goerrprof::profiler
