// `goerrprof inspect`: what goerrprof knows about a Go binary.
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "cli/json_writer.h"
#include "plan/probe_plan.h"
#include "symbolizer/go_binary.h"
#include "symbolizer/type_refs.h"

namespace goerrprof::profiler {
namespace {

using symbolizer::ErrorField;
using symbolizer::ErrorFieldKind;
using symbolizer::ErrorType;
using symbolizer::GoBinary;

std::string PclntabVersionName(symbolizer::PclntabVersion v) {
  int n = static_cast<int>(v);
  return absl::StrCat(n / 100, ".", n % 100);
}

void WriteFields(JsonWriter& j, const ErrorType& t, ErrorFieldKind kind, const char* key) {
  j.Key(key).BeginArray();
  for (const ErrorField& f : t.fields) {
    if (f.kind != kind) continue;
    j.BeginObject().Key("name").String(f.name).Key("offset").Uint(f.offset).EndObject();
  }
  j.EndArray();
}

// The probe plan's counts: what `record` would attach, and every
// reference it leaves unplanned, by reason.
struct PlanSummary {
  absl::Status status;
  size_t references = 0, probes = 0, missed = 0;
  std::map<std::string, size_t> unplanned;
};

PlanSummary Summarize(const GoBinary& bin, const std::vector<ErrorType>& types) {
  PlanSummary s;
  auto plan = PlanCreationProbes(bin, types);
  if (!plan.ok()) {
    s.status = plan.status();
    return s;
  }
  s.references = plan->references;
  s.probes = plan->probes.size();
  for (const SkippedRef& r : plan->skipped) {
    ++s.unplanned[ReasonClass(r.reason)];
    s.missed += !SkipLosesNothing(r.reason);
  }
  return s;
}

void PrintJson(const GoBinary& bin, const std::vector<ErrorType>& types,
               const absl::Status& types_status, const PlanSummary& plan) {
  const auto& bi = bin.build_info();
  JsonWriter j;
  j.BeginObject();
  j.Key("path").String(bin.elf().path());
  j.Key("go_version").String(bi.go_version);
  j.Key("main_path").String(bi.main_path);
  j.Key("main_module").String(bi.main_module);
  j.Key("build_settings").BeginObject();
  for (const auto& [k, v] : bi.settings) j.Key(k).String(v);
  j.EndObject();
  j.Key("build_id").String(bin.elf().go_build_id());
  j.Key("gnu_build_id").String(bin.elf().gnu_build_id());
  j.Key("pclntab_version").String(PclntabVersionName(bin.pclntab().version()));
  j.Key("pclntab_address").Hex(bin.pclntab().address());
  j.Key("pclntab_source").String(bin.pclntab_source());
  j.Key("text_start").Hex(bin.pclntab().text_start());
  j.Key("text_end").Hex(bin.pclntab().text_end());
  j.Key("functions").Uint(bin.pclntab().num_functions());
  j.Key("stripped").Bool(bin.stripped());
  j.Key("pie").Bool(bin.pie());
  j.Key("cgo").Bool(bin.cgo());
  j.Key("dwarf").Bool(bin.elf().has_dwarf());
  if (auto md = bin.moduledata(); md.ok()) j.Key("moduledata").Hex((*md)->addr);
  if (!types_status.ok()) j.Key("error_types_error").String(types_status.message());
  j.Key("error_types").BeginArray();
  for (const ErrorType& t : types) {
    j.BeginObject();
    j.Key("name").String(t.name);
    j.Key("kind").String(symbolizer::KindName(t.kind));
    j.Key("size").Uint(t.size);
    if (t.elem_size) j.Key("elem_size").Uint(t.elem_size);
    j.Key("interfaces").BeginArray();
    for (const std::string& i : t.interfaces) j.String(i);
    j.EndArray();
    WriteFields(j, t, ErrorFieldKind::kString, "string_fields");
    WriteFields(j, t, ErrorFieldKind::kError, "error_fields");
    WriteFields(j, t, ErrorFieldKind::kErrorSlice, "error_slice_fields");
    j.Key("itabs").BeginArray();
    for (uint64_t a : t.itabs) j.Hex(a);
    j.EndArray();
    j.EndObject();
  }
  j.EndArray();
  j.Key("plan").BeginObject();
  if (!plan.status.ok()) {
    j.Key("error").String(plan.status.message());
  } else {
    j.Key("references").Uint(plan.references);
    j.Key("probes").Uint(plan.probes);
    j.Key("unplanned").BeginObject();
    for (const auto& [reason, n] : plan.unplanned) j.Key(reason).Uint(n);
    j.EndObject();
    j.Key("possibly_missed").Uint(plan.missed);
  }
  j.EndObject();
  j.EndObject();
  std::printf("%s\n", j.str().c_str());
}

std::string FieldsText(const ErrorType& t, ErrorFieldKind kind) {
  std::vector<std::string> parts;
  for (const ErrorField& f : t.fields) {
    if (f.kind == kind) parts.push_back(absl::StrCat(f.name, "@", f.offset));
  }
  return absl::StrJoin(parts, ",");
}

void PrintText(const GoBinary& bin, const std::vector<ErrorType>& types,
               const absl::Status& types_status, const PlanSummary& plan) {
  const auto& bi = bin.build_info();
  const auto& tab = bin.pclntab();
  auto yes = [](bool b) { return b ? "yes" : "no"; };
  std::printf("binary:       %s\n", bin.elf().path().c_str());
  std::printf("go version:   %s\n", bi.go_version.c_str());
  if (!bi.main_path.empty()) std::printf("main package: %s\n", bi.main_path.c_str());
  if (!bi.main_module.empty()) std::printf("main module:  %s\n", bi.main_module.c_str());
  for (const auto& [k, v] : bi.settings) std::printf("build:        %s=%s\n", k.c_str(), v.c_str());
  if (!bin.elf().go_build_id().empty()) {
    std::printf("build id:     %s\n", bin.elf().go_build_id().c_str());
  }
  std::printf("pclntab:      Go %s format at 0x%lx (found by %s)\n",
              PclntabVersionName(tab.version()).c_str(), tab.address(),
              bin.pclntab_source().c_str());
  std::printf("text:         0x%lx-0x%lx\n", tab.text_start(), tab.text_end());
  std::printf("functions:    %zu\n", tab.num_functions());
  std::printf("stripped:     %s   pie: %s   cgo: %s   dwarf: %s\n", yes(bin.stripped()),
              yes(bin.pie()), yes(bin.cgo()), yes(bin.elf().has_dwarf()));
  if (!types_status.ok()) {
    std::printf("error types:  unavailable (%s)\n", std::string(types_status.message()).c_str());
    return;
  }
  if (plan.status.ok()) {
    size_t unplanned = 0;
    for (const auto& [reason, n] : plan.unplanned) unplanned += n;
    std::printf("probe plan:   %zu probes for %zu references; %zu unplanned, %zu of them "
                "possibly missed creations\n",
                plan.probes, plan.references, unplanned, plan.missed);
  }
  std::printf("error types:  %zu\n", types.size());
  for (const ErrorType& t : types) {
    std::string line = absl::StrFormat("  %-40s %-8s size %d", t.name,
                                       symbolizer::KindName(t.kind), t.size);
    if (t.elem_size) absl::StrAppend(&line, " (points to ", t.elem_size, " bytes)");
    std::string s = FieldsText(t, ErrorFieldKind::kString);
    std::string e = FieldsText(t, ErrorFieldKind::kError);
    std::string es = FieldsText(t, ErrorFieldKind::kErrorSlice);
    if (!s.empty()) absl::StrAppend(&line, "  strings ", s);
    if (!e.empty()) absl::StrAppend(&line, "  wraps ", e);
    if (!es.empty()) absl::StrAppend(&line, "  wraps[] ", es);
    std::printf("%s\n", line.c_str());
  }
}

}  // namespace

int RunInspect(const std::vector<std::string>& args) {
  auto path = TargetPath(args);
  if (!path.ok()) return Fail(path.status());
  auto bin = GoBinary::Open(*path);
  if (!bin.ok()) return Fail(bin.status());
  std::vector<ErrorType> types;
  absl::Status types_status;
  auto reader = (*bin)->types();
  if (reader.ok()) {
    // Types the code refers to count too: one only boxed into `any` has no itab.
    auto refs = symbolizer::TypeDescriptorRefs(**bin);
    auto found = symbolizer::FindErrorTypes(
        **reader, refs.ok() ? absl::Span<const uint64_t>(*refs) : absl::Span<const uint64_t>());
    if (found.ok()) {
      types = std::move(*found);
    } else {
      types_status = found.status();
    }
  } else {
    types_status = reader.status();
  }
  PlanSummary plan;
  if (types_status.ok()) {
    plan = Summarize(**bin, types);
  } else {
    plan.status = types_status;
  }
  if (absl::GetFlag(FLAGS_json)) {
    PrintJson(**bin, types, types_status, plan);
  } else {
    PrintText(**bin, types, types_status, plan);
  }
  return 0;
}

}  // namespace goerrprof::profiler
