#include "plan/park_probes.h"

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "plan/entry_probe.h"
#include "x86/decoder.h"

namespace goerrprof::profiler {

absl::StatusOr<ParkProbes> FindParkProbes(const symbolizer::GoBinary& binary) {
  const symbolizer::Pclntab& tab = binary.pclntab();
  std::optional<FuncRange> gopark = FindFunction(tab, "runtime.gopark");
  std::optional<FuncRange> mcall = FindFunction(tab, "runtime.mcall");
  std::optional<FuncRange> ready = FindFunction(tab, "runtime.ready");
  for (auto [f, name] : {std::pair{&gopark, "runtime.gopark"}, std::pair{&mcall, "runtime.mcall"},
                         std::pair{&ready, "runtime.ready"}}) {
    if (!f->has_value()) {
      return absl::NotFoundError(absl::StrCat("no ", name, " in the binary's function table"));
    }
  }
  auto code = binary.elf().ReadVirtual(gopark->entry, gopark->end - gopark->entry);
  if (!code.ok()) {
    return absl::NotFoundError(absl::StrCat("cannot read runtime.gopark's code: ",
                                            code.status().message()));
  }
  auto decoder = x86::Decoder::Create();
  if (!decoder.ok()) return decoder.status();
  int calls = 0;
  std::vector<uint64_t> jump_targets;
  ParkProbes out;
  out.gopark = gopark->entry;
  out.mcall = mcall->entry;
  // Past its stack check: a stack growth would restart it and wake twice.
  out.ready = PastStackCheck(binary, **decoder, *ready);
  // Linear decoding is exact here: Go emits no data inside functions.
  for (const x86::Insn& in : (*decoder)->Decode(*code, gopark->entry)) {
    bool jump = in.flow == x86::Flow::kJump || in.flow == x86::Flow::kCondJump;
    if (jump && in.nops == 1 && in.ops[0].type == x86::Operand::kImm) {
      jump_targets.push_back(static_cast<uint64_t>(in.ops[0].value));
    }
    if (in.id != X86_INS_CALL) continue;
    if (in.nops == 1 && in.ops[0].type == x86::Operand::kImm &&
        static_cast<uint64_t>(in.ops[0].value) == mcall->entry) {
      ++calls;
      out.park_call = in.addr;
      out.resume = in.addr + in.size;
    }
  }
  if (calls != 1) {
    return absl::NotFoundError(absl::StrFormat(
        "runtime.gopark (0x%x) has %d calls of runtime.mcall, expected one", gopark->entry,
        calls));
  }
  if (out.resume >= gopark->end) {
    return absl::NotFoundError("runtime.gopark ends at its CALL runtime.mcall");
  }
  // The resume probe must run only when a parked goroutine continues: no
  // other path of gopark may reach it (a shared epilogue would).
  for (uint64_t t : jump_targets) {
    if (t == out.resume) {
      return absl::NotFoundError(absl::StrFormat(
          "runtime.gopark jumps to 0x%x, the instruction after its CALL runtime.mcall", t));
    }
  }
  return out;
}

}  // namespace goerrprof::profiler
