#include "aggregate/sampled_wait_profile.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "goroutines/goroutine_frames.h"
#include "pprof/labels.h"
#include "pprof/pprof_builder.h"

namespace goerrprof::profiler {

namespace pp = perftools::profiles;

void WaitSampleAggregator::Add(const Snapshot& snap) {
  ++totals_.snapshots;
  totals_.torn_skipped += snap.stats.skipped;
  for (const Goroutine& g : snap.goroutines) {
    if (g.wait_reason.empty()) continue;  // running, runnable, in a syscall
    ++totals_.waiting_samples;
    Key key{g.stack, std::string(g.wait_reason)};
    auto it = samples_.find(key);
    if (it == samples_.end() && samples_.size() - other_keys_ >= options_.max_keys) {
      // Past the cap: one bucket per wait reason (a bounded set).
      ++totals_.other_samples;
      key.stack.clear();
      it = samples_.find(key);
      if (it == samples_.end()) {
        it = samples_.emplace(std::move(key), 0).first;
        ++other_keys_;
      }
    } else if (it == samples_.end()) {
      it = samples_.emplace(std::move(key), 0).first;
    }
    ++it->second;
  }
}

absl::StatusOr<pp::Profile> BuildSampledWaitProfile(const WaitSampleAggregator& agg,
                                                    const symbolizer::GoBinary& binary,
                                                    const SampledWaitInfo& info) {
  const int64_t period = agg.options().period_ns;
  PprofBuilder b;
  b.AddSampleType("samples", "count");
  b.AddSampleType("blocked", "nanoseconds");
  pp::Profile& p = b.profile();
  p.set_default_sample_type(b.String("blocked"));
  p.mutable_period_type()->set_type(b.String("blocked"));
  p.mutable_period_type()->set_unit(b.String("nanoseconds"));
  p.set_period(period);
  p.set_time_nanos(info.time_nanos);
  p.set_duration_nanos(info.duration_nanos);
  absl::StatusOr<int> bin = b.AddBinary(binary, info.binary_path);
  if (!bin.ok()) return bin.status();

  GoFrames frames(binary);
  std::vector<std::pair<const WaitSampleAggregator::Key*, uint64_t>> others;
  for (const auto& [key, n] : agg.samples()) {
    if (key.stack.empty()) {
      others.emplace_back(&key, n);
      continue;
    }
    pp::Sample* s = p.add_sample();
    for (size_t i = 0; i < key.stack.size(); ++i) {
      // The first PC is where mcall returns in gopark: a return address
      // too. The others are, unless a signal interrupted the frame.
      bool ret = i == 0 || frames.IsReturnAddress(key.stack, i);
      s->add_location_id(b.Location(*bin, key.stack[i], ret));
    }
    s->add_value(static_cast<int64_t>(n));
    s->add_value(static_cast<int64_t>(n) * period);
    b.Label(s, kLabelWaitReason, key.wait_reason);
  }
  if (!others.empty()) {
    // A location of its own, added last so the builder's ids stay unique.
    pp::Function* f = p.add_function();
    f->set_id(p.function_size());
    f->set_name(b.String(kOtherStack));
    f->set_system_name(f->name());
    pp::Location* loc = p.add_location();
    loc->set_id(p.location_size());
    loc->add_line()->set_function_id(f->id());
    for (const auto& [key, n] : others) {
      pp::Sample* s = p.add_sample();
      s->add_location_id(loc->id());
      s->add_value(static_cast<int64_t>(n));
      s->add_value(static_cast<int64_t>(n) * period);
      b.Label(s, kLabelWaitReason, key->wait_reason);
    }
  }

  b.AddHeaderComments(absl::StrCat("goerrprof: goroutine waits sampled in ", binary.elf().path(),
                                   info.pid != 0 ? absl::StrCat(" (pid ", info.pid, ")") : ""),
                      binary, info.duration_nanos);
  const WaitSampleTotals& t = agg.totals();
  b.AddComment(absl::StrFormat(
      "mode=sample hz=%d snapshots=%d snapshots_failed=%d torn_skipped=%d waiting_samples=%d "
      "keys=%d other_samples=%d",
      info.hz, t.snapshots, t.snapshots_failed, t.torn_skipped, t.waiting_samples,
      agg.samples().size(), t.other_samples));
  b.AddComment(
      "each goroutine seen waiting in a snapshot adds one sample and 1/hz of blocked time; "
      "system goroutines are left out");
  return b.Release();
}

}  // namespace goerrprof::profiler
