#include "goabi/runtime_layout.h"

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace goerrprof::goabi {
namespace {

// Offsets worked out by hand from runtime/symtab.go of each release (amd64:
// word 8, slice 24, string 16) and checked against the DWARF and data of
// binaries built by each toolchain.

// Fields from pcHeader to enoptrbss sit at the same place in 1.16-1.27.
ModuledataLayout CommonPrefix() {
  ModuledataLayout m;
  m.pcheader = 0;
  m.funcnametab = 8;
  m.cutab = 32;
  m.filetab = 56;
  m.pctab = 80;
  m.pclntable = 104;
  m.ftab = 128;
  m.findfunctab = 152;
  m.minpc = 160;
  m.maxpc = 168;
  m.text = 176;
  m.etext = 184;
  m.noptrdata = 192;
  m.enoptrdata = 200;
  m.data = 208;
  m.edata = 216;
  m.bss = 224;
  m.ebss = 232;
  m.noptrbss = 240;
  m.enoptrbss = 248;
  return m;
}

// 1.16-1.17: end, gcdata, gcbss, then types/etypes; no rodata or gofunc
// because funcdata are still absolute pointers.
ModuledataLayout Moduledata116() {
  ModuledataLayout m = CommonPrefix();
  m.types = 280;
  m.etypes = 288;
  m.textsectmap = 296;
  m.typelinks = 320;
  m.itablinks = 344;
  m.modulename = 432;
  m.next = 528;
  m.size = 536;
  return m;
}

// 1.18-1.19: rodata and gofunc follow etypes (funcdata became uint32
// offsets from gofunc), pushing everything after them down 16 bytes.
ModuledataLayout Moduledata118() {
  ModuledataLayout m = CommonPrefix();
  m.types = 280;
  m.etypes = 288;
  m.rodata = 296;
  m.gofunc = 304;
  m.textsectmap = 312;
  m.typelinks = 336;
  m.itablinks = 360;
  m.modulename = 448;
  m.next = 544;
  m.size = 552;
  return m;
}

// 1.20: covctrs/ecovctrs (coverage counters) inserted before end: +16.
ModuledataLayout Moduledata120() {
  ModuledataLayout m = CommonPrefix();
  m.types = 296;
  m.etypes = 304;
  m.rodata = 312;
  m.gofunc = 320;
  m.textsectmap = 328;
  m.typelinks = 352;
  m.itablinks = 376;
  m.modulename = 464;
  m.next = 560;
  m.size = 568;
  return m;
}

// 1.21-1.22: inittasks []*initTask inserted after pkghashes (moves
// modulename and next); sys.NotInHeap added first takes no room.
ModuledataLayout Moduledata121() {
  ModuledataLayout m = Moduledata120();
  m.modulename = 488;
  m.next = 584;
  m.size = 592;
  return m;
}

// 1.23-1.25: bad moved up next to hasmain, so only next moves.
ModuledataLayout Moduledata123() {
  ModuledataLayout m = Moduledata121();
  m.next = 576;
  m.size = 584;
  return m;
}

// 1.26: epclntab added after gofunc: +8 from textsectmap on.
ModuledataLayout Moduledata126() {
  ModuledataLayout m = Moduledata120();
  m.epclntab = 328;
  m.textsectmap = 336;
  m.typelinks = 360;
  m.itablinks = 384;
  m.modulename = 496;
  m.next = 584;
  m.size = 592;
  return m;
}

// 1.27: typelinks and itablinks slices removed; typedesclen between types
// and etypes, itaboffset/itabsize after etypes.
ModuledataLayout Moduledata127() {
  ModuledataLayout m = CommonPrefix();
  m.types = 296;
  m.typedesclen = 304;
  m.etypes = 312;
  m.itaboffset = 320;
  m.itabsize = 328;
  m.rodata = 336;
  m.gofunc = 344;
  m.epclntab = 352;
  m.textsectmap = 360;
  m.modulename = 472;
  m.next = 560;
  m.size = 568;
  return m;
}

// runtime._type (internal/abi.Type from 1.21) and the struct, pointer and
// interface type records keep one shape in 1.16-1.27; only how some bits
// are encoded changed.
TypeLayout TypeFor(const GoVersion& v) {
  TypeLayout t;
  t.name_varint_length = v.AtLeast(1, 17);    // runtime/type.go readvarint
  t.struct_offset_shifted = !v.AtLeast(1, 19);  // offsetAnon -> offset
  t.direct_iface_in_tflag = v.AtLeast(1, 26);   // TFlagDirectIface
  return t;
}

ModuledataLayout ModuledataFor(const GoVersion& v) {
  if (v.AtLeast(1, 27)) return Moduledata127();
  if (v.AtLeast(1, 26)) return Moduledata126();
  if (v.AtLeast(1, 23)) return Moduledata123();
  if (v.AtLeast(1, 21)) return Moduledata121();
  if (v.AtLeast(1, 20)) return Moduledata120();
  if (v.AtLeast(1, 18)) return Moduledata118();
  return Moduledata116();
}

}  // namespace

absl::StatusOr<RuntimeLayout> RuntimeLayoutFor(const GoVersion& version) {
  if (!version.AtLeast(1, 16)) {
    return absl::UnimplementedError("Go 1.15 and older are not supported");
  }
  RuntimeLayout layout;
  layout.moduledata = ModuledataFor(version);
  layout.type = TypeFor(version);
  layout.itab = ItabLayout{};
  return layout;
}

}  // namespace goerrprof::goabi
