// The file a process's mapping really maps, as the kernel sees it: the one
// uprobes attach to. /proc/PID/maps says the same, except on overlayfs
// since Linux 6.8, where it names the overlay's own inode (one per
// container) instead of the layer's file that is mapped.
#ifndef GOERRPROF_SESSION_BACKING_FILE_H_
#define GOERRPROF_SESSION_BACKING_FILE_H_

#include <sys/types.h>

#include <cstdint>

#include "absl/status/statusor.h"

namespace goerrprof::profiler {

struct BackingFile {
  uint32_t major = 0, minor = 0;  // its filesystem's device
  uint64_t ino = 0;
};

// The file mapped at `start` (a mapping's first address) in process `pid`
// (goerrprof's PID namespace), read by a BPF task_vma iterator. NotFound
// when no mapping starts there (or the process is gone); Unavailable when
// this kernel or these privileges cannot run the iterator.
absl::StatusOr<BackingFile> BackingFileAt(pid_t pid, uint64_t start);

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_SESSION_BACKING_FILE_H_
