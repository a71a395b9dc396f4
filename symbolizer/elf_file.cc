#include "symbolizer/elf_file.h"

#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/byte_reader.h"
#include "base/status_macros.h"

namespace goerrprof::symbolizer {
namespace {

constexpr uint32_t kRelocRelative = 8;  // R_X86_64_RELATIVE
constexpr uint32_t kNoteGnuBuildId = 3;
constexpr uint32_t kNoteGoBuildId = 4;
// Real executables have a handful of PT_LOADs; every address lookup walks
// them, so a crafted table of thousands would multiply all work.
constexpr size_t kMaxLoads = 64;
// Longer symbol names are not kept (no symbol goerrprof looks up is near
// this): a crafted string table can make each symbol a long suffix of one
// run of bytes. Section names likewise.
constexpr uint64_t kMaxSymbolName = 4096;
constexpr size_t kMaxSectionName = 256;

absl::Status ElfError(const std::string& path, absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat(path, ": not a valid ELF file (", what, ": ", elf_errmsg(-1), ")"));
}

// Walks an SHT_NOTE blob; calls fn(type, name, desc) per note.
template <typename Fn>
void ForEachNote(ByteView d, Fn fn) {
  auto pad4 = [](uint32_t n) { return (4 - n % 4) % 4; };  // name and desc are 4-aligned
  ByteReader r(d);
  while (r.remaining() >= 12) {
    uint32_t namesz = r.U32(), descsz = r.U32(), type = r.U32();
    ByteView name_bytes = r.Bytes(namesz);
    r.Skip(pad4(namesz));
    ByteView desc = r.Bytes(descsz);
    if (!r.ok()) return;
    absl::string_view name(reinterpret_cast<const char*>(name_bytes.data()), name_bytes.size());
    while (!name.empty() && name.back() == '\0') name.remove_suffix(1);
    fn(type, name, desc.span());
    r.Skip(pad4(descsz));
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<ElfFile>> ElfFile::Open(const std::string& path) {
  auto file = std::unique_ptr<ElfFile>(new ElfFile());
  file->path_ = path;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    return absl::ErrnoToStatus(err, absl::StrCat("cannot open ", path));
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  file->size_ = static_cast<uint64_t>(st.st_size);
  if (file->size_ < sizeof(Elf64_Ehdr)) {
    close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": not an ELF file (too small)"));
  }
  void* map = mmap(nullptr, file->size_, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);  // the mapping keeps the file alive
  if (map == MAP_FAILED) {
    int err = errno;
    return absl::ErrnoToStatus(err, absl::StrCat("cannot map ", path));
  }
  file->data_ = static_cast<const uint8_t*>(map);
  file->mapped_ = true;
  RETURN_IF_ERROR(file->Parse());
  return file;
}

absl::StatusOr<std::unique_ptr<ElfFile>> ElfFile::FromBytes(const std::string& name,
                                                           absl::Span<const uint8_t> bytes) {
  auto file = std::unique_ptr<ElfFile>(new ElfFile());
  file->path_ = name;
  if (bytes.size() < sizeof(Elf64_Ehdr)) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": not an ELF file (too small)"));
  }
  file->data_ = bytes.data();
  file->size_ = bytes.size();
  RETURN_IF_ERROR(file->Parse());
  return file;
}

ElfFile::~ElfFile() {
  if (mapped_) munmap(const_cast<uint8_t*>(data_), size_);
}

absl::Status ElfFile::Parse() {
  if (std::memcmp(data_, ELFMAG, SELFMAG) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": not an ELF file"));
  }
  if (data_[EI_CLASS] != ELFCLASS64 || data_[EI_DATA] != ELFDATA2LSB) {
    return absl::UnimplementedError(
        absl::StrCat(path_, ": only 64-bit little-endian ELF files are supported"));
  }
  elf_version(EV_CURRENT);
  // libelf only reads this buffer (ELF_C_READ_MEMORY never writes back).
  Elf* elf = elf_memory(reinterpret_cast<char*>(const_cast<uint8_t*>(data_)), size_);
  if (elf == nullptr) return ElfError(path_, "elf_memory");
  struct ElfCloser {
    Elf* e;
    ~ElfCloser() { elf_end(e); }
  } closer{elf};

  GElf_Ehdr ehdr;
  if (gelf_getehdr(elf, &ehdr) == nullptr) return ElfError(path_, "header");
  if (ehdr.e_machine != EM_X86_64) {
    return absl::UnimplementedError(absl::StrFormat(
        "%s: machine %d is not supported (only x86-64)", path_, ehdr.e_machine));
  }
  if (ehdr.e_type != ET_EXEC && ehdr.e_type != ET_DYN) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": not an executable"));
  }
  is_dyn_ = ehdr.e_type == ET_DYN;

  size_t phnum = 0;
  if (elf_getphdrnum(elf, &phnum) != 0) return ElfError(path_, "program headers");
  for (size_t i = 0; i < phnum; ++i) {
    GElf_Phdr ph;
    if (gelf_getphdr(elf, static_cast<int>(i), &ph) == nullptr) {
      return ElfError(path_, "program header");
    }
    if (ph.p_type != PT_LOAD) continue;
    if (!InBounds(ph.p_offset, ph.p_filesz, size_)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: truncated ELF file (segment at offset 0x%x needs 0x%x bytes, file has 0x%x)",
          path_, ph.p_offset, ph.p_filesz, size_));
    }
    loads_.push_back({ph.p_vaddr, ph.p_offset, ph.p_filesz, ph.p_memsz, ph.p_flags});
    if (loads_.size() > kMaxLoads) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: implausible ELF file (more than %d loadable segments)", path_, kMaxLoads));
    }
  }
  if (loads_.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": ELF file has no loadable segment"));
  }

  size_t shstrndx = 0;
  if (elf_getshdrstrndx(elf, &shstrndx) != 0) return ElfError(path_, "section names");
  Elf_Scn* scn = nullptr;
  Elf_Scn* symtab = nullptr;
  while ((scn = elf_nextscn(elf, scn)) != nullptr) {
    GElf_Shdr sh;
    if (gelf_getshdr(scn, &sh) == nullptr) return ElfError(path_, "section header");
    const char* name = elf_strptr(elf, shstrndx, sh.sh_name);
    std::string short_name = name ? std::string(name, strnlen(name, kMaxSectionName)) : "";
    ElfSection s{std::move(short_name), sh.sh_type, sh.sh_flags, sh.sh_addr, sh.sh_offset,
                 sh.sh_size};
    if (s.type != SHT_NOBITS && !InBounds(s.offset, s.size, size_)) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "%s: truncated ELF file (section %s at offset 0x%x needs 0x%x bytes, file has 0x%x)",
          path_, s.name, s.offset, s.size, size_));
    }
    if (s.type == SHT_SYMTAB) symtab = scn;
    sections_.push_back(std::move(s));
  }

  const ByteView file(data_, size_);
  if (symtab != nullptr) {
    // Names stay in the file (views, not copies). sections_[i] is section
    // i + 1: elf_nextscn starts after the null section.
    GElf_Shdr sh;
    if (gelf_getshdr(symtab, &sh) != nullptr && sh.sh_entsize == sizeof(Elf64_Sym) &&
        sh.sh_link >= 1 && sh.sh_link <= sections_.size()) {
      const ElfSection& strtab = sections_[sh.sh_link - 1];
      std::optional<ByteView> syms = file.Sub(sh.sh_offset, sh.sh_size);
      std::optional<ByteView> strs = strtab.type == SHT_NOBITS
                                         ? std::nullopt
                                         : file.Sub(strtab.offset, strtab.size);
      if (syms && strs) {
        ByteReader r(*syms);
        Elf64_Sym sym;
        while (r.Read(&sym)) {
          std::optional<absl::string_view> name = strs->CString(sym.st_name, kMaxSymbolName);
          if (name && !name->empty()) symbols_.try_emplace(*name, sym.st_value);
        }
      }
    }
  }

  // Sections may overlap: all of them together are read at most the
  // file's size in bytes.
  uint64_t budget = size_;
  for (const ElfSection& s : sections_) {
    // Only SHT_NOBITS sections have no bytes in the file (checked above).
    std::optional<ByteView> contents = file.Sub(s.offset, s.size);
    if (!contents || (s.type != SHT_RELA && s.type != SHT_NOTE)) continue;
    if (contents->size() > budget) break;
    budget -= contents->size();
    if (s.type == SHT_RELA && s.size % sizeof(Elf64_Rela) == 0) {
      ByteReader relas(*contents);
      Elf64_Rela r;
      while (relas.Read(&r)) {
        if (ELF64_R_TYPE(r.r_info) == kRelocRelative) {
          relative_[r.r_offset] = static_cast<uint64_t>(r.r_addend);
        }
      }
    } else if (s.type == SHT_NOTE) {
      ForEachNote(*contents,
                  [&](uint32_t type, absl::string_view name, absl::Span<const uint8_t> desc) {
                    absl::string_view text(reinterpret_cast<const char*>(desc.data()), desc.size());
                    if (name == "GNU" && type == kNoteGnuBuildId) {
                      gnu_build_id_ = absl::BytesToHexString(text);
                    } else if (name == "Go" && type == kNoteGoBuildId) {
                      go_build_id_ = std::string(text);
                    }
                  });
    }
  }
  return absl::OkStatus();
}

const ElfSection* ElfFile::FindSection(absl::string_view name) const {
  for (const ElfSection& s : sections_) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

std::optional<uint64_t> ElfFile::LookupSymbol(absl::string_view name) const {
  auto it = symbols_.find(name);
  if (it == symbols_.end()) return std::nullopt;
  return it->second;
}

absl::StatusOr<absl::Span<const uint8_t>> ElfFile::SectionData(const ElfSection& s) const {
  if (s.type == SHT_NOBITS) return absl::Span<const uint8_t>();
  if (!InBounds(s.offset, s.size, size_)) {
    return absl::OutOfRangeError(absl::StrCat(path_, ": section ", s.name, " is outside the file"));
  }
  return absl::MakeConstSpan(data_ + s.offset, s.size);
}

absl::StatusOr<absl::Span<const uint8_t>> ElfFile::ReadVirtualUpTo(uint64_t addr,
                                                                  uint64_t max_len) const {
  for (const ElfSegment& seg : loads_) {
    if (addr >= seg.vaddr && addr - seg.vaddr < seg.filesz) {
      uint64_t rel = addr - seg.vaddr;
      uint64_t avail = seg.filesz - rel;
      return absl::MakeConstSpan(data_ + seg.offset + rel, std::min(avail, max_len));
    }
  }
  return absl::OutOfRangeError(
      absl::StrFormat("%s: address 0x%x is not in the file's loaded contents", path_, addr));
}

absl::StatusOr<absl::Span<const uint8_t>> ElfFile::ReadVirtual(uint64_t addr, uint64_t len) const {
  ASSIGN_OR_RETURN(absl::Span<const uint8_t> span, ReadVirtualUpTo(addr, len));
  if (span.size() < len) {
    return absl::OutOfRangeError(absl::StrFormat(
        "%s: read of 0x%x bytes at 0x%x runs past the file's contents", path_, len, addr));
  }
  return span;
}

absl::StatusOr<uint64_t> ElfFile::ReadU64(uint64_t addr) const {
  ASSIGN_OR_RETURN(absl::Span<const uint8_t> s, ReadVirtual(addr, 8));
  return ByteReader(s).U64();
}

absl::StatusOr<uint32_t> ElfFile::ReadU32(uint64_t addr) const {
  ASSIGN_OR_RETURN(absl::Span<const uint8_t> s, ReadVirtual(addr, 4));
  return ByteReader(s).U32();
}

absl::StatusOr<uint64_t> ElfFile::ReadPointer(uint64_t addr) const {
  if (auto it = relative_.find(addr); it != relative_.end()) return it->second;
  return ReadU64(addr);
}

absl::StatusOr<uint64_t> ElfFile::FileOffsetOf(uint64_t addr) const {
  for (const ElfSegment& seg : loads_) {
    if ((seg.flags & PF_X) && addr >= seg.vaddr && addr - seg.vaddr < seg.filesz) {
      return seg.offset + (addr - seg.vaddr);
    }
  }
  return absl::OutOfRangeError(
      absl::StrFormat("%s: address 0x%x is not in an executable segment", path_, addr));
}

}  // namespace goerrprof::symbolizer
