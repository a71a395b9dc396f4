#include "aggregate/error_profile.h"

#include <algorithm>
#include <tuple>

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
  const uint64_t site = key.stack[0];
  sites_.insert(site);
  absl::flat_hash_set<std::string>& seen = site_messages_[site];
  if (!seen.contains(key.message)) {
    if (seen.size() >= options_.max_messages_per_site) {
      key.message = std::string(kOtherMessage);
      counters_.other_messages += count;
    } else {
      seen.insert(key.message);
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

std::vector<ErrorProfile::Sample> ErrorProfile::Samples() const {
  std::vector<Sample> out;
  out.reserve(samples_.size());
  for (const auto& [key, count] : samples_) out.push_back({&key, count});
  std::sort(out.begin(), out.end(), [](const Sample& a, const Sample& b) {
    if (a.count != b.count) return a.count > b.count;
    return a.key->Tie() < b.key->Tie();
  });
  return out;
}

}  // namespace goerrprof::profiler
