#include "symbolizer/moduledata.h"

#include <elf.h>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "base/byte_reader.h"
#include "base/status_macros.h"

namespace goerrprof::symbolizer {
namespace {

using Layout = goabi::ModuledataLayout;

absl::StatusOr<uint64_t> Field(const ElfFile& elf, uint64_t md, int32_t off) {
  if (off == Layout::kAbsent) return uint64_t{0};
  return elf.ReadPointer(md + off);
}

absl::StatusOr<uint64_t> Word(const ElfFile& elf, uint64_t md, int32_t off) {
  if (off == Layout::kAbsent) return uint64_t{0};
  return elf.ReadU64(md + off);
}

// The length word of a slice field (8 bytes after its data pointer).
absl::StatusOr<uint64_t> SliceLen(const ElfFile& elf, uint64_t md, int32_t off) {
  if (off == Layout::kAbsent) return uint64_t{0};
  return elf.ReadU64(md + off + 8);
}

// Reads the candidate and checks it against the pclntab it must describe.
absl::StatusOr<Moduledata> ReadAt(const ElfFile& elf, const Pclntab& pclntab,
                                  const Layout& layout, uint64_t addr) {
  Moduledata md;
  md.addr = addr;
  ASSIGN_OR_RETURN(uint64_t pcheader, Field(elf, addr, layout.pcheader));
  ASSIGN_OR_RETURN(uint64_t ftab, Field(elf, addr, layout.ftab));
  ASSIGN_OR_RETURN(md.text, Field(elf, addr, layout.text));
  ASSIGN_OR_RETURN(md.etext, Field(elf, addr, layout.etext));
  ASSIGN_OR_RETURN(md.types, Field(elf, addr, layout.types));
  ASSIGN_OR_RETURN(md.etypes, Field(elf, addr, layout.etypes));
  ASSIGN_OR_RETURN(md.gofunc, Field(elf, addr, layout.gofunc));
  ASSIGN_OR_RETURN(md.typelinks, Field(elf, addr, layout.typelinks));
  ASSIGN_OR_RETURN(md.ntypelinks, SliceLen(elf, addr, layout.typelinks));
  ASSIGN_OR_RETURN(md.itablinks, Field(elf, addr, layout.itablinks));
  ASSIGN_OR_RETURN(md.nitablinks, SliceLen(elf, addr, layout.itablinks));
  ASSIGN_OR_RETURN(uint64_t itab_off, Word(elf, addr, layout.itaboffset));
  ASSIGN_OR_RETURN(md.itab_bytes, Word(elf, addr, layout.itabsize));
  if (layout.itaboffset != Layout::kAbsent) md.itabs = md.types + itab_off;
  bool ok = pcheader == pclntab.address() &&
            (layout.ftab == Layout::kAbsent ||
             ftab == pclntab.address() + pclntab.functab_offset()) &&
            md.etext >= md.text && md.types <= md.etypes &&
            md.ntypelinks < (1u << 24) && md.nitablinks < (1u << 24) &&
            md.itab_bytes < (1u << 30);
  if (!ok) {
    return absl::NotFoundError(absl::StrFormat("no valid moduledata at 0x%x", addr));
  }
  return md;
}

}  // namespace

absl::StatusOr<Moduledata> FindModuledata(const ElfFile& elf, const Pclntab& pclntab,
                                          const Layout& layout) {
  if (auto sym = elf.LookupSymbol("runtime.firstmoduledata")) {
    auto md = ReadAt(elf, pclntab, layout, *sym);
    if (md.ok()) return md;
  }
  // moduledata lives in writable data; its first word points at the pclntab.
  for (const ElfSegment& seg : elf.loads()) {
    if (!(seg.flags & PF_W)) continue;
    auto bytes = elf.ReadVirtual(seg.vaddr, seg.filesz);
    if (!bytes.ok()) continue;
    ByteReader words(*bytes);
    while (words.remaining() >= 8) {
      uint64_t addr = seg.vaddr + words.pos();
      uint64_t word = words.U64();
      if (elf.HasRelocationAt(addr)) word = *elf.ReadPointer(addr);
      if (word != pclntab.address() || addr < seg.vaddr + layout.pcheader) continue;
      auto md = ReadAt(elf, pclntab, layout, addr - layout.pcheader);
      if (md.ok()) return md;
    }
  }
  return absl::NotFoundError("cannot find runtime.firstmoduledata");
}

}  // namespace goerrprof::symbolizer
