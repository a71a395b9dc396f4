#include "profiler/uprobe_attach.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstddef>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "profiler/kernel_features.h"

namespace goerrprof::profiler {
// Each mapping's bias comes from the PT_LOAD it maps:
// runtime(v) = start + (v - seg.vaddr) + (seg.offset - pgoff).
absl::StatusOr<uint64_t> LoadBias(pid_t pid, const struct stat& exe,
                                  const std::string& exe_link,
                                  const symbolizer::ElfFile& elf) {
  std::string maps_path = absl::StrCat("/proc/", pid, "/maps");
  std::ifstream in(maps_path);
  if (!in) return absl::NotFoundError(absl::StrCat("process ", pid, " has exited"));
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  std::optional<uint64_t> bias;
  std::string line;
  while (std::getline(in, line)) {
    unsigned long start = 0, end = 0, pgoff = 0, inode = 0;
    unsigned int major_no = 0, minor_no = 0;
    char perms[8] = {0};
    int consumed = 0;
    if (sscanf(line.c_str(), "%lx-%lx %7s %lx %x:%x %lu %n", &start, &end, perms, &pgoff,
               &major_no, &minor_no, &inode, &consumed) < 7) {
      continue;
    }
    absl::string_view path = absl::string_view(line).substr(consumed);
    absl::ConsumeSuffix(&path, " (deleted)");
    bool same_file = (inode == exe.st_ino && major_no == major(exe.st_dev) &&
                      minor_no == minor(exe.st_dev)) ||
                     (!exe_link.empty() && path == exe_link);
    if (!same_file) continue;
    for (const symbolizer::ElfSegment& seg : elf.loads()) {
      if ((seg.offset & ~(page - 1)) != pgoff) continue;
      uint64_t b = start + (seg.offset - pgoff) - seg.vaddr;
      if (bias && *bias != b) {
        return absl::FailedPreconditionError(absl::StrFormat(
            "inconsistent mappings of the executable in pid %d (bias 0x%x vs 0x%x)", pid,
            *bias, b));
      }
      bias = b;
      break;
    }
  }
  if (!bias) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the executable is not mapped in process ", pid, " (exited, or not this binary?)"));
  }
  return *bias;
}

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
