#include "plan/panic_probes.h"

#include <algorithm>
#include <optional>
#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "bpf/probe_abi.h"
#include "plan/entry_probe.h"
#include "x86/decoder.h"

namespace goerrprof::profiler {
namespace {

using symbolizer::GoKind;

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
  const symbolizer::Pclntab& tab = binary.pclntab();
  if (std::optional<FuncRange> gopanic = FindFunction(tab, "runtime.gopanic")) {
    ProbeSpec p;
    p.vaddr = PastStackCheck(binary, **decoder, *gopanic);
    // func gopanic(e any): the type word in RAX, the data word in RBX.
    p.cookie = GEP_COOKIE(GEP_LOC(GEP_LOC_REG, GEP_RAX, 0) | entry,
                          GEP_LOC(GEP_LOC_REG, GEP_RBX, 0));
    p.kind = ProbeKind::kPanic;
    out.push_back(p);
  }
  if (std::optional<FuncRange> fatal = FindFunction(tab, "runtime.fatalpanic")) {
    ProbeSpec p;
    p.vaddr = PastStackCheck(binary, **decoder, *fatal);
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
