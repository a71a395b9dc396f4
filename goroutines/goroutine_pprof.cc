#include "goroutines/goroutine_pprof.h"

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "goabi/g_layout.h"
#include "goroutines/goroutine_frames.h"
#include "pprof/pprof_builder.h"
#include "pprof/labels.h"

namespace goerrprof::profiler {

absl::StatusOr<perftools::profiles::Profile> GoroutineProfile(
    const Snapshot& snap, const symbolizer::GoBinary& binary) {
  PprofBuilder b;
  b.AddSampleType("goroutines", "count");
  b.AddSampleType("wait", "nanoseconds");
  b.profile().set_time_nanos(snap.time_nanos);
  // pprof shows the last sample type unless told: counts are the default.
  b.profile().set_default_sample_type(b.String("goroutines"));
  auto bin = b.AddBinary(binary, absl::StrCat("/proc/", snap.pid, "/exe"));
  if (!bin.ok()) return bin.status();
  GoFrames frames(binary);
  // gopc -> (function, file:line); goroutines share creation sites.
  absl::flat_hash_map<uint64_t, std::pair<std::string, std::string>> creators;
  for (const Goroutine& g : snap.goroutines) {
    perftools::profiles::Sample* s = b.profile().add_sample();
    for (size_t i = 0; i < g.stack.size(); ++i) {
      s->add_location_id(b.Location(*bin, g.stack[i], frames.IsReturnAddress(g.stack, i)));
    }
    s->add_value(1);
    bool known = g.wait_kind == WaitKnowledge::kLowerBound || g.wait_kind == WaitKnowledge::kExact;
    s->add_value(known ? g.wait_ns : 0);
    b.NumLabel(s, kLabelGoroutine, static_cast<int64_t>(g.id));
    if (g.parent_id != 0) b.NumLabel(s, kLabelParent, static_cast<int64_t>(g.parent_id));
    b.Label(s, kLabelState, g.state);
    if (!g.wait_reason.empty()) b.Label(s, kLabelWaitReason, g.wait_reason);
    if (g.wait_kind != WaitKnowledge::kNotWaiting) {
      b.Label(s, kLabelWait, g.wait_kind == WaitKnowledge::kExact        ? "exact"
                             : g.wait_kind == WaitKnowledge::kLowerBound ? "lower bound"
                                                                         : "unknown");
    }
    if (g.gopc != 0 && g.id != 1) {  // Go names no creator for the main goroutine
      auto [it, inserted] = creators.try_emplace(g.gopc);
      if (inserted) {
        auto site = CreatedBy(binary, g.gopc);
        if (site.ok()) it->second = {site->function, absl::StrCat(site->file, ":", site->line)};
      }
      if (!it->second.first.empty()) {
        b.Label(s, kLabelCreatedBy, it->second.first);
        b.Label(s, kLabelCreatedAt, it->second.second);
      }
    }
    for (const auto& [k, v] : g.labels) b.Label(s, k, v);
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
  return b.Release();
}

}  // namespace goerrprof::profiler
