#include "profiler/goroutine_memory.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/uio.h>

#include <algorithm>

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

absl::Status ProcessMemory::ReadBatch(std::vector<ReadRange>& ranges) {
  constexpr size_t kMaxIov = IOV_MAX;
  std::vector<iovec> local, remote;
  local.reserve(kMaxIov);
  remote.reserve(kMaxIov);
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
    ssize_t n = process_vm_readv(pid_, local.data(), local.size(), remote.data(), remote.size(), 0);
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
