#include "agent/proc_scan.h"

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <utility>
#include <fstream>

#if defined(__SANITIZE_ADDRESS__)
#define GEP_ASAN_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define GEP_ASAN_BUILD 1
#endif
#endif
#ifdef GEP_ASAN_BUILD
// The sanitizer runtime's count (its header is not installed everywhere).
extern "C" size_t __sanitizer_get_current_allocated_bytes();
#endif

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace goerrprof::profiler {

uint64_t SelfHeapBytes() {
#ifdef GEP_ASAN_BUILD
  return __sanitizer_get_current_allocated_bytes();
#else
  struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
#endif
}

BpfMemory SelfBpfMemory() {
  BpfMemory m;
  absl::flat_hash_set<std::pair<bool, uint64_t>> seen;  // (is map, id)
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return m;
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    char target[64];
    const std::string fd = e->d_name;
    ssize_t n = readlink(("/proc/self/fd/" + fd).c_str(), target, sizeof(target) - 1);
    if (n <= 0) continue;
    const absl::string_view kind(target, static_cast<size_t>(n));
    const bool map = kind == "anon_inode:bpf-map";
    if (kind == "anon_inode:bpf_link") {
      ++m.links;
      continue;
    }
    if (kind == "anon_inode:[perf_event]") {
      ++m.perf_events;
      continue;
    }
    if (!map && kind != "anon_inode:bpf-prog") continue;
    std::ifstream info("/proc/self/fdinfo/" + fd);
    std::string line;
    uint64_t id = 0, memlock = 0, type = 0, entries = 0;
    while (std::getline(info, line)) {
      absl::string_view v = line;
      if (absl::ConsumePrefix(&v, map ? "map_id:" : "prog_id:")) {
        (void)absl::SimpleAtoi(absl::StripAsciiWhitespace(v), &id);
      } else if (absl::ConsumePrefix(&v, "memlock:")) {
        (void)absl::SimpleAtoi(absl::StripAsciiWhitespace(v), &memlock);
      } else if (absl::ConsumePrefix(&v, "map_type:")) {
        (void)absl::SimpleAtoi(absl::StripAsciiWhitespace(v), &type);
      } else if (absl::ConsumePrefix(&v, "max_entries:")) {
        (void)absl::SimpleAtoi(absl::StripAsciiWhitespace(v), &entries);
      }
    }
    // Linux 5.11-6.3 estimate memlock from key and value sizes, both 0 for
    // a ring buffer (BPF_MAP_TYPE_RINGBUF, 27): its data pages at least.
    if (map && type == 27) memlock = std::max(memlock, entries);
    if (id == 0 || !seen.insert({map, id}).second) continue;
    (map ? m.map_bytes : m.program_bytes) += memlock;
    ++(map ? m.maps : m.programs);
  }
  closedir(dir);
  return m;
}

uint64_t SelfResidentBytes() {
  // statm's second field: resident pages.
  std::ifstream statm("/proc/self/statm");
  unsigned long size = 0, resident = 0;
  if (!(statm >> size >> resident)) return 0;
  return uint64_t{resident} * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}
namespace {

// A small /proc file in one read: stat is well under a page.
bool ReadSmall(const std::string& path, std::string* out) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[1024];
  ssize_t n = read(fd, buf, sizeof(buf));
  close(fd);
  if (n <= 0) return false;
  out->assign(buf, static_cast<size_t>(n));
  return true;
}

}  // namespace

bool ParseProcStat(const std::string& stat, pid_t* ppid, uint64_t* start_time) {
  size_t close_paren = stat.rfind(')');
  if (close_paren == std::string::npos) return false;
  // Fields from 3 (state) on, space separated.
  std::vector<absl::string_view> f =
      absl::StrSplit(absl::string_view(stat).substr(close_paren + 1), ' ', absl::SkipEmpty());
  // f[0] is field 3: field N is f[N - 3].
  if (f.size() < 20) return false;
  int64_t parent = 0;
  if (!absl::SimpleAtoi(f[1], &parent) || !absl::SimpleAtoi(f[19], start_time)) return false;
  *ppid = static_cast<pid_t>(parent);
  return true;
}

std::optional<ProcEntry> ReadProcEntry(const std::string& proc_dir, pid_t pid) {
  ProcEntry e;
  e.pid = pid;
  std::string text;
  if (!ReadSmall(absl::StrCat(proc_dir, "/", pid, "/stat"), &text)) return std::nullopt;
  if (!ParseProcStat(text, &e.ppid, &e.start_time)) return std::nullopt;
  struct stat st;
  // stat() follows the magic link to the very inode the process runs, in
  // whatever mount namespace it lives.
  if (stat(absl::StrCat(proc_dir, "/", pid, "/exe").c_str(), &st) == 0) {
    e.exe_key = absl::StrCat(st.st_dev, ":", st.st_ino, ":", st.st_mtim.tv_sec, ".",
                             st.st_mtim.tv_nsec);
  }
  return e;
}

std::vector<ProcEntry> ScanProcesses(const std::string& proc_dir) {
  std::vector<ProcEntry> out;
  DIR* d = opendir(proc_dir.c_str());
  if (d == nullptr) return out;
  while (dirent* de = readdir(d)) {
    int64_t pid = 0;
    if (!absl::SimpleAtoi(de->d_name, &pid) || pid <= 0) continue;
    if (auto e = ReadProcEntry(proc_dir, static_cast<pid_t>(pid))) out.push_back(std::move(*e));
  }
  closedir(d);
  return out;
}

std::string ExecutablePath(const std::string& proc_dir, pid_t pid) {
  char target[PATH_MAX];
  ssize_t n = readlink(absl::StrCat(proc_dir, "/", pid, "/exe").c_str(), target,
                       sizeof(target) - 1);
  if (n <= 0) return "";
  std::string path(target, static_cast<size_t>(n));
  constexpr absl::string_view kDeleted = " (deleted)";
  if (absl::EndsWith(path, kDeleted)) path.resize(path.size() - kDeleted.size());
  return path;
}

}  // namespace goerrprof::profiler
