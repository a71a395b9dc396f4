#include "agent/metrics.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "diff/profile_diff.h"
#include "pprof/pprof_writer.h"

namespace goerrprof::profiler {
namespace {

std::string BaseName(const std::string& path) { return path.substr(path.rfind('/') + 1); }

void Header(std::string* out, absl::string_view name, absl::string_view type,
            absl::string_view help) {
  absl::StrAppend(out, "# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
}

// Integers as integers: StrCat of a double would write 38531072 as 3.85311e+07.
void Gauge(std::string* out, absl::string_view name, absl::string_view help, uint64_t v,
           absl::string_view type = "gauge") {
  Header(out, name, type, help);
  absl::StrAppend(out, name, " ", v, "\n");
}

}  // namespace

std::string EscapeLabelValue(absl::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

absl::StatusOr<std::map<std::string, ErrorMetrics::SiteCounts>> ErrorMetrics::CountSites(
    const std::vector<Counted>& samples, const std::vector<Process>& processes) const {
  // Processes by binary base name, each sub-profile numbering its own.
  struct Group {
    std::unique_ptr<ErrorProfile> profile;
    std::vector<ProfiledProcess> processes;
  };
  std::map<std::string, Group> groups;
  std::vector<std::pair<Group*, uint32_t>> where(processes.size());
  ErrorProfile::Options options;
  options.messages = MessagePolicy::kOff;  // sites only: no texts to keep
  for (size_t i = 0; i < processes.size(); ++i) {
    const ExecutablePlan& plan = *processes[i].plan;
    Group& g = groups[BaseName(plan.path)];
    if (!g.profile) g.profile = std::make_unique<ErrorProfile>(options);
    where[i] = {&g, static_cast<uint32_t>(g.processes.size())};
    ProfiledProcess& p = g.processes.emplace_back();
    p.binary = plan.binary.get();
    p.path = plan.path;
    p.pid = static_cast<uint32_t>(processes[i].pid);
  }
  for (const Counted& s : samples) {
    if ((s.key->panic != PanicState::kNone) != panics_ || s.process >= where.size()) continue;
    SampleKey key = *s.key;
    auto [group, index] = where[s.process];
    key.process = index;
    // Not part of a site: dropped so samples merge and nothing is looked up.
    key.goroutine = 0;
    key.created_by = 0;
    key.message.clear();
    key.labels.clear();
    group->profile->Add(std::move(key), s.count);
  }
  std::map<std::string, SiteCounts> out;
  for (auto& [name, g] : groups) {
    if (g.profile->num_samples() == 0) continue;
    auto built = BuildPprof(*g.profile, g.processes, PprofInfo{});
    if (!built.ok()) return built.status();
    auto sites = SummarizeProfile(*built);
    if (!sites.ok()) return sites.status();
    SiteCounts& counts = out[name];
    for (const auto& [key, stats] : sites->sites) {
      // SummarizeProfile types a panic site "panic: T"; the metric says so.
      std::string type = key.type;
      if (panics_ && absl::StartsWith(type, "panic: ")) type.erase(0, 7);
      counts[{key.function, key.origin, type}] += static_cast<uint64_t>(stats.count);
    }
  }
  return out;
}

absl::Status ErrorMetrics::Update(const Recorder& rec) {
  const ErrorProfile& profile = rec.profile();
  std::vector<Recorder::TracedProcess> traced = rec.traced();
  // Nothing new since the last recount: its numbers stand.
  auto seen = std::make_tuple(profile.counters().events, profile.estimated_total(), traced.size());
  if (seen == seen_) return absl::OkStatus();

  std::vector<Process> processes;
  for (const Recorder::TracedProcess& t : traced) processes.push_back({t.plan, t.pid});
  std::vector<Counted> samples;
  for (const ErrorProfile::Sample& s : profile.Samples()) {
    samples.push_back({s.key, s.key->process, s.count});
  }
  auto live = CountSites(samples, processes);
  if (!live.ok()) return live.status();
  for (const auto& [name, counts] : *live) binaries_[name];
  static const SiteCounts kNone;
  for (auto& [name, b] : binaries_) {
    auto l = live->find(name);
    const SiteCounts& now = l == live->end() ? kNone : l->second;
    auto count = [](const SiteCounts& c, const SiteLabels& s) {
      auto it = c.find(s);
      return it == c.end() ? uint64_t{0} : it->second;
    };
    // A series is what evicted processes left plus what live ones have;
    // never less than before (an estimate may shrink).
    for (auto& [labels, v] : b.sites) v = std::max(v, count(b.gone, labels) + count(now, labels));
    std::vector<std::pair<uint64_t, SiteLabels>> fresh;
    for (const auto& [labels, n] : now) {
      if (!b.sites.contains(labels)) fresh.emplace_back(n, labels);
    }
    // New sites get series while there is room, the most frequent first.
    std::sort(fresh.begin(), fresh.end(), [](const auto& x, const auto& y) {
      return x.first != y.first ? x.first > y.first : x.second < y.second;
    });
    uint64_t other = b.gone_other;
    for (auto& [n, labels] : fresh) {
      if (b.sites.size() < max_sites_) {
        b.sites.emplace(std::move(labels), n);
      } else {
        other += n;
      }
    }
    b.other = std::max(b.other, other);
  }
  seen_ = seen;
  return absl::OkStatus();
}

absl::Status ErrorMetrics::Fold(const Recorder::Evicted& gone) {
  if (gone.samples.empty()) return absl::OkStatus();
  std::vector<Process> processes;
  absl::flat_hash_map<uint32_t, size_t> slot;  // old process number -> processes
  for (const Recorder::Evicted::Process& p : gone.processes) {
    slot[p.index] = processes.size();
    processes.push_back({p.plan.get(), p.pid});
  }
  std::vector<Counted> samples;
  for (const ErrorProfile::Removed& r : gone.samples) {
    auto it = slot.find(r.key.process);
    if (it != slot.end()) samples.push_back({&r.key, it->second, r.count});
  }
  auto counts = CountSites(samples, processes);
  if (!counts.ok()) return counts.status();
  for (const auto& [name, sites] : *counts) {
    Binary& b = binaries_[name];
    // Admitted as Update would: while there is room, the most frequent first.
    std::vector<std::pair<uint64_t, SiteLabels>> order;
    for (const auto& [labels, n] : sites) order.emplace_back(n, labels);
    std::sort(order.begin(), order.end(), [](const auto& x, const auto& y) {
      return x.first != y.first ? x.first > y.first : x.second < y.second;
    });
    for (const auto& [n, labels] : order) {
      if (b.sites.contains(labels) || b.sites.size() < max_sites_) {
        const uint64_t folded = b.gone[labels] += n;
        uint64_t& v = b.sites[labels];
        v = std::max(v, folded);
      } else {
        b.gone_other += n;
        b.other = std::max(b.other, b.gone_other);
      }
    }
  }
  seen_ = {~uint64_t{0}, 0, 0};  // the live part changed: recount next time
  return absl::OkStatus();
}

void ErrorMetrics::Render(std::string* out) const {
  const char* name = panics_ ? "goerrprof_panics_total" : "goerrprof_errors_total";
  Header(out, name, "counter",
         panics_ ? "Go panics, recovered or not, by executable base name and panicking site "
                   "(innermost function, first caller outside the standard library, the "
                   "panic value's type)."
                 : "Go errors created, by executable base name and creating site (as goerrprof "
                   "diff names it: innermost function, first caller outside the standard "
                   "library, type).");
  auto line = [&](const std::string& binary, const SiteLabels& s, uint64_t v) {
    absl::StrAppend(out, name, "{binary=\"", EscapeLabelValue(binary), "\",function=\"",
                    EscapeLabelValue(s.function), "\",origin=\"", EscapeLabelValue(s.origin),
                    panics_ ? "\",panic_type=\"" : "\",error_type=\"", EscapeLabelValue(s.type),
                    "\"} ", v, "\n");
  };
  for (const auto& [binary, b] : binaries_) {
    for (const auto& [labels, v] : b.sites) line(binary, labels, v);
    if (b.other > 0) line(binary, {"other", "other", "other"}, b.other);
  }
}

std::string RenderMetrics(const Agent& agent, const ErrorMetrics& errors,
                          const ErrorMetrics& panics, size_t windows, const OtlpExporter* otlp,
                          const GoroutineCounts* goroutines) {
  std::string out;
  errors.Render(&out);
  panics.Render(&out);
  const Recorder& rec = agent.recorder();
  size_t probes = 0;
  for (const Recorder::TracedProcess& t : rec.traced()) probes += t.live ? t.probes : 0;
  Gauge(&out, "goerrprof_attached_processes", "Processes with error probes attached now.",
        rec.live_sessions());
  Gauge(&out, "goerrprof_probes",
        "Error probes recording processes now, summed over processes (a probe replicas "
        "share counts once for each).",
        probes);
  Gauge(&out, "goerrprof_detaching_processes",
        "Exited or excluded processes whose probes are still being detached (in the background).",
        rec.detaching());
  Gauge(&out, "goerrprof_evicted_processes_total",
        "Processes that exited and were forgotten, their counts kept in the series.",
        rec.evicted(), "counter");
  Gauge(&out, "goerrprof_dropped_total",
        "Captured errors lost before counting (ring buffer full, unreadable memory).",
        rec.dropped(), "counter");
  Header(&out, "goerrprof_processes", "gauge",
         "Processes seen in /proc now, by what the agent made of them.");
  std::array<size_t, kNumStatuses> counts = agent.StatusCounts();
  for (size_t i = 0; i < kNumStatuses; ++i) {
    absl::StrAppend(&out, "goerrprof_processes{status=\"",
                    StatusName(static_cast<ProcessStatus>(i)), "\"} ", counts[i], "\n");
  }
  Gauge(&out, "goerrprof_pprof_windows", "Requests for /debug/pprof/errors in progress.",
        windows);
  if (goroutines != nullptr) goroutines->Render(&out);
  if (otlp != nullptr) {
    OtlpExporter::Counts c = otlp->counts();
    Header(&out, "goerrprof_otlp_exports_total", "counter",
           "OTLP profile pushes: sent, failed (the collector refused or was unreachable), "
           "dropped (too many waiting).");
    absl::StrAppend(&out, "goerrprof_otlp_exports_total{result=\"sent\"} ", c.sent, "\n",
                    "goerrprof_otlp_exports_total{result=\"failed\"} ", c.failed, "\n",
                    "goerrprof_otlp_exports_total{result=\"dropped\"} ", c.dropped, "\n");
  }
  rusage ru = {};
  getrusage(RUSAGE_SELF, &ru);
  auto seconds = [](const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
  Header(&out, "process_cpu_seconds_total", "counter",
         "CPU time of the agent itself, user and system.");
  absl::StrAppend(&out, "process_cpu_seconds_total ",
                  absl::StrFormat("%.6f", seconds(ru.ru_utime) + seconds(ru.ru_stime)), "\n");
  Gauge(&out, "process_resident_memory_bytes", "Resident memory of the agent itself.",
        SelfResidentBytes());
  Gauge(&out, "goerrprof_heap_bytes",
        "Heap memory the agent has allocated and not freed (malloc's count).", SelfHeapBytes());
  const BpfMemory bpf = SelfBpfMemory();
  Header(&out, "goerrprof_bpf_memory_bytes", "gauge",
         "Kernel memory of the BPF maps and programs the agent holds (memlock).");
  absl::StrAppend(&out, "goerrprof_bpf_memory_bytes{kind=\"maps\"} ", bpf.map_bytes, "\n",
                  "goerrprof_bpf_memory_bytes{kind=\"programs\"} ", bpf.program_bytes, "\n");
  Header(&out, "goerrprof_bpf_objects", "gauge",
         "BPF maps, programs and links, and perf events, the agent holds.");
  absl::StrAppend(&out, "goerrprof_bpf_objects{kind=\"maps\"} ", bpf.maps, "\n",
                  "goerrprof_bpf_objects{kind=\"programs\"} ", bpf.programs, "\n",
                  "goerrprof_bpf_objects{kind=\"links\"} ", bpf.links, "\n",
                  "goerrprof_bpf_objects{kind=\"perf_events\"} ", bpf.perf_events, "\n");
  return out;
}

}  // namespace goerrprof::profiler
