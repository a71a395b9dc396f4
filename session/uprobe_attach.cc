#include "session/uprobe_attach.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstddef>
#include <cstdio>
#include <cstring>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "session/kernel_features.h"

namespace goerrprof::profiler {
// Probed, not read from the version: distributions backport it (and the
// fix for its per-thread pid filter, without which it is reported missing).
bool UprobeMultiSupported() { return KernelSupports(KernelFeature::kUprobeMulti); }

int CreateUprobeMultiLink(int prog_fd, const std::string& path,
                          absl::Span<const uint64_t> offsets,
                          absl::Span<const uint64_t> cookies, pid_t pid) {
  return RawUprobeMultiLinkCreate(prog_fd, path.c_str(), offsets, cookies, pid);
}

uint64_t SumPerCpu(const bpf_map* map, uint32_t key) {
  int ncpus = libbpf_num_possible_cpus();
  if (ncpus <= 0 || map == nullptr) return 0;
  std::vector<uint64_t> vals(static_cast<size_t>(ncpus));
  if (bpf_map__lookup_elem(map, &key, sizeof(key), vals.data(), vals.size() * sizeof(uint64_t),
                           0) != 0) {
    return 0;
  }
  uint64_t sum = 0;
  for (uint64_t v : vals) sum += v;
  return sum;
}

uint32_t ProgramId(const bpf_program* prog) {
  bpf_prog_info info;
  std::memset(&info, 0, sizeof(info));
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &len) != 0) return 0;
  return info.id;
}

uint32_t RoundUpPow2(uint64_t v, uint64_t min) {
  uint64_t r = min;
  while (r < v && r < (1ull << 31)) r <<= 1;
  return static_cast<uint32_t>(r);
}

}  // namespace goerrprof::profiler
