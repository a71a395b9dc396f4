// A whole ELF file opened as a Go binary, then everything goerrprof reads
// of one: version, functions, frames at each function, error types.
// Seeds: small synthetic Go binaries of every layout (fuzz_seeds).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "symbolizer/go_binary.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // libelf takes a writable pointer: hand it a copy, not the fuzzer's input.
  std::vector<uint8_t> bytes(data, data + size);
  auto bin = goerrprof::symbolizer::GoBinary::FromBytes("fuzz-input", bytes);
  if (bin.ok()) goerrprof::fuzz::Exercise(**bin, bytes.size());
  return 0;
}
