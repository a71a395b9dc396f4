#include "tests/memory_image.h"

#include <errno.h>

#include <algorithm>
#include <cstring>

namespace goerrprof::testing {

void MemoryImage::Map(uint64_t addr, std::string bytes) { maps_[addr] = std::move(bytes); }

uint64_t MemoryImage::mapped_bytes() const {
  uint64_t n = 0;
  for (const auto& [addr, bytes] : maps_) n += bytes.size();
  return n;
}

ssize_t MemoryImage::ReadV(const iovec* local, const iovec* remote, size_t n) {
  ssize_t total = 0;
  for (size_t i = 0; i < n; ++i) {
    uint64_t addr = reinterpret_cast<uint64_t>(remote[i].iov_base);
    uint64_t len = std::min<uint64_t>(remote[i].iov_len, local[i].iov_len);
    uint64_t got = 0;
    auto it = maps_.upper_bound(addr);
    if (it != maps_.begin()) {
      --it;
      uint64_t off = addr - it->first;
      if (off < it->second.size()) {
        got = std::min<uint64_t>(len, it->second.size() - off);
        std::memcpy(local[i].iov_base, it->second.data() + off, got);
      }
    }
    total += static_cast<ssize_t>(got);
    if (got < len) break;
  }
  if (total == 0 && n > 0 && remote[0].iov_len > 0) {
    errno = EFAULT;
    return -1;
  }
  return total;
}

}  // namespace goerrprof::testing
