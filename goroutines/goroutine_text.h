// Text renderings of a goroutine snapshot: Go's debug=2 dump format, and
// the leak report (long-parked goroutines grouped by creation site and
// wait stack).
#ifndef GOERRPROF_GOROUTINES_GOROUTINE_TEXT_H_
#define GOERRPROF_GOROUTINES_GOROUTINE_TEXT_H_

#include <cstdint>
#include <string>

#include "goroutines/goroutine_frames.h"
#include "goroutines/goroutine_snapshot.h"

namespace goerrprof::profiler {

// "chan receive, ≥1m30s": the state, then the wait. "≥" marks a lower
// bound (g.waitsince is stamped by the GC after the goroutine parked); a
// plain duration is exact (a sampled mutex park, see WaitKnowledge);
// "wait unknown" means no GC has seen it blocked yet. Go prints whole
// minutes only from one minute on; this always prints what is known.
std::string StateWithWait(const Goroutine& g);

// Like runtime.Stack(all) / pprof debug=2: per goroutine a header line,
// "# labels: {...}" when it has pprof labels (debug=1's notation; Go's
// debug=2 omits them), frames as "func(...)" + "\tfile:line +0xoff" (long
// stacks cut as Go cuts them), and "created by F in goroutine N" + its
// file:line. Blank line between goroutines, which come by id (Go's come in
// runtime.allgs order). A running goroutine gets Go's "goroutine running
// on other thread; stack unavailable"; a walk that ended early gets
// "...stack truncated: ..." after the frames it found.
std::string FormatDump(const Snapshot& snap, GoFrames& frames);

// Goroutines waiting (status waiting) at least `min_wait_ns` by their
// lower bound, grouped by (state, creation site, shown stack), largest
// group first. Goroutines whose wait is unknown cannot be said to have
// waited that long and are counted separately, except with min_wait 0.
std::string FormatLeaks(const Snapshot& snap, GoFrames& frames, int64_t min_wait_ns);

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_GOROUTINES_GOROUTINE_TEXT_H_
