#include "plan/park_probes.h"

#include <capstone/capstone.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace goerrprof::profiler {
namespace {

struct Func {
  uint64_t entry = 0, end = 0;
};

std::optional<Func> FindFunc(const symbolizer::Pclntab& tab, absl::string_view name) {
  for (size_t i = 0; i < tab.num_functions(); ++i) {
    if (tab.FuncName(i) == name) return Func{tab.FuncEntry(i), tab.FuncEnd(i)};
  }
  return std::nullopt;
}

}  // namespace

absl::StatusOr<ParkProbes> FindParkProbes(const symbolizer::GoBinary& binary) {
  const symbolizer::Pclntab& tab = binary.pclntab();
  std::optional<Func> gopark = FindFunc(tab, "runtime.gopark");
  std::optional<Func> mcall = FindFunc(tab, "runtime.mcall");
  std::optional<Func> ready = FindFunc(tab, "runtime.ready");
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
  csh handle;
  if (cs_open(CS_ARCH_X86, CS_MODE_64, &handle) != CS_ERR_OK) {
    return absl::InternalError("cannot start the Capstone disassembler");
  }
  cs_option(handle, CS_OPT_DETAIL, CS_OPT_ON);
  cs_insn* insn = cs_malloc(handle);
  const uint8_t* p = code->data();
  size_t left = code->size();
  uint64_t pc = gopark->entry;
  int calls = 0;
  std::vector<uint64_t> jump_targets;
  ParkProbes out;
  out.gopark = gopark->entry;
  out.mcall = mcall->entry;
  out.ready = ready->entry;
  // Linear decoding is exact here: Go emits no data inside functions.
  while (left > 0 && cs_disasm_iter(handle, &p, &left, &pc, insn)) {
    const cs_x86& x = insn->detail->x86;
    if (cs_insn_group(handle, insn, CS_GRP_JUMP) && x.op_count == 1 &&
        x.operands[0].type == X86_OP_IMM) {
      jump_targets.push_back(static_cast<uint64_t>(x.operands[0].imm));
    }
    if (insn->id != X86_INS_CALL) continue;
    if (x.op_count == 1 && x.operands[0].type == X86_OP_IMM &&
        static_cast<uint64_t>(x.operands[0].imm) == mcall->entry) {
      ++calls;
      out.park_call = insn->address;
      out.resume = insn->address + insn->size;
    }
  }
  cs_free(insn, 1);
  cs_close(&handle);
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
