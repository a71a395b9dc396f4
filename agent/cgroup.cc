#include "agent/cgroup.h"

#include <fcntl.h>
#include <unistd.h>

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace goerrprof::profiler {
namespace {

bool IsLowerHex(absl::string_view s) {
  for (char c : s) {
    if (!absl::ascii_isdigit(c) && (c < 'a' || c > 'f')) return false;
  }
  return !s.empty();
}

bool IsContainerId(absl::string_view s) { return s.size() == 64 && IsLowerHex(s); }

// A pod UID: a UUID (8-4-4-4-12 hex), or the 32 hex digits of a static
// pod's (the kubelet hashes its manifest).
bool IsPodUid(absl::string_view s) {
  if (s.size() == 32) return IsLowerHex(s);
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash != (s[i] == '-')) return false;
    if (!dash && !IsLowerHex(s.substr(i, 1))) return false;
  }
  return true;
}

// Runtimes that name a container's cgroup "<prefix>-<id>[.scope]". Not
// "crio-conmon-<id>": that is CRI-O's monitor process, outside the container.
constexpr absl::string_view kRuntimePrefixes[] = {"docker", "cri-containerd", "crio", "libpod"};

std::vector<absl::string_view> Components(absl::string_view path) {
  return absl::StrSplit(path, '/', absl::SkipEmpty());
}

}  // namespace

std::string ContainerIdFromPath(absl::string_view path) {
  std::vector<absl::string_view> parts = Components(path);
  // Innermost first: a container's own cgroup may hold sub-cgroups
  // (systemd inside it: .../docker-<id>.scope/init.scope).
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
    absl::string_view c = absl::StripSuffix(*it, ".scope");
    if (IsContainerId(c)) return std::string(c);
    size_t dash = c.rfind('-');
    if (dash == absl::string_view::npos || !IsContainerId(c.substr(dash + 1))) continue;
    for (absl::string_view prefix : kRuntimePrefixes) {
      if (c.substr(0, dash) == prefix) return std::string(c.substr(dash + 1));
    }
  }
  return "";
}

std::string PodUidFromPath(absl::string_view path) {
  if (!absl::StrContains(path, "kubepods")) return "";
  std::vector<absl::string_view> parts = Components(path);
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
    absl::string_view c = *it;
    if (absl::ConsumeSuffix(&c, ".slice")) {
      // systemd driver: kubepods[-QOS]-pod<uid>.slice, '-' in the uid
      // written '_' (a dash separates slice levels).
      size_t dash = c.rfind('-');
      if (dash == absl::string_view::npos) continue;
      c = c.substr(dash + 1);
      if (!absl::ConsumePrefix(&c, "pod")) continue;
      std::string uid = absl::StrReplaceAll(c, {{"_", "-"}});
      if (IsPodUid(uid)) return uid;
    } else if (absl::ConsumePrefix(&c, "pod") && IsPodUid(c)) {
      return std::string(c);  // cgroupfs driver: /kubepods/QOS/pod<uid>/
    }
  }
  return "";
}

CgroupIdentity ParseCgroupFile(absl::string_view text) {
  std::string v2, systemd, first;
  bool have_v2 = false, have_systemd = false, have_first = false;
  std::vector<std::string> paths;  // v2 first, then v1 in order
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    // "ID:CONTROLLERS:PATH"; the path itself may hold ':'.
    std::vector<absl::string_view> f = absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (f.size() != 3) continue;
    std::string path(f[2]);
    if (f[0] == "0" && f[1].empty()) {
      v2 = path;
      have_v2 = true;
      paths.insert(paths.begin(), path);
      continue;
    }
    if (f[1] == "name=systemd" && !have_systemd) {
      systemd = path;
      have_systemd = true;
    }
    if (!have_first) {
      first = path;
      have_first = true;
    }
    paths.push_back(path);
  }
  CgroupIdentity id;
  id.path = have_v2 ? v2 : have_systemd ? systemd : first;
  for (const std::string& p : paths) {
    if (id.container_id.empty()) {
      id.container_id = ContainerIdFromPath(p);
      // The path that names the container is the one to select by (a
      // hybrid host's v2 path may be "/" while v1 ones name it).
      if (!id.container_id.empty()) id.path = p;
    }
    if (id.pod_uid.empty()) id.pod_uid = PodUidFromPath(p);
  }
  return id;
}

CgroupIdentity ReadCgroup(const std::string& proc_dir, pid_t pid) {
  int fd = open(absl::StrCat(proc_dir, "/", pid, "/cgroup").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  // A few hundred bytes in practice; 16 KiB bounds a pathological one.
  std::string text;
  char buf[4096];
  ssize_t n;
  while (text.size() < (16 << 10) && (n = read(fd, buf, sizeof(buf))) > 0) {
    text.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return ParseCgroupFile(text);
}

}  // namespace goerrprof::profiler
