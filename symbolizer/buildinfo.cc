#include "symbolizer/buildinfo.h"

#include <elf.h>

#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_split.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "base/byte_reader.h"
#include "base/status_macros.h"

namespace goerrprof::symbolizer {
namespace {

constexpr absl::string_view kMagic = "\xff Go buildinf:";
constexpr size_t kHeaderSize = 32;
constexpr uint8_t kFlagInline = 2;   // 1.18+: strings follow the header
constexpr size_t kSentinel = 16;     // modinfo is wrapped in 16-byte markers
constexpr uint64_t kMaxString = 1 << 20;

// A varint length, then that many bytes.
bool InlineString(ByteReader& r, std::string* out) {
  ByteView s = r.Bytes(r.Uvarint());
  if (!r.ok()) return false;
  out->assign(reinterpret_cast<const char*>(s.data()), s.size());
  return true;
}

// A Go string header {ptr, len} at addr, pre-1.18 layout.
absl::StatusOr<std::string> StringAt(const ElfFile& elf, uint64_t header_ptr_addr) {
  ASSIGN_OR_RETURN(uint64_t hdr, elf.ReadPointer(header_ptr_addr));
  ASSIGN_OR_RETURN(uint64_t data, elf.ReadPointer(hdr));
  ASSIGN_OR_RETURN(uint64_t len, elf.ReadU64(hdr + 8));
  if (len > kMaxString) return absl::InvalidArgumentError("build info string too long");
  ASSIGN_OR_RETURN(absl::Span<const uint8_t> bytes, elf.ReadVirtual(data, len));
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

void ParseModInfo(std::string modinfo, BuildInfo* info) {
  if (modinfo.size() >= 2 * kSentinel + 1) {
    modinfo = modinfo.substr(kSentinel, modinfo.size() - 2 * kSentinel);
  }
  for (absl::string_view line : absl::StrSplit(modinfo, '\n')) {
    std::vector<absl::string_view> f = absl::StrSplit(line, absl::MaxSplits('\t', 1));
    if (f.size() != 2) continue;
    if (f[0] == "path") info->main_path = std::string(f[1]);
    if (f[0] == "mod") info->main_module = absl::StrReplaceAll(f[1], {{"\t", " "}});
    if (f[0] == "build") {
      std::vector<absl::string_view> kv = absl::StrSplit(f[1], absl::MaxSplits('=', 1));
      info->settings.emplace_back(std::string(kv[0]), kv.size() > 1 ? std::string(kv[1]) : "");
    }
  }
}

// "go1.N" or "go1.N.P", nothing more.
bool IsReleaseString(absl::Span<const uint8_t> s) {
  absl::string_view v(reinterpret_cast<const char*>(s.data()), s.size());
  if (!absl::ConsumePrefix(&v, "go1.") || v.empty()) return false;
  int dots = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] == '.') {
      if (++dots > 1 || i == 0 || i + 1 == v.size() || v[i - 1] == '.') return false;
    } else if (v[i] < '0' || v[i] > '9') {
      return false;
    }
  }
  return true;
}

}  // namespace

absl::StatusOr<std::string> FindRuntimeBuildVersion(const ElfFile& elf) {
  constexpr uint64_t kMinLen = 5, kMaxLen = 16;
  for (const ElfSegment& seg : elf.loads()) {
    if (!(seg.flags & PF_W)) continue;
    auto bytes = elf.ReadVirtual(seg.vaddr, seg.filesz);
    if (!bytes.ok()) continue;
    ByteView data(*bytes);
    // Aligned string headers {ptr, len}.
    for (uint64_t off = 0; off + 16 <= data.size(); off += 8) {
      uint64_t len = data.U64(off + 8).value_or(0);
      if (len < kMinLen || len > kMaxLen) continue;
      auto ptr = elf.ReadPointer(seg.vaddr + off);
      if (!ptr.ok()) continue;
      auto str = elf.ReadVirtual(*ptr, len);
      if (str.ok() && IsReleaseString(*str)) {
        return std::string(reinterpret_cast<const char*>(str->data()), len);
      }
    }
  }
  return absl::NotFoundError("no runtime.buildVersion string");
}

std::string BuildInfo::Setting(absl::string_view key) const {
  for (const auto& [k, v] : settings) {
    if (k == key) return v;
  }
  return "";
}

absl::StatusOr<BuildInfo> ReadBuildInfo(const ElfFile& elf) {
  const ElfSection* s = elf.FindSection(".go.buildinfo");
  if (s == nullptr) return absl::NotFoundError("no .go.buildinfo section");
  ASSIGN_OR_RETURN(absl::Span<const uint8_t> d, elf.SectionData(*s));
  if (d.size() < kHeaderSize || std::memcmp(d.data(), kMagic.data(), kMagic.size()) != 0) {
    return absl::InvalidArgumentError(".go.buildinfo has no valid header");
  }
  BuildInfo info;
  uint8_t ptr_size = d[14], flags = d[15];
  if (flags & kFlagInline) {
    ByteReader r(d, kHeaderSize);
    std::string modinfo;
    if (!InlineString(r, &info.go_version) || !InlineString(r, &modinfo)) {
      return absl::InvalidArgumentError(".go.buildinfo strings are truncated");
    }
    ParseModInfo(std::move(modinfo), &info);
  } else {
    if (ptr_size != 8 || (flags & 1)) {
      return absl::UnimplementedError(".go.buildinfo is not 64-bit little-endian");
    }
    ASSIGN_OR_RETURN(info.go_version, StringAt(elf, s->addr + 16));
    auto modinfo = StringAt(elf, s->addr + 24);
    if (modinfo.ok()) ParseModInfo(std::move(*modinfo), &info);
  }
  if (info.go_version.empty()) return absl::InvalidArgumentError(".go.buildinfo has no Go version");
  return info;
}

}  // namespace goerrprof::symbolizer
