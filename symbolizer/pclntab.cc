#include "symbolizer/pclntab.h"

#include <algorithm>
#include <limits>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "base/byte_reader.h"
#include "base/status_macros.h"

namespace goerrprof::symbolizer {
namespace {

constexpr uint32_t kMagic116 = 0xfffffffa;
constexpr uint32_t kMagic118 = 0xfffffff0;
constexpr uint32_t kMagic120 = 0xfffffff1;
constexpr uint32_t kPcdataInlTreeIndex = 2;
constexpr uint32_t kFuncdataInlTree = 3;
constexpr uint32_t kFuncdataArgInfo = 5;  // Go 1.17+
constexpr uint32_t kFuncdataStackObjects = 2;
constexpr uint32_t kFuncdataOpenCodedDeferInfo = 4;
constexpr uint32_t kNoFuncdata = 0xffffffff;  // 1.18+: absent funcdata offset
constexpr uint64_t kMaxFunctions = 1u << 24;  // sanity bound for corrupt headers
constexpr int kMaxInlineDepth = 256;          // stops cycles in corrupt inline trees
// Function and file names longer than this read as none: each lookup costs
// at most this, however the names are laid out.
constexpr uint64_t kMaxNameBytes = 16 << 10;
// Reading more than this for a pclntab found without a section is pointless.
constexpr uint64_t kMaxTableBytes = 1ull << 32;

// One varint of a pc-value table: Go writes them as uint32s.
bool ReadUvarint32(ByteReader& r, uint32_t* out) {
  uint64_t v = r.Uvarint();
  if (!r.ok() || v > std::numeric_limits<uint32_t>::max()) return false;
  *out = static_cast<uint32_t>(v);
  return true;
}

}  // namespace

// Field offsets inside runtime._func; they differ by format.
struct Pclntab::FuncLayout {
  uint32_t nameoff, pcfile, pcln, npcdata, cuoffset, nfuncdata, header_size;
  bool funcdata_absolute;  // 1.16: funcdata are pointers; later: offsets from gofunc
};

namespace {
// entry uintptr first, then nameoff; nfuncdata is the last byte.
constexpr Pclntab::FuncLayout kFunc116 = {8, 24, 28, 32, 36, 43, 44, true};
constexpr Pclntab::FuncLayout kFunc118 = {4, 20, 24, 28, 32, 39, 40, false};
constexpr Pclntab::FuncLayout kFunc120 = {4, 20, 24, 28, 32, 43, 44, false};
}  // namespace

absl::StatusOr<std::unique_ptr<Pclntab>> Pclntab::Create(const ElfFile& elf, uint64_t addr,
                                                         uint64_t text_start_fallback) {
  auto table = std::unique_ptr<Pclntab>(new Pclntab(elf));
  RETURN_IF_ERROR(table->ReadHeader(addr, text_start_fallback));
  RETURN_IF_ERROR(table->BuildTable());
  return table;
}

absl::Status Pclntab::Check(const ElfFile& elf, uint64_t addr, uint64_t text_start_fallback) {
  Pclntab table(elf);
  return table.ReadHeader(addr, text_start_fallback);
}

absl::Status Pclntab::ReadHeader(uint64_t addr, uint64_t text_start_fallback) {
  addr_ = addr;
  ASSIGN_OR_RETURN(data_, elf_.ReadVirtualUpTo(addr, kMaxTableBytes));
  if (data_.size() < 72) {
    return absl::InvalidArgumentError(absl::StrFormat("pclntab at 0x%x is truncated", addr));
  }
  // pcHeader: magic, two zero bytes, quantum, pointer size, then words
  // (all within the 72 bytes checked above).
  ByteReader hdr(data_);
  uint32_t magic = hdr.U32();
  switch (magic) {
    case kMagic116: version_ = PclntabVersion::k116; layout_ = &kFunc116; break;
    case kMagic118: version_ = PclntabVersion::k118; layout_ = &kFunc118; break;
    case kMagic120: version_ = PclntabVersion::k120; layout_ = &kFunc120; break;
    default:
      return absl::UnimplementedError(absl::StrFormat(
          "unknown pclntab magic 0x%08x (supported: Go 1.16 and later)", magic));
  }
  uint8_t pad1 = hdr.U8(), pad2 = hdr.U8(), quantum = hdr.U8(), ptr_size = hdr.U8();
  if (pad1 != 0 || pad2 != 0 || quantum == 0 || ptr_size != 8) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "pclntab at 0x%x has a bad header (quantum %d, pointer size %d)", addr, quantum, ptr_size));
  }
  quantum_ = quantum;
  nfunc_ = hdr.U64();
  hdr.Skip(8);  // nfiles
  if (version_ != PclntabVersion::k116) {
    // textStart is an address: read it with relocations applied.
    ASSIGN_OR_RETURN(text_start_, elf_.ReadPointer(addr + hdr.pos()));
    hdr.Skip(8);
  }
  if (text_start_ == 0) text_start_ = text_start_fallback;
  funcname_off_ = hdr.U64();
  cu_off_ = hdr.U64();
  filetab_off_ = hdr.U64();
  pctab_off_ = hdr.U64();
  functab_off_ = hdr.U64();
  if (!hdr.ok()) {
    return absl::InvalidArgumentError(absl::StrFormat("pclntab at 0x%x is truncated", addr));
  }
  for (uint64_t off : {funcname_off_, cu_off_, filetab_off_, pctab_off_, functab_off_}) {
    if (off < hdr.pos() || off >= data_.size()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "pclntab at 0x%x: header offset 0x%x is outside the table", addr, off));
    }
  }
  if (nfunc_ == 0 || nfunc_ > kMaxFunctions) {
    return absl::InvalidArgumentError(
        absl::StrFormat("pclntab at 0x%x: implausible function count %d", addr, nfunc_));
  }
  uint64_t word = version_ == PclntabVersion::k116 ? 8 : 4;
  if (!data_.Sub(functab_off_, (nfunc_ + 1) * 2 * word)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("pclntab at 0x%x: function table is truncated", addr));
  }
  if (version_ != PclntabVersion::k116 && text_start_ == 0) {
    return absl::InvalidArgumentError("pclntab: cannot tell where the text starts");
  }
  // The ends of the function table, before anything reads all of it.
  uint64_t first = 0, last = 0, off = 0;
  RETURN_IF_ERROR(Slot(0, &first, &off));
  RETURN_IF_ERROR(Slot(nfunc_, &last, &off));
  if (last < first) {
    return absl::InvalidArgumentError(
        absl::StrFormat("pclntab at 0x%x: function table ends before it starts", addr));
  }
  RETURN_IF_ERROR(CheckFunc(0));
  return CheckFunc(nfunc_ - 1);
}

absl::Status Pclntab::Slot(uint64_t i, uint64_t* entry, uint64_t* funcoff) const {
  std::optional<uint64_t> off;
  if (version_ == PclntabVersion::k116) {
    ASSIGN_OR_RETURN(*entry, elf_.ReadPointer(addr_ + functab_off_ + 16 * i));
    off = data_.U64(functab_off_ + 16 * i + 8);
  } else {
    std::optional<uint32_t> e = data_.U32(functab_off_ + 8 * i);
    off = data_.U32(functab_off_ + 8 * i + 4);
    if (e) *entry = text_start_ + *e;
  }
  if (!off) {
    return absl::InvalidArgumentError(
        absl::StrFormat("pclntab at 0x%x: function table is truncated", addr_));
  }
  *funcoff = *off;
  return absl::OkStatus();
}

// Function i's _func must be in the table, start at i's entry, and name
// itself within the table.
absl::Status Pclntab::CheckFunc(uint64_t i) const {
  uint64_t entry = 0, funcoff = 0;
  RETURN_IF_ERROR(Slot(i, &entry, &funcoff));
  auto bad = [&] {
    return absl::InvalidArgumentError(absl::StrFormat(
        "pclntab at 0x%x: function %d does not match its record", addr_, i));
  };
  uint64_t f = functab_off_ + funcoff;
  if (funcoff > data_.size() || !data_.Sub(f, layout_->header_size)) return bad();
  if (version_ == PclntabVersion::k116) {
    auto at = elf_.ReadPointer(addr_ + f);
    if (!at.ok() || *at != entry) return bad();
  } else if (data_.U32(f) != data_.U32(functab_off_ + 8 * i)) {
    return bad();
  }
  std::optional<uint32_t> nameoff = data_.U32(f + layout_->nameoff);
  if (!nameoff || funcname_off_ + *nameoff >= data_.size()) return bad();
  return absl::OkStatus();
}

absl::Status Pclntab::BuildTable() {
  // Materialize the function table: entry PCs and _func offsets.
  bool wide = version_ == PclntabVersion::k116;
  uint64_t word = wide ? 8 : 4;
  ByteView functab = *data_.Sub(functab_off_, (nfunc_ + 1) * 2 * word);  // checked by ReadHeader
  entries_.resize(nfunc_ + 1);
  func_offs_.resize(nfunc_ + 1);
  ByteReader ft(functab);  // {entry, funcoff} pairs of `word` bytes each
  for (uint64_t i = 0; i <= nfunc_; ++i) {
    if (wide) {
      ASSIGN_OR_RETURN(entries_[i], elf_.ReadPointer(addr_ + functab_off_ + ft.pos()));
      ft.Skip(8);
      func_offs_[i] = ft.U64();
    } else {
      entries_[i] = text_start_ + ft.U32();
      func_offs_[i] = ft.U32();
    }
    if (i > 0 && entries_[i] < entries_[i - 1]) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "pclntab at 0x%x: function table is not sorted at entry %d", addr_, i));
    }
  }
  if (version_ == PclntabVersion::k116) text_start_ = entries_[0];
  return absl::OkStatus();
}

absl::string_view Pclntab::CString(uint64_t off) const {
  return data_.CString(off, kMaxNameBytes).value_or(absl::string_view());
}

absl::string_view Pclntab::FuncName(size_t i) const {
  std::optional<uint32_t> nameoff = data_.U32(functab_off_ + func_offs_[i] + layout_->nameoff);
  if (!nameoff) return {};
  return CString(funcname_off_ + *nameoff);
}

std::optional<int32_t> Pclntab::FuncArgsSize(size_t i) const {
  // args follows nameoff in every _func format.
  std::optional<uint32_t> args = data_.U32(functab_off_ + func_offs_[i] + layout_->nameoff + 4);
  if (!args || static_cast<int32_t>(*args) < 0) return std::nullopt;  // ArgsSizeUnknown
  return static_cast<int32_t>(*args);
}

std::optional<int> Pclntab::FuncArgComponents(size_t i) const {
  std::optional<int32_t> args = FuncArgsSize(i);
  if (!args) return std::nullopt;
  if (*args == 0) return 0;
  uint64_t info = FuncData(functab_off_ + func_offs_[i], kFuncdataArgInfo);
  if (info == 0) return std::nullopt;
  auto bytes = elf_.ReadVirtualUpTo(info, 256);
  if (!bytes.ok()) return std::nullopt;
  // (offset, size) per component, with markers for aggregates; the end,
  // or a mark that something was left out.
  constexpr uint8_t kEndSeq = 0xff, kStartAgg = 0xfe, kEndAgg = 0xfd, kDotDotDot = 0xfc,
                    kOffsetTooLarge = 0xfb;
  int n = 0;
  for (size_t k = 0; k < bytes->size();) {
    uint8_t b = (*bytes)[k++];
    if (b == kEndSeq) return n;
    if (b == kStartAgg || b == kEndAgg) continue;
    if (b == kDotDotDot || b == kOffsetTooLarge) return std::nullopt;
    if (k >= bytes->size()) return std::nullopt;
    ++k;  // the size
    ++n;
  }
  return std::nullopt;
}

std::optional<std::vector<Pclntab::StackObject>> Pclntab::FuncStackObjects(size_t i) const {
  // Go 1.18+: a count, then {off, size int32; ptrdata int32; gcdataoff
  // uint32} per object (1.17's records hold a pointer instead).
  if (version_ == PclntabVersion::k116) return std::nullopt;
  uint64_t data = FuncData(functab_off_ + func_offs_[i], kFuncdataStackObjects);
  std::vector<StackObject> out;
  if (data == 0) return out;
  auto count = elf_.ReadVirtualUpTo(data, 8);
  if (!count.ok() || count->size() != 8) return std::nullopt;
  uint64_t n = 0;
  for (int k = 7; k >= 0; --k) n = n << 8 | (*count)[k];
  constexpr uint64_t kMaxObjects = 4096;  // bounded work on a corrupt table
  if (n > kMaxObjects) return std::nullopt;
  auto recs = elf_.ReadVirtualUpTo(data + 8, 16 * n);
  if (!recs.ok() || recs->size() != 16 * n) return std::nullopt;
  for (uint64_t k = 0; k < n; ++k) {
    const uint8_t* r = recs->data() + 16 * k;
    auto i32 = [&](int at) {
      return static_cast<int32_t>(uint32_t{r[at]} | uint32_t{r[at + 1]} << 8 |
                                  uint32_t{r[at + 2]} << 16 | uint32_t{r[at + 3]} << 24);
    };
    out.push_back({i32(0), i32(4)});
  }
  return out;
}

std::optional<Pclntab::OpenDefers> Pclntab::FuncOpenDefers(size_t i, bool listed) const {
  if (version_ == PclntabVersion::k116) return std::nullopt;
  uint64_t data = FuncData(functab_off_ + func_offs_[i], kFuncdataOpenCodedDeferInfo);
  if (data == 0) return std::nullopt;
  // At most 8 defers are open-coded (one deferBits byte): 10 varints.
  auto bytes = elf_.ReadVirtualUpTo(data, 10 * 5);
  if (!bytes.ok()) return std::nullopt;
  ByteReader r(*bytes, 0);
  auto next = [&](uint64_t* v) {
    uint32_t x;
    if (!ReadUvarint32(r, &x)) return false;
    *v = x;
    return true;
  };
  OpenDefers out;
  uint64_t n = 1;
  if (!next(&out.bits_off)) return std::nullopt;
  if (listed && (!next(&n) || n == 0 || n > 8)) return std::nullopt;
  for (uint64_t k = 0; k < n; ++k) {
    uint64_t off;
    if (!next(&off)) return std::nullopt;
    out.closure_offs.push_back(off);
  }
  return out;
}

std::optional<size_t> Pclntab::FindFunc(uint64_t pc) const {
  if (pc < entries_.front() || pc >= entries_.back()) return std::nullopt;
  auto it = std::upper_bound(entries_.begin(), entries_.end(), pc);
  return static_cast<size_t>(it - entries_.begin()) - 1;
}

std::optional<int32_t> Pclntab::PcValue(uint64_t func_off, uint32_t table, uint64_t entry,
                                        uint64_t pc) const {
  if (table == 0) return std::nullopt;
  ByteReader r(data_, pctab_off_ + table);
  int32_t val = -1;
  uint64_t cur = entry;
  for (;;) {
    uint32_t uvdelta, pcdelta;
    if (!ReadUvarint32(r, &uvdelta)) return std::nullopt;
    // A zero delta ends the table, except while still at the entry (as the
    // runtime decodes it).
    if (uvdelta == 0 && cur != entry) return std::nullopt;
    // Zig-zag decoding of the value delta.
    int32_t vdelta = (uvdelta & 1) ? ~static_cast<int32_t>(uvdelta >> 1)
                                   : static_cast<int32_t>(uvdelta >> 1);
    if (!ReadUvarint32(r, &pcdelta)) return std::nullopt;
    // Go's int32 would wrap; no table the compiler writes does: corrupt.
    if (__builtin_add_overflow(val, vdelta, &val)) return std::nullopt;
    cur += static_cast<uint64_t>(pcdelta) * quantum_;
    if (pc < cur) return val;
  }
}

std::optional<int32_t> Pclntab::PcData(uint64_t func_off, uint32_t index, uint64_t entry,
                                       uint64_t pc) const {
  std::optional<uint32_t> npcdata = data_.U32(func_off + layout_->npcdata);
  if (!npcdata || index >= *npcdata) return std::nullopt;
  std::optional<uint32_t> table = data_.U32(func_off + layout_->header_size + 4 * index);
  if (!table) return std::nullopt;
  return PcValue(func_off, *table, entry, pc);
}

uint64_t Pclntab::FuncData(uint64_t func_off, uint32_t index) const {
  std::optional<uint32_t> npcdata = data_.U32(func_off + layout_->npcdata);
  std::optional<uint8_t> nfuncdata = data_.U8(func_off + layout_->nfuncdata);
  if (!npcdata || !nfuncdata || index >= *nfuncdata) return 0;
  uint64_t base = func_off + layout_->header_size + 4ull * *npcdata;
  if (layout_->funcdata_absolute) {
    base = (base + 7) & ~uint64_t{7};  // pointers are 8-aligned (as is _func)
    auto ptr = elf_.ReadPointer(addr_ + base + 8ull * index);
    return ptr.ok() ? *ptr : 0;
  }
  if (gofunc_ == 0) return 0;
  std::optional<uint32_t> off = data_.U32(base + 4ull * index);
  if (!off || *off == kNoFuncdata) return 0;
  return gofunc_ + *off;
}

absl::string_view Pclntab::FileName(uint64_t func_off, int32_t fileno) const {
  std::optional<uint32_t> cu = data_.U32(func_off + layout_->cuoffset);
  if (fileno < 0 || !cu) return {};
  std::optional<uint32_t> fileoff = data_.U32(cu_off_ + 4ull * (uint64_t{*cu} + fileno));
  if (!fileoff || *fileoff == 0xffffffff) return {};
  return CString(filetab_off_ + *fileoff);
}

bool Pclntab::FileLine(uint64_t func_off, uint64_t entry, uint64_t pc, absl::string_view* file,
                       int32_t* line) const {
  std::optional<uint32_t> pcfile = data_.U32(func_off + layout_->pcfile);
  std::optional<uint32_t> pcln = data_.U32(func_off + layout_->pcln);
  if (!pcfile || !pcln) return false;
  std::optional<int32_t> fileno = PcValue(func_off, *pcfile, entry, pc);
  std::optional<int32_t> ln = PcValue(func_off, *pcln, entry, pc);
  if (!fileno || !ln) return false;
  *file = FileName(func_off, *fileno);
  *line = *ln;
  return true;
}

absl::StatusOr<std::vector<SourceFrame>> Pclntab::Frames(uint64_t pc) const {
  std::optional<size_t> idx = FindFunc(pc);
  if (!idx) return absl::NotFoundError(absl::StrFormat("no function contains 0x%x", pc));
  uint64_t func_off = functab_off_ + func_offs_[*idx];
  uint64_t entry = entries_[*idx];
  std::vector<SourceFrame> frames;
  SourceFrame frame;
  if (!FileLine(func_off, entry, pc, &frame.file, &frame.line)) {
    frames.push_back({FuncName(*idx), {}, 0});
    return frames;
  }
  uint64_t tree = FuncData(func_off, kFuncdataInlTree);
  if (tree != 0) {
    // Each inline tree entry names the inlined function and an instruction of
    // its caller (parentPc), whose position is the call site.
    bool old = version_ != PclntabVersion::k120;
    uint64_t size = old ? 20 : 16;
    uint64_t name_field = old ? 12 : 4;
    uint64_t parent_field = old ? 16 : 8;
    uint64_t cur = pc;
    for (int depth = 0; depth < kMaxInlineDepth; ++depth) {
      std::optional<int32_t> ix = PcData(func_off, kPcdataInlTreeIndex, entry, cur);
      if (!ix || *ix < 0) break;
      auto ent = elf_.ReadVirtual(tree + size * static_cast<uint64_t>(*ix), size);
      if (!ent.ok()) break;
      std::optional<uint32_t> nameoff = ByteView(*ent).U32(name_field);
      std::optional<uint32_t> parent_pc = ByteView(*ent).U32(parent_field);
      if (!nameoff || !parent_pc) break;
      frame.function = CString(funcname_off_ + *nameoff);
      frames.push_back(frame);
      cur = entry + *parent_pc;
      if (!FileLine(func_off, entry, cur, &frame.file, &frame.line)) break;
    }
  }
  frame.function = FuncName(*idx);
  frames.push_back(frame);
  return frames;
}

}  // namespace goerrprof::symbolizer
