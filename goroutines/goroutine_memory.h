// Reads another process's memory without stopping it: batched
// process_vm_readv (up to IOV_MAX ranges per system call) with per-range
// failure, so one unmapped range does not lose the others.
#ifndef GOERRPROF_GOROUTINES_GOROUTINE_MEMORY_H_
#define GOERRPROF_GOROUTINES_GOROUTINE_MEMORY_H_

#include <sys/types.h>
#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"

namespace goerrprof::profiler {

struct ReadRange {
  uint64_t addr = 0;
  uint64_t len = 0;
  uint8_t* out = nullptr;  // len bytes
  bool ok = false;         // set by ReadBatch: all len bytes were read
};

// Where the bytes come from when not from a live process: a memory image
// in tests and fuzzers. process_vm_readv's contract: local[i] and
// remote[i] have the same length and are filled in order, stopping at the
// first remote range not wholly readable; returns the bytes copied, or -1
// with errno set (EFAULT when the first range is unreadable). Called from
// several reader threads at once.
class MemorySource {
 public:
  virtual ~MemorySource() = default;
  virtual ssize_t ReadV(const iovec* local, const iovec* remote, size_t n) = 0;
};

class ProcessMemory {
 public:
  // Reads pid's memory, or `source` when given (pid then only names the
  // process in messages).
  explicit ProcessMemory(pid_t pid, MemorySource* source = nullptr)
      : pid_(pid), source_(source) {}

  // Fills every range it can; ranges that fault keep ok == false. Fails
  // only when the process cannot be read at all (gone, no permission).
  // The kernel's cost is mostly per range (pinning, VMA lookup), so ranges
  // closer than `merge_gap` bytes are read as one span and copied out; a
  // span that faults is read again range by range.
  absl::Status ReadBatch(std::vector<ReadRange>& ranges, uint64_t merge_gap = 0);
  // Reads `ranges` ({addr, len}; `out` and `ok` unused) merged like
  // ReadBatch, through one reused scratch buffer, and calls visit(i, bytes)
  // for every range i with its bytes, or with nullptr when it is
  // unreadable. The bytes are valid only during the call; `visit` must not
  // call Visit or ReadBatch with a merge gap (their buffers are reused).
  absl::Status Visit(const std::vector<ReadRange>& ranges, uint64_t merge_gap,
                     absl::FunctionRef<void(size_t, const uint8_t*)> visit);

  // One range; Unavailable when it faults.
  absl::Status Read(uint64_t addr, void* out, uint64_t len);
  absl::StatusOr<uint64_t> ReadU64(uint64_t addr);

  uint64_t syscalls() const { return syscalls_; }

 private:
  absl::Status ReadEach(std::vector<ReadRange>& ranges);

  struct Span {
    size_t first, last;  // [first, last) in order_
    uint64_t addr, end;
  };

  pid_t pid_;
  MemorySource* source_;
  uint64_t syscalls_ = 0;
  // Visit's buffers, reused from call to call.
  std::unique_ptr<uint8_t[]> scratch_, single_;
  uint64_t scratch_size_ = 0, single_size_ = 0;
  std::vector<size_t> order_;
  std::vector<Span> spans_;
  std::vector<ReadRange> reads_;
  std::vector<iovec> local_, remote_;
};

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_GOROUTINES_GOROUTINE_MEMORY_H_
