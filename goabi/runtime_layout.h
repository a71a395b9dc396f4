// Byte offsets of the Go runtime structures goerrprof reads, per Go release,
// for 64-bit targets. Facts come from the runtime sources of each release;
// nothing here reads a binary.
#ifndef GOERRPROF_GOABI_RUNTIME_LAYOUT_H_
#define GOERRPROF_GOABI_RUNTIME_LAYOUT_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "goabi/go_version.h"

namespace goerrprof::goabi {

// runtime.moduledata. A slice field's offset is that of its data pointer;
// its length follows 8 bytes later. kAbsent marks a field a release lacks.
struct ModuledataLayout {
  static constexpr int32_t kAbsent = -1;
  int32_t pcheader = 0;    // *pcHeader, always the first word (1.16+)
  int32_t ftab = kAbsent;  // []functab
  int32_t text = kAbsent;
  int32_t etext = kAbsent;
  int32_t noptrdata = kAbsent;
  int32_t enoptrdata = kAbsent;
  int32_t types = kAbsent;
  int32_t etypes = kAbsent;
  int32_t rodata = kAbsent;  // 1.18+
  int32_t gofunc = kAbsent;  // 1.18+: base of funcdata offsets
  int32_t textsectmap = kAbsent;
  int32_t typelinks = kAbsent;  // []int32; gone in 1.27 (see typedesclen)
  int32_t itablinks = kAbsent;  // []*itab; gone in 1.27 (see itaboffset)
  int32_t modulename = kAbsent;  // string
  int32_t next = kAbsent;        // *moduledata

  // Added for the pclntab slices and section bounds, and for 1.26/1.27.
  int32_t funcnametab = kAbsent;  // []byte
  int32_t cutab = kAbsent;        // []uint32
  int32_t filetab = kAbsent;      // []byte
  int32_t pctab = kAbsent;        // []byte
  int32_t pclntable = kAbsent;    // []byte; functab.funcoff counts from here
  int32_t findfunctab = kAbsent;
  int32_t minpc = kAbsent;
  int32_t maxpc = kAbsent;
  int32_t data = kAbsent;
  int32_t edata = kAbsent;
  int32_t bss = kAbsent;
  int32_t ebss = kAbsent;
  int32_t noptrbss = kAbsent;
  int32_t enoptrbss = kAbsent;
  int32_t epclntab = kAbsent;  // 1.26+: end of the pclntab
  // 1.27+: no typelinks. The reflect-visible type descriptors lie back to
  // back in [types+8, types+typedesclen), each 8-aligned, each as long as
  // abi.Type.DescriptorSize() says.
  int32_t typedesclen = kAbsent;
  // 1.27+: no itablinks. The linker's itabs lie back to back in
  // [types+itaboffset, types+itaboffset+itabsize); see ItabLayout.
  int32_t itaboffset = kAbsent;
  int32_t itabsize = kAbsent;
  int32_t size = 0;  // sizeof(runtime.moduledata)
};

// internal/abi.Type (runtime._type) and the type-specific structs after it.
struct TypeLayout {
  int32_t size = 0;       // uintptr
  int32_t tflag = 20;     // uint8
  int32_t kind = 23;      // uint8; low 5 bits are the kind
  int32_t str = 40;       // nameOff (int32)
  int32_t ptr_to_this = 44;
  int32_t header_size = 48;  // where the kind-specific part begins
  // ptrType/sliceType/arrayType/chanType: elem *Type right after the header.
  int32_t elem = 48;
  // structType: pkgPath name, then fields []structField.
  int32_t struct_fields = 56;
  int32_t struct_field_size = 24;    // name, typ, offset
  bool struct_offset_shifted = false;  // before 1.19: offsetEmbed = offset<<1|embedded
  // interfaceType: pkgPath name, then methods []imethod {name nameOff, typ typeOff}.
  int32_t interface_methods = 56;
  int32_t uncommon_size = 16;  // pkgPath nameOff, mcount, xcount, moff, unused
  // Names: before 1.17 the length is 2 big-endian bytes; from 1.17 a varint.
  bool name_varint_length = true;
  // Whether an interface holds the value itself rather than a pointer to
  // it: bit 1<<5 of kind before 1.26, bit 1<<5 of tflag from 1.26 (where
  // kind is the bare kind).
  bool direct_iface_in_tflag = true;
};

// runtime.itab / internal/abi.ITab. Same in every release 1.16-1.27. An
// itab is 24 bytes plus one word per interface method, at least one word
// (fun[0] == 0 marks a type that does not implement the interface); 1.27
// packs them in that size, so walking them needs the interface's method count.
struct ItabLayout {
  int32_t inter = 0;
  int32_t type = 8;
  int32_t hash = 16;
  int32_t fun = 24;
};

struct RuntimeLayout {
  ModuledataLayout moduledata;
  TypeLayout type;
  ItabLayout itab;
};

// Errors with NotFound/Unimplemented for releases goerrprof does not know
// (before 1.16, or newer than the newest table entry is NOT an error: the
// newest known layout is returned, since layouts rarely change).
absl::StatusOr<RuntimeLayout> RuntimeLayoutFor(const GoVersion& version);

}  // namespace goerrprof::goabi

#endif  // GOERRPROF_GOABI_RUNTIME_LAYOUT_H_
