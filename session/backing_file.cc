#include "session/backing_file.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <unistd.h>

#include <cstring>
#include <mutex>
#include <string>

#include "absl/strings/str_cat.h"
#include "base/errno.h"
#include "bpf/mapped_files.skel.h"
#include "bpf/mapped_files_abi.h"
#include "session/libbpf_log.h"

namespace goerrprof::profiler {
namespace {

// Loaded once per goerrprof process, on first use: the program is the same
// for every target; each call attaches it filtered to one process.
struct Loaded {
  mapped_files_bpf* skel = nullptr;
  std::string error;  // why it could not be loaded
};

Loaded& Program() {
  static Loaded* loaded = [] {
    auto* l = new Loaded;
    ScopedLibbpfLog log;
    l->skel = mapped_files_bpf__open_and_load();
    if (!l->skel) {
      const int err = errno;
      l->error = absl::StrCat("cannot load the mapped-files iterator: ", Errno(err), " (",
                              log.Tail(2), ")");
    }
    return l;
  }();
  return *loaded;
}

}  // namespace

absl::StatusOr<BackingFile> BackingFileAt(pid_t pid, uint64_t start) {
  static std::mutex mu;  // libbpf's log capture and the iterator are per call
  std::lock_guard<std::mutex> lock(mu);
  Loaded& p = Program();
  if (!p.skel) return absl::UnavailableError(p.error);
  union bpf_iter_link_info info = {};
  info.task.pid = static_cast<__u32>(pid);
  LIBBPF_OPTS(bpf_iter_attach_opts, opts, .link_info = &info, .link_info_len = sizeof(info));
  bpf_link* link = bpf_program__attach_iter(p.skel->progs.gmf_mapping, &opts);
  if (!link) {
    return absl::UnavailableError(
        absl::StrCat("cannot attach the mapped-files iterator: ", Errno(errno)));
  }
  int fd = bpf_iter_create(bpf_link__fd(link));
  if (fd < 0) {
    int err = errno;
    bpf_link__destroy(link);
    return absl::UnavailableError(absl::StrCat("cannot start the mapped-files iterator: ",
                                               Errno(err)));
  }
  // One record per file-backed mapping (at most vm.max_map_count of them);
  // a read may end inside one, so the rest waits for the next.
  gmf_record rec;
  std::string tail;
  absl::StatusOr<BackingFile> found =
      absl::NotFoundError(absl::StrCat("no mapping of process ", pid, " starts at 0x",
                                       absl::Hex(start)));
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      found = absl::UnavailableError(absl::StrCat("reading the mapped-files iterator: ",
                                                  Errno(errno)));
      break;
    }
    if (n == 0) break;
    tail.append(buf, static_cast<size_t>(n));
    size_t used = 0;
    for (; tail.size() - used >= sizeof(rec); used += sizeof(rec)) {
      memcpy(&rec, tail.data() + used, sizeof(rec));
      if (rec.start == start && rec.ino != 0 && !found.ok()) {
        found = BackingFile{rec.dev >> 20, rec.dev & ((1u << 20) - 1), rec.ino};
      }
    }
    tail.erase(0, used);
  }
  close(fd);
  bpf_link__destroy(link);
  return found;
}

}  // namespace goerrprof::profiler
