// Where to put the uprobes that see every creation of an error value.
//
// An error value is born when a concrete value is paired with the static
// itab of an interface that has an Error() method. The compiler materializes
// that itab with `LEAQ itab(SB), reg`, inlined or not, so the planner finds
// those LEAs in the machine code, follows the itab to the instruction that
// pairs it with the data word (call, return, store) and picks one probe
// address per LEA where both words can be read. Boxing an error type into
// `any` (a LEA of the type descriptor) is planned the same way as kEface.
// Every reference that gets no probe is listed with a reason.
#ifndef GOERRPROF_PLAN_PROBE_PLAN_H_
#define GOERRPROF_PLAN_PROBE_PLAN_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "symbolizer/error_types.h"
#include "symbolizer/go_binary.h"

namespace goerrprof::profiler {

struct CreationProbe {
  enum Kind { kIface, kEface };
  // How the interface's words were found at `addr`.
  enum Via {
    kCall,        // passed to a call in argument registers (addr is the CALL)
    kReturn,      // returned in result registers (addr is the RET)
    kStore,       // both words stored to memory ([base+disp], [base+disp+8])
    kCallResult,  // runtime.convT2I/convT2E result (addr follows the CALL)
    kEarly,       // consumer lies past a merge point; probed before it
  };

  uint64_t addr = 0;      // file vaddr of the probed instruction
  uint64_t ref_addr = 0;  // the LEA of the itab / type descriptor
  uint64_t itab = 0;      // 0 for kEface
  uint64_t type = 0;      // concrete type descriptor
  uint32_t tab_loc = 0;   // bpf/probe_abi.h locations at `addr`
  uint32_t data_loc = 0;
  uint64_t cookie = 0;  // GEP_COOKIE(tab_loc, data_loc)
  // For a GEP_LOC_CONST data_loc: the data word, a static address (a
  // zero-size value's runtime.zerobase, a global) not yet in a register.
  uint64_t data_const = 0;
  Kind kind = kIface;
  Via via = kCall;
  // The pc whose frames best name the creation: the allocation call of the
  // data word when it is traced (inside an inlined errors.New), else ref_addr.
  uint64_t site = 0;
  // At `addr` the function has no frame of its own (a RET, an epilogue, a
  // frameless leaf): the caller's return address is at [rsp] and the frame
  // pointer is already the caller's.
  bool frameless = false;
  // Other paths reach `addr` too (a return past a merge): the probe counts
  // a run only when the itab location holds this itab (GEP_LOC_F_CHECK).
  bool checked = false;
};

struct SkippedRef {
  uint64_t addr = 0;  // the LEA
  uint64_t itab = 0;  // itab, or the type descriptor for an eface reference
  std::string reason;  // "comparison", "passed to runtime.newobject", …
};

struct ProbePlan {
  std::vector<CreationProbe> probes;  // sorted by addr
  std::vector<SkippedRef> skipped;    // sorted by addr
  size_t functions_scanned = 0;       // functions decoded (those holding a reference)
  size_t references = 0;              // LEAs of an error itab or error type found
};

// Plans probes for the itabs and type descriptors of `types` (as returned by
// symbolizer::FindErrorTypes for `bin`). Fails only when the text cannot be
// read or the disassembler cannot start.
absl::StatusOr<ProbePlan> PlanCreationProbes(const symbolizer::GoBinary& bin,
                                             const std::vector<symbolizer::ErrorType>& types);

// A skip reason without its details (operands, addresses): the key of the
// counts by reason that probe_plan_tool and `inspect --json` report.
std::string ReasonClass(absl::string_view reason);
// Whether a skipped reference loses nothing: a comparison (a type switch, a
// check against a sentinel's type, runtime.ifaceeq) creates no error, nor
// does an itab only ever held in registers and overwritten there; a
// type handed to an allocation helper (runtime.newobject, mallocgc, convT*)
// is probed where the helper's result becomes an interface, and one handed
// to a failed assertion's panic only names it, and one handed to a helper
// that lays out memory (growslice, typedmemmove, makemap, …) describes that
// memory. Any other skip is a creation that may be missed.
bool SkipLosesNothing(absl::string_view reason);

// "call", "ret", "store", "call-result", "early".
const char* ViaName(CreationProbe::Via via);
// "reg:rax", "mem:[rsp+0x28]", "const".
std::string LocationString(uint32_t loc);

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_PLAN_PROBE_PLAN_H_
