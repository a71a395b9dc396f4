#include "tests/synthetic_go_binary.h"

#include <elf.h>

#include <cstring>
#include <optional>

#include "goabi/go_version.h"
#include "goabi/runtime_layout.h"

namespace goerrprof::testing {
namespace {

constexpr uint64_t kPage = 0x1000;
constexpr uint64_t kFuncBytes = 64;

// Bytes laid out from a base address, written by address.
class Image {
 public:
  explicit Image(uint64_t base) : base_(base) {}
  uint64_t here() const { return base_ + bytes_.size(); }
  uint64_t Align(uint64_t a) {
    while (bytes_.size() % a != 0) bytes_.push_back('\0');
    return here();
  }
  uint64_t Append(const void* p, size_t n) {
    uint64_t at = here();
    bytes_.append(static_cast<const char*>(p), n);
    return at;
  }
  uint64_t Append(const std::string& s) { return Append(s.data(), s.size()); }
  template <typename T>
  uint64_t Put(T v) {
    return Append(&v, sizeof(v));
  }
  uint64_t Zeros(size_t n) { return Append(std::string(n, '\0')); }
  template <typename T>
  void Set(uint64_t addr, T v) {
    std::memcpy(&bytes_[addr - base_], &v, sizeof(v));
  }
  std::string& bytes() { return bytes_; }

 private:
  uint64_t base_;
  std::string bytes_;
};

std::string Varint(uint64_t v) {
  std::string out;
  while (v >= 0x80) {
    out.push_back(static_cast<char>(v | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
  return out;
}

// A pc-value table: one value over the whole function, then the end.
std::string OneValueTable(int32_t value) {
  int32_t delta = value + 1;  // tables start at -1
  uint32_t zigzag = delta < 0 ? (~static_cast<uint32_t>(delta) << 1) | 1
                              : static_cast<uint32_t>(delta) << 1;
  return Varint(zigzag) + Varint(kFuncBytes) + std::string(1, '\0');
}

// A runtime name (1.17+): flags, varint length, bytes.
std::string RuntimeName(const std::string& s, bool exported) {
  return std::string(1, exported ? 1 : 0) + Varint(s.size()) + s;
}

// An abi.Type header of 48 bytes.
void PutTypeHeader(Image& img, uint64_t size, uint8_t tflag, uint8_t kind, int32_t name_off) {
  img.Put<uint64_t>(size);
  img.Put<uint64_t>(0);  // ptrdata
  img.Put<uint32_t>(0x12345678);  // hash
  img.Put<uint8_t>(tflag);
  img.Put<uint8_t>(8);  // align
  img.Put<uint8_t>(8);  // fieldAlign
  img.Put<uint8_t>(kind);
  img.Put<uint64_t>(0);  // equal
  img.Put<uint64_t>(0);  // gcdata
  img.Put<int32_t>(name_off);
  img.Put<int32_t>(0);  // ptrToThis
}

constexpr uint8_t kKindInterface = 20, kKindPtr = 22, kKindString = 24, kKindStruct = 25;
constexpr uint8_t kTflagUncommon = 1, kTflagExtraStar = 2;

}  // namespace

void ElfWriter::AddSegment(uint64_t vaddr, uint32_t flags, std::string bytes) {
  segments_.push_back({vaddr, flags, std::move(bytes)});
}

void ElfWriter::AddSection(std::string name, uint32_t type, uint64_t flags, uint64_t addr,
                           uint64_t size, uint32_t link, uint64_t entsize) {
  sections_.push_back({std::move(name), type, flags, addr, size, link, entsize});
}

std::string ElfWriter::Write(bool sections) const {
  std::string out(sizeof(Elf64_Ehdr) + segments_.size() * sizeof(Elf64_Phdr), '\0');
  std::vector<Elf64_Phdr> phdrs;
  std::vector<uint64_t> offsets;
  for (const Segment& s : segments_) {
    out.resize((out.size() + kPage - 1) / kPage * kPage, '\0');
    Elf64_Phdr ph{};
    ph.p_type = PT_LOAD;
    ph.p_flags = s.flags;
    ph.p_offset = out.size();
    ph.p_vaddr = ph.p_paddr = s.vaddr;
    ph.p_filesz = ph.p_memsz = s.bytes.size();
    ph.p_align = kPage;
    phdrs.push_back(ph);
    offsets.push_back(out.size());
    out += s.bytes;
  }
  auto file_offset = [&](uint64_t addr) -> uint64_t {
    for (size_t i = 0; i < segments_.size(); ++i) {
      const Segment& s = segments_[i];
      if (addr >= s.vaddr && addr <= s.vaddr + s.bytes.size()) return offsets[i] + addr - s.vaddr;
    }
    return 0;
  };
  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_type = ET_EXEC;
  eh.e_machine = EM_X86_64;
  eh.e_version = EV_CURRENT;
  eh.e_entry = segments_.empty() ? 0 : segments_.front().vaddr;
  eh.e_phoff = sizeof(Elf64_Ehdr);
  eh.e_ehsize = sizeof(Elf64_Ehdr);
  eh.e_phentsize = sizeof(Elf64_Phdr);
  eh.e_phnum = static_cast<uint16_t>(phdrs.size());
  eh.e_shentsize = sizeof(Elf64_Shdr);
  if (sections) {
    // Names, then the table: the null section, ours, .shstrtab.
    std::string names(1, '\0');
    std::vector<Elf64_Shdr> shdrs(1);
    for (const Section& s : sections_) {
      Elf64_Shdr sh{};
      sh.sh_name = static_cast<uint32_t>(names.size());
      names += s.name + '\0';
      sh.sh_type = s.type;
      sh.sh_flags = s.flags;
      sh.sh_addr = s.addr;
      sh.sh_offset = file_offset(s.addr);
      sh.sh_size = s.size;
      sh.sh_link = s.link;
      sh.sh_entsize = s.entsize;
      sh.sh_addralign = 1;
      shdrs.push_back(sh);
    }
    Elf64_Shdr strtab{};
    strtab.sh_name = static_cast<uint32_t>(names.size());
    names += std::string(".shstrtab") + '\0';
    strtab.sh_type = SHT_STRTAB;
    strtab.sh_offset = out.size();
    strtab.sh_size = names.size();
    strtab.sh_addralign = 1;
    shdrs.push_back(strtab);
    out += names;
    out.resize((out.size() + 7) / 8 * 8, '\0');
    eh.e_shoff = out.size();
    eh.e_shnum = static_cast<uint16_t>(shdrs.size());
    eh.e_shstrndx = static_cast<uint16_t>(shdrs.size() - 1);
    out.append(reinterpret_cast<const char*>(shdrs.data()), shdrs.size() * sizeof(Elf64_Shdr));
  }
  std::memcpy(out.data(), &eh, sizeof(eh));
  std::memcpy(out.data() + sizeof(eh), phdrs.data(), phdrs.size() * sizeof(Elf64_Phdr));
  return out;
}

std::string BuildSyntheticGoBinary(const SyntheticGoOptions& o) {
  std::optional<goabi::GoVersion> version = goabi::GoVersion::Parse(o.go_version);
  if (!version || !version->AtLeast(1, 18)) return "";
  auto runtime = goabi::RuntimeLayoutFor(*version);
  if (!runtime.ok()) return "";
  const goabi::ModuledataLayout& ml = runtime->moduledata;
  const bool go120 = version->AtLeast(1, 20), go127 = version->AtLeast(1, 27);
  const size_t nfunc = o.functions.size();

  // Type descriptors, each name an offset from the start of the region.
  Image ro(kSyntheticRodata);
  ro.Zeros(8);
  auto name_off = [&](const std::string& s, bool exported) {
    return static_cast<int32_t>(ro.Append(RuntimeName(s, exported)) - kSyntheticRodata);
  };
  int32_t n_string = name_off("string", false);
  int32_t n_error = name_off(
      o.error_name_bytes > 0 ? std::string(o.error_name_bytes, 'e') : std::string("error"), false);
  int32_t n_Error = name_off("Error", true), n_ptr = name_off("*main.E", false);
  uint64_t n_msg = kSyntheticRodata + name_off("Msg", true);
  uint64_t n_err = kSyntheticRodata + name_off("Err", true);
  uint64_t n_self = kSyntheticRodata + name_off(std::string(o.self_field_name_bytes, 'F'), true);
  uint64_t version_str = ro.Append(o.go_version);

  uint64_t t_string = ro.Align(8);
  PutTypeHeader(ro, 16, 0, kKindString, n_string);
  uint64_t t_error = ro.Align(8);
  PutTypeHeader(ro, 16, 0, kKindInterface, n_error);
  ro.Put<uint64_t>(0);  // pkgPath
  ro.Put<uint64_t>(ro.here() + 24);  // methods: one imethod right after the slice
  ro.Put<uint64_t>(1);
  ro.Put<uint64_t>(1);
  ro.Put<int32_t>(n_Error);
  ro.Put<int32_t>(0);
  uint64_t t_struct = ro.Align(8);
  uint64_t nfields = 2 + static_cast<uint64_t>(o.self_fields);
  PutTypeHeader(ro, 32 + 8 * o.self_fields, kTflagExtraStar, kKindStruct, n_ptr);
  ro.Put<uint64_t>(0);  // pkgPath
  uint64_t fields_slice = ro.Put<uint64_t>(0);
  ro.Put<uint64_t>(nfields);
  ro.Put<uint64_t>(nfields);
  uint64_t t_ptr = ro.Align(8);
  PutTypeHeader(ro, 8, kTflagUncommon, kKindPtr, n_ptr);
  ro.Put<uint64_t>(t_struct);  // elem
  // Uncommon: pkgPath, mcount, xcount, moff (from here), unused; then
  // the method {name, mtyp, ifn, tfn}.
  ro.Put<int32_t>(0);
  ro.Put<uint16_t>(1);
  ro.Put<uint16_t>(1);
  ro.Put<uint32_t>(16);
  ro.Put<uint32_t>(0);
  ro.Put<int32_t>(n_Error);
  ro.Put<int32_t>(-1);
  ro.Put<int32_t>(0);
  ro.Put<int32_t>(0);
  ro.Set<uint64_t>(fields_slice, ro.Align(8));
  auto field = [&](uint64_t name, uint64_t type, uint64_t offset) {
    ro.Put<uint64_t>(name);
    ro.Put<uint64_t>(type);
    ro.Put<uint64_t>(runtime->type.struct_offset_shifted ? offset << 1 : offset);
  };
  field(n_msg, t_string, 0);
  field(n_err, t_error, 16);
  for (int i = 0; i < o.self_fields; ++i) field(n_self, t_struct, 32 + 8 * i);
  // 1.27: the itabs lie in the type region.
  uint64_t itab127 = 0;
  if (go127) {
    itab127 = ro.Align(8);
    for (int i = 0; i < o.itab_copies; ++i) {
      ro.Put<uint64_t>(t_error);
      ro.Put<uint64_t>(t_ptr);
      ro.Put<uint64_t>(0x12345678);
      ro.Put<uint64_t>(kSyntheticText + kFuncBytes);
    }
  }
  uint64_t etypes = ro.Align(8);

  // The pclntab: header, function names, cutab, filetab, pc tables, then
  // the function table followed by the _func records.
  uint64_t pcln = ro.Align(8);
  ro.Zeros(72);
  uint64_t funcnames = ro.here();
  std::vector<uint32_t> nameoffs;
  for (const std::string& f : o.functions) {
    nameoffs.push_back(static_cast<uint32_t>(ro.Append(f + '\0') - funcnames));
  }
  uint64_t cutab = ro.Align(4);
  ro.Put<uint32_t>(0);
  uint64_t filetab = ro.Append(std::string("main.go") + '\0');
  uint64_t pctab = ro.here();
  ro.Zeros(1);  // offset 0 means "no table"
  std::vector<uint32_t> pcfile, pcline;
  for (size_t i = 0; i < nfunc; ++i) {
    pcfile.push_back(static_cast<uint32_t>(ro.Append(OneValueTable(0)) - pctab));
    pcline.push_back(
        static_cast<uint32_t>(ro.Append(OneValueTable(10 + static_cast<int32_t>(i))) - pctab));
  }
  uint64_t functab = ro.Align(8);
  uint64_t func_size = go120 ? 44 : 40;
  uint64_t first_func = (nfunc + 1) * 8;
  for (size_t i = 0; i <= nfunc; ++i) {
    ro.Put<uint32_t>(static_cast<uint32_t>(i * kFuncBytes));
    ro.Put<uint32_t>(i < nfunc ? static_cast<uint32_t>(first_func + i * func_size) : 0);
  }
  for (size_t i = 0; i < nfunc; ++i) {
    ro.Put<uint32_t>(static_cast<uint32_t>(i * kFuncBytes));  // entryOff
    ro.Put<uint32_t>(nameoffs[i]);
    ro.Zeros(12);  // args, deferreturn, pcsp
    ro.Put<uint32_t>(pcfile[i]);
    ro.Put<uint32_t>(pcline[i]);
    ro.Zeros(8);  // npcdata, cuOffset
    if (go120) ro.Put<int32_t>(10);  // startLine
    ro.Zeros(4);  // funcID, flag, pad, nfuncdata
  }
  uint64_t epcln = ro.Align(8);
  uint64_t text_end = kSyntheticText + nfunc * kFuncBytes;
  bool zero_text = version->AtLeast(1, 26) && o.section_headers;  // as 1.26+ write it
  ro.Set<uint32_t>(pcln, go120 ? 0xfffffff1 : 0xfffffff0);
  ro.Set<uint8_t>(pcln + 6, 1);  // quantum
  ro.Set<uint8_t>(pcln + 7, 8);  // pointer size
  ro.Set<uint64_t>(pcln + 8, nfunc);
  ro.Set<uint64_t>(pcln + 16, 1);  // nfiles
  ro.Set<uint64_t>(pcln + 24, zero_text ? 0 : kSyntheticText);
  ro.Set<uint64_t>(pcln + 32, funcnames - pcln);
  ro.Set<uint64_t>(pcln + 40, cutab - pcln);
  ro.Set<uint64_t>(pcln + 48, filetab - pcln);
  ro.Set<uint64_t>(pcln + 56, pctab - pcln);
  ro.Set<uint64_t>(pcln + 64, functab - pcln);

  // Data: build info, a runtime.buildVersion string header, moduledata,
  // itablinks and the itab (before 1.27).
  Image data(kSyntheticData);
  uint64_t buildinfo = data.Append(std::string("\xff Go buildinf:", 14));
  data.Put<uint8_t>(8);
  data.Put<uint8_t>(2);  // strings inline
  data.Zeros(16);
  std::string modinfo = "path\tmain\n";
  data.Append(Varint(o.go_version.size()) + o.go_version + Varint(modinfo.size()) + modinfo);
  uint64_t buildinfo_end = data.here();
  data.Align(8);
  data.Put<uint64_t>(version_str);
  data.Put<uint64_t>(o.go_version.size());
  uint64_t md = data.Align(8);
  data.Zeros(ml.size);
  uint64_t itab = data.Align(8);
  if (!go127) {
    data.Put<uint64_t>(t_error);
    data.Put<uint64_t>(t_ptr);
    data.Put<uint64_t>(0x12345678);
    data.Put<uint64_t>(kSyntheticText + kFuncBytes);
  }
  uint64_t itablinks = data.here();
  for (int i = 0; i < o.itab_copies; ++i) data.Put<uint64_t>(itab);
  auto set = [&](int32_t off, uint64_t v) {
    if (off != goabi::ModuledataLayout::kAbsent) data.Set<uint64_t>(md + off, v);
  };
  set(ml.pcheader, pcln);
  set(ml.ftab, functab);
  set(ml.ftab + 8, nfunc + 1);
  set(ml.text, kSyntheticText);
  set(ml.etext, text_end);
  set(ml.minpc, kSyntheticText);
  set(ml.maxpc, text_end);
  set(ml.types, kSyntheticRodata);
  set(ml.etypes, etypes);
  set(ml.rodata, kSyntheticRodata);
  set(ml.gofunc, epcln);
  set(ml.epclntab, epcln);
  if (go127) {
    set(ml.typedesclen, etypes - kSyntheticRodata);
    set(ml.itaboffset, itab127 - kSyntheticRodata);
    set(ml.itabsize, 32 * static_cast<uint64_t>(o.itab_copies));
  } else {
    set(ml.itablinks, itablinks);
    set(ml.itablinks + 8, o.itab_copies);
    set(ml.itablinks + 16, o.itab_copies);
  }

  // Text: int3 everywhere, and main.fail's LEA of *main.E's descriptor.
  std::string text(nfunc * kFuncBytes, '\xcc');
  if (nfunc > 1) {
    uint64_t at = kSyntheticText + kFuncBytes;
    int32_t disp = static_cast<int32_t>(t_ptr - (at + 7));
    text.replace(kFuncBytes, 3, "\x48\x8d\x05");
    std::memcpy(&text[kFuncBytes + 3], &disp, 4);
  }

  ElfWriter w;
  w.AddSegment(kSyntheticText, PF_R | PF_X, text);
  w.AddSegment(kSyntheticRodata, PF_R, ro.bytes());
  w.AddSegment(kSyntheticData, PF_R | PF_W, data.bytes());
  w.AddSection(".text", SHT_PROGBITS, SHF_ALLOC | SHF_EXECINSTR, kSyntheticText, text.size());
  w.AddSection(".rodata", SHT_PROGBITS, SHF_ALLOC, kSyntheticRodata, etypes - kSyntheticRodata);
  w.AddSection(".gopclntab", SHT_PROGBITS, SHF_ALLOC, pcln, epcln - pcln);
  w.AddSection(".go.buildinfo", SHT_PROGBITS, SHF_ALLOC | SHF_WRITE, buildinfo,
               buildinfo_end - buildinfo);
  w.AddSection(".noptrdata", SHT_PROGBITS, SHF_ALLOC | SHF_WRITE, md,
               data.here() - md);
  return w.Write(o.section_headers);
}

}  // namespace goerrprof::testing
