#include "aggregate/park_profile.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "pprof/pprof_builder.h"
#include "pprof/labels.h"
#include "pprof/profile_file.h"

namespace goerrprof::profiler {
namespace {

namespace pp = perftools::profiles;

// The frames every wakeup passes through, whoever wakes.
bool IsWakeMachinery(absl::string_view fn) {
  // goready's closure is named after wherever goready was inlined
  // ("runtime.goroutineReady.goready.func1"; "_.goready.func1" in 1.27).
  return fn == "runtime.ready" || fn == "runtime.goready" || fn == "runtime.systemstack" ||
         fn == "runtime.readyWithTime" || absl::StrContains(fn, "goready.func");
}

bool IsPlumbing(absl::string_view fn) {
  return absl::StartsWith(fn, "runtime.") || absl::StartsWith(fn, "sync.") ||
         absl::StartsWith(fn, "internal/") || absl::StartsWith(fn, "runtime/") ||
         IsWakeMachinery(fn);
}

}  // namespace

absl::string_view ParkStateName(ParkState s) {
  switch (s) {
    case ParkState::kResumed:
      return "resumed";
    case ParkState::kStillParked:
      return "still_parked";
    case ParkState::kParkedBeforeStart:
      return "parked_before_start";
  }
  return "";
}

ParkAggregator::ParkAggregator(const symbolizer::GoBinary& binary, const goabi::GLayout& layout,
                               uint64_t start_ns)
    : binary_(binary), layout_(layout), start_ns_(start_ns) {}

const std::vector<std::string>& ParkAggregator::FunctionsAt(uint64_t pc, bool ret) {
  auto [it, inserted] = names_.try_emplace(std::make_pair(pc, ret));
  if (inserted) {
    auto frames = binary_.Symbolize(ret && pc > 0 ? pc - 1 : pc);
    if (frames.ok()) {
      for (const symbolizer::SourceFrame& f : *frames) it->second.emplace_back(f.function);
    }
  }
  return it->second;
}

std::string ParkAggregator::UserFunction(const std::vector<uint64_t>& stack, bool all_returns) {
  for (size_t i = 0; i < stack.size(); ++i) {
    for (const std::string& fn : FunctionsAt(stack[i], i > 0 || all_returns)) {
      if (!IsPlumbing(fn)) return fn;
    }
  }
  return "";
}

std::string ParkAggregator::WakerFunction(const std::vector<uint64_t>& stack,
                                          bool all_returns) {
  std::string user = UserFunction(stack, all_returns);
  if (!user.empty()) return user;
  for (size_t i = 0; i < stack.size(); ++i) {
    for (const std::string& fn : FunctionsAt(stack[i], i > 0 || all_returns)) {
      if (!IsWakeMachinery(fn)) return fn;
    }
  }
  return "(unknown)";
}

void ParkAggregator::Finish(std::vector<uint64_t> stack, uint8_t reason, uint64_t blocked,
                            uint64_t runnable, ParkState state, const Waker* waker) {
  if (waker) {
    WakeKey wk{waker->stack, waker->all_returns, reason, UserFunction(stack)};
    if (wk.woken.empty()) wk.woken = "(unknown)";
    ++wakeups_[wk];
  }
  ParkKey key{std::move(stack), reason, waker ? waker->function : "(none)", state};
  ParkValue& v = parks_[key];
  ++v.parks;
  v.blocked_ns += blocked;
  v.runnable_ns += std::min(runnable, blocked);
}

void ParkAggregator::Add(const ParkRecord& r) {
  if (closed_) return;
  if (r.goid == 0) {
    ++totals_.unknown_goid;
    return;
  }
  switch (r.kind) {
    case ParkRecord::kPark: {
      ++totals_.parks;
      Open o{r.ts_ns, r.wait_reason, r.stack, false, {}};
      auto [it, inserted] = open_.try_emplace(r.goid, std::move(o));
      if (!inserted) {  // its resume was lost: that park's length is unknown
        ++totals_.lost_resumes;
        it->second = Open{r.ts_ns, r.wait_reason, r.stack, false, {}};
      }
      early_wake_.erase(r.goid);
      break;
    }
    case ParkRecord::kReady: {
      ++totals_.wakeups;
      Waker w{r.stack, r.all_returns, WakerFunction(r.stack, r.all_returns), r.ts_ns};
      auto it = open_.find(r.goid);
      if (it != open_.end()) {
        it->second.woken = true;
        it->second.waker = std::move(w);
      } else {
        early_wake_[r.goid] = std::move(w);
      }
      break;
    }
    case ParkRecord::kResume: {
      auto it = open_.find(r.goid);
      if (it != open_.end()) {
        ++totals_.resumes;
        Open o = std::move(it->second);
        open_.erase(it);
        uint64_t blocked = r.ts_ns > o.ts_ns ? r.ts_ns - o.ts_ns : 0;
        uint64_t runnable = o.woken && r.ts_ns > o.waker.ts_ns ? r.ts_ns - o.waker.ts_ns : 0;
        Finish(std::move(o.stack), o.wait_reason, blocked, runnable, ParkState::kResumed,
               o.woken ? &o.waker : nullptr);
        break;
      }
      auto w = early_wake_.find(r.goid);
      std::optional<Waker> waker;
      if (w != early_wake_.end()) {
        waker = std::move(w->second);
        early_wake_.erase(w);
      }
      if (!r.untracked) {  // the probe saw the park; its record was lost
        ++totals_.lost_parks;
        break;
      }
      ++totals_.resumed_before_start;
      uint64_t blocked = r.ts_ns > start_ns_ ? r.ts_ns - start_ns_ : 0;
      uint64_t runnable = waker && r.ts_ns > waker->ts_ns ? r.ts_ns - waker->ts_ns : 0;
      Finish(r.stack, r.wait_reason, blocked, runnable, ParkState::kParkedBeforeStart,
             waker ? &*waker : nullptr);
      break;
    }
  }
}

void ParkAggregator::Close(uint64_t stop_ns) {
  if (closed_) return;
  closed_ = true;
  for (auto& [goid, o] : open_) {
    ++totals_.still_parked;
    uint64_t blocked = stop_ns > o.ts_ns ? stop_ns - o.ts_ns : 0;
    // Woken but not yet running at the stop: still counted as parked.
    uint64_t runnable = o.woken && stop_ns > o.waker.ts_ns ? stop_ns - o.waker.ts_ns : 0;
    Finish(std::move(o.stack), o.wait_reason, blocked, runnable, ParkState::kStillParked,
           o.woken ? &o.waker : nullptr);
  }
  open_.clear();
  totals_.orphan_wakeups = early_wake_.size();
  early_wake_.clear();
}

absl::StatusOr<pp::Profile> BuildParkProfile(const ParkAggregator& agg,
                                             const symbolizer::GoBinary& binary,
                                             const ParkProfileInfo& info) {
  PprofBuilder b;
  b.AddSampleType("parks", "count");
  b.AddSampleType("blocked", "nanoseconds");
  b.AddSampleType("runnable", "nanoseconds");
  b.AddSampleType("wakeups", "count");
  pp::Profile& p = b.profile();
  p.set_default_sample_type(b.String("blocked"));
  p.set_time_nanos(info.time_nanos);
  p.set_duration_nanos(info.duration_nanos);
  absl::StatusOr<int> bin = b.AddBinary(binary, info.binary_path);
  if (!bin.ok()) return bin.status();

  auto reason_of = [&](uint8_t r) {
    std::string_view w = agg.WaitReason(r);
    return w.empty() ? absl::StrCat("waitReason(", r, ")") : std::string(w);
  };
  for (const auto& [key, v] : agg.parks()) {
    pp::Sample* s = b.AddSample(*bin, key.stack);
    s->add_value(static_cast<int64_t>(v.parks));
    s->add_value(static_cast<int64_t>(v.blocked_ns));
    s->add_value(static_cast<int64_t>(v.runnable_ns));
    s->add_value(0);
    b.Label(s, kLabelWaitReason, reason_of(key.wait_reason));
    b.Label(s, kLabelWaker, key.waker);
    b.Label(s, kLabelParkState, ParkStateName(key.state));
  }
  for (const auto& [key, n] : agg.wakeups()) {
    pp::Sample* s = b.AddSample(*bin, {});
    for (size_t i = 0; i < key.stack.size(); ++i) {
      s->add_location_id(b.Location(*bin, key.stack[i], i > 0 || key.all_returns));
    }
    s->add_value(0);
    s->add_value(0);
    s->add_value(0);
    s->add_value(static_cast<int64_t>(n));
    b.Label(s, kLabelWaitReason, reason_of(key.wait_reason));
    b.Label(s, kLabelWoken, key.woken);
  }

  b.AddHeaderComments(absl::StrCat("goerrprof: goroutine parks in ", binary.elf().path()), binary,
                      info.duration_nanos);
  const ParkTotals& t = agg.totals();
  b.AddComment(absl::StrFormat(
      "parks=%d resumes=%d wakeups=%d still_parked=%d parked_before_start=%d lost_parks=%d "
      "lost_resumes=%d orphan_wakeups=%d unknown_goid=%d",
      t.parks, t.resumes, t.wakeups, t.still_parked, t.resumed_before_start, t.lost_parks,
      t.lost_resumes, t.orphan_wakeups, t.unknown_goid));
  for (const auto& [name, value] : info.counters) b.AddComment(absl::StrCat(name, "=", value));
  return b.Release();
}

absl::Status WriteParkProfile(const pp::Profile& profile, const std::string& path) {
  return WriteProfileFile(profile, path);
}

}  // namespace goerrprof::profiler
