// One ring-buffer record of the error probe (bpf/errors_abi.h) decoded
// into a CapturedError: a free function over bytes, so what a record means
// is defined in one place and testable without a kernel.
#ifndef GOERRPROF_EVENTS_DECODE_H_
#define GOERRPROF_EVENTS_DECODE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "events/captured_error.h"

namespace goerrprof::profiler {

// A type's names for decoding: the type, its string fields (name, offset)
// and its address fields, in the order of its layout.
struct TypeNames {
  std::string name;
  std::vector<std::pair<std::string, uint32_t>> strings;
  std::vector<std::string> addrs;
};
// By type address at `key_bias` (a program of one process: its load bias,
// so runtime addresses; a shared one: 0, file addresses): error types, and
// the address types decoded inside them.
struct RecordNames {
  absl::flat_hash_map<uint64_t, TypeNames> types;
  absl::flat_hash_map<uint64_t, TypeNames> addr_types;
  uint64_t key_bias = 0;
};

// False when the record is malformed (wrong version, sizes or counts beyond
// the ABI's limits, a parent link after its child). Addresses are rebased
// by `bias` (runtime = file vaddr + bias) to file virtual addresses.
bool DecodeErrorRecord(const uint8_t* data, size_t size, const RecordNames& names, uint64_t bias,
                       CapturedError* out);

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_EVENTS_DECODE_H_
