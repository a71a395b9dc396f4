// `goerrprof doctor [--pid PID] [--json]`: can goerrprof record here? One
// line per check: what the kernel lets it do (probed), what each BPF program
// costs the verifier, and with --pid what it would do with that process.
// Exit 0 when everything record needs works, 1 otherwise.
#include <bpf/libbpf.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "goabi/g_layout.h"
#include "session/bpf_cost.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "cli/json_writer.h"
#include "session/capabilities.h"
#include "session/kernel_features.h"
#include "record/recorder.h"
#include "symbolizer/go_binary.h"

namespace goerrprof::profiler {
namespace {

enum class Verdict { kOk, kWarn, kFail };

const char* VerdictWord(Verdict v) {
  return v == Verdict::kOk ? "ok" : v == Verdict::kWarn ? "warn" : "FAIL";
}

struct Line {
  std::string name;
  Verdict verdict = Verdict::kOk;
  std::string detail;
};

Line FeatureLine(const FeatureCheck& c) {
  Line l{c.name, Verdict::kOk, c.reason};
  if (c.supported) return l;
  // Could not tell (no privileges, which its own line fails on): a warning.
  l.verdict = c.unknown || !c.required ? Verdict::kWarn : Verdict::kFail;
  if (!c.unknown) absl::StrAppend(&l.detail, " (needs ", c.needs, ")");
  return l;
}

// Every capability some command needs, held or not: FAIL without those
// record cannot run with, warn without those only some targets need.
Line CapabilitiesLine() {
  bool required_missing = false, any_missing = false;
  Line l{"capabilities", Verdict::kOk, CapabilityReport(&required_missing, &any_missing)};
  if (any_missing) l.verdict = required_missing ? Verdict::kFail : Verdict::kWarn;
  return l;
}

Line ProgramLine(const ProgramCost& p) {
  Line l{absl::StrCat(p.object, "/", p.program), Verdict::kOk, ""};
  auto count = [&] {
    return absl::StrFormat("%d verified insns (%.1f%% of %d)", p.verified_insns,
                           100.0 * static_cast<double>(p.verified_insns) / kVerifierInsnLimit,
                           kVerifierInsnLimit);
  };
  if (!p.loaded) {
    l.verdict = Verdict::kFail;
    l.detail = absl::StrCat("does not load (", p.settings, "): ", p.error);
    if (p.verified_insns > 0) absl::StrAppend(&l.detail, " [", count(), "]");
    return l;
  }
  l.detail = p.verified_insns > 0
                 ? count()
                 : std::string("loads (this kernel does not report verified insns before 5.16)");
  absl::StrAppend(&l.detail, ", max over ", p.loads, " settings, at: ", p.settings);
  return l;
}

// What record would do with the process, as record plans it.
struct Target {
  int64_t pid = 0;
  std::string path;
  std::string go_version;
  bool supported = false;
  size_t probes = 0, unplanned = 0, error_types = 0;
  std::vector<Line> lines;
};

absl::StatusOr<Target> InspectTarget(int64_t pid) {
  Target t;
  t.pid = pid;
  std::string proc = absl::StrCat("/proc/", pid);
  if (access(proc.c_str(), F_OK) != 0) {
    return absl::NotFoundError(absl::StrCat("no process with pid ", pid));
  }
  if (absl::Status s = CheckProcessReadable(static_cast<pid_t>(pid)); !s.ok()) return s;
  std::string exe = proc + "/exe";
  char link[4096];
  ssize_t n = readlink(exe.c_str(), link, sizeof(link) - 1);
  t.path = n > 0 ? std::string(link, static_cast<size_t>(n)) : exe;
  // Bad input (not Go, too old, unreadable) ends doctor with its one line.
  auto bin = symbolizer::GoBinary::Open(exe);
  if (!bin.ok()) return bin.status();
  t.go_version = (*bin)->build_info().go_version;
  t.lines.push_back({"go_version", Verdict::kOk, absl::StrCat(t.go_version, " (", t.path, ")")});

  auto g = goabi::GLayoutFor((*bin)->version());
  if (!g.ok()) {
    t.lines.push_back({"go_supported", Verdict::kFail, std::string(g.status().message())});
    return t;
  }
  auto plan = MakeExecutablePlan(exe, RecordOptions{});
  if (!plan.ok()) {
    t.lines.push_back({"go_supported", Verdict::kFail,
                       absl::StrCat("cannot plan probes: ", plan.status().message())});
    return t;
  }
  if (!(*plan)->not_recorded.empty()) {
    t.lines.push_back({"go_supported", Verdict::kWarn, (*plan)->not_recorded});
    return t;
  }
  t.supported = true;
  t.lines.push_back({"go_supported", Verdict::kOk,
                     absl::StrCat((*bin)->version().ToString(), ": runtime layouts known, g in ",
                                  g->g_in_r14 ? "R14" : "TLS", ", labels ",
                                  g->labels < 0 ? "not read"
                                  : g->label_storage == goabi::LabelStorage::kMapPointer
                                      ? "in a map"
                                      : "in a sorted slice")});
  const SessionConfig& c = (*plan)->config;
  t.probes = c.probes.size();
  t.unplanned = (*plan)->skipped;
  for (const ErrorLayout& l : c.layouts) t.error_types += !l.addr_type.has_value();
  t.lines.push_back({"probes",
                     t.probes > 0 ? Verdict::kOk : Verdict::kWarn,
                     absl::StrCat(t.probes, " error-creation probes planned (", t.unplanned,
                                  " references left unplanned), ", t.error_types,
                                  " error types")});
  return t;
}

std::string KernelRelease() {
  utsname u;
  if (uname(&u) != 0) return "unknown";
  return absl::StrCat(u.sysname, " ", u.release, " ", u.machine);
}

void PrintJson(const std::vector<Line>& checks, const std::vector<ProgramCost>& programs,
               const absl::Status& cost_status, const Target* target, bool ok) {
  JsonWriter j;
  j.BeginObject();
  j.Key("ok").Bool(ok);
  j.Key("kernel").String(KernelRelease());
  j.Key("libbpf").String(absl::StrCat(libbpf_major_version(), ".", libbpf_minor_version()));
  auto line = [&](const Line& l) {
    j.Key("name").String(l.name).Key("status").String(VerdictWord(l.verdict));
    j.Key("detail").String(l.detail);
  };
  j.Key("checks").BeginArray();
  for (const Line& l : checks) {
    j.BeginObject();
    line(l);
    j.EndObject();
  }
  j.EndArray();
  j.Key("verifier_limit").Uint(kVerifierInsnLimit);
  if (!cost_status.ok()) j.Key("programs_error").String(cost_status.message());
  j.Key("programs").BeginArray();
  for (const ProgramCost& p : programs) {
    j.BeginObject();
    line(ProgramLine(p));
    j.Key("object").String(p.object).Key("program").String(p.program);
    j.Key("loaded").Bool(p.loaded).Key("verified_insns").Uint(p.verified_insns);
    j.Key("settings").String(p.settings).Key("loads").Uint(p.loads);
    if (!p.loaded) j.Key("error").String(p.error);
    j.EndObject();
  }
  j.EndArray();
  if (target) {
    j.Key("target").BeginObject();
    j.Key("pid").Int(target->pid).Key("path").String(target->path);
    j.Key("go_version").String(target->go_version).Key("supported").Bool(target->supported);
    j.Key("probes").Uint(target->probes).Key("unplanned").Uint(target->unplanned);
    j.Key("error_types").Uint(target->error_types);
    j.Key("checks").BeginArray();
    for (const Line& l : target->lines) {
      j.BeginObject();
      line(l);
      j.EndObject();
    }
    j.EndArray();
    j.EndObject();
  }
  j.EndObject();
  std::printf("%s\n", j.str().c_str());
}

void PrintLine(const Line& l) {
  std::printf("%-4s %s: %s\n", VerdictWord(l.verdict), l.name.c_str(), l.detail.c_str());
}

}  // namespace

int RunDoctor(const std::vector<std::string>& args) {
  if (!args.empty()) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("doctor takes no arguments (got \"", args[0], "\"); use --pid PID")));
  }
  auto pid = PidFlag();
  if (!pid.ok()) return Fail(pid.status());
  // The target first: bad input is one line, before minutes of checks.
  std::optional<Target> target;
  if (*pid != 0) {
    auto t = InspectTarget(*pid);
    if (!t.ok()) return Fail(t.status());
    target = std::move(*t);
  }

  std::vector<Line> checks;
  for (const FeatureCheck& c : KernelFeatures()) checks.push_back(FeatureLine(c));
  checks.push_back(CapabilitiesLine());
  auto costs = MeasureBpfCost();
  std::vector<ProgramCost> programs = costs.ok() ? *costs : std::vector<ProgramCost>{};

  bool ok = true;
  auto tally = [&](const Line& l) { ok = ok && l.verdict != Verdict::kFail; };
  for (const Line& l : checks) tally(l);
  for (const ProgramCost& p : programs) tally(ProgramLine(p));
  if (!costs.ok()) ok = false;
  if (target) {
    for (const Line& l : target->lines) tally(l);
  }

  if (absl::GetFlag(FLAGS_json)) {
    PrintJson(checks, programs, costs.status(), target ? &*target : nullptr, ok);
    return ok ? 0 : 1;
  }
  std::printf("goerrprof doctor: %s, libbpf %d.%d\n", KernelRelease().c_str(),
              libbpf_major_version(), libbpf_minor_version());
  for (const Line& l : checks) PrintLine(l);
  if (!costs.ok()) {
    PrintLine({"programs", Verdict::kFail, std::string(costs.status().message())});
  }
  for (const ProgramCost& p : programs) PrintLine(ProgramLine(p));
  if (target) {
    for (const Line& l : target->lines) PrintLine(l);
  }
  return ok ? 0 : 1;
}

}  // namespace goerrprof::profiler
