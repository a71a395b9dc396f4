// What goerrprof's BPF programs cost the kernel's verifier here: each
// object (errors, goroutines, exec_follow) is loaded, nothing attached,
// under every combination of the load-time settings that change what the
// verifier walks (rodata such as where g is and how labels are stored, the
// attach type, sleepable or not), for every Go release goabi knows. Per
// program the most instructions the verifier processed, against the
// kernel's limit of 1,000,000, or the first failure with its reason.
#ifndef GOERRPROF_SESSION_BPF_COST_H_
#define GOERRPROF_SESSION_BPF_COST_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace goerrprof::profiler {

// BPF_COMPLEXITY_LIMIT_INSNS: the verifier gives up past this many.
inline constexpr uint64_t kVerifierInsnLimit = 1000000;

struct ProgramCost {
  std::string object;   // "errors"
  std::string program;  // "gep_on_error"
  bool loaded = false;  // under every setting tried
  // When not loaded: errno and the verifier log's last lines, one line.
  std::string error;
  // The most instructions the verifier processed over the settings (from
  // bpf_prog_info.verified_insns, Linux 5.16+); for a failed load, the
  // count in its verifier log. 0: the kernel did not say.
  uint64_t verified_insns = 0;
  // The settings of that maximum (or of the failure), e.g.
  // "go1.17-1.23 layout (g in R14, labels map), uprobe_multi, sleepable,
  // wakeup batched, pid namespace filter".
  std::string settings;
  size_t loads = 0;  // settings measured
};

// Loads every object under its settings; one entry per program, in object
// order. Loads stop at an object's first failure (which is reported). Errors
// only for what prevents measuring at all (no CPUs counted, cannot open an
// object); load failures are results.
absl::StatusOr<std::vector<ProgramCost>> MeasureBpfCost();

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_SESSION_BPF_COST_H_
