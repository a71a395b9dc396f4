// bench/overhead_bench's measurements, one run each: the raw uprobe trap
// (overheadtarget), errgen alone / under empty probes / under `goerrprof
// record`, and goerrprof's attach and detach on an esbuild.
#ifndef GOERRPROF_BENCH_OVERHEAD_RUNS_H_
#define GOERRPROF_BENCH_OVERHEAD_RUNS_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "bench/overhead_util.h"

namespace goerrprof::bench {

// Planned probe addresses, from probe_plan_tool's "probe ADDR ..." lines.
std::vector<uint64_t> PlannedProbes(const std::string& tool, const std::string& binary);

// 1. overheadtarget's ns per call of its noinline function, M calls, with
// an empty probe at each of `offsets` (file offsets; none: no probe).
double TrapRun(const std::string& target, long m, const std::vector<uint64_t>& offsets);

// 2. errgen -n N released from stdin and timed to its JSON line.
struct ErrgenRun {
  double seconds = 0;
  uint64_t errors = 0, dropped = 0, hits = 0;
  std::string summary;
};

enum class Mode { kAlone, kEmptySites, kRecord };

ErrgenRun Errgen(const std::string& errgen, long n, Mode mode, const std::string& goerrprof,
                 const std::vector<uint64_t>& site_offsets, const std::string& out_file,
                 int64_t ringbuf);

// 3. `goerrprof record` on an esbuild blocked on stdin, stopped by SIGINT.
struct AttachRun {
  size_t probes = 0;
  double attach_s = 0;     // goerrprof's own figure ("attached in T")
  double ready_s = 0;      // spawn -> recording line (plan + load + attach)
  double detach_s = 0;     // SIGINT -> exit (detach + write the profile)
  size_t armed = 0, left = 0;  // breakpoints seen while recording / after exit
  std::string summary;
};

// The attached program: how to start it, and whether it ends when its
// stdin closes (esbuild --bundle) or on SIGTERM (a server).
struct AttachTarget {
  std::vector<std::string> argv;
  bool ends_on_eof = true;
};
AttachRun Attach(const AttachTarget& target, const std::string& goerrprof, const ElfImage& elf,
                 const std::vector<uint64_t>& addrs, const std::vector<uint8_t>& file_bytes,
                 const std::string& out_file, const std::string& plan_cache);

// 4. errgen -storm N alone (`budget` empty) or under `goerrprof record
// --max-overhead=budget -- errgen ...`: the storm loop's own time, and
// what the recording observed and estimated.
struct StormRun {
  double seconds = 0;
  uint64_t observed = 0, estimated = 0;
  double charged_ms = -1;  // the budget's charge for the hits it saw
  std::string budget_line;
};
// `work`: errgen -storm_work (rounds of ~1 ns before each error).
StormRun Storm(const std::string& errgen, long n, const std::string& budget,
               const std::string& goerrprof, const std::string& out_file, long work = 0);

}  // namespace goerrprof::bench

#endif  // GOERRPROF_BENCH_OVERHEAD_RUNS_H_
