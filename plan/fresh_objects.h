// Whether a register holds a new object of a given type on every way to an
// instruction: followed back through moves, frame spills and reloads, and
// into the constructors that return one (net.newDNSError). The new-object
// rule (ref_walker_fresh.cc) uses it where branches or a loop lie between
// the allocation and the itab's LEA. Internal to plan/.
#ifndef GOERRPROF_PLAN_FRESH_OBJECTS_H_
#define GOERRPROF_PLAN_FRESH_OBJECTS_H_

#include <cstdint>
#include <vector>

#include "absl/strings/string_view.h"
#include "plan/function_code.h"

namespace goerrprof::profiler::planner {

// The register a typed allocator takes its type in: RAX for newobject and
// convT (new(T), a boxed copy of a T), RBX for mallocgc and its
// size-specialized forms (Go 1.26+ calls those for new(T)); kNoReg for any
// other callee.
int AllocatorTypeReg(absl::string_view callee);

// The type the allocator call at `call` is given by the instructions just
// before it; 0 if not known or not a typed allocator.
uint64_t AllocatedType(Binary& binary, const Function& fn, int call);

// Register `reg` holds, just before `fn`'s instruction `at`, an object of
// type `want` that runtime.newobject or convT made (directly or in a Go
// callee that returns one) on every way there since `at` last ran. A way
// through another reference to `target` (the itab) fails: that one built
// the value. `depth` bounds the callees followed.
bool NewOnEveryWay(Binary& binary, const Function& fn, int at, int reg, uint64_t want,
                   uint64_t target, int depth = 0);

// A frame slot (RSP offset) that, at instruction `at` (-1: anywhere), only
// moves and RSP-based stores the planner sees can write.
bool SafeSlot(Binary& binary, const Function& fn, int64_t off, int at);

// Follows a value back over `in`, which is no call: held in register
// `*reg` (or, when kNoReg, the frame slot at RSP+`*off`) just after it,
// where it was just before: through a register move, a reload, a spill.
// False when `in` makes the value some other way.
bool MoveBack(Binary& binary, const Function& fn, const Insn& in, int* reg, int64_t* off);

// Register `reg` holds, just before `fn`'s instruction `at`, on every way
// there, a value that already was an error: the data word of an interface
// argument whose itab register was tested equal to `itab` (a value asserted
// out of it, `serr, _ := err.(*SemanticError)`), unchanged since the entry;
// or an object of type `want` from an allocation in `fn`, whose
// instruction index is added to `*allocs` (its creation is counted, if at
// all, where it meets the itab first). Ways that zero the register after
// finding it non-nil are no ways (reboxed_values.cc).
bool ReboxedOnEveryWay(Binary& binary, const Function& fn, int at, int reg, uint64_t want,
                       uint64_t itab, std::vector<int>* allocs);

}  // namespace goerrprof::profiler::planner

#endif  // GOERRPROF_PLAN_FRESH_OBJECTS_H_
