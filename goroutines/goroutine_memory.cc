#include "goroutines/goroutine_memory.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/uio.h>

#include <algorithm>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace goerrprof::profiler {
namespace {

absl::Status ErrnoError(pid_t pid, int err) {
  if (err == ESRCH) return absl::NotFoundError(absl::StrCat("no process with pid ", pid));
  if (err == EPERM || err == EACCES) {
    return absl::PermissionDeniedError(absl::StrCat(
        "cannot read the memory of pid ", pid, ": ", strerror(err),
        " (needs the same user and ptrace permission, or CAP_SYS_PTRACE)"));
  }
  return absl::InternalError(absl::StrCat("process_vm_readv on pid ", pid, ": ", strerror(err)));
}

}  // namespace

absl::Status ProcessMemory::ReadEach(std::vector<ReadRange>& ranges) {
  constexpr size_t kMaxIov = IOV_MAX;
  std::vector<iovec>& local = local_;
  std::vector<iovec>& remote = remote_;
  size_t i = 0;
  while (i < ranges.size()) {
    local.clear();
    remote.clear();
    size_t first = i;
    for (; i < ranges.size() && local.size() < kMaxIov; ++i) {
      ranges[i].ok = false;
      local.push_back({ranges[i].out, ranges[i].len});
      remote.push_back({reinterpret_cast<void*>(ranges[i].addr), ranges[i].len});
    }
    ++syscalls_;
    ssize_t n = source_ != nullptr
                    ? source_->ReadV(local.data(), remote.data(), local.size())
                    : process_vm_readv(pid_, local.data(), local.size(), remote.data(),
                                       remote.size(), 0);
    if (n < 0) {
      if (errno != EFAULT) return ErrnoError(pid_, errno);
      n = 0;  // the very first range faulted
    }
    // Ranges are filled in order; the call stops at the first one that
    // faults. Mark the complete ones, skip the faulting one, and go on.
    size_t k = first;
    uint64_t left = static_cast<uint64_t>(n);
    while (k < i && left >= ranges[k].len) {
      left -= ranges[k].len;
      ranges[k].ok = true;
      ++k;
    }
    if (k < i) i = k + 1;  // range k faulted (or was cut short): resume after it
  }
  return absl::OkStatus();
}

absl::Status ProcessMemory::ReadBatch(std::vector<ReadRange>& ranges, uint64_t merge_gap) {
  if (merge_gap == 0 || ranges.size() < 2) return ReadEach(ranges);
  return Visit(ranges, merge_gap, [&](size_t i, const uint8_t* bytes) {
    ranges[i].ok = bytes != nullptr;
    if (bytes != nullptr && ranges[i].len > 0) std::memcpy(ranges[i].out, bytes, ranges[i].len);
  });
}

absl::Status ProcessMemory::Visit(const std::vector<ReadRange>& ranges, uint64_t merge_gap,
                                  absl::FunctionRef<void(size_t, const uint8_t*)> visit) {
  constexpr uint64_t kMaxSpan = 4 << 20;
  // Spans are read in groups through one reused scratch buffer: faulting
  // in fresh pages for every group would cost as much as the reads.
  constexpr uint64_t kMaxScratch = 8 << 20;
  // Callers mostly give ranges in address order already (gs lie in
  // allgs order): sort only when they are not.
  std::vector<size_t>& order = order_;
  order.resize(ranges.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  bool sorted = true;
  for (size_t i = 1; i < ranges.size() && sorted; ++i) {
    sorted = ranges[i - 1].addr <= ranges[i].addr;
  }
  if (!sorted) {
    std::sort(order.begin(), order.end(),
              [&](size_t a, size_t b) { return ranges[a].addr < ranges[b].addr; });
  }
  std::vector<Span>& spans = spans_;
  spans.clear();
  for (size_t k = 0; k < order.size(); ++k) {
    const ReadRange& r = ranges[order[k]];
    if (!spans.empty()) {
      Span& s = spans.back();
      uint64_t end = std::max(s.end, r.addr + r.len);
      if (r.addr <= s.end + merge_gap && end - s.addr <= kMaxSpan) {
        s.end = end;
        s.last = k + 1;
        continue;
      }
    }
    spans.push_back({k, k + 1, r.addr, r.addr + r.len});
  }
  std::vector<ReadRange>& reads = reads_;
  size_t g = 0;
  while (g < spans.size()) {
    size_t h = g;
    uint64_t bytes = 0;
    while (h < spans.size() && (h == g || bytes + (spans[h].end - spans[h].addr) <= kMaxScratch)) {
      bytes += spans[h].end - spans[h].addr;
      ++h;
    }
    if (scratch_size_ < bytes) {
      scratch_.reset(new uint8_t[bytes]);  // uninitialized: the kernel fills it
      scratch_size_ = bytes;
    }
    reads.clear();
    uint64_t off = 0;
    for (size_t i = g; i < h; ++i) {
      reads.push_back({spans[i].addr, spans[i].end - spans[i].addr, scratch_.get() + off});
      off += spans[i].end - spans[i].addr;
    }
    absl::Status s = ReadEach(reads);
    if (!s.ok()) return s;
    for (size_t i = g; i < h; ++i) {
      const ReadRange& got = reads[i - g];
      for (size_t k = spans[i].first; k < spans[i].last; ++k) {
        size_t idx = order[k];
        const ReadRange& r = ranges[idx];
        if (got.ok) {
          visit(idx, got.out + (r.addr - spans[i].addr));
          continue;
        }
        // A span of one range: that range faulted (it may claim up to a
        // GB, of which little is mapped: read nothing again).
        if (spans[i].last - spans[i].first == 1) {
          visit(idx, nullptr);
          continue;
        }
        // Some part of the span faults: this range on its own (merged
        // ranges are at most kMaxSpan long).
        if (single_size_ < r.len) {
          single_.reset(new uint8_t[r.len]);  // uninitialized: the read fills it
          single_size_ = r.len;
        }
        std::vector<ReadRange> one = {{r.addr, r.len, single_.get()}};
        s = ReadEach(one);
        if (!s.ok()) return s;
        visit(idx, one[0].ok ? single_.get() : nullptr);
      }
    }
    g = h;
  }
  return absl::OkStatus();
}

absl::Status ProcessMemory::Read(uint64_t addr, void* out, uint64_t len) {
  std::vector<ReadRange> one = {{addr, len, static_cast<uint8_t*>(out)}};
  absl::Status s = ReadBatch(one);
  if (!s.ok()) return s;
  if (!one[0].ok) {
    return absl::UnavailableError(absl::StrFormat("cannot read %d bytes at 0x%x", len, addr));
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> ProcessMemory::ReadU64(uint64_t addr) {
  uint64_t v = 0;
  absl::Status s = Read(addr, &v, sizeof(v));
  if (!s.ok()) return s;
  return v;
}

}  // namespace goerrprof::profiler
