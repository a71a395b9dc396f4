#include "tests/fuzz/goroutines_fuzz_input.h"

#include "base/byte_reader.h"
#include "tests/fuzz/fuzz_support.h"

namespace goerrprof::fuzz {

bool ParseGoroutinesInput(const uint8_t* data, size_t size, GoroutinesInput* out) {
  ByteReader r(ByteView(data, size));
  out->binary = r.U8();
  out->bias = r.U64();
  if (!r.ok()) return false;
  while (r.remaining() >= 12) {
    uint64_t addr = r.U64();
    uint32_t len = r.U32();
    ByteView bytes = r.Bytes(std::min<uint64_t>(len, r.remaining()));
    out->mappings[addr] = std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  }
  return true;
}

std::string WriteGoroutinesInput(const GoroutinesInput& in) {
  std::string out(1, static_cast<char>(in.binary));
  out.append(reinterpret_cast<const char*>(&in.bias), 8);
  for (const auto& [addr, bytes] : in.mappings) {
    uint32_t len = static_cast<uint32_t>(bytes.size());
    out.append(reinterpret_cast<const char*>(&addr), 8);
    out.append(reinterpret_cast<const char*>(&len), 4);
    out += bytes;
  }
  return out;
}

std::vector<std::string> GoroutineBinaries() {
  return CorpusBinaries({{"go1.19", "parked-default"},
                         {"go1.23", "parked-pie"},
                         {"go1.27", "parked-default"}},
                        "GOERRPROF_FUZZ_PARKED");
}

}  // namespace goerrprof::fuzz
