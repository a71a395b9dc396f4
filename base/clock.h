// The two clocks goerrprof reads, in nanoseconds: CLOCK_MONOTONIC (the
// runtime's nanotime and bpf_ktime_get_ns count on it) and the wall clock
// (profiles' time_nanos).
#ifndef GOERRPROF_BASE_CLOCK_H_
#define GOERRPROF_BASE_CLOCK_H_

#include <time.h>

#include <cstdint>

namespace goerrprof {

inline int64_t ClockNs(clockid_t clock) {
  timespec ts;
  clock_gettime(clock, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}
inline int64_t MonotonicNs() { return ClockNs(CLOCK_MONOTONIC); }
inline int64_t WallNs() { return ClockNs(CLOCK_REALTIME); }

}  // namespace goerrprof

#endif  // GOERRPROF_BASE_CLOCK_H_
