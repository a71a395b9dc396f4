#include "plan/panic_probes.h"

#include <algorithm>
#include <optional>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "bpf/probe_abi.h"
#include "x86/decoder.h"

namespace goerrprof::profiler {
namespace {

using symbolizer::GoKind;

// Where to probe a function so that one call is one hit: past its
// prologue's stack check (CMP of SP against g.stackguard0, then a jump to
// the morestack call). When the stack must grow, morestack restarts the
// function from its entry, and a probe there would fire twice. Registers
// and the frame are untouched up to that point; the entry for functions
// without the check.
std::optional<uint64_t> ProbePoint(const symbolizer::GoBinary& binary, x86::Decoder& decoder,
                                   absl::string_view name) {
  const symbolizer::Pclntab& tab = binary.pclntab();
  for (size_t i = 0; i < tab.num_functions(); ++i) {
    if (tab.FuncName(i) != name) continue;
    const uint64_t entry = tab.FuncEntry(i), end = tab.FuncEnd(i);
    auto code = binary.elf().ReadVirtual(entry, std::min<uint64_t>(end - entry, 64));
    if (!code.ok()) return std::nullopt;
    std::vector<x86::Insn> insns = decoder.Decode(*code, entry);
    for (size_t k = 1; k + 1 < insns.size() && k < 4; ++k) {
      if (insns[k].flow == x86::Flow::kCondJump && insns[k - 1].id == X86_INS_CMP) {
        return insns[k + 1].addr;
      }
    }
    return entry;
  }
  return std::nullopt;
}

bool IsInteger(GoKind k) { return k >= GoKind::kInt && k <= GoKind::kUintptr; }

}  // namespace

std::vector<ProbeSpec> PanicProbeSpecs(const symbolizer::GoBinary& binary,
                                       const goabi::GLayout& g) {
  std::vector<ProbeSpec> out;
  if (!binary.version().AtLeast(1, 17)) return out;
  auto decoder = x86::Decoder::Create();
  if (!decoder.ok()) return out;
  // Before the prologue pushes RBP no frame is made yet: the caller's
  // return address is at [rsp].
  const uint32_t entry = GEP_LOC_F_TYPE | GEP_LOC_F_FRAMELESS;
  if (std::optional<uint64_t> gopanic = ProbePoint(binary, **decoder, "runtime.gopanic")) {
    ProbeSpec p;
    p.vaddr = *gopanic;
    // func gopanic(e any): the type word in RAX, the data word in RBX.
    p.cookie = GEP_COOKIE(GEP_LOC(GEP_LOC_REG, GEP_RAX, 0) | entry,
                          GEP_LOC(GEP_LOC_REG, GEP_RBX, 0));
    p.kind = ProbeKind::kPanic;
    out.push_back(p);
  }
  if (std::optional<uint64_t> fatal = ProbePoint(binary, **decoder, "runtime.fatalpanic")) {
    ProbeSpec p;
    p.vaddr = *fatal;
    // func fatalpanic(msgs *_panic): the value is _panic.arg, at [RAX + off].
    p.cookie = GEP_COOKIE(GEP_LOC(GEP_LOC_MEM, GEP_RAX, g.panic_arg) | entry,
                          GEP_LOC(GEP_LOC_MEM, GEP_RAX, g.panic_arg + 8));
    p.kind = ProbeKind::kFatalPanic;
    out.push_back(p);
  }
  return out;
}

absl::StatusOr<std::vector<ErrorLayout>> PanicValueLayouts(
    const symbolizer::GoBinary& binary, absl::Span<const uint64_t> candidates,
    const std::vector<ErrorLayout>& have) {
  std::vector<ErrorLayout> out;
  auto reader = binary.types();
  if (!reader.ok()) return out;  // without type data panics show type addresses
  absl::flat_hash_set<uint64_t> seen;
  for (const ErrorLayout& l : have) seen.insert(l.type_addr);
  for (uint64_t addr : candidates) {
    if (!seen.insert(addr).second) continue;
    auto t = (*reader)->Read(addr);
    if (!t.ok()) continue;
    // Only the unnamed basic types: a named one may have a String method
    // whose text a profile cannot know.
    if (t->name != symbolizer::KindName(t->kind)) continue;
    ErrorLayout l;
    l.type_addr = addr;
    l.name = t->name;
    l.deref = true;  // boxed: the data word points at the value
    if (t->kind == GoKind::kString) {
      l.fields.push_back({"", 0, LayoutFieldKind::kString});
    } else if (IsInteger(t->kind) && t->size >= 1 && t->size <= 8) {
      l.value_size = static_cast<uint8_t>(t->size);
    } else {
      continue;
    }
    out.push_back(std::move(l));
  }
  return out;
}

}  // namespace goerrprof::profiler
