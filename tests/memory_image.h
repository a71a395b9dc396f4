// A process's memory as a test or a fuzzer lays it out: byte ranges at
// addresses, read with process_vm_readv's contract through the goroutine
// reader's MemorySource, so the readers of target memory run against
// crafted images without a process.
#ifndef GOERRPROF_TESTS_MEMORY_IMAGE_H_
#define GOERRPROF_TESTS_MEMORY_IMAGE_H_

#include <cstdint>
#include <map>
#include <string>

#include "goroutines/goroutine_memory.h"

namespace goerrprof::testing {

class MemoryImage : public profiler::MemorySource {
 public:
  // Maps `bytes` at addr, replacing a mapping that starts there.
  void Map(uint64_t addr, std::string bytes);
  // A read that starts in the mapping with the highest start at or below
  // its address copies what that mapping holds of it; one that is cut
  // short ends the call there, as the kernel's does at an unmapped page.
  ssize_t ReadV(const iovec* local, const iovec* remote, size_t n) override;
  uint64_t mapped_bytes() const;

 private:
  std::map<uint64_t, std::string> maps_;
};

}  // namespace goerrprof::testing

#endif  // GOERRPROF_TESTS_MEMORY_IMAGE_H_
