// A snapshot of every goroutine of a live Go process, read from outside
// without stopping it and without probes: runtime.allgs is located in the
// binary (stripped ones too), each g and the used part of its stack are
// read with batched process_vm_readv, and stacks are walked by saved frame
// pointers. The target keeps running, so every g is validated (status,
// goid, stack bounds, PCs in text, an increasing frame-pointer chain, an
// unchanged re-read) and retried a bounded number of times; what still
// fails is counted, never shown.
#ifndef GOERRPROF_GOROUTINES_GOROUTINE_SNAPSHOT_H_
#define GOERRPROF_GOROUTINES_GOROUTINE_SNAPSHOT_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "goabi/g_layout.h"
#include "symbolizer/creation_site.h"
#include "symbolizer/go_binary.h"

namespace goerrprof::profiler {

using symbolizer::CreatedBy;
using symbolizer::CreationSite;

// How well the wait duration is known. The runtime stamps g.waitsince only
// when a GC cycle finds the goroutine blocked, so it is later than the
// moment it parked: now - waitsince is a lower bound. 0 means no GC has
// seen it blocked yet (a process's first GC cycle was seen to leave it 0
// too; the second stamps it): unknown. Exact: from Go 1.20 the runtime samples
// one in eight parks on sync.Mutex / sync.RWMutex (g.tracking) and stamps
// g.trackingStamp with the moment it parked, for its mutex wait metric.
enum class WaitKnowledge { kNotWaiting, kUnknown, kLowerBound, kExact };

enum class StackKind {
  kNone,       // running on a thread: no stack can be read
  kComplete,   // walked to the goroutine's entry (goexit)
  kTruncated,  // the frame-pointer chain left the stack or reached bad PCs
};

struct Goroutine {
  uint64_t id = 0;
  uint64_t parent_id = 0;  // the creator's id (Go 1.21+); 0 when unknown
  uint32_t status = 0;     // g.atomicstatus without the scan bit
  bool scan = false;       // the GC was scanning its stack
  // What Go's dump shows: the wait reason, else the status name. Both
  // views point into goabi's static tables.
  absl::string_view state;
  absl::string_view wait_reason;  // "" unless waiting
  WaitKnowledge wait_kind = WaitKnowledge::kNotWaiting;
  int64_t wait_ns = 0;  // a lower bound when kLowerBound
  uint64_t gopc = 0;     // file virtual addresses
  uint64_t startpc = 0;
  // Started at a runtime.* function other than runtime.main (Go's
  // isSystemGoroutine; the finalizer goroutine counts as system even while
  // it runs a finalizer, when Go's dump would show it).
  bool system = false;
  std::vector<std::pair<std::string, std::string>> labels;  // pprof labels, sorted by key
  bool labels_unreadable = false;
  // File virtual addresses, innermost first: [0] is where the goroutine
  // resumes, the rest are return addresses.
  std::vector<uint64_t> stack;
  StackKind stack_kind = StackKind::kNone;
};

struct SnapshotStats {
  uint64_t allgs = 0;         // entries of runtime.allgs
  uint64_t dead = 0;          // free gs (dead / idle)
  uint64_t system_hidden = 0;
  uint64_t retried = 0;       // gs read more than once
  uint64_t skipped = 0;       // still invalid after every retry: not shown
  uint64_t stacks_truncated = 0;
  uint64_t labels_unreadable = 0;
  uint64_t syscalls = 0;      // process_vm_readv calls
  int64_t elapsed_ns = 0;     // reading the target (no symbolization)
};

struct Snapshot {
  int64_t pid = 0;
  int64_t time_nanos = 0;  // wall clock at the snapshot
  std::vector<Goroutine> goroutines;  // by id
  SnapshotStats stats;
};

struct SnapshotOptions {
  bool include_system = false;  // like GOTRACEBACK=system
  int max_attempts = 4;         // reads of one g before it is skipped
  // Reader threads for large snapshots (each reads its share of the gs);
  // 0: up to two, as the machine allows.
  int threads = 0;
};

// Fails with one line when the process is gone, not readable, or its
// goroutine list cannot be found.
absl::StatusOr<Snapshot> TakeSnapshot(pid_t pid, const symbolizer::GoBinary& binary,
                                      const SnapshotOptions& options);

class MemorySource;
// TakeSnapshot once the binary is understood: `allgs` is the runtime
// address of the runtime.allgs slice header, `bias` the load bias. Reads
// `source` when given (a memory image in tests and fuzzers), else pid.
absl::StatusOr<Snapshot> ReadSnapshot(pid_t pid, MemorySource* source,
                                      const symbolizer::GoBinary& binary,
                                      const goabi::GLayout& layout, uint64_t allgs, uint64_t bias,
                                      const SnapshotOptions& options);

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_GOROUTINES_GOROUTINE_SNAPSHOT_H_
