#include "symbolizer/go_binary.h"

#include <elf.h>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/byte_reader.h"
#include "base/status_macros.h"

namespace goerrprof::symbolizer {
namespace {

constexpr uint32_t kPclntabMagics[] = {0xfffffffa, 0xfffffff0, 0xfffffff1};
// Magics of formats we know exist but do not read, so they get a clear error.
constexpr uint32_t kOldPclntabMagics[] = {0xfffffffb};
// A scan builds the function table (linear in its size) only for headers
// that pass Pclntab::Check; crafted data can hold any number of those
// sharing one table, so only this many are built.
constexpr int kMaxScanBuilds = 4;

// Where the Go text begins, for pclntab formats that do not record it.
uint64_t TextStartFallback(const ElfFile& elf) {
  if (auto sym = elf.LookupSymbol("runtime.text")) return *sym;
  if (const ElfSection* s = elf.FindSection(".text")) return s->addr;
  return 0;
}

absl::Status WithPath(const std::string& path, const absl::Status& s) {
  if (s.ok() || absl::StrContains(s.message(), path)) return s;
  return absl::Status(s.code(), absl::StrCat(path, ": ", s.message()));
}

}  // namespace

absl::StatusOr<std::unique_ptr<GoBinary>> GoBinary::Open(const std::string& path) {
  ASSIGN_OR_RETURN(std::unique_ptr<ElfFile> elf, ElfFile::Open(path));
  auto bin = std::unique_ptr<GoBinary>(new GoBinary());
  RETURN_IF_ERROR(WithPath(path, bin->Init(std::move(elf))));
  return bin;
}

absl::StatusOr<std::unique_ptr<GoBinary>> GoBinary::FromBytes(const std::string& name,
                                                              absl::Span<const uint8_t> bytes) {
  ASSIGN_OR_RETURN(std::unique_ptr<ElfFile> elf, ElfFile::FromBytes(name, bytes));
  auto bin = std::unique_ptr<GoBinary>(new GoBinary());
  RETURN_IF_ERROR(WithPath(name, bin->Init(std::move(elf))));
  return bin;
}

absl::Status GoBinary::LocatePclntab() {
  uint64_t text = TextStartFallback(*elf_);
  absl::Status first_error;
  auto attempt = [&](uint64_t addr, const char* source) {
    auto t = Pclntab::Create(*elf_, addr, text);
    if (t.ok()) {
      pclntab_ = std::move(*t);
      pclntab_source_ = source;
      return true;
    }
    if (first_error.ok()) first_error = t.status();
    return false;
  };
  if (const ElfSection* s = elf_->FindSection(".gopclntab"); s && attempt(s->addr, "section")) {
    return absl::OkStatus();
  }
  if (auto sym = elf_->LookupSymbol("runtime.pclntab"); sym && attempt(*sym, "symbol")) {
    return absl::OkStatus();
  }
  if (!first_error.ok()) return first_error;  // a table was there but is bad
  // Scan non-executable segments for a header that validates.
  int builds = 0;
  for (const ElfSegment& seg : elf_->loads()) {
    if (seg.flags & PF_X) continue;
    auto bytes = elf_->ReadVirtual(seg.vaddr, seg.filesz);
    if (!bytes.ok()) continue;
    ByteView data(*bytes);
    for (uint64_t off = 0; off + 8 <= data.size(); off += 8) {
      std::optional<uint32_t> magic = data.U32(off);
      for (uint32_t old : kOldPclntabMagics) {
        // Its header: magic, two zero bytes, quantum, pointer size 8.
        if (magic == old && data.U8(off + 4) == 0 && data.U8(off + 5) == 0 &&
            data.U8(off + 7) == 8) {
          return absl::UnimplementedError(
              "built by Go 1.15 or older, which goerrprof does not support (1.16 and later are)");
        }
      }
      for (uint32_t m : kPclntabMagics) {
        if (magic != m || !Pclntab::Check(*elf_, seg.vaddr + off, text).ok()) continue;
        if (++builds > kMaxScanBuilds) {
          return absl::NotFoundError(absl::StrCat(
              "not a Go binary (no pclntab found; gave up after ", kMaxScanBuilds,
              " bad candidates)"));
        }
        if (attempt(seg.vaddr + off, "scan")) return absl::OkStatus();
      }
    }
  }
  return absl::NotFoundError("not a Go binary (no pclntab found)");
}

absl::Status GoBinary::Init(std::unique_ptr<ElfFile> elf) {
  elf_ = std::move(elf);
  auto bi = ReadBuildInfo(*elf_);
  RETURN_IF_ERROR(LocatePclntab());
  if (bi.ok()) {
    build_info_ = std::move(*bi);
  } else {
    // Some release pipelines drop .go.buildinfo; the runtime still knows.
    auto v = FindRuntimeBuildVersion(*elf_);
    if (!v.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot determine the Go version (", bi.status().message(), ")"));
    }
    build_info_.go_version = *v;
  }
  auto version = goabi::GoVersion::Parse(build_info_.go_version);
  if (!version) {
    return absl::UnimplementedError(
        absl::StrCat("unrecognised Go version \"", build_info_.go_version, "\""));
  }
  version_ = *version;
  ASSIGN_OR_RETURN(layout_, goabi::RuntimeLayoutFor(version_));

  for (size_t i = 0; i < pclntab_->num_functions(); ++i) {
    absl::string_view name = pclntab_->FuncName(i);
    if (absl::StartsWith(name, "runtime/cgo.") || absl::StartsWith(name, "_cgo_")) {
      cgo_ = true;
      break;
    }
  }

  auto md = FindModuledata(*elf_, *pclntab_, layout_.moduledata);
  if (!md.ok()) {
    moduledata_status_ = md.status();
    return absl::OkStatus();  // symbolization still works without it
  }
  moduledata_ = *md;
  if (moduledata_.text != 0 && moduledata_.text != pclntab_->text_start()) {
    // The header gave no text start (Go 1.26+ writes 0) and the fallback
    // guessed wrong (stripped external links put C code before Go's text):
    // moduledata knows.
    ASSIGN_OR_RETURN(pclntab_, Pclntab::Create(*elf_, pclntab_->address(), moduledata_.text));
  }
  pclntab_->set_gofunc(moduledata_.gofunc);
  types_.emplace(*elf_, moduledata_, layout_.type);
  return absl::OkStatus();
}

absl::StatusOr<const Moduledata*> GoBinary::moduledata() const {
  if (!moduledata_status_.ok()) return moduledata_status_;
  return &moduledata_;
}

absl::StatusOr<const TypeReader*> GoBinary::types() const {
  if (!moduledata_status_.ok()) return moduledata_status_;
  return &*types_;
}

}  // namespace goerrprof::symbolizer
