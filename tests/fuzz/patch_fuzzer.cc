// Structured patches of real Go binaries: the input picks a corpus binary
// and lists (region, offset, bytes) patches, each landing in one of the
// tables goerrprof parses (headers, pclntab, build info, type data,
// moduledata), so mutations reach deep into the readers instead of being
// rejected at the ELF header. The binaries: fuzz::PatchBinaries.
//
// Input: [binary u8 (high bit: rescan the text)] then patches
// [region u8][offset u32][len-1 u8 (mod 16)][bytes].
#include <elf.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "base/byte_reader.h"
#include "symbolizer/elf_file.h"
#include "symbolizer/go_binary.h"
#include "symbolizer/type_refs.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

using goerrprof::ByteReader;
using goerrprof::ByteView;

constexpr size_t kMaxPatches = 32;
constexpr size_t kMaxFunctions = 256;  // frames at a spread of functions per run

struct Target {
  std::string path;
  std::string bytes;
  std::vector<std::pair<uint64_t, uint64_t>> regions;  // file [offset, offset + size)
  // The unpatched binary's type references: scanning all text costs most
  // of a run, so it is done afresh only when the input asks (binary byte's
  // high bit).
  std::vector<uint64_t> refs;
};

std::vector<Target>* targets = nullptr;

Target Load(const std::string& path) {
  Target t;
  t.path = path;
  t.bytes = goerrprof::fuzz::ReadFileOrDie(path);
  const uint64_t size = t.bytes.size();
  t.regions.emplace_back(0, size);  // anywhere
  Elf64_Ehdr eh{};
  if (size >= sizeof(eh)) std::memcpy(&eh, t.bytes.data(), sizeof(eh));
  t.regions.emplace_back(0, std::min<uint64_t>(size, eh.e_phoff + eh.e_phnum * sizeof(Elf64_Phdr)));
  if (eh.e_shoff < size) {
    t.regions.emplace_back(eh.e_shoff, std::min<uint64_t>(size - eh.e_shoff,
                                                          eh.e_shnum * sizeof(Elf64_Shdr)));
  }
  if (auto bin = goerrprof::symbolizer::GoBinary::Open(path); bin.ok()) {
    if (auto refs = goerrprof::symbolizer::TypeDescriptorRefs(**bin); refs.ok()) t.refs = *refs;
  }
  auto elf = goerrprof::symbolizer::ElfFile::Open(path);
  if (elf.ok()) {
    for (const char* name : {".gopclntab", ".go.buildinfo", ".noptrdata", ".data", ".rodata",
                             ".typelink", ".itablink", ".data.rel.ro", ".note.go.buildid"}) {
      const auto* s = (*elf)->FindSection(name);
      if (s != nullptr && s->size > 0 && goerrprof::InBounds(s->offset, s->size, size)) {
        t.regions.emplace_back(s->offset, s->size);
        // The first bytes of a table are its header: a region of their own.
        t.regions.emplace_back(s->offset, std::min<uint64_t>(s->size, 256));
      }
    }
  }
  return t;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  targets = new std::vector<Target>();
  for (const std::string& p : goerrprof::fuzz::PatchBinaries()) {
    targets->push_back(Load(p));
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  Target& t = (*targets)[(data[0] & 0x7f) % targets->size()];
  const bool scan_refs = (data[0] & 0x80) != 0;
  ByteReader in(ByteView(data + 1, size - 1));
  std::vector<std::pair<uint64_t, std::string>> undo;
  while (in.remaining() >= 7 && undo.size() < kMaxPatches) {
    const auto& [start, len] = t.regions[in.U8() % t.regions.size()];
    uint64_t at = start + in.U32() % len;
    uint64_t n = std::min<uint64_t>(in.U8() % 16 + 1, t.bytes.size() - at);
    ByteView patch = in.Bytes(std::min<uint64_t>(n, in.remaining()));
    if (!in.ok() || patch.empty()) break;
    undo.emplace_back(at, t.bytes.substr(at, patch.size()));
    std::memcpy(&t.bytes[at], patch.data(), patch.size());
  }
  {
    auto bin = goerrprof::symbolizer::GoBinary::FromBytes(
        t.path, {reinterpret_cast<const uint8_t*>(t.bytes.data()), t.bytes.size()});
    if (bin.ok()) goerrprof::fuzz::Exercise(**bin, kMaxFunctions, scan_refs ? nullptr : &t.refs);
  }
  for (auto it = undo.rbegin(); it != undo.rend(); ++it) {
    std::memcpy(&t.bytes[it->first], it->second.data(), it->second.size());
  }
  return 0;
}
