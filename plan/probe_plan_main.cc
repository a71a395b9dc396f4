// probe_plan_tool: prints the creation-probe plan of a Go binary, with the
// disassembly around each reference on request, and can write a bpftrace
// script that attaches at every planned address (for validation only).
//
//   probe_plan_tool [--disasm] [--bpftrace=OUT] [--only=SUBSTR] BINARY
#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "bpf/probe_abi.h"
#include "plan/probe_plan.h"
#include "symbolizer/error_types.h"
#include "symbolizer/go_binary.h"
#include "symbolizer/type_refs.h"
#include "x86/decoder.h"

namespace {

using goerrprof::profiler::CreationProbe;
using goerrprof::profiler::LocationString;
using goerrprof::profiler::ViaName;
using goerrprof::symbolizer::GoBinary;

std::string Frames(const GoBinary& bin, uint64_t pc) {
  auto frames = bin.Symbolize(pc);
  if (!frames.ok()) return "?";
  std::vector<std::string> names;
  for (const auto& f : *frames) names.emplace_back(f.function);
  return absl::StrJoin(names, " <- ");
}

void Disasm(const GoBinary& bin, uint64_t from, uint64_t to) {
  auto bytes = bin.elf().ReadVirtualUpTo(from, to - from);
  if (!bytes.ok()) return;
  auto decoder = goerrprof::x86::Decoder::Create();
  if (!decoder.ok()) return;
  for (const auto& in : (*decoder)->DecodeText(*bytes, from, goerrprof::x86::Syntax::kAtt)) {
    std::printf("      %x: %-8s %s\n", static_cast<unsigned>(in.addr), in.mnemonic.c_str(),
                in.op_str.c_str());
  }
}

// A bpftrace expression reading a location.
std::string Read(uint32_t loc, uint64_t const_value) {
  static const char* kRegs[] = {"ax", "bx", "cx", "dx", "si", "di", "bp", "sp",
                                "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"};
  const char* reg = kRegs[GEP_LOC_REGNO(loc) & 15];
  switch (GEP_LOC_KIND(loc)) {
    case GEP_LOC_REG:
      return absl::StrFormat("reg(\"%s\")", reg);
    case GEP_LOC_MEM:
      return absl::StrFormat("*(uint64*)uptr(reg(\"%s\") + %d)", reg, GEP_LOC_DISP(loc));
    default:
      return absl::StrCat(const_value);
  }
}

}  // namespace

int main(int argc, char** argv) {
  bool disasm = false;
  std::string bpftrace_out, only, path;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--disasm") {
      disasm = true;
    } else if (absl::StartsWith(a, "--bpftrace=")) {
      bpftrace_out = a.substr(11);
    } else if (absl::StartsWith(a, "--only=")) {
      only = a.substr(7);
    } else {
      path = a;
    }
  }
  if (path.empty()) {
    std::fprintf(stderr,
                 "usage: %s [--disasm] [--bpftrace=OUT] [--only=SUBSTR] BINARY\n"
                 "(GOERRPROF_PLAN_TRACE=1 prints how each path of each reference ended)\n",
                 argv[0]);
    return 2;
  }
  auto bin = GoBinary::Open(path);
  if (!bin.ok()) {
    std::fprintf(stderr, "%s\n", std::string(bin.status().message()).c_str());
    return 1;
  }
  auto reader = (*bin)->types();
  if (!reader.ok()) {
    std::fprintf(stderr, "%s\n", std::string(reader.status().message()).c_str());
    return 1;
  }
  auto refs = goerrprof::symbolizer::TypeDescriptorRefs(**bin);
  if (!refs.ok()) {
    std::fprintf(stderr, "%s\n", std::string(refs.status().message()).c_str());
    return 1;
  }
  auto types = goerrprof::symbolizer::FindErrorTypes(**reader, *refs);
  if (!types.ok()) {
    std::fprintf(stderr, "%s\n", std::string(types.status().message()).c_str());
    return 1;
  }
  auto t0 = std::chrono::steady_clock::now();
  auto plan = goerrprof::profiler::PlanCreationProbes(**bin, *types);
  auto t1 = std::chrono::steady_clock::now();
  if (!plan.ok()) {
    std::fprintf(stderr, "%s\n", std::string(plan.status().message()).c_str());
    return 1;
  }
  std::map<uint64_t, std::string> type_names;  // itab or type -> name
  std::map<uint64_t, const goerrprof::symbolizer::ErrorType*> by_type;
  for (const auto& t : *types) {
    type_names[t.type_addr] = "type " + t.name;
    by_type[t.type_addr] = &t;
    for (size_t i = 0; i < t.itabs.size(); ++i) {
      type_names[t.itabs[i]] =
          absl::StrCat(t.name, ",", i < t.interfaces.size() ? t.interfaces[i] : "?");
    }
  }
  const GoBinary& b = **bin;
  for (const CreationProbe& p : plan->probes) {
    std::string frames = Frames(b, p.site);
    if (!only.empty() && !absl::StrContains(frames, only)) continue;
    std::printf("probe %x ref %x %-5s %-11s tab=%s%s data=%s %s\n  site %x: %s\n",
                static_cast<unsigned>(p.addr), static_cast<unsigned>(p.ref_addr),
                p.kind == CreationProbe::kIface ? "iface" : "eface", ViaName(p.via),
                LocationString(p.tab_loc).c_str(), p.checked ? " (checked)" : "",
                LocationString(p.data_loc).c_str(),
                type_names[p.itab ? p.itab : p.type].c_str(), static_cast<unsigned>(p.site),
                frames.c_str());
    if (disasm) Disasm(b, p.ref_addr, p.addr + 16);
  }
  std::map<std::string, int> reasons;
  int missed = 0;
  for (const auto& s : plan->skipped) {
    ++reasons[goerrprof::profiler::ReasonClass(s.reason)];
    missed += !goerrprof::profiler::SkipLosesNothing(s.reason);
    std::string frames = Frames(b, s.addr);
    if (!only.empty() && !absl::StrContains(frames, only)) continue;
    std::printf("skip  %x %s: %s\n  at %s\n", static_cast<unsigned>(s.addr),
                type_names[s.itab].c_str(), s.reason.c_str(), frames.c_str());
    if (disasm) Disasm(b, s.addr, s.addr + 48);
  }
  std::map<std::string, int> vias;
  int iface = 0, eface = 0;
  for (const auto& p : plan->probes) {
    ++vias[ViaName(p.via)];
    (p.kind == CreationProbe::kIface ? iface : eface)++;
  }
  std::printf("\n%s: go %s, %zu functions decoded, %zu references, %zu probes (%d iface, %d "
              "eface), %zu skipped, %.1f ms\n",
              path.c_str(), b.version().ToString().c_str(), plan->functions_scanned,
              plan->references, plan->probes.size(), iface, eface, plan->skipped.size(),
              std::chrono::duration<double, std::milli>(t1 - t0).count());
  for (const auto& [v, n] : vias) std::printf("  via %-12s %d\n", v.c_str(), n);
  for (const auto& [r, n] : reasons) std::printf("  skipped %5d  %s\n", n, r.c_str());
  std::printf("  creations possibly missed (not a comparison or an allocation helper's input): "
              "%d\n", missed);

  if (!bpftrace_out.empty()) {
    // bpftrace 0.17 refuses raw addresses inside symbolized functions, so the
    // script attaches to symbols gep_p<N> that the validation harness adds
    // at each planned address (in a copy of the binary). The manifest maps
    // N to the probe.
    std::ofstream out(bpftrace_out);
    std::ofstream manifest(bpftrace_out + ".tsv");
    int id = 0;
    for (const CreationProbe& p : plan->probes) {
      // First string field of the concrete type, to compare with the truth.
      std::string msg = "\"\"";
      int64_t str_off = -1;
      auto it = by_type.find(p.type);
      if (it != by_type.end()) {
        for (const auto& f : it->second->fields) {
          if (f.kind != goerrprof::symbolizer::ErrorFieldKind::kString) continue;
          str_off = static_cast<int64_t>(f.offset);
          break;
        }
      }
      // Pointer-shaped types hold the object in the data word itself.
      if (str_off >= 0) {
        msg = absl::StrFormat("str(*(uint64*)uptr($d + %d), *(uint64*)uptr($d + %d))", str_off,
                              str_off + 8);
      }
      // A checked probe counts a run only with its own itab there.
      std::string check =
          p.checked ? absl::StrFormat("if ($t == 0x%x) ", p.itab ? p.itab : p.type) : "";
      out << absl::StrFormat(
          "uprobe:BINARY:gep_p%d { $t = (uint64)%s; $d = (uint64)%s; "
          "%sprintf(\"H %d %%d %%lx %%lx %%s\\n\", pid, $t, $d, %s); }\n",
          id, Read(p.tab_loc, p.itab ? p.itab : p.type), Read(p.data_loc, 0), check, id, msg);
      auto frames = b.Symbolize(p.addr);
      std::string fn = frames.ok() && !frames->empty() ? std::string(frames->back().function) : "?";
      manifest << absl::StrFormat("%d\t%x\t%s\t%s\t%s\t%s\t%x\t%s\t%s\t%s\n", id, p.addr,
                                  p.kind == CreationProbe::kIface ? "iface" : "eface",
                                  ViaName(p.via), LocationString(p.tab_loc),
                                  LocationString(p.data_loc), p.itab ? p.itab : p.type,
                                  type_names[p.itab ? p.itab : p.type], Frames(b, p.site), fn);
      ++id;
    }
  }
  return 0;
}
