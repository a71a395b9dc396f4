// bench/overhead_bench's plumbing: children that die with the driver
// (registered, so every exit path kills them), bounded waits and line
// reads, and the ELF facts uprobes want (symbols, file offsets).
#ifndef GOERRPROF_BENCH_OVERHEAD_UTIL_H_
#define GOERRPROF_BENCH_OVERHEAD_UTIL_H_

#include <sys/types.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace goerrprof::bench {

using Clock = std::chrono::steady_clock;
inline double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}
inline Clock::time_point In(double s) {
  return Clock::now() + std::chrono::microseconds(static_cast<int64_t>(s * 1e6));
}

// Kills and reaps every child still registered.
void KillAllKids();
// The handler for SIGINT, SIGTERM, SIGHUP and SIGALRM (--budget): kills
// the children and exits saying why.
void OnSignal(int sig);
// "overhead_bench: <printf message>" on stderr; kills the children, exits 1.
[[noreturn]] void Die(const char* fmt, ...);

struct Child {
  pid_t pid = -1;
  int in = -1, out = -1, err = -1;  // our ends of its stdin/stdout/stderr
  int pidfd = -1;
};

void CloseFd(int& fd);

// Spawns argv with the requested pipes (others: /dev/null); returns once
// exec succeeded (a CLOEXEC pipe closes), dies if it failed.
Child Spawn(const std::vector<std::string>& argv, bool in, bool out, bool err);
// Waits for the child's exit (dies after timeout_s); returns its status.
int Wait(Child& c, double timeout_s, const char* what);
void WriteLine(int fd, const char* s);

// Reads lines with a deadline; keeps at most `keep` bytes of each (errgen's
// JSON line is tens of MB).
class LineReader {
 public:
  explicit LineReader(int fd) : fd_(fd), buf_(1 << 20) {}
  // False at EOF. Dies at the deadline.
  bool Next(std::string* line, Clock::time_point deadline, const char* what,
            size_t keep = 1 << 16);

 private:
  int fd_;
  std::vector<char> buf_;
  size_t pos_ = 0, len_ = 0;
  bool eof_ = false;
};

// ELF: symbols and file offsets (non-PIE or PIE; offsets are what uprobes
// want).
struct ElfImage {
  struct Load {
    uint64_t vaddr, offset, filesz;
    bool exec;
  };
  std::vector<Load> loads;
  std::map<std::string, std::pair<uint64_t, uint64_t>> syms;  // name -> addr, size
  bool exec_type = false;                                      // ET_EXEC
  std::string path;

  static ElfImage Open(const std::string& path, bool want_syms);
  uint64_t FileOffset(uint64_t vaddr) const;
  std::vector<uint8_t> Bytes(uint64_t vaddr, size_t n) const;
};

}  // namespace goerrprof::bench

#endif  // GOERRPROF_BENCH_OVERHEAD_UTIL_H_
