#include "pprof/pprof_writer.h"

#include <elf.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include <tuple>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "pprof/pprof_builder.h"
#include "symbolizer/creation_site.h"
#include "base/read_file.h"
#include "pprof/labels.h"
#include "pprof/profile_file.h"

namespace goerrprof::profiler {
namespace {

namespace pp = perftools::profiles;

// goroutine.created_by/created_at: the snapshot's "created by" rule.
struct Creator {
  std::string function, position;
};
Creator CreatorOf(const symbolizer::GoBinary& binary, uint64_t gopc) {
  auto site = symbolizer::CreatedBy(binary, gopc);
  if (!site.ok()) return {};
  return {site->function, absl::StrCat(site->file, ":", site->line)};
}

std::string DropsLine(const ProfileCounters& c) {
  if (c.drops.empty()) return "drops: none";
  std::vector<std::string> parts;
  for (const auto& [reason, count] : c.drops) parts.push_back(absl::StrCat(reason, "=", count));
  return absl::StrCat("drops: ", absl::StrJoin(parts, " "), " (total ", c.dropped(), ")");
}

}  // namespace

absl::StatusOr<pp::Profile> BuildPprof(const ErrorProfile& profile,
                                       const std::vector<ProfiledProcess>& processes,
                                       const PprofInfo& info) {
  // No process (a command that ran no Go program) still gives a valid,
  // empty profile: a CI job can diff it.
  PprofBuilder b;
  b.AddSampleType("errors", "count");
  b.AddSampleType("panics", "count");
  // Only where the budget estimated: the counts the probes saw.
  const bool estimated = profile.estimated();
  if (estimated) b.AddSampleType(kSampleObserved, "count");
  b.SetDefaultSampleType("errors");
  pp::Profile& p = b.profile();
  p.set_time_nanos(info.time_nanos);
  p.set_duration_nanos(info.duration_nanos);

  std::vector<int> binary_of;  // process -> builder binary (shared per executable)
  std::vector<std::string> paths, names;
  absl::flat_hash_map<std::string, int> by_path;
  for (const ProfiledProcess& proc : processes) {
    const std::string& path = proc.path.empty() ? proc.binary->elf().path() : proc.path;
    auto it = by_path.find(path);
    if (it == by_path.end()) {
      auto added = b.AddBinary(*proc.binary, path);
      if (!added.ok()) return added.status();
      it = by_path.emplace(path, *added).first;
    }
    binary_of.push_back(it->second);
    paths.push_back(path);
    names.push_back(path.substr(path.rfind('/') + 1));
  }

  absl::flat_hash_map<std::pair<uint32_t, uint64_t>, Creator> creators;
  for (const ErrorProfile::Sample& s : profile.Samples()) {
    const uint32_t proc = s.key->process;
    if (proc >= processes.size()) {
      return absl::InvalidArgumentError(absl::StrCat("sample of unknown process ", proc));
    }
    pp::Sample* out = b.AddSample(binary_of[proc], s.key->stack);
    const bool panic = s.key->panic != PanicState::kNone;
    out->add_value(panic ? 0 : static_cast<int64_t>(s.count));
    out->add_value(panic ? static_cast<int64_t>(s.count) : 0);
    if (estimated) out->add_value(panic ? 0 : static_cast<int64_t>(s.observed));
    if (s.estimated) b.Label(out, kLabelEstimated, "true");
    if (panic) {
      b.Label(out, kLabelPanicRecovered, s.key->panic == PanicState::kRecovered ? "true" : "false");
      // runtime.Error values: only the runtime's own types implement it.
      if (absl::StartsWith(s.key->type, "runtime.") || absl::StartsWith(s.key->type, "*runtime.")) {
        b.Label(out, kLabelPanicRuntimeError, "true");
      }
    }
    b.Label(out, kLabelType, s.key->type);
    // Off: no message at all, not even an empty one.
    if (profile.options().messages != MessagePolicy::kOff) {
      b.Label(out, kLabelMessage, s.key->message);
    }
    b.Label(out, kLabelChain, s.key->chain);
    b.NumLabel(out, kLabelGoroutine, static_cast<int64_t>(s.key->goroutine));
    if (s.key->created_by != 0) {
      auto [it, inserted] = creators.try_emplace(std::make_pair(proc, s.key->created_by));
      if (inserted) it->second = CreatorOf(*processes[proc].binary, s.key->created_by);
      if (!it->second.function.empty()) {
        b.Label(out, kLabelCreatedBy, it->second.function);
        b.Label(out, kLabelCreatedAt, it->second.position);
      }
    }
    for (const auto& [key, value] : s.key->labels) b.Label(out, key, value);
    if (info.label_processes) {
      b.Label(out, kLabelBinary, names[proc]);
      b.NumLabel(out, kLabelPid, processes[proc].pid);
      const ProfiledProcess& where = processes[proc];
      if (!where.container_id.empty()) b.Label(out, kLabelContainerId, where.container_id);
      if (!where.pod_uid.empty()) b.Label(out, kLabelPodUid, where.pod_uid);
    }
  }

  const ProfileCounters& c = profile.counters();
  std::vector<std::string> comments;
  if (processes.empty()) comments.push_back("goerrprof: no Go process recorded");
  for (size_t i = 0; i < processes.size(); ++i) {
    const symbolizer::GoBinary& binary = *processes[i].binary;
    std::string go_version = binary.build_info().go_version;
    if (go_version.empty()) go_version = binary.version().ToString();
    if (processes.size() == 1 && !info.label_processes) {
      comments.push_back(absl::StrCat("goerrprof: error creations in ", paths[i]));
      comments.push_back(absl::StrCat("go version: ", go_version));
    } else {
      comments.push_back(absl::StrCat("goerrprof: error creations in pid ", processes[i].pid,
                                      ": ", paths[i], " (", go_version, ")"));
    }
  }
  comments.push_back(
      absl::StrCat("duration: ", absl::FormatDuration(absl::Nanoseconds(info.duration_nanos))));
  comments.push_back(absl::StrCat("probes attached: ", info.probes_attached));
  comments.push_back(MessagePolicyComment(profile.options().messages));
  if (!info.budget.empty()) comments.push_back(info.budget);
  comments.push_back(DropsLine(c));
  comments.push_back(absl::StrFormat(
      "counts: events=%d samples=%d sites=%d partial=%d other_messages=%d dropped=%d panics=%d",
      c.events, profile.num_samples(), profile.sites().size(), c.partial, c.other_messages,
      c.dropped(), c.panics));
  if (estimated) absl::StrAppend(&comments.back(), " estimated=", profile.estimated_total());
  for (const std::string& line : comments) b.AddComment(line);
  return b.Release();
}

absl::StatusOr<pp::Profile> BuildPprof(const ErrorProfile& profile,
                                       const symbolizer::GoBinary& binary,
                                       const PprofInfo& info) {
  return BuildPprof(profile, {ProfiledProcess{&binary, info.binary_path, 0, "", ""}}, info);
}

absl::Status WritePprof(const ErrorProfile& profile, const symbolizer::GoBinary& binary,
                        const PprofInfo& info, const std::string& path) {
  return WritePprof(profile, {ProfiledProcess{&binary, info.binary_path, 0, "", ""}}, info, path);
}

absl::Status WritePprof(const ErrorProfile& profile, const std::vector<ProfiledProcess>& processes,
                        const PprofInfo& info, const std::string& path) {
  absl::StatusOr<pp::Profile> p = BuildPprof(profile, processes, info);
  if (!p.ok()) return p.status();
  return WriteProfileFile(*p, path);
}

}  // namespace goerrprof::profiler
