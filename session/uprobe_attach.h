// What the BPF sessions of goerrprof (error probes, park probes) share
// about attaching to a live process: where its executable is loaded, one
// uprobe_multi link for many probes, and reading their programs' state.
#ifndef GOERRPROF_SESSION_UPROBE_ATTACH_H_
#define GOERRPROF_SESSION_UPROBE_ATTACH_H_

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "symbolizer/elf_file.h"

struct bpf_program;
struct bpf_map;

namespace goerrprof::profiler {

// BPF_TRACE_UPROBE_MULTI (Linux 6.6 UAPI; Debian 12's headers predate it).
inline constexpr uint32_t kTraceUprobeMulti = 48;

// Whether uprobe_multi links work here, filtering by process (probed once:
// Linux 6.6 brought them, 6.6.35 / 6.9.5 / 6.10 fixed their pid filter).
bool UprobeMultiSupported();

// One uprobe_multi link of prog_fd at `offsets` (file offsets in `path`)
// with their cookies, for pid only; entry probes only (never a uretprobe on
// Go code). Returns the link fd, or -errno.
int CreateUprobeMultiLink(int prog_fd, const std::string& path,
                          absl::Span<const uint64_t> offsets,
                          absl::Span<const uint64_t> cookies, pid_t pid);

// A per-CPU u64 array's slot summed over CPUs; 0 when unreadable.
uint64_t SumPerCpu(const bpf_map* map, uint32_t key);

// The kernel id of a loaded program; 0 when unknown.
uint32_t ProgramId(const bpf_program* prog);

// The smallest power of two >= v and >= min (a ring buffer size).
uint32_t RoundUpPow2(uint64_t v, uint64_t min);

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_SESSION_UPROBE_ATTACH_H_
