// `goerrprof agent` end to end: started first, it must find two errgen
// processes started after it, count exactly the errors they print as their
// truth, and show them attached while they live and detached after.
#include <signal.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "diff/profile_diff.h"
#include "pprof/profile_file.h"
#include "gtest/gtest.h"
#include "tests/agent/agent_fixture.h"

namespace goerrprof::testing {
namespace {

// Error creations by their error.message label (samples without one left
// out).
std::map<std::string, int64_t> MessageCounts(const perftools::profiles::Profile& p) {
  std::map<std::string, int64_t> out;
  for (const auto& sample : p.sample()) {
    for (const auto& label : sample.label()) {
      if (p.string_table(label.key()) == "error.message" && sample.value_size() > 0) {
        out[p.string_table(label.str())] += sample.value(0);
      }
    }
  }
  return out;
}

// The ids of the BPF maps `pid` holds open (its fds' fdinfo) that cost
// memory by the megabyte: ring buffers, and maps of values over 16 KiB
// (the error probe's per-CPU scratch).
std::set<uint32_t> LargeMapIds(pid_t pid) {
  std::set<uint32_t> ids;
  const std::string fds = absl::StrCat("/proc/", pid, "/fd");
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(fds, ec)) {
    std::error_code lec;
    if (std::filesystem::read_symlink(entry.path(), lec).string() != "anon_inode:bpf-map") {
      continue;
    }
    std::ifstream in(absl::StrCat("/proc/", pid, "/fdinfo/", entry.path().filename().string()));
    std::string line;
    bool large = false;
    uint64_t id = 0, value_size = 0;
    auto field = [&](absl::string_view name, uint64_t* out) {
      absl::string_view rest = line;
      if (absl::ConsumePrefix(&rest, name)) {
        return absl::SimpleAtoi(absl::StripAsciiWhitespace(rest), out);
      }
      return false;
    };
    while (std::getline(in, line)) {
      uint64_t type = 0;
      // BPF_MAP_TYPE_RINGBUF is 27.
      if (field("map_type:", &type) && type == 27) large = true;
      if (field("value_size:", &value_size) && value_size > 16384) large = true;
      field("map_id:", &id);
    }
    if (large && id != 0) ids.insert(static_cast<uint32_t>(id));
  }
  return ids;
}

TEST_F(AgentTest, CountsEqualErrgenTruth) {
  StartAgent();
  ASSERT_NE(agent_, nullptr);
  // Nothing of ours runs yet: nothing attached.
  WaitAttachedGauge(0);

  // Started after the agent, held before their first error until attached.
  auto a = StartStorm(300, 5);
  auto b = StartStorm(200, 3);
  ASSERT_TRUE(a && b);
  WaitAttached({a->pid(), b->pid()});
  {
    auto page = HttpGet(address_, "/metrics");
    ASSERT_TRUE(page.ok()) << page.status();
    auto samples = ParseMetrics(*page);
    ASSERT_TRUE(samples.ok()) << samples.status();
    EXPECT_EQ(*MetricValue(*samples, "goerrprof_attached_processes"), 2) << *page;
    EXPECT_EQ(*MetricValue(*samples, "goerrprof_processes", {{"status", "attached"}}), 2);
    EXPECT_GT(*MetricValue(*samples, "goerrprof_probes"), 0);
    // Everything else on this machine is outside --include.
    EXPECT_GT(*MetricValue(*samples, "goerrprof_processes", {{"status", "excluded"}}), 0);
    EXPECT_TRUE(ScrapeErrors().empty()) << "errors before errgen made any";
  }

  SiteCounts want;
  FinishStorms({a.get(), b.get()}, &want);
  ASSERT_EQ((want[{"*fmt.wrapError", "main.stormSite"}]), 500);
  // Both exited: their sessions are drained and closed, every record read
  // (none lost behind the other's, see Recorder::ReadyToClose).
  WaitAttachedGauge(0);
  EXPECT_EQ(Gauge("goerrprof_dropped_total"), 0);
  EXPECT_EQ(ScrapeErrors(), want);

  StopAgent();
}

// With the overhead budget on, a storm in a process that lives on shows in
// /metrics with its estimate while the process lives (not only once it
// exits): within 10% of errgen's truth, from the allocation counts.
TEST_F(AgentTest, StormEstimateShowsWhileTheProcessLives) {
  StartAgent({"--max-overhead=1%"});
  ASSERT_NE(agent_, nullptr);
  auto e = StartErrgen({"-storm", "2000000", "-calm", "4", "-hold"});
  ASSERT_NE(e, nullptr);
  WaitAttached({e->pid()});
  ASSERT_TRUE(e->Write("go\n").ok());
  SiteCounts truth;
  ASSERT_NO_FATAL_FAILURE(AddHeldTruth(*e, &truth));
  const SiteCounts::key_type storm{"*fmt.wrapError", "main.stormSite"};
  ASSERT_EQ(truth[storm], 2000000);
  // The storm is over and errgen holds: the estimate lands within a second
  // of the recorder's polls.
  const int64_t seen = WaitForCount(storm, 1800000);
  EXPECT_NEAR(static_cast<double>(seen), 2000000.0, 200000.0);
  EXPECT_EQ(kill(e->pid(), 0), 0) << "errgen must still be alive";
  EXPECT_EQ(Gauge("goerrprof_attached_processes"), 1);
  ASSERT_TRUE(e->Write("quit\n").ok());
  auto done = e->Finish(kTimeout);
  ASSERT_TRUE(done.ok()) << done.status();
  EXPECT_EQ(done->exit_code, 0) << done->err;
  StopAgent();
}

// Kernel objects do not grow with replicas: the agent holds the same ring
// buffers and per-CPU scratch, the same program, links and maps, with one
// errgen attached as with four, and each one's errors still reach its own
// series exactly.
TEST_F(AgentTest, ReplicasShareOneProgramAndRing) {
  StartAgent();
  ASSERT_NE(agent_, nullptr);
  auto a = StartStorm(30, 2);
  ASSERT_TRUE(a);
  WaitAttached({a->pid()});
  const double map_bytes_one = Gauge("goerrprof_bpf_memory_bytes", {{"kind", "maps"}});
  const double programs_one = Gauge("goerrprof_bpf_objects", {{"kind", "programs"}});
  const double links_one = Gauge("goerrprof_bpf_objects", {{"kind", "links"}});
  const double perf_one = Gauge("goerrprof_bpf_objects", {{"kind", "perf_events"}});
  const std::set<uint32_t> one = LargeMapIds(agent_->pid());
  // The exec follower's ring, the error probes' ring and scratch.
  EXPECT_EQ(one.size(), 3u);
  // errgen's error probe: one program, its links (uprobe_multi shards, or
  // a perf uprobe per probe before 6.6).
  EXPECT_GE(links_one + perf_one, 2);
  std::vector<std::unique_ptr<Child>> more;
  std::vector<pid_t> pids;  // the new ones (a's line is read)
  for (int i = 0; i < 3; ++i) {
    more.push_back(StartStorm(40 + 10 * i, 1 + i));
    ASSERT_TRUE(more.back());
    pids.push_back(more.back()->pid());
  }
  WaitAttached(pids);
  EXPECT_EQ(LargeMapIds(agent_->pid()), one);
  // Replicas of one executable share its program, maps and links: three
  // more processes add no kernel object, and not a byte of map memory.
  EXPECT_EQ(Gauge("goerrprof_bpf_objects", {{"kind", "programs"}}), programs_one);
  EXPECT_EQ(Gauge("goerrprof_bpf_objects", {{"kind", "links"}}), links_one);
  EXPECT_EQ(Gauge("goerrprof_bpf_objects", {{"kind", "perf_events"}}), perf_one);
  EXPECT_EQ(Gauge("goerrprof_bpf_memory_bytes", {{"kind", "maps"}}), map_bytes_one);
  std::printf("agent_test: 4 replicas: %.0f program(s), %.0f links, %.0f perf events, %.0f bytes of maps\n",
              programs_one, links_one, perf_one, map_bytes_one);
  // One after the other: each one exits while the others are still
  // members (CountsEqualErrgenTruth has storms at once).
  SiteCounts want;
  std::vector<Child*> all = {a.get()};
  for (auto& c : more) all.push_back(c.get());
  for (Child* c : all) FinishStorms({c}, &want);
  ASSERT_EQ((want[{"*fmt.wrapError", "main.stormSite"}]), 30 + 40 + 50 + 60);
  WaitAttachedGauge(0);
  EXPECT_EQ(ScrapeErrors(), want);
  StopAgent();
}

// Containers of one image: each runs errgen from an overlay mount of its
// own (own upper layer, own mount namespace) over one shared lower layer,
// the way container runtimes do. uprobes attach to the layer's file, so
// the second container must join the first one's program: no kernel object
// added. Since Linux 6.8 the mappings name each overlay's own inode, and
// only the kernel's view of the mapping finds the shared file.
TEST_F(AgentTest, ContainersOfOneImageShareOneProgram) {
  if (access("/usr/bin/unshare", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/unshare";
  if (ReadFileOrEmpty("/proc/filesystems").find("\toverlay\n") == std::string::npos) {
    GTEST_SKIP() << "this kernel has no overlayfs (not in /proc/filesystems)";
  }
  struct statfs tmp_fs;
  if (statfs(::testing::TempDir().c_str(), &tmp_fs) == 0 && tmp_fs.f_type == 0x794c7630) {
    GTEST_SKIP() << ::testing::TempDir() << " is on overlayfs: no upper layer can be there";
  }
  const std::string root = absl::StrCat(::testing::TempDir(), "image-", getpid());
  const std::string lower = root + "/lower";
  std::error_code ec;
  std::filesystem::remove_all(root, ec);
  ASSERT_TRUE(std::filesystem::create_directories(lower));
  std::filesystem::copy_file(errgen_, lower + "/" + errgen_name_);
  // Another image: the same bytes, another file. Its container must get a
  // program of its own (the key tells files apart, not only overlays).
  ASSERT_TRUE(std::filesystem::create_directories(root + "/lower2"));
  std::filesystem::copy_file(errgen_, root + "/lower2/" + errgen_name_);
  // What a runtime does for a container: its own upper and work dirs, an
  // overlay over the image in a private mount namespace, then exec.
  auto container = [&](int i, const std::string& image) {
    const std::string dir = absl::StrCat(root, "/c", i);
    for (const char* sub : {"/upper", "/work", "/rootfs"}) {
      std::filesystem::create_directories(dir + sub);
    }
    const std::string exe = absl::StrCat(dir, "/rootfs/", errgen_name_);
    return std::vector<std::string>{
        "/usr/bin/unshare", "-m", "--propagation", "private", "sh", "-c",
        absl::StrCat("mount -t overlay overlay -o 'lowerdir=", image, ",upperdir=", dir,
                     "/upper,workdir=", dir, "/work' '", dir, "/rootfs' && shift && exec '", exe,
                     "' \"$@\""),
        "container"};  // "$0"; errgen's own path follows and is shifted away
  };
  StartAgent();
  ASSERT_NE(agent_, nullptr);
  auto a = StartStorm(30, 2, container(1, lower));
  ASSERT_TRUE(a);
  WaitAttached({a->pid()});
  const double programs_one = Gauge("goerrprof_bpf_objects", {{"kind", "programs"}});
  const double links_one = Gauge("goerrprof_bpf_objects", {{"kind", "links"}});
  const double perf_one = Gauge("goerrprof_bpf_objects", {{"kind", "perf_events"}});
  const double map_bytes_one = Gauge("goerrprof_bpf_memory_bytes", {{"kind", "maps"}});
  auto b = StartStorm(40, 3, container(2, lower));
  ASSERT_TRUE(b);
  WaitAttached({b->pid()});
  const std::string maps_a = ReadFileOrEmpty(absl::StrCat("/proc/", a->pid(), "/maps"));
  std::printf("agent_test: container 1's mapping: %s\n",
              maps_a.substr(0, maps_a.find('\n')).c_str());
  EXPECT_EQ(Gauge("goerrprof_bpf_objects", {{"kind", "programs"}}), programs_one);
  EXPECT_EQ(Gauge("goerrprof_bpf_objects", {{"kind", "links"}}), links_one);
  EXPECT_EQ(Gauge("goerrprof_bpf_objects", {{"kind", "perf_events"}}), perf_one);
  EXPECT_EQ(Gauge("goerrprof_bpf_memory_bytes", {{"kind", "maps"}}), map_bytes_one);
  auto c = StartStorm(20, 1, container(3, root + "/lower2"));
  ASSERT_TRUE(c);
  WaitAttached({c->pid()});
  EXPECT_EQ(Gauge("goerrprof_bpf_objects", {{"kind", "programs"}}), programs_one + 1);
  SiteCounts want;
  FinishStorms({a.get()}, &want);
  FinishStorms({b.get()}, &want);
  FinishStorms({c.get()}, &want);
  ASSERT_EQ((want[{"*fmt.wrapError", "main.stormSite"}]), 30 + 40 + 20);
  WaitAttachedGauge(0);
  EXPECT_EQ(ScrapeErrors(), want);
  StopAgent();
  std::filesystem::remove_all(root, ec);
}

// Replicas of a PIE executable (a distribution's build) run it at a load
// bias each (ASLR): they share one program all the same, which rebases
// each hit by its process's bias, and every count stays exact (types,
// sites and checked itabs are found at each one's addresses).
TEST_F(AgentTest, PieReplicasShareOneProgram) {
  std::optional<CorpusBinary> pie = NewestCorpusBinary(false, "errgen", "pie");
  ASSERT_TRUE(pie) << "no PIE errgen in the corpus";
  std::error_code ec;
  std::filesystem::copy_file(CorpusBinaryPath(*pie), errgen_,
                             std::filesystem::copy_options::overwrite_existing, ec);
  ASSERT_FALSE(ec) << ec.message();
  StartAgent({"--messages=full"});
  ASSERT_NE(agent_, nullptr);
  auto a = StartStorm(30, 2);
  ASSERT_TRUE(a);
  WaitAttached({a->pid()});
  const double programs_one = Gauge("goerrprof_bpf_objects", {{"kind", "programs"}});
  const double links_one = Gauge("goerrprof_bpf_objects", {{"kind", "links"}});
  const double perf_one = Gauge("goerrprof_bpf_objects", {{"kind", "perf_events"}});
  std::vector<std::unique_ptr<Child>> more;
  std::vector<pid_t> pids;
  for (int i = 0; i < 2; ++i) {
    more.push_back(StartStorm(40 + 10 * i, 1 + i));
    ASSERT_TRUE(more.back());
    pids.push_back(more.back()->pid());
  }
  WaitAttached(pids);
  // Each at its own address: the test means nothing if ASLR gave them one.
  auto text_start = [&](pid_t pid) {
    for (absl::string_view line :
         absl::StrSplit(ReadFileOrEmpty(absl::StrCat("/proc/", pid, "/maps")), '\n')) {
      if (absl::EndsWith(line, errgen_name_)) return std::string(line.substr(0, line.find('-')));
    }
    return std::string("none");
  };
  const std::set<std::string> at = {text_start(a->pid()), text_start(pids[0]),
                                     text_start(pids[1])};
  EXPECT_EQ(at.size(), 3u);
  EXPECT_EQ(at.count("none"), 0u);
  EXPECT_EQ(Gauge("goerrprof_bpf_objects", {{"kind", "programs"}}), programs_one);
  EXPECT_EQ(Gauge("goerrprof_bpf_objects", {{"kind", "links"}}), links_one);
  EXPECT_EQ(Gauge("goerrprof_bpf_objects", {{"kind", "perf_events"}}), perf_one);
  // Long enough for the slowest kernel matrix guest's three storms.
  WindowRequest window(address_, 15);
  WaitGauge("goerrprof_pprof_windows", 1);
  SiteCounts want;
  std::vector<Child*> all = {a.get()};
  for (auto& c : more) all.push_back(c.get());
  for (Child* c : all) FinishStorms({c}, &want);
  ASSERT_EQ((want[{"*fmt.wrapError", "main.stormSite"}]), 30 + 40 + 50);
  ASSERT_EQ((want[{"*errors.errorString", "main.calmSite"}]), 2 + 1 + 2);
  WaitAttachedGauge(0);
  // By type and creating function (the stacks, rebased per process).
  EXPECT_EQ(ScrapeErrors(false), want);
  EXPECT_EQ(Gauge("goerrprof_dropped_total"), 0);
  // The texts are read by the probe through each type's layout, found at
  // the hit's own bias. Only errgen's own: a replica joins the program as
  // it execs, so the errors its runtime and packages make while they
  // start (dozens on Go 1.19) are recorded too, and no truth counts them.
  absl::StatusOr<std::string> body = window.Body();
  ASSERT_TRUE(body.ok()) << body.status();
  auto profile = profiler::ParseProfile(*body, "window");
  ASSERT_TRUE(profile.ok()) << profile.status();
  std::map<std::string, int64_t> got = MessageCounts(*profile);
  const std::map<std::string, int64_t> made = {
      {"retry: dependency down", 30 + 40 + 50}, {"calm 0", 3}, {"calm 1", 2}};
  for (const auto& [message, n] : made) EXPECT_EQ(got[message], n) << message;
  StopAgent();
}

// A program is found as it execs, not by the next /proc rescan: with the
// rescan an hour away, only the exec event can get it attached.
TEST_F(AgentTest, ExecEventsFindNewPrograms) {
  StartAgent({"--rescan=1h"});
  ASSERT_NE(agent_, nullptr);
  auto a = StartStorm(20, 2);
  ASSERT_TRUE(a);
  WaitAttached({a->pid()});
  SiteCounts want;
  FinishStorms({a.get()}, &want);
  EXPECT_EQ(ScrapeErrors(), want);
  StopAgent();
}

// `go tool pprof` reads the errors page: a window over one errgen run
// holds, by creating function, exactly what errgen says it made.
TEST_F(AgentTest, GoToolPprofReadsTheErrorsPage) {
  StartAgent();
  ASSERT_NE(agent_, nullptr);
  auto a = StartStorm(40, 4);
  ASSERT_TRUE(a);
  WaitAttached({a->pid()});
  auto fetch = StartPprofTop("/debug/pprof/errors?seconds=5");
  WaitGauge("goerrprof_pprof_windows", 1);
  SiteCounts want;
  FinishStorms({a.get()}, &want);
  const CommandResult top = fetch->Result();
  ASSERT_EQ(top.exit_code, 0) << top.err;
  for (const auto& [site, n] : want) EXPECT_EQ(CumOf(top.out, site.second), n) << top.out;
  StopAgent();
}

// A binary that exists only inside the target's own mount namespace (a
// container's): the agent reads and attaches it through /proc/PID/exe.
TEST_F(AgentTest, BinaryOnlyInAnotherMountNamespace) {
  if (access("/usr/bin/unshare", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/unshare";
  const std::string mnt = absl::StrCat(::testing::TempDir(), "mntns-", getpid());
  ASSERT_TRUE(std::filesystem::create_directories(mnt) || std::filesystem::exists(mnt));
  const std::string inside = absl::StrCat(mnt, "/", errgen_name_);
  StartAgent();
  ASSERT_NE(agent_, nullptr);
  // A private tmpfs over `mnt`, errgen copied into it, then exec'd: from
  // here `inside` does not exist.
  auto a = StartStorm(40, 2, {"/usr/bin/unshare", "-m", "--propagation", "private", "sh", "-c",
                              absl::StrCat("mount -t tmpfs agenttest '", mnt, "' && cp \"$0\" '",
                                           inside, "' && exec '", inside, "' \"$@\"")});
  ASSERT_TRUE(a);
  EXPECT_NE(access(inside.c_str(), F_OK), 0) << inside << " is visible outside its namespace";
  WaitAttached({a->pid()});
  SiteCounts want;
  FinishStorms({a.get()}, &want);
  WaitAttachedGauge(0);
  EXPECT_EQ(ScrapeErrors(), want);
  StopAgent();
  std::filesystem::remove(mnt);
}

// --max-processes: a process past the limit is not attached but counted
// (over_limit), and attached once a slot frees.
TEST_F(AgentTest, OverLimitWaitsForASlot) {
  StartAgent({"--max-processes=1"});
  ASSERT_NE(agent_, nullptr);
  auto a = StartStorm(30, 1);
  ASSERT_TRUE(a);
  WaitAttached({a->pid()});
  auto b = StartStorm(20, 2);
  ASSERT_TRUE(b);
  // Polled (bounded) until the agent's rescan has seen b.
  auto deadline = Clock::now() + std::chrono::seconds(kTimeout);
  double over = 0;
  while (over != 1 && Clock::now() < deadline) {
    auto page = HttpGet(address_, "/metrics");
    ASSERT_TRUE(page.ok()) << page.status();
    auto samples = ParseMetrics(*page);
    ASSERT_TRUE(samples.ok());
    over = *MetricValue(*samples, "goerrprof_processes", {{"status", "over_limit"}});
    EXPECT_EQ(*MetricValue(*samples, "goerrprof_attached_processes"), 1);
    if (over != 1) usleep(20 * 1000);
  }
  ASSERT_EQ(over, 1);
  SiteCounts want;
  FinishStorms({a.get()}, &want);
  WaitAttached({b->pid()});  // a's slot
  FinishStorms({b.get()}, &want);
  WaitAttachedGauge(0);
  EXPECT_EQ(ScrapeErrors(), want);
  StopAgent();
}

// goerrprof_panics_total: errgen's whole run panics at known sites
// (recovered, and runtime errors: a nil map write, an index out of range,
// a failed assertion); by panic type the series equal its truth.
TEST_F(AgentTest, PanicsAreCountedByType) {
  StartAgent();
  ASSERT_NE(agent_, nullptr);
  auto a = StartErrgen({"-n", "1"});
  ASSERT_TRUE(a);
  WaitAttached({a->pid()});
  ASSERT_TRUE(a->Write("go\n").ok());
  auto run = a->Finish(kTimeout);
  ASSERT_TRUE(run.ok()) << run.status();
  ASSERT_EQ(run->exit_code, 0) << run->err;
  auto truth = ParseJson(run->out);
  ASSERT_TRUE(truth.ok()) << truth.status() << run->out;
  std::map<std::string, double> want;
  for (const auto& p : Get(*truth, "panics").list_value().values()) {
    want[GetString(p, "type")] += static_cast<double>(GetInt(p, "count"));
  }
  ASSERT_GE(want.size(), 3u) << run->out;
  WaitAttachedGauge(0);  // drained
  auto page = HttpGet(address_, "/metrics");
  ASSERT_TRUE(page.ok()) << page.status();
  auto samples = ParseMetrics(*page);
  ASSERT_TRUE(samples.ok()) << samples.status();
  std::map<std::string, double> got;
  for (const MetricSample& m : *samples) {
    if (m.name != "goerrprof_panics_total") continue;
    EXPECT_EQ(m.labels.at("binary"), errgen_name_);
    got[m.labels.at("panic_type")] += m.value;
  }
  EXPECT_EQ(got, want) << *page;
  StopAgent();
}

// --max-memory: with the cap below what the agent already uses, a Go
// process found is planned but not attached, counted over_limit, and the
// agent says why once.
TEST_F(AgentTest, MemoryCapHoldsNewProcesses) {
  StartAgent({"--max-memory=1"});
  ASSERT_NE(agent_, nullptr);
  auto a = StartStorm(10, 1);
  ASSERT_TRUE(a);
  std::string said;
  auto deadline = Clock::now() + std::chrono::seconds(kTimeout);
  while (!absl::StrContains(said, "memory cap reached")) {
    int left = static_cast<int>(
        std::chrono::duration_cast<std::chrono::seconds>(deadline - Clock::now()).count());
    ASSERT_GT(left, 0) << "never said the cap was reached";
    auto line = agent_->ReadLine(true, left);
    ASSERT_TRUE(line.ok()) << line.status();
    ASSERT_FALSE(absl::StrContains(*line, "attached pid")) << *line;
    said = *line;
  }
  EXPECT_TRUE(absl::StrContains(said, "--max-memory 1 MiB")) << said;
  auto page = HttpGet(address_, "/metrics");
  ASSERT_TRUE(page.ok()) << page.status();
  auto samples = ParseMetrics(*page);
  ASSERT_TRUE(samples.ok());
  EXPECT_EQ(*MetricValue(*samples, "goerrprof_processes", {{"status", "over_limit"}}), 1) << *page;
  EXPECT_EQ(*MetricValue(*samples, "goerrprof_attached_processes"), 0);
  SiteCounts ignored;
  FinishStorms({a.get()}, &ignored);
  EXPECT_TRUE(ScrapeErrors().empty());
  StopAgent();
}

// /debug/pprof/errors?seconds=N: a profile of exactly the errors created
// while it was open, labelled with their process.
TEST_F(AgentTest, PprofWindowHoldsOnlyItsErrors) {
  StartAgent();
  ASSERT_NE(agent_, nullptr);
  auto a = StartStorm(30, 1);
  auto b = StartStorm(20, 2);
  ASSERT_TRUE(a && b);
  WaitAttached({a->pid(), b->pid()});
  SiteCounts before, want;
  FinishStorms({a.get()}, &before);  // before the window: not in it
  WaitAttachedGauge(1);

  WindowRequest window(address_, 4);
  WaitGauge("goerrprof_pprof_windows", 1);  // open: b's errors fall in it
  FinishStorms({b.get()}, &want);
  WaitAttachedGauge(0);
  absl::StatusOr<std::string> body = window.Body();
  ASSERT_TRUE(body.ok()) << body.status();
  auto profile = profiler::ParseProfile(*body, "window");
  ASSERT_TRUE(profile.ok()) << profile.status();
  auto sites = profiler::SummarizeProfile(*profile);
  ASSERT_TRUE(sites.ok()) << sites.status();
  SiteCounts got;
  for (const auto& [key, stats] : sites->sites) {
    got[{key.type, key.origin.empty() ? key.function : key.origin}] += stats.count;
    EXPECT_EQ(stats.binaries, std::set<std::string>{errgen_name_});
  }
  EXPECT_EQ(got, want);
  // Messages are user data: kept on a node only when asked for.
  EXPECT_EQ(MessageCounts(*profile), (std::map<std::string, int64_t>{}));
  // Bounded: a window of 0 or past 300 seconds is refused.
  auto bad = HttpGet(address_, "/debug/pprof/errors?seconds=301");
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "400")) << bad.status();
  StopAgent();
}

// --messages=full: the window's samples carry the texts errgen made, each
// counted exactly.
TEST_F(AgentTest, PprofWindowKeepsMessagesWhenAsked) {
  StartAgent({"--messages=full"});
  ASSERT_NE(agent_, nullptr);
  auto a = StartStorm(12, 3);
  ASSERT_TRUE(a);
  WaitAttached({a->pid()});
  WindowRequest window(address_, 4);
  WaitGauge("goerrprof_pprof_windows", 1);
  SiteCounts truth;
  FinishStorms({a.get()}, &truth);
  WaitAttachedGauge(0);
  absl::StatusOr<std::string> body = window.Body();
  ASSERT_TRUE(body.ok()) << body.status();
  auto profile = profiler::ParseProfile(*body, "window");
  ASSERT_TRUE(profile.ok()) << profile.status();
  // stormSite: fmt.Errorf("retry: %w", errors.New("dependency down"));
  // calmSite: fmt.Errorf("calm %d", i%2) for i in 0..2.
  EXPECT_EQ(MessageCounts(*profile), (std::map<std::string, int64_t>{
                                         {"retry: dependency down", 12},
                                         {"calm 0", 2},
                                         {"calm 1", 1},
                                     }));
  StopAgent();
}

// --max-sites: at most N series per binary, the rest summed under
// "other", nothing lost: the series sum to what a profile of the same
// time holds.
TEST_F(AgentTest, MaxSitesBoundsSeriesAndLosesNothing) {
  StartAgent({"--max-sites=3"});
  ASSERT_NE(agent_, nullptr);
  auto errgen = Child::Spawn({errgen_, "-wait"});  // every scenario: dozens of sites
  ASSERT_TRUE(errgen.ok()) << errgen.status();
  auto ready = (*errgen)->ReadLine(false, kTimeout);
  ASSERT_TRUE(ready.ok()) << ready.status();
  WaitAttached({(*errgen)->pid()});

  WindowRequest window(address_, 3);
  WaitGauge("goerrprof_pprof_windows", 1);
  ASSERT_TRUE((*errgen)->Write("go\n").ok());
  auto run = (*errgen)->Finish(kTimeout);
  ASSERT_TRUE(run.ok()) << run.status();
  ASSERT_EQ(run->exit_code, 0) << run->err;
  WaitAttachedGauge(0);
  absl::StatusOr<std::string> body = window.Body();
  ASSERT_TRUE(body.ok()) << body.status();
  auto profile = profiler::ParseProfile(*body, "window");
  ASSERT_TRUE(profile.ok()) << profile.status();
  auto sites = profiler::SummarizeProfile(*profile);
  ASSERT_TRUE(sites.ok()) << sites.status();
  int64_t errors = 0;  // panics are no creations: not in goerrprof_errors_total
  for (const auto& [key, stats] : sites->sites) {
    if (!absl::StartsWith(key.type, "panic: ")) errors += stats.count;
  }
  ASSERT_GT(sites->sites.size(), 10u);

  auto page = HttpGet(address_, "/metrics");
  ASSERT_TRUE(page.ok()) << page.status();
  auto samples = ParseMetrics(*page);
  ASSERT_TRUE(samples.ok()) << samples.status();
  int64_t series = 0, other = 0, sum = 0;
  for (const MetricSample& s : *samples) {
    if (s.name != "goerrprof_errors_total") continue;
    sum += static_cast<int64_t>(s.value);
    if (s.labels.at("function") == "other") {
      EXPECT_EQ(s.labels.at("origin"), "other");
      EXPECT_EQ(s.labels.at("error_type"), "other");
      other += static_cast<int64_t>(s.value);
    } else {
      ++series;
    }
  }
  EXPECT_EQ(series, 3) << *page;
  EXPECT_GT(other, 0) << *page;
  EXPECT_EQ(sum, errors) << *page;
  StopAgent();
}

}  // namespace
}  // namespace goerrprof::testing
