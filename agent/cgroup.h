// Which container a process runs in, from /proc/PID/cgroup: its cgroup
// path, the container runtime's 64-hex container ID and the Kubernetes pod
// UID, when the path names them (docker, containerd/CRI, CRI-O, under the
// systemd or the cgroupfs driver). Nothing is asked of a runtime: a path
// that names no container gives none.
#ifndef GOERRPROF_AGENT_CGROUP_H_
#define GOERRPROF_AGENT_CGROUP_H_

#include <sys/types.h>

#include <string>

#include "absl/strings/string_view.h"

namespace goerrprof::profiler {

struct CgroupIdentity {
  // The unified (v2) hierarchy's path ("0::/..."); on a v1-only host the
  // name=systemd hierarchy's, else the first line's. "" when unknown.
  std::string path;
  std::string container_id;  // 64 lowercase hex digits, or ""
  std::string pod_uid;       // "8d0c...-...", with dashes, or ""
};

// The contents of /proc/PID/cgroup, one "ID:CONTROLLERS:PATH" per line.
// The container and pod come from the v2 path first, then from the v1
// lines in order (a hybrid host may show the container only there).
CgroupIdentity ParseCgroupFile(absl::string_view text);

// The innermost path component naming a container: a bare 64-hex ID
// (/docker/<id>, /kubepods/.../<id>) or one after a runtime prefix
// (docker-<id>.scope, cri-containerd-<id>.scope, crio-<id>.scope,
// libpod-<id>.scope). "" when none.
std::string ContainerIdFromPath(absl::string_view path);
// The pod UID of a kubelet path: kubepods-burstable-pod<uid, '_' for
// '-'>.slice (systemd driver) or /kubepods/burstable/pod<uid>/ (cgroupfs).
std::string PodUidFromPath(absl::string_view path);

// ParseCgroupFile of proc_dir/PID/cgroup; empty when unreadable.
CgroupIdentity ReadCgroup(const std::string& proc_dir, pid_t pid);

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_AGENT_CGROUP_H_
