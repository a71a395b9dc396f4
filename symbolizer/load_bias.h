// Where a process has loaded an executable: the bias between the ELF's
// virtual addresses and the process's (runtime = vaddr + bias), from the
// process's mappings of the file's PT_LOAD segments. Non-PIE: 0.
#ifndef GOERRPROF_SYMBOLIZER_LOAD_BIAS_H_
#define GOERRPROF_SYMBOLIZER_LOAD_BIAS_H_

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "symbolizer/elf_file.h"

namespace goerrprof::symbolizer {

// Mappings are matched to the file by device and inode of `exe`, or by
// `exe_link` (the path /proc/PID/exe names) when given.
// `mapped` (optional): the device and inode the mappings name, which on an
// overlay filesystem (a container's) are the underlying file's, the one
// uprobes attach to, where stat() of the executable names the overlay's.
struct MappedFile {
  uint32_t major = 0, minor = 0;
  uint64_t ino = 0;
  uint64_t start = 0;  // where one of its mappings starts
};
absl::StatusOr<uint64_t> LoadBias(pid_t pid, const struct stat& exe, const std::string& exe_link,
                                  const ElfFile& elf, MappedFile* mapped = nullptr);

// The same for the process's own executable (/proc/PID/exe).
absl::StatusOr<uint64_t> LoadBias(pid_t pid, const ElfFile& elf);

}  // namespace goerrprof::symbolizer

#endif  // GOERRPROF_SYMBOLIZER_LOAD_BIAS_H_
