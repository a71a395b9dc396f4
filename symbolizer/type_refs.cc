#include "symbolizer/type_refs.h"

#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "base/byte_reader.h"

namespace goerrprof::symbolizer {

absl::StatusOr<std::vector<uint64_t>> TypeDescriptorRefs(const GoBinary& bin) {
  auto types = bin.types();
  if (!types.ok()) return types.status();
  const Pclntab& tab = bin.pclntab();
  if (tab.num_functions() == 0) return std::vector<uint64_t>{};
  uint64_t text_start = tab.FuncEntry(0);
  auto text = bin.elf().ReadVirtualUpTo(text_start, tab.text_end() - text_start);
  if (!text.ok()) return text.status();
  absl::flat_hash_set<uint64_t> seen;
  const uint8_t* p = text->data();
  ByteView code(*text);
  for (size_t i = 0; i + 7 <= text->size(); ++i) {
    // REX.W 8D /r with mod=00 rm=101: LEA reg, [rip+disp32].
    if ((p[i] & 0xF8) != 0x48 || p[i + 1] != 0x8D || (p[i + 2] & 0xC7) != 0x05) continue;
    int32_t disp;
    if (!code.Read(i + 3, &disp)) break;
    uint64_t target = text_start + i + 7 + static_cast<int64_t>(disp);
    if ((*types)->InTypes(target)) seen.insert(target);
  }
  std::vector<uint64_t> out(seen.begin(), seen.end());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace goerrprof::symbolizer
