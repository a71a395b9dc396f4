// Discovery for `goerrprof agent`: one cheap pass over /proc listing every
// process with what identifies it (pid, start time, executable). Read-only:
// nothing is stopped, traced or opened for writing.
#ifndef GOERRPROF_AGENT_PROC_SCAN_H_
#define GOERRPROF_AGENT_PROC_SCAN_H_

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace goerrprof::profiler {

struct ProcEntry {
  pid_t pid = 0;
  pid_t ppid = 0;
  // /proc/PID/stat field 22 (clock ticks since boot): with the pid, a
  // process's identity; a reused pid gets a later start time.
  uint64_t start_time = 0;
  // The executable's identity ("dev:ino:mtime" of /proc/PID/exe): changes
  // on exec. Empty for kernel threads and zombies (no executable).
  std::string exe_key;
};

// Every process visible in `proc_dir` (a test may pass another tree).
// Processes that vanish mid-scan are left out.
std::vector<ProcEntry> ScanProcesses(const std::string& proc_dir = "/proc");

// pid's entry, or nothing when it is gone.
std::optional<ProcEntry> ReadProcEntry(const std::string& proc_dir, pid_t pid);

// /proc/PID/stat's ppid and start time; false when unreadable or malformed.
// The command name (field 2) may hold spaces and parentheses: the fields
// after it are found from its last ')'.
bool ParseProcStat(const std::string& stat, pid_t* ppid, uint64_t* start_time);

// This process's resident memory (/proc/self/statm), 0 when unreadable.
uint64_t SelfResidentBytes();
// This process's heap in use: what malloc has handed out and not had back
// (glibc's mallinfo2; the sanitizer's own count in an ASan build, whose
// freed memory stays resident). Tells a leak from allocator high water.
uint64_t SelfHeapBytes();

// The kernel memory of the BPF maps and programs this process holds open
// (each counted once, however many descriptors name it), as the kernel
// charges it (fdinfo's memlock; for a ring buffer at least its data size,
// which Linux 5.11-6.3 leave out). Elsewhere on those kernels memlock is
// the kernel's estimate, not the pages charged.
struct BpfMemory {
  uint64_t map_bytes = 0, program_bytes = 0;
  size_t maps = 0, programs = 0;
  // BPF links (a uprobe_multi link, or a perf uprobe's link, each), and
  // perf events (a perf uprobe each, on kernels before 6.6).
  size_t links = 0, perf_events = 0;
};
BpfMemory SelfBpfMemory();

// The executable's path as the process sees it (in its own mount
// namespace; " (deleted)" stripped), "" when unreadable.
std::string ExecutablePath(const std::string& proc_dir, pid_t pid);

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_AGENT_PROC_SCAN_H_
