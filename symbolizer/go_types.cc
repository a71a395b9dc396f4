#include "symbolizer/go_types.h"

#include <array>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "base/byte_reader.h"
#include "base/status_macros.h"

namespace goerrprof::symbolizer {
namespace {

constexpr uint8_t kKindMask = 0x1f;
constexpr uint8_t kTflagExtraStar = 1 << 1;
constexpr uint64_t kMaxFields = 4096;
constexpr uint64_t kMaxNameBytes = 1 << 16;
// The reader's budget (see TypeReader): these floors plus the file's size
// in name bytes and an eighth of it in records. A real binary's error
// types and their fields read a small part of that.
constexpr int64_t kRecordFloor = 1 << 20;
constexpr int64_t kNameByteFloor = 64 << 20;

}  // namespace

TypeReader::TypeReader(const ElfFile& elf, const Moduledata& md, const goabi::TypeLayout& layout)
    : elf_(elf),
      md_(md),
      layout_(layout),
      records_left_(kRecordFloor + static_cast<int64_t>(elf.file_size() / 8)),
      name_bytes_left_(kNameByteFloor + static_cast<int64_t>(elf.file_size())) {}

absl::Status TypeReader::Spend(uint64_t records, uint64_t name_bytes) const {
  // Both amounts are small (capped by kMaxFields, kMaxNameBytes).
  if (records_left_.fetch_sub(static_cast<int64_t>(records)) < static_cast<int64_t>(records) ||
      name_bytes_left_.fetch_sub(static_cast<int64_t>(name_bytes)) <
          static_cast<int64_t>(name_bytes)) {
    return absl::ResourceExhaustedError(
        "type data refers to more than the file holds (crafted descriptors?)");
  }
  return absl::OkStatus();
}

absl::string_view KindName(GoKind kind) {
  static constexpr std::array<absl::string_view, 27> kNames = {
      "invalid", "bool",    "int",        "int8",      "int16",   "int32",  "int64",
      "uint",    "uint8",   "uint16",     "uint32",    "uint64",  "uintptr", "float32",
      "float64", "complex64", "complex128", "array",   "chan",    "func",   "interface",
      "map",     "ptr",     "slice",      "string",    "struct",  "unsafe.Pointer"};
  auto i = static_cast<size_t>(kind);
  return i < kNames.size() ? kNames[i] : "invalid";
}

absl::StatusOr<std::string> TypeReader::NameAt(uint64_t addr) const {
  ASSIGN_OR_RETURN(absl::Span<const uint8_t> p,
                   elf_.ReadVirtualUpTo(addr, 1 + ByteReader::kMaxVarintBytes));
  if (p.size() < 2) return absl::OutOfRangeError("truncated type name");
  ByteReader r(p, 1);  // after the flags byte
  uint64_t len = 0;
  if (layout_.name_varint_length) {
    len = r.Uvarint();
    if (!r.ok()) return absl::OutOfRangeError("bad type name length");
  } else {
    uint8_t hi = r.U8(), lo = r.U8();  // big-endian
    if (!r.ok()) return absl::OutOfRangeError("truncated type name");
    len = (uint64_t{hi} << 8) | lo;
  }
  if (len > kMaxNameBytes) return absl::OutOfRangeError("type name too long");
  RETURN_IF_ERROR(Spend(0, len));
  ASSIGN_OR_RETURN(absl::Span<const uint8_t> bytes, elf_.ReadVirtual(addr + r.pos(), len));
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

absl::StatusOr<std::string> TypeReader::Name(uint64_t addr) const {
  ASSIGN_OR_RETURN(absl::Span<const uint8_t> bytes, elf_.ReadVirtual(addr, layout_.header_size));
  ByteView hdr(bytes);
  std::optional<int32_t> str = hdr.Get<int32_t>(layout_.str);
  std::optional<uint8_t> tflag = hdr.U8(layout_.tflag);
  if (!str || !tflag) return absl::OutOfRangeError("type header too short");
  ASSIGN_OR_RETURN(std::string name, NameOff(*str));
  if ((*tflag & kTflagExtraStar) && !name.empty()) name.erase(0, 1);
  return name;
}

absl::StatusOr<GoKind> TypeReader::Kind(uint64_t addr) const {
  ASSIGN_OR_RETURN(absl::Span<const uint8_t> b, elf_.ReadVirtual(addr + layout_.kind, 1));
  return static_cast<GoKind>(b[0] & kKindMask);
}

absl::StatusOr<GoType> TypeReader::Read(uint64_t addr) const {
  ASSIGN_OR_RETURN(const GoType* t, Get(addr));
  return *t;
}

absl::StatusOr<const GoType*> TypeReader::Get(uint64_t addr) const {
  absl::MutexLock lock(&mu_);
  auto it = cache_.find(addr);
  if (it == cache_.end()) it = cache_.emplace(addr, ReadUncached(addr)).first;
  if (!it->second.ok()) return it->second.status();
  return &*it->second;
}

absl::StatusOr<GoType> TypeReader::ReadUncached(uint64_t addr) const {
  GoType t;
  t.addr = addr;
  ASSIGN_OR_RETURN(t.size, elf_.ReadU64(addr + layout_.size));
  ASSIGN_OR_RETURN(t.kind, Kind(addr));
  ASSIGN_OR_RETURN(t.name, Name(addr));
  switch (t.kind) {
    case GoKind::kPointer:
    case GoKind::kSlice:
    case GoKind::kArray:
    case GoKind::kChan: {
      ASSIGN_OR_RETURN(t.elem, elf_.ReadPointer(addr + layout_.elem));
      break;
    }
    case GoKind::kStruct: {
      ASSIGN_OR_RETURN(uint64_t data, elf_.ReadPointer(addr + layout_.struct_fields));
      ASSIGN_OR_RETURN(uint64_t n, elf_.ReadU64(addr + layout_.struct_fields + 8));
      if (n > kMaxFields) return absl::OutOfRangeError("implausible struct field count");
      RETURN_IF_ERROR(Spend(n, 0));
      for (uint64_t i = 0; i < n; ++i) {
        uint64_t f = data + i * layout_.struct_field_size;
        GoField field;
        ASSIGN_OR_RETURN(uint64_t name, elf_.ReadPointer(f));
        ASSIGN_OR_RETURN(field.name, NameAt(name));
        ASSIGN_OR_RETURN(field.type, elf_.ReadPointer(f + 8));
        ASSIGN_OR_RETURN(field.offset, elf_.ReadU64(f + 16));
        if (layout_.struct_offset_shifted) field.offset >>= 1;
        t.fields.push_back(std::move(field));
      }
      break;
    }
    case GoKind::kInterface: {
      ASSIGN_OR_RETURN(uint64_t data, elf_.ReadPointer(addr + layout_.interface_methods));
      ASSIGN_OR_RETURN(uint64_t n, elf_.ReadU64(addr + layout_.interface_methods + 8));
      if (n > kMaxFields) return absl::OutOfRangeError("implausible method count");
      RETURN_IF_ERROR(Spend(n, 0));
      for (uint64_t i = 0; i < n; ++i) {
        ASSIGN_OR_RETURN(uint32_t name, elf_.ReadU32(data + 8 * i));
        ASSIGN_OR_RETURN(std::string m, NameOff(static_cast<int32_t>(name)));
        t.methods.push_back(std::move(m));
      }
      break;
    }
    default:
      break;
  }
  return t;
}

absl::StatusOr<std::vector<std::string>> TypeReader::ExportedMethods(uint64_t addr) const {
  constexpr uint8_t kTflagUncommon = 1 << 0;
  std::vector<std::string> out;
  ASSIGN_OR_RETURN(absl::Span<const uint8_t> tflag, elf_.ReadVirtual(addr + layout_.tflag, 1));
  if (!(tflag[0] & kTflagUncommon)) return out;
  ASSIGN_OR_RETURN(GoKind kind, Kind(addr));
  // The uncommon record follows the kind-specific one (internal/abi).
  uint64_t extra = 0;
  switch (kind) {
    case GoKind::kPointer:
    case GoKind::kSlice: extra = 8; break;                  // Elem
    case GoKind::kChan: extra = 16; break;                  // Elem, Dir
    case GoKind::kArray: extra = 24; break;                 // Elem, Slice, Len
    case GoKind::kStruct:
    case GoKind::kInterface: extra = 32; break;             // PkgPath, []fields/methods
    case GoKind::kFunc:
    case GoKind::kMap: return out;
    default: break;  // the basic kinds have no kind-specific part
  }
  uint64_t u = addr + layout_.header_size + extra;
  ASSIGN_OR_RETURN(absl::Span<const uint8_t> rec, elf_.ReadVirtual(u, 12));
  ByteReader r(rec, 4);  // after PkgPath
  uint16_t mcount = r.U16(), xcount = r.U16();
  uint32_t moff = r.U32();
  if (!r.ok() || xcount > mcount || mcount > kMaxFields) {
    return absl::OutOfRangeError("implausible method count");
  }
  RETURN_IF_ERROR(Spend(xcount, 0));
  // Each method: name nameOff, mtyp typeOff, ifn and tfn textOffs; the
  // exported ones come first.
  for (uint16_t i = 0; i < xcount; ++i) {
    ASSIGN_OR_RETURN(uint32_t name, elf_.ReadU32(u + moff + 16ull * i));
    ASSIGN_OR_RETURN(std::string m, NameOff(static_cast<int32_t>(name)));
    out.push_back(std::move(m));
  }
  return out;
}

absl::StatusOr<std::vector<GoItab>> TypeReader::Itabs() const {
  std::vector<GoItab> out;
  if (md_.itab_bytes > 0) {
    // 1.27+: itabs back to back; each is 32 bytes plus one word per method
    // past the first, unless its first method slot is empty. The region
    // must be in the file before it bounds the walk.
    if (!elf_.ReadVirtual(md_.itabs, md_.itab_bytes).ok()) {
      return absl::OutOfRangeError(absl::StrFormat(
          "the itabs (0x%x bytes at 0x%x) are not in the file", md_.itab_bytes, md_.itabs));
    }
    for (uint64_t p = md_.itabs; p < md_.itabs + md_.itab_bytes;) {
      GoItab it{p, 0, 0};
      ASSIGN_OR_RETURN(it.inter, elf_.ReadPointer(p));
      ASSIGN_OR_RETURN(it.type, elf_.ReadPointer(p + 8));
      ASSIGN_OR_RETURN(uint64_t fun0, elf_.ReadPointer(p + 24));
      ASSIGN_OR_RETURN(uint64_t nmethods, elf_.ReadU64(it.inter + layout_.interface_methods + 8));
      if (nmethods > kMaxFields) return absl::OutOfRangeError("implausible itab method count");
      p += 32 + (fun0 != 0 && nmethods > 1 ? 8 * (nmethods - 1) : 0);
      out.push_back(it);
    }
    return out;
  }
  // The count sizes an allocation: the array must be in the file first.
  if (!elf_.ReadVirtual(md_.itablinks, md_.nitablinks * 8).ok()) {
    return absl::OutOfRangeError(absl::StrFormat(
        "itablinks (%d entries at 0x%x) are not in the file", md_.nitablinks, md_.itablinks));
  }
  out.reserve(md_.nitablinks);
  for (uint64_t i = 0; i < md_.nitablinks; ++i) {
    GoItab it;
    ASSIGN_OR_RETURN(it.addr, elf_.ReadPointer(md_.itablinks + 8 * i));
    ASSIGN_OR_RETURN(it.inter, elf_.ReadPointer(it.addr));
    ASSIGN_OR_RETURN(it.type, elf_.ReadPointer(it.addr + 8));
    out.push_back(it);
  }
  return out;
}

}  // namespace goerrprof::symbolizer
