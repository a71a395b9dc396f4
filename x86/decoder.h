// x86-64 decoding: the one Capstone set-up. Instructions come out reduced to
// what the callers look at (operands, registers touched, control flow);
// instruction ids are Capstone's x86_insn (X86_INS_*).
#ifndef GOERRPROF_X86_DECODER_H_
#define GOERRPROF_X86_DECODER_H_

#include <capstone/x86.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

struct cs_insn;  // Capstone's; only the .cc sees inside

namespace goerrprof::x86 {

// General-purpose registers, every width folded to its 64-bit register. The
// order is the probe ABI's (bpf/probe_abi.h GEP_*), so planners use them as is.
enum Reg : int8_t {
  kNoReg = -1,
  kRax, kRbx, kRcx, kRdx, kRsi, kRdi, kRbp, kRsp,
  kR8, kR9, kR10, kR11, kR12, kR13, kR14, kR15,
  kRip,  // only as a memory base
};
constexpr int kNumRegs = 16;  // kRax..kR15

struct Operand {
  enum Type : uint8_t { kNone, kReg, kImm, kMem };
  Type type = kNone;
  uint8_t size = 0;
  int8_t reg = kNoReg;    // kReg: GP register, kNoReg for others (xmm, …)
  int8_t base = kNoReg;   // kMem: kRip for RIP-relative
  int8_t index = kNoReg;  // kMem
  uint8_t scale = 1;      // kMem: the index's factor
  bool segment = false;   // kMem through fs/gs: not a plain address
  uint16_t raw_reg = 0;   // kReg: Capstone's register id (tells eax from rax)
  int64_t value = 0;      // kImm: immediate; kMem: displacement (absolute for RIP)
};

enum class Flow : uint8_t { kNext, kJump, kCondJump, kCall, kRet, kStop };

// Capstone lists at most 8 operands; all are kept so no caller misses one.
constexpr int kMaxOperands = 8;

struct Insn {
  uint64_t addr = 0;
  uint64_t target = 0;  // direct jump/call target, else 0
  uint16_t id = 0;      // x86_insn
  uint8_t size = 0;
  uint8_t nops = 0;
  Flow flow = Flow::kNext;
  uint16_t regs_read = 0;     // mask (1 << Reg) of GP registers read, explicit and implicit
  uint16_t regs_written = 0;  // mask of GP registers written
  std::array<Operand, kMaxOperands> ops;
};

// An instruction as text, for people (tools, test diagnostics).
struct TextInsn {
  uint64_t addr = 0;
  uint8_t size = 0;
  std::string mnemonic;  // "mov", "rep stosq"
  std::string op_str;    // "rbp, qword ptr [rsp + 0x10]" (Intel) or "0x10(%rsp), %rbp" (AT&T)
};

enum class Syntax { kIntel, kAtt };

class Decoder {
 public:
  // Fails only when Capstone cannot start.
  static absl::StatusOr<std::unique_ptr<Decoder>> Create();
  ~Decoder();
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  // Decodes `code`, loaded at `addr`, linearly up to its end or the first
  // undecodable bytes (Go puts no data inside functions).
  std::vector<Insn> Decode(absl::Span<const uint8_t> code, uint64_t addr);
  void Decode(absl::Span<const uint8_t> code, uint64_t addr, std::vector<Insn>* out);
  std::vector<TextInsn> DecodeText(absl::Span<const uint8_t> code, uint64_t addr,
                                   Syntax syntax = Syntax::kIntel);

  // "lea", "stosq": the name of an instruction id.
  const char* Name(uint16_t id) const;

 private:
  Decoder() = default;
  Insn Convert(const cs_insn& ci) const;

  size_t handle_ = 0;         // Capstone's csh
  cs_insn* insn_ = nullptr;  // scratch for one instruction
};

}  // namespace goerrprof::x86

#endif  // GOERRPROF_X86_DECODER_H_
