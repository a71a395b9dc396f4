// Containers for the agent, without BPF: /proc/PID/cgroup files as
// docker, containerd, CRI-O, podman and the kubelet (both cgroup drivers)
// write them, parsed to exact paths, container IDs and pod UIDs; and the
// --include-cgroup / --exclude-cgroup filters on a fake /proc.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "agent/agent.h"
#include "agent/cgroup.h"
#include "agent/goroutine_page.h"
#include "gtest/gtest.h"

namespace goerrprof::profiler {
namespace {

// Two made-up IDs in the runtimes' shape (64 lowercase hex digits).
const std::string kId = "3f4b8e2c9a1d7f6e5b4c3a2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";
const std::string kId2 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const std::string kPod = "0f3b3a63-6a55-4c1d-8f1e-6e1fbd2d7b1a";
const std::string kPodSystemd = "0f3b3a63_6a55_4c1d_8f1e_6e1fbd2d7b1a";  // the slice's spelling

struct Case {
  const char* name;
  std::string file;  // /proc/PID/cgroup
  std::string path, container_id, pod_uid;
};

TEST(Cgroup, ParsesRuntimeLayouts) {
  const Case cases[] = {
      {"docker, systemd driver, cgroup v2", "0::/system.slice/docker-" + kId + ".scope\n",
       "/system.slice/docker-" + kId + ".scope", kId, ""},
      {"docker, cgroupfs driver, cgroup v1",
       "12:pids:/docker/" + kId + "\n11:memory:/docker/" + kId + "\n1:name=systemd:/docker/" +
           kId + "\n",
       "/docker/" + kId, kId, ""},
      {"kubelet systemd driver, containerd, burstable",
       "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + kPodSystemd +
           ".slice/cri-containerd-" + kId + ".scope\n",
       "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + kPodSystemd +
           ".slice/cri-containerd-" + kId + ".scope",
       kId, kPod},
      {"kubelet systemd driver, CRI-O, guaranteed",
       "0::/kubepods.slice/kubepods-pod" + kPodSystemd + ".slice/crio-" + kId + ".scope\n",
       "/kubepods.slice/kubepods-pod" + kPodSystemd + ".slice/crio-" + kId + ".scope", kId, kPod},
      {"kubelet cgroupfs driver, cgroup v1, besteffort",
       "11:memory:/kubepods/besteffort/pod" + kPod + "/" + kId +
           "\n3:cpuset:/kubepods/besteffort/pod" + kPod + "/" + kId + "\n",
       "/kubepods/besteffort/pod" + kPod + "/" + kId, kId, kPod},
      {"kubelet cgroupfs driver, cgroup v2, guaranteed",
       "0::/kubepods/pod" + kPod + "/" + kId + "\n",
       "/kubepods/pod" + kPod + "/" + kId, kId, kPod},
      {"static pod (32-hex uid)",
       "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod"
       "6e1fbd2d7b1a0f3b3a636a554c1d8f1e.slice/cri-containerd-" + kId + ".scope\n",
       "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod"
       "6e1fbd2d7b1a0f3b3a636a554c1d8f1e.slice/cri-containerd-" + kId + ".scope",
       kId, "6e1fbd2d7b1a0f3b3a636a554c1d8f1e"},
      {"the pod's own slice (no container yet)",
       "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + kPodSystemd +
           ".slice\n",
       "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + kPodSystemd + ".slice",
       "", kPod},
      {"podman, rootless, sub-cgroup of the container",
       "0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + kId +
           ".scope/container\n",
       "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + kId +
           ".scope/container",
       kId, ""},
      {"systemd inside a docker container",
       "0::/system.slice/docker-" + kId + ".scope/init.scope\n",
       "/system.slice/docker-" + kId + ".scope/init.scope", kId, ""},
      {"innermost ID wins (docker in docker)",
       "0::/docker/" + kId2 + "/docker/" + kId + "\n", "/docker/" + kId2 + "/docker/" + kId, kId,
       ""},
      {"CRI-O's conmon: outside the container",
       "0::/kubepods.slice/kubepods-pod" + kPodSystemd + ".slice/crio-conmon-" + kId + ".scope\n",
       "/kubepods.slice/kubepods-pod" + kPodSystemd + ".slice/crio-conmon-" + kId + ".scope", "",
       kPod},
      {"hybrid host: v2 at the root, v1 names the container",
       "4:memory:/docker/" + kId + "\n1:name=systemd:/docker/" + kId + "\n0::/\n",
       "/docker/" + kId, kId, ""},
      {"hybrid host, no container (a sandbox's 32-hex v1 path is no ID)",
       "9:name=systemd:/\n4:memory:/process_api/b74a59e4ab95fcc31f9c1f26b8c7d739\n0::/\n", "/", "",
       ""},
      {"host session", "0::/user.slice/user-1000.slice/session-3.scope\n",
       "/user.slice/user-1000.slice/session-3.scope", "", ""},
      {"v1 only: the name=systemd hierarchy's path",
       "4:memory:/system.slice\n1:name=systemd:/system.slice/ssh.service\n",
       "/system.slice/ssh.service", "", ""},
      {"uppercase or short IDs are not runtime IDs",
       "0::/docker/" + std::string(64, 'A') + "/docker-" + kId.substr(1) + ".scope\n",
       "/docker/" + std::string(64, 'A') + "/docker-" + kId.substr(1) + ".scope", "", ""},
      {"unknown runtime prefix", "0::/system.slice/mything-" + kId + ".scope\n",
       "/system.slice/mything-" + kId + ".scope", "", ""},
      {"a pod uid outside kubepods is not one", "0::/pod" + kPod + "/x\n", "/pod" + kPod + "/x",
       "", ""},
      {"empty", "", "", "", ""},
      {"garbage lines skipped", "nonsense\n0::/docker/" + kId + "\n", "/docker/" + kId, kId, ""},
  };
  for (const Case& c : cases) {
    CgroupIdentity id = ParseCgroupFile(c.file);
    EXPECT_EQ(id.path, c.path) << c.name;
    EXPECT_EQ(id.container_id, c.container_id) << c.name;
    EXPECT_EQ(id.pod_uid, c.pod_uid) << c.name;
  }
}

TEST(Cgroup, ReadsOurOwn) {
  // Whatever this machine is, our own file parses and a path is found.
  CgroupIdentity id = ReadCgroup("/proc", getpid());
  EXPECT_FALSE(id.path.empty());
  EXPECT_EQ(ReadCgroup("/proc", 0).path, "");
}

TEST(GoroutinePage, PidIsChecked) {
  EXPECT_EQ(*GoroutinePagePid("/debug/pprof/goroutines?pid=42"), 42);
  EXPECT_EQ(*GoroutinePagePid("/debug/pprof/goroutines?x=1&pid=7"), 7);
  for (const char* bad : {"/debug/pprof/goroutines", "/debug/pprof/goroutines?pid=",
                          "/debug/pprof/goroutines?pid=0", "/debug/pprof/goroutines?pid=-3",
                          "/debug/pprof/goroutines?pid=12x", "/debug/pprof/goroutines?pid=1e99"}) {
    EXPECT_TRUE(absl::IsInvalidArgument(GoroutinePagePid(bad).status())) << bad;
  }
}

// A fake /proc: processes whose executables are not ELF, each with its own
// cgroup file. Their pids are above any pid_max (2^22), so the Recorder,
// which plans through the real /proc, finds none of them: each is either
// excluded (never opened) or counted not Go.
class FakeCgroupProc : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(::testing::TempDir(), "fakeproc-cgroup-", getpid());
    std::filesystem::remove_all(dir_);
    Add(kPid, "/srv/api",
        "0::/kubepods.slice/kubepods-pod" + kPodSystemd + ".slice/cri-containerd-" + kId +
            ".scope\n");
    Add(kPid + 1, "/srv/batch", "0::/system.slice/docker-" + kId2 + ".scope\n");
    Add(kPid + 2, "/usr/bin/host-tool", "0::/user.slice/user-0.slice/session-1.scope\n");
    Add(kPid + 3, "/usr/bin/no-cgroup-file", "");  // unreadable: the path ""
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void Add(int pid, const std::string& exe, const std::string& cgroup) {
    std::string d = absl::StrCat(dir_, "/", pid);
    std::filesystem::create_directories(d + exe.substr(0, exe.rfind('/')));
    std::ofstream(d + exe) << "not an ELF";
    std::ofstream(d + "/stat") << pid << " (x) S 1 " << pid
                               << " 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 5000 0 0";
    if (!cgroup.empty()) std::ofstream(d + "/cgroup") << cgroup;
    std::filesystem::create_symlink(d + exe, d + "/exe");
  }
  // (excluded, not Go) after one scan.
  std::pair<size_t, size_t> Scan(const std::string& include, const std::string& exclude,
                                 const std::string& include_exe = "") {
    AgentOptions o;
    o.proc_dir = dir_;
    o.include = include_exe;
    o.include_cgroup = include;
    o.exclude_cgroup = exclude;
    auto a = Agent::Create(o);
    EXPECT_TRUE(a.ok()) << a.status();
    if (!a.ok()) return {};
    (*a)->Rescan();
    auto n = (*a)->StatusCounts();
    return {n[static_cast<size_t>(ProcessStatus::kExcluded)],
            n[static_cast<size_t>(ProcessStatus::kNotGo)]};
  }
  static constexpr int kPid = (1 << 22) + 100;
  std::string dir_;
};

TEST_F(FakeCgroupProc, NoFilterTakesAll) { EXPECT_EQ(Scan("", ""), std::make_pair(0ul, 4ul)); }

TEST_F(FakeCgroupProc, IncludeMatchesThePathInFull) {
  // Kubernetes pods only.
  EXPECT_EQ(Scan("/kubepods\\.slice/.*", ""), std::make_pair(3ul, 1ul));
  // In full: a fragment matches nothing.
  EXPECT_EQ(Scan("kubepods", ""), std::make_pair(4ul, 0ul));
  // Any container of a runtime: docker's.
  EXPECT_EQ(Scan(".*/docker-[0-9a-f]{64}\\.scope", ""), std::make_pair(3ul, 1ul));
}

TEST_F(FakeCgroupProc, ExcludeWinsAndCombinesWithExecutableFilters) {
  EXPECT_EQ(Scan("", ".*\\.scope"), std::make_pair(3ul, 1ul));  // only the one without a file
  // ".*" takes the unreadable one too (its path is "").
  EXPECT_EQ(Scan(".*", "/system\\.slice/.*"), std::make_pair(1ul, 3ul));
  // Both kinds must pass: the executable filter takes api and batch, the
  // cgroup one keeps batch's docker container out.
  EXPECT_EQ(Scan("", ".*docker-.*", "api|batch"), std::make_pair(3ul, 1ul));
}

TEST(AgentOptions, BadCgroupRegexIsRefused) {
  AgentOptions o;
  o.exclude_cgroup = "[";
  auto a = Agent::Create(o);
  EXPECT_TRUE(absl::IsInvalidArgument(a.status())) << a.status();
  EXPECT_NE(a.status().message().find("--exclude-cgroup"), std::string::npos) << a.status();
}

}  // namespace
}  // namespace goerrprof::profiler
