#include "x86/decoder.h"

#include <capstone/capstone.h>

#include <algorithm>

#include "absl/status/status.h"

namespace goerrprof::x86 {
namespace {

// Capstone register (any width) to ours.
int FoldReg(unsigned r) {
  switch (r) {
    case X86_REG_RAX: case X86_REG_EAX: case X86_REG_AX: case X86_REG_AL: case X86_REG_AH:
      return kRax;
    case X86_REG_RBX: case X86_REG_EBX: case X86_REG_BX: case X86_REG_BL: case X86_REG_BH:
      return kRbx;
    case X86_REG_RCX: case X86_REG_ECX: case X86_REG_CX: case X86_REG_CL: case X86_REG_CH:
      return kRcx;
    case X86_REG_RDX: case X86_REG_EDX: case X86_REG_DX: case X86_REG_DL: case X86_REG_DH:
      return kRdx;
    case X86_REG_RSI: case X86_REG_ESI: case X86_REG_SI: case X86_REG_SIL: return kRsi;
    case X86_REG_RDI: case X86_REG_EDI: case X86_REG_DI: case X86_REG_DIL: return kRdi;
    case X86_REG_RBP: case X86_REG_EBP: case X86_REG_BP: case X86_REG_BPL: return kRbp;
    case X86_REG_RSP: case X86_REG_ESP: case X86_REG_SP: case X86_REG_SPL: return kRsp;
    case X86_REG_R8: case X86_REG_R8D: case X86_REG_R8W: case X86_REG_R8B: return kR8;
    case X86_REG_R9: case X86_REG_R9D: case X86_REG_R9W: case X86_REG_R9B: return kR9;
    case X86_REG_R10: case X86_REG_R10D: case X86_REG_R10W: case X86_REG_R10B: return kR10;
    case X86_REG_R11: case X86_REG_R11D: case X86_REG_R11W: case X86_REG_R11B: return kR11;
    case X86_REG_R12: case X86_REG_R12D: case X86_REG_R12W: case X86_REG_R12B: return kR12;
    case X86_REG_R13: case X86_REG_R13D: case X86_REG_R13W: case X86_REG_R13B: return kR13;
    case X86_REG_R14: case X86_REG_R14D: case X86_REG_R14W: case X86_REG_R14B: return kR14;
    case X86_REG_R15: case X86_REG_R15D: case X86_REG_R15W: case X86_REG_R15B: return kR15;
    case X86_REG_RIP: return kRip;
    default: return kNoReg;
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<Decoder>> Decoder::Create() {
  auto d = std::unique_ptr<Decoder>(new Decoder());
  if (cs_open(CS_ARCH_X86, CS_MODE_64, &d->handle_) != CS_ERR_OK) {
    return absl::InternalError("cannot start the Capstone disassembler");
  }
  cs_option(d->handle_, CS_OPT_DETAIL, CS_OPT_ON);
  d->insn_ = cs_malloc(d->handle_);
  return d;
}

Decoder::~Decoder() {
  if (insn_) cs_free(insn_, 1);
  if (handle_) cs_close(&handle_);
}

const char* Decoder::Name(uint16_t id) const { return cs_insn_name(handle_, id); }

std::vector<Insn> Decoder::Decode(absl::Span<const uint8_t> code, uint64_t addr) {
  std::vector<Insn> out;
  Decode(code, addr, &out);
  return out;
}

void Decoder::Decode(absl::Span<const uint8_t> code, uint64_t addr, std::vector<Insn>* out) {
  const uint8_t* p = code.data();
  size_t left = code.size();
  uint64_t pc = addr;
  while (left > 0 && cs_disasm_iter(handle_, &p, &left, &pc, insn_)) {
    out->push_back(Convert(*insn_));
  }
}

std::vector<TextInsn> Decoder::DecodeText(absl::Span<const uint8_t> code, uint64_t addr,
                                          Syntax syntax) {
  // The syntax is set per call and put back: Decode's operands do not
  // depend on it, but the handle is shared.
  if (syntax == Syntax::kAtt) cs_option(handle_, CS_OPT_SYNTAX, CS_OPT_SYNTAX_ATT);
  std::vector<TextInsn> out;
  const uint8_t* p = code.data();
  size_t left = code.size();
  uint64_t pc = addr;
  while (left > 0 && cs_disasm_iter(handle_, &p, &left, &pc, insn_)) {
    out.push_back({insn_->address, static_cast<uint8_t>(insn_->size), insn_->mnemonic,
                   insn_->op_str});
  }
  if (syntax == Syntax::kAtt) cs_option(handle_, CS_OPT_SYNTAX, CS_OPT_SYNTAX_INTEL);
  return out;
}

Insn Decoder::Convert(const cs_insn& ci) const {
  Insn in;
  in.addr = ci.address;
  in.id = static_cast<uint16_t>(ci.id);
  in.size = static_cast<uint8_t>(ci.size);
  const cs_x86& x = ci.detail->x86;
  in.nops = static_cast<uint8_t>(std::min<int>(x.op_count, kMaxOperands));
  for (int i = 0; i < in.nops; ++i) {
    const cs_x86_op& o = x.operands[i];
    Operand& op = in.ops[i];
    op.size = o.size;
    if (o.type == X86_OP_REG) {
      op.type = Operand::kReg;
      op.reg = static_cast<int8_t>(FoldReg(o.reg));
      if (op.reg == kRip) op.reg = kNoReg;
      op.raw_reg = static_cast<uint16_t>(o.reg);
    } else if (o.type == X86_OP_IMM) {
      op.type = Operand::kImm;
      op.value = o.imm;
    } else if (o.type == X86_OP_MEM) {
      op.type = Operand::kMem;
      op.base = static_cast<int8_t>(FoldReg(o.mem.base));
      op.index = static_cast<int8_t>(FoldReg(o.mem.index));
      op.scale = static_cast<uint8_t>(o.mem.scale);
      op.segment = o.mem.segment != X86_REG_INVALID;
      op.value = o.mem.disp;
      if (op.base == kRip) op.value += static_cast<int64_t>(ci.address + ci.size);
    }
  }
  cs_regs read, write;
  uint8_t nread = 0, nwrite = 0;
  if (cs_regs_access(handle_, &ci, read, &nread, write, &nwrite) == CS_ERR_OK) {
    for (int i = 0; i < nread; ++i) {
      int r = FoldReg(read[i]);
      if (r >= 0 && r < kNumRegs) in.regs_read |= 1u << r;
    }
    for (int i = 0; i < nwrite; ++i) {
      int r = FoldReg(write[i]);
      if (r >= 0 && r < kNumRegs) in.regs_written |= 1u << r;
    }
  }
  if (cs_insn_group(handle_, &ci, X86_GRP_CALL)) {
    in.flow = Flow::kCall;
  } else if (cs_insn_group(handle_, &ci, X86_GRP_RET)) {
    in.flow = Flow::kRet;
  } else if (cs_insn_group(handle_, &ci, X86_GRP_JUMP)) {
    in.flow = ci.id == X86_INS_JMP ? Flow::kJump : Flow::kCondJump;
  } else if (ci.id == X86_INS_UD2 || ci.id == X86_INS_INT3 || ci.id == X86_INS_HLT) {
    in.flow = Flow::kStop;
  }
  if ((in.flow == Flow::kCall || in.flow == Flow::kJump || in.flow == Flow::kCondJump) &&
      in.nops == 1 && in.ops[0].type == Operand::kImm) {
    in.target = static_cast<uint64_t>(in.ops[0].value);
  }
  return in;
}

}  // namespace goerrprof::x86
