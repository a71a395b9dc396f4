// ErrorProgram::MeasureTrapNs (BpfSession::MeasureTrapNs): what a uprobe hit costs a thread here, from
// goerrprof's own process (the overhead budget's price of one hit).
#include <bpf/libbpf.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/errno.h"
#include "bpf/errors.skel.h"
#include "bpf/probe_abi.h"
#include "session/error_program.h"
#include "session/uprobe_attach.h"
#include "base/status_macros.h"

// The probed instruction is what the error probes mostly sit on: a
// RIP-relative LEA (an itab's address), which the kernel single-steps out
// of line; an instruction it emulates instead would make hits look cheaper.
asm(R"(
  .text
  .globl goerrprof_trap_calibration_point
  .type goerrprof_trap_calibration_point, @function
goerrprof_trap_calibration_point:
  leaq goerrprof_trap_calibration_point(%rip), %rax
  ret
  .size goerrprof_trap_calibration_point, .-goerrprof_trap_calibration_point
)");
extern "C" void* goerrprof_trap_calibration_point();

namespace goerrprof::profiler {
namespace {

// The file offset of `addr` in the executable mapped at it.
absl::StatusOr<uint64_t> FileOffsetOf(uintptr_t addr) {
  FILE* f = std::fopen("/proc/self/maps", "r");
  if (f == nullptr) return absl::InternalError(absl::StrCat("/proc/self/maps: ", Errno(errno)));
  char line[512];
  absl::StatusOr<uint64_t> out = absl::NotFoundError("calibration point not in a mapping");
  while (std::fgets(line, sizeof(line), f)) {
    unsigned long lo = 0, hi = 0, off = 0;
    char perms[8] = {};
    if (std::sscanf(line, "%lx-%lx %7s %lx", &lo, &hi, perms, &off) != 4) continue;
    if (addr >= lo && addr < hi && perms[2] == 'x') {
      out = addr - lo + off;
      break;
    }
  }
  std::fclose(f);
  return out;
}

using Clock = std::chrono::steady_clock;

double CallsNs(void* (*volatile fn)(), int calls) {
  auto t0 = Clock::now();
  for (int i = 0; i < calls; ++i) fn();
  return std::chrono::duration<double, std::nano>(Clock::now() - t0).count();
}

}  // namespace

absl::StatusOr<double> ErrorProgram::MeasureTrapNs(int calls) {
  if (!skel_) return absl::FailedPreconditionError("no program loaded");
  void* (*volatile fn)() = &goerrprof_trap_calibration_point;
  ASSIGN_OR_RETURN(uint64_t offset, FileOffsetOf(reinterpret_cast<uintptr_t>(fn)));
  const bpf_program* prog = skel_->progs.gep_on_error;
  const uint64_t cookie = GEP_COOKIE_F_SOLO;
  // Its hits are foreign to the target: counted apart from the target's own.
  const uint64_t hits_before = SumPerCpu(skel_->maps.counters, GEP_CTR_FOREIGN);
  int fd = -1;
  bpf_link* link = nullptr;
  if (multi_) {
    fd = CreateUprobeMultiLink(bpf_program__fd(prog), "/proc/self/exe",
                               absl::MakeConstSpan(&offset, 1), absl::MakeConstSpan(&cookie, 1),
                               getpid());
    if (fd < 0) return absl::InternalError(absl::StrCat("calibration probe: ", Errno(-fd)));
  } else {
    LIBBPF_OPTS(bpf_uprobe_opts, opts, .bpf_cookie = cookie, .retprobe = false);
    link = bpf_program__attach_uprobe_opts(prog, getpid(), "/proc/self/exe", offset, &opts);
    if (link == nullptr) {
      return absl::InternalError(absl::StrCat("calibration probe: ", Errno(errno)));
    }
  }
  // Three rounds, probed against bare calls side by side; the median.
  std::vector<double> per_hit;
  for (int round = 0; round < 3; ++round) per_hit.push_back(CallsNs(fn, calls) / calls);
  if (fd >= 0) close(fd);
  if (link != nullptr) bpf_link__destroy(link);
  std::vector<double> bare;
  for (int round = 0; round < 3; ++round) bare.push_back(CallsNs(fn, calls) / calls);
  const uint64_t hits = SumPerCpu(skel_->maps.counters, GEP_CTR_FOREIGN) - hits_before;
  calibration_hits_ += hits;
  // A probe that did not fire would price hits at nothing: a budget that
  // never acts. Say so instead.
  if (hits < 3 * static_cast<uint64_t>(calls)) {
    return absl::InternalError(absl::StrCat("the calibration probe fired ", hits, " times of ",
                                            3 * calls));
  }
  std::sort(per_hit.begin(), per_hit.end());
  std::sort(bare.begin(), bare.end());
  return std::max(0.0, per_hit[1] - bare[1]);
}

}  // namespace goerrprof::profiler
