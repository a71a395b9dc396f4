// The goroutine harness's input format, shared with the seed generator
// that writes it: [binary u8][bias u64] then mappings [addr u64][len u32]
// [bytes], and the corpus binaries it reads.
#ifndef GOERRPROF_TESTS_FUZZ_GOROUTINES_FUZZ_INPUT_H_
#define GOERRPROF_TESTS_FUZZ_GOROUTINES_FUZZ_INPUT_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace goerrprof::fuzz {

struct GoroutinesInput {
  uint8_t binary = 0;  // index into GoroutineBinaries (low bits), flags (high bit)
  uint64_t bias = 0;
  std::map<uint64_t, std::string> mappings;
};

bool ParseGoroutinesInput(const uint8_t* data, size_t size, GoroutinesInput* out);
std::string WriteGoroutinesInput(const GoroutinesInput& in);

// `parked` of several releases: map and slice labels, PIE and not.
std::vector<std::string> GoroutineBinaries();

}  // namespace goerrprof::fuzz

#endif  // GOERRPROF_TESTS_FUZZ_GOROUTINES_FUZZ_INPUT_H_
