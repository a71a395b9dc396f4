#include "symbolizer/load_bias.h"

#include <sys/sysmacros.h>
#include <unistd.h>

#include <cstdio>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "base/read_file.h"

namespace goerrprof::symbolizer {

// Each mapping's bias comes from the PT_LOAD it maps:
// runtime(v) = start + (v - seg.vaddr) + (seg.offset - pgoff).
absl::StatusOr<uint64_t> LoadBias(pid_t pid, const struct stat& exe, const std::string& exe_link,
                                  const ElfFile& elf, MappedFile* mapped) {
  absl::StatusOr<std::string> maps = ReadWholeFile(absl::StrCat("/proc/", pid, "/maps"));
  if (!maps.ok()) return absl::NotFoundError(absl::StrCat("process ", pid, " has exited"));
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  std::optional<uint64_t> bias;
  for (absl::string_view line : absl::StrSplit(*maps, '\n', absl::SkipEmpty())) {
    std::string l(line);
    unsigned long start = 0, end = 0, pgoff = 0, inode = 0;
    unsigned int major_no = 0, minor_no = 0;
    char perms[8] = {0};
    int consumed = 0;
    if (sscanf(l.c_str(), "%lx-%lx %7s %lx %x:%x %lu %n", &start, &end, perms, &pgoff, &major_no,
               &minor_no, &inode, &consumed) < 7) {
      continue;
    }
    absl::string_view path = absl::string_view(l).substr(consumed);
    absl::ConsumeSuffix(&path, " (deleted)");
    bool same_file = (inode == exe.st_ino && major_no == major(exe.st_dev) &&
                      minor_no == minor(exe.st_dev)) ||
                     (!exe_link.empty() && path == exe_link);
    if (!same_file) continue;
    if (mapped) *mapped = MappedFile{major_no, minor_no, inode, start};
    for (const ElfSegment& seg : elf.loads()) {
      if ((seg.offset & ~(page - 1)) != pgoff) continue;
      uint64_t b = start + (seg.offset - pgoff) - seg.vaddr;
      if (bias && *bias != b) {
        return absl::FailedPreconditionError(absl::StrFormat(
            "inconsistent mappings of the executable in pid %d (bias 0x%x vs 0x%x)", pid, *bias,
            b));
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

absl::StatusOr<uint64_t> LoadBias(pid_t pid, const ElfFile& elf) {
  std::string exe = absl::StrCat("/proc/", pid, "/exe");
  struct stat st;
  if (stat(exe.c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat("no process with pid ", pid));
  }
  return LoadBias(pid, st, "", elf);
}

}  // namespace goerrprof::symbolizer
