#include "aggregate/error_profile.h"

#include <algorithm>
#include <tuple>

#include "absl/strings/str_cat.h"

namespace goerrprof::profiler {

uint64_t ProfileCounters::dropped() const {
  uint64_t n = 0;
  for (const auto& [reason, count] : drops) n += count;
  return n;
}

void ErrorProfile::Add(const CapturedError& e, uint32_t process) {
  Add(e, process, options_.render);
}

void ErrorProfile::AddPanic(const CapturedError& e, uint32_t process,
                            const RenderOptions& render, bool recovered) {
  SampleKey key = KeyOf(e, process, render);
  key.panic = recovered ? PanicState::kRecovered : PanicState::kUnrecovered;
  Add(std::move(key), 1, e.complete() ? 0 : 1);
}

void ErrorProfile::Add(const CapturedError& e, uint32_t process, const RenderOptions& render) {
  Add(KeyOf(e, process, render), 1, e.complete() ? 0 : 1);
}

SampleKey ErrorProfile::KeyOf(const CapturedError& e, uint32_t process,
                              const RenderOptions& render) {
  SampleKey key;
  key.stack = e.stack.empty() ? std::vector<uint64_t>{e.ip} : e.stack;
  // Users read the leaf first: the creation, not where the probe could sit.
  if (e.site != 0) key.stack[0] = e.site;
  key.type = e.links.empty() ? LinkTypeName(CapturedLink{}) : LinkTypeName(e.links[0]);
  key.message = RenderMessage(e, 0, render);
  key.chain = RenderChain(e);
  key.goroutine = e.goid;
  // Go names no creator for goroutine 1 either (runtime.main's is assembly).
  key.created_by = e.goid == 1 ? 0 : e.gopc;
  key.labels = e.labels;
  std::sort(key.labels.begin(), key.labels.end());
  key.process = process;
  return key;
}

void ErrorProfile::Add(SampleKey key, uint64_t count, uint64_t partial) {
  if (key.stack.empty() || count == 0) return;
  // Before the key is counted: texts that redact alike are one sample, and
  // the per-site cap counts what is exported.
  switch (options_.messages) {
    case MessagePolicy::kFull:
      break;
    case MessagePolicy::kRedact:
      key.message = RedactText(key.message);
      for (auto& [name, value] : key.labels) value = RedactText(value);
      break;
    case MessagePolicy::kOff:
      key.message.clear();
      key.labels.clear();
      break;
  }
  const uint64_t site = key.stack[0];
  sites_.insert(site);
  // Everything that varies per event at one site (message, chain text,
  // goroutine) is capped together: a server formatting ids into messages,
  // or running each request on a new goroutine, stays bounded.
  absl::flat_hash_set<std::string>& seen = site_messages_[site];
  std::string detail = absl::StrCat(key.message, "\x00", key.chain, "\x00", key.goroutine);
  if (!seen.contains(detail)) {
    if (seen.size() >= options_.max_messages_per_site) {
      key.message = std::string(kOtherMessage);
      key.chain = std::string(kOtherMessage);
      key.goroutine = 0;
      counters_.other_messages += count;
    } else {
      seen.insert(std::move(detail));
    }
  }
  counters_.events += count;
  if (key.panic != PanicState::kNone) counters_.panics += count;
  counters_.partial += partial;
  samples_[std::move(key)] += count;
}

void ErrorProfile::SetDrops(absl::string_view reason, uint64_t count) {
  if (count == 0) {
    counters_.drops.erase(std::string(reason));
  } else {
    counters_.drops[std::string(reason)] = count;
  }
}

void ErrorProfile::SetEstimate(uint32_t process, uint64_t site, double missed) {
  if (missed > 0) {
    estimates_[{process, site}] = missed;
  } else {
    estimates_.erase(std::make_pair(process, site));
  }
}

uint64_t ErrorProfile::estimated_total() const {
  uint64_t total = 0;
  for (const Sample& s : Samples()) total += s.count - s.observed;
  return total;
}

std::vector<ErrorProfile::Removed> ErrorProfile::RemoveProcesses(
    const std::vector<uint32_t>& renumber) {
  auto fate = [&](uint32_t process) {
    return process < renumber.size() ? renumber[process] : process;
  };
  std::vector<Removed> removed;
  // Counts with their estimate shares, as Samples() makes them: the
  // estimate leaves with its process.
  for (const Sample& s : Samples()) {
    if (fate(s.key->process) == kRemoved) removed.push_back({*s.key, s.count});
  }
  // Keys change (and the table shrinks): rebuilt rather than edited.
  absl::flat_hash_map<SampleKey, uint64_t> kept;
  kept.reserve(samples_.size() - removed.size());
  for (const auto& [key, count] : samples_) {
    const uint32_t to = fate(key.process);
    if (to == kRemoved) continue;
    SampleKey k = key;
    k.process = to;
    kept.emplace(std::move(k), count);
  }
  samples_ = std::move(kept);
  absl::flat_hash_map<std::pair<uint32_t, uint64_t>, double> estimates;
  for (const auto& [id, missed] : estimates_) {
    const uint32_t to = fate(id.first);
    if (to != kRemoved) estimates[{to, id.second}] = missed;
  }
  estimates_ = std::move(estimates);
  return removed;
}

std::vector<ErrorProfile::Sample> ErrorProfile::Samples() const {
  std::vector<Sample> out;
  out.reserve(samples_.size());
  // Observed creations (not panics) per estimated site, for the shares.
  absl::flat_hash_map<std::pair<uint32_t, uint64_t>, uint64_t> observed;
  if (!estimates_.empty()) {
    for (const auto& [key, count] : samples_) {
      if (key.panic != PanicState::kNone || key.stack.empty()) continue;
      auto id = std::make_pair(key.process, key.stack[0]);
      if (estimates_.contains(id)) observed[id] += count;
    }
  }
  for (const auto& [key, count] : samples_) {
    Sample s{&key, count, count, false};
    if (!observed.empty() && key.panic == PanicState::kNone && !key.stack.empty()) {
      auto id = std::make_pair(key.process, key.stack[0]);
      if (auto it = estimates_.find(id); it != estimates_.end()) {
        const double share = it->second * static_cast<double>(count) /
                             static_cast<double>(observed[id]);
        s.count = count + static_cast<uint64_t>(share + 0.5);
        s.estimated = true;
      }
    }
    out.push_back(s);
  }
  std::sort(out.begin(), out.end(), [](const Sample& a, const Sample& b) {
    if (a.count != b.count) return a.count > b.count;
    return a.key->Tie() < b.key->Tie();
  });
  return out;
}

}  // namespace goerrprof::profiler
