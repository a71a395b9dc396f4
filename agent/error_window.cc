#include "agent/error_window.h"

#include <zlib.h>

#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "pprof/pprof_writer.h"

namespace goerrprof::profiler {

absl::StatusOr<std::string> Gzip(const std::string& bytes) {
  z_stream z = {};
  // 15 + 16: a gzip header and trailer, as pprof files have.
  if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    return absl::InternalError("deflateInit2 failed");
  }
  std::string out(deflateBound(&z, bytes.size()), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(bytes.data()));
  z.avail_in = static_cast<uInt>(bytes.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  int rc = deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  if (rc != Z_STREAM_END) return absl::InternalError("deflate failed");
  return out;
}

absl::StatusOr<int> WindowSeconds(const std::string& target) {
  size_t q = target.find('?');
  if (q == std::string::npos) return 30;
  for (absl::string_view param : absl::StrSplit(target.substr(q + 1), '&')) {
    if (!absl::StartsWith(param, "seconds=")) continue;
    int n = 0;
    if (!absl::SimpleAtoi(param.substr(8), &n) || n < 1 || n > kMaxWindowSeconds) {
      return absl::InvalidArgumentError(
          absl::StrCat("seconds must be 1 to ", kMaxWindowSeconds, ", not \"", param.substr(8),
                       "\""));
    }
    return n;
  }
  return 30;
}

ErrorWindow::ErrorWindow(const Recorder& rec, absl::Duration length)
    : start_(absl::Now()),
      due_(start_ + length),
      gone_([&] {
        ErrorProfile::Options o;
        o.messages = rec.profile().options().messages;
        return o;
      }()) {
  for (const ErrorProfile::Sample& s : rec.profile().Samples()) before_[*s.key] = s.count;
}

absl::StatusOr<std::string> ErrorWindow::Finish(const Recorder& rec,
                                                const ContainerOf& container_of) const {
  auto built = Build(rec, container_of);
  if (!built.ok()) return built.status();
  return Gzip(built->SerializeAsString());
}

absl::StatusOr<perftools::profiles::Profile> ErrorWindow::Build(
    const Recorder& rec, const ContainerOf& container_of) const {
  ErrorProfile::Options options;
  options.messages = rec.profile().options().messages;
  ErrorProfile delta(options);
  for (const ErrorProfile::Sample& s : rec.profile().Samples()) {
    auto it = before_.find(*s.key);
    const uint64_t was = it == before_.end() ? 0 : it->second;
    if (s.count > was) delta.Add(*s.key, s.count - was);
  }
  // Evicted processes' growth, numbered after the live ones.
  const auto live = static_cast<uint32_t>(rec.traced().size());
  for (const ErrorProfile::Sample& s : gone_.Samples()) {
    SampleKey key = *s.key;
    key.process += live;
    delta.Add(std::move(key), s.count);
  }
  // Every process ever attached, so the samples' process numbers hold.
  std::vector<ProfiledProcess> processes;
  for (const Recorder::TracedProcess& t : rec.traced()) {
    ProfiledProcess& p = processes.emplace_back();
    p.binary = t.plan->binary.get();
    p.path = t.plan->path;
    p.pid = static_cast<uint32_t>(t.pid);
    if (container_of) container_of(t.pid, &p.container_id, &p.pod_uid);
  }
  processes.insert(processes.end(), gone_processes_.begin(), gone_processes_.end());
  PprofInfo info;
  info.time_nanos = absl::ToUnixNanos(start_);
  info.duration_nanos = absl::ToInt64Nanoseconds(absl::Now() - start_);
  info.label_processes = true;
  for (const Recorder::TracedProcess& t : rec.traced()) info.probes_attached += t.live ? t.probes : 0;
  return BuildPprof(delta, processes, info);
}

void ErrorWindow::Fold(const Recorder::Evicted& gone, const ContainerOf& container_of) {
  if (gone.empty()) return;
  absl::flat_hash_map<uint32_t, const Recorder::Evicted::Process*> by_index;
  for (const Recorder::Evicted::Process& p : gone.processes) by_index[p.index] = &p;
  // Their numbers in gone_, by old process number; given only to a process
  // that created something in the window.
  absl::flat_hash_map<uint32_t, uint32_t> slot;
  auto slot_of = [&](const Recorder::Evicted::Process& p) -> uint32_t {
    auto [it, fresh] = slot.try_emplace(p.index, static_cast<uint32_t>(gone_processes_.size()));
    if (!fresh) return it->second;
    ProfiledProcess& out = gone_processes_.emplace_back();
    out.binary = p.plan->binary.get();
    out.path = p.plan->path;
    out.pid = static_cast<uint32_t>(p.pid);
    // Now, while the agent still knows the process's cgroup.
    if (container_of) container_of(p.pid, &out.container_id, &out.pod_uid);
    if (gone_plans_.empty() || gone_plans_.back() != p.plan) gone_plans_.push_back(p.plan);
    return it->second;
  };
  for (const ErrorProfile::Removed& r : gone.samples) {
    auto it = before_.find(r.key);
    const uint64_t was = it == before_.end() ? 0 : it->second;
    if (it != before_.end()) before_.erase(it);
    auto p = by_index.find(r.key.process);
    if (r.count <= was || p == by_index.end()) continue;
    SampleKey key = r.key;
    key.process = slot_of(*p->second);
    gone_.Add(std::move(key), r.count - was);
  }
  // The start's counts of the processes that stay, under their new numbers.
  absl::flat_hash_map<SampleKey, uint64_t> before;
  before.reserve(before_.size());
  for (const auto& [key, count] : before_) {
    if (key.process >= gone.renumber.size()) {
      before.emplace(key, count);
      continue;
    }
    const uint32_t to = gone.renumber[key.process];
    if (to == ErrorProfile::kRemoved) continue;  // a sample gone before it grew
    SampleKey k = key;
    k.process = to;
    before.emplace(std::move(k), count);
  }
  before_ = std::move(before);
}

}  // namespace goerrprof::profiler
