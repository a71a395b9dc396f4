// Running a piece of work in a forked child with a time limit and its
// peak memory measured: how the bounded-work tests show that a crafted
// input costs seconds and megabytes, not minutes and gigabytes, and still
// fail (rather than hang) on a reader that loops.
#ifndef GOERRPROF_TESTS_BOUNDED_CHILD_H_
#define GOERRPROF_TESTS_BOUNDED_CHILD_H_

#include <cstdint>
#include <functional>
#include <string>

namespace goerrprof::testing {

struct BoundedRun {
  bool finished = false;  // exited on its own within the time limit
  int exit_code = -1;     // fn's result when finished
  double seconds = 0;
  // Peak resident memory of the child minus its resident memory when fn
  // started (what fn itself added), in KB.
  int64_t rss_growth_kb = 0;
  std::string Describe() const;
};

// Forks; the child runs fn and exits with its result. The child is killed
// after timeout_seconds, and its address space is capped at 4 GB (except
// under ASan, which reserves terabytes). Waits without sleeping (a pidfd).
BoundedRun RunInChild(const std::function<int()>& fn, int timeout_seconds);

}  // namespace goerrprof::testing

#endif  // GOERRPROF_TESTS_BOUNDED_CHILD_H_
