#include "bench/overhead_runs.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "overhead_probe.skel.h"

namespace goerrprof::bench {
namespace {

// ---- the empty probe: one uprobe_multi link, like the product.
constexpr uint32_t kTraceUprobeMulti = 48;  // BPF_TRACE_UPROBE_MULTI (6.6 UAPI)
constexpr int kBpfLinkCreate = 28;
struct UprobeMultiAttr {  // union bpf_attr, BPF_LINK_CREATE for uprobe_multi
  uint32_t prog_fd, target_fd, attach_type, flags;
  uint64_t path, offsets, ref_ctr_offsets, cookies;
  uint32_t cnt, multi_flags, pid, pad;
  uint8_t tail[64];
};

class Probe {
 public:
  // Attaches overhead_empty (count=false) or overhead_count at file offsets
  // of pid's executable; returns once the breakpoints are in.
  Probe(pid_t pid, const std::vector<uint64_t>& offsets, bool count) {
    skel_ = overhead_probe_bpf__open();
    if (!skel_) Die("open BPF skeleton: %s", strerror(errno));
    bpf_program* prog = count ? skel_->progs.overhead_count : skel_->progs.overhead_empty;
    bpf_program__set_autoload(count ? skel_->progs.overhead_empty : skel_->progs.overhead_count,
                              false);
    bpf_program__set_expected_attach_type(prog, static_cast<bpf_attach_type>(kTraceUprobeMulti));
    if (int e = overhead_probe_bpf__load(skel_)) Die("load BPF: %s", strerror(-e));
    std::string path = "/proc/" + std::to_string(pid) + "/exe";
    UprobeMultiAttr a;
    memset(&a, 0, sizeof(a));
    a.prog_fd = static_cast<uint32_t>(bpf_program__fd(prog));
    a.attach_type = kTraceUprobeMulti;
    a.path = reinterpret_cast<uintptr_t>(path.c_str());
    a.offsets = reinterpret_cast<uintptr_t>(offsets.data());
    a.cnt = static_cast<uint32_t>(offsets.size());
    a.pid = static_cast<uint32_t>(pid);
    link_ = static_cast<int>(syscall(__NR_bpf, kBpfLinkCreate, &a, sizeof(a)));
    if (link_ < 0) Die("uprobe_multi attach (%zu offsets): %s", offsets.size(), strerror(errno));
  }
  ~Probe() {
    if (link_ >= 0) close(link_);
    overhead_probe_bpf__destroy(skel_);
  }
  uint64_t Hits() const {
    int ncpu = libbpf_num_possible_cpus();
    std::vector<uint64_t> v(static_cast<size_t>(std::max(ncpu, 1)));
    uint32_t key = 0;
    if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.hits), &key, v.data()) != 0) return 0;
    uint64_t sum = 0;
    for (uint64_t x : v) sum += x;
    return sum;
  }

 private:
  overhead_probe_bpf* skel_ = nullptr;
  int link_ = -1;
};

// "ready <pid>" from a -wait target.
pid_t ReadReady(LineReader& r, const char* what) {
  std::string line;
  if (!r.Next(&line, In(30), what) || line.rfind("ready ", 0) != 0)
    Die("%s: expected 'ready <pid>', got '%s'", what, line.c_str());
  return static_cast<pid_t>(atoi(line.c_str() + 6));
}

// Reads goerrprof's stderr up to the "recording" line; dies with what it
// said if it exits first.
std::string AwaitRecording(LineReader& r, Child& rec) {
  std::string line, said;
  while (r.Next(&line, In(300), "goerrprof's recording line")) {
    if (line.rfind("goerrprof: recording pid ", 0) == 0) return line;
    said += line + "\n";
  }
  Wait(rec, 30, "goerrprof");
  Die("goerrprof record did not attach:\n%s", said.c_str());
}

// The last goerrprof line (its summary), read to EOF.
std::string ReadSummary(LineReader& r, double timeout_s) {
  std::string line, last;
  auto deadline = In(timeout_s);
  while (r.Next(&line, deadline, "goerrprof's summary"))
    if (!line.empty()) last = line;
  return last;
}

// Go duration text ("1.234s", "812.3ms", "950us") in seconds.
double ParseGoDuration(const char* s) {
  double total = 0;
  while (*s && (isdigit(*s) || *s == '.')) {
    char* end;
    double v = strtod(s, &end);
    s = end;
    if (!strncmp(s, "ms", 2)) total += v * 1e-3, s += 2;
    else if (!strncmp(s, "us", 2) || !strncmp(s, "\xc2\xb5s", 3)) total += v * 1e-6, s += (*s == 'u' ? 2 : 3);
    else if (!strncmp(s, "ns", 2)) total += v * 1e-9, s += 2;
    else if (*s == 'h') total += v * 3600, ++s;
    else if (*s == 'm') total += v * 60, ++s;
    else if (*s == 's') total += v, ++s;
    else break;
  }
  return total;
}

// How many planned sites hold a breakpoint (0xCC where the file has none)
// in the target's memory. ET_EXEC only (no load bias); SIZE_MAX otherwise.
size_t Armed(pid_t pid, const ElfImage& elf, const std::vector<uint64_t>& addrs,
             const std::vector<uint8_t>& file_bytes) {
  if (!elf.exec_type) return SIZE_MAX;
  int fd = open(("/proc/" + std::to_string(pid) + "/mem").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) Die("open /proc/%d/mem: %s", pid, strerror(errno));
  size_t armed = 0;
  for (size_t i = 0; i < addrs.size(); ++i) {
    uint8_t b = 0;
    if (pread(fd, &b, 1, static_cast<off_t>(addrs[i])) == 1 && b == 0xCC && file_bytes[i] != 0xCC)
      ++armed;
  }
  close(fd);
  return armed;
}

}  // namespace

std::vector<uint64_t> PlannedProbes(const std::string& tool, const std::string& binary) {
  Child c = Spawn({tool, binary}, false, true, false);
  LineReader r(c.out);
  std::vector<uint64_t> addrs;
  std::string line;
  auto deadline = In(300);
  while (r.Next(&line, deadline, "probe_plan_tool")) {
    if (line.rfind("probe ", 0) == 0) addrs.push_back(strtoull(line.c_str() + 6, nullptr, 16));
  }
  if (Wait(c, 60, "probe_plan_tool") != 0 || addrs.empty())
    Die("probe_plan_tool %s planned nothing", binary.c_str());
  std::sort(addrs.begin(), addrs.end());
  addrs.erase(std::unique(addrs.begin(), addrs.end()), addrs.end());
  return addrs;
}

double TrapRun(const std::string& target, long m, const std::vector<uint64_t>& offsets) {
  Child c = Spawn({target, "-wait", "-m", std::to_string(m)}, true, true, false);
  LineReader r(c.out);
  ReadReady(r, "overheadtarget");
  std::unique_ptr<Probe> probe;
  if (!offsets.empty()) probe = std::make_unique<Probe>(c.pid, offsets, false);
  WriteLine(c.in, "go\n");
  std::string line;
  // 1 ms per call is ~70x the trap cost here: a hang, not a slow machine.
  if (!r.Next(&line, In(30 + m * 1e-3), "overheadtarget result") ||
      line.rfind("ns/call ", 0) != 0)
    Die("overheadtarget: unexpected output '%s'", line.c_str());
  double ns = atof(line.c_str() + 8);
  if (Wait(c, 30, "overheadtarget") != 0) Die("overheadtarget failed");
  return ns;
}

ErrgenRun Errgen(const std::string& errgen, long n, Mode mode, const std::string& goerrprof,
                 const std::vector<uint64_t>& site_offsets, const std::string& out_file,
                 int64_t ringbuf) {
  Child c = Spawn({errgen, "-wait", "-n", std::to_string(n)}, true, true, false);
  LineReader r(c.out);
  pid_t pid = ReadReady(r, "errgen");
  std::unique_ptr<Probe> probe;
  Child rec;
  std::unique_ptr<LineReader> rec_err;
  if (mode == Mode::kEmptySites) probe = std::make_unique<Probe>(c.pid, site_offsets, true);
  if (mode == Mode::kRecord) {
    // Every error observed: the budget would take errgen's busiest sites off.
    std::vector<std::string> argv = {goerrprof, "record", "--max-overhead=0", "--pid",
                                     std::to_string(pid), "-o", out_file};
    if (ringbuf > 0) argv.push_back("--ringbuf_bytes=" + std::to_string(ringbuf));
    rec = Spawn(argv, false, false, true);
    rec_err = std::make_unique<LineReader>(rec.err);
    AwaitRecording(*rec_err, rec);
  }
  auto t0 = Clock::now();
  WriteLine(c.in, "go\n");
  std::string line;
  if (!r.Next(&line, In(600), "errgen's JSON", 64) || line.rfind("{", 0) != 0)
    Die("errgen: unexpected output '%s'", line.c_str());
  ErrgenRun run;
  run.seconds = Since(t0);
  if (Wait(c, 60, "errgen") != 0) Die("errgen failed");
  if (probe) run.hits = probe->Hits();
  if (mode == Mode::kRecord) {
    run.summary = ReadSummary(*rec_err, 300);
    if (Wait(rec, 60, "goerrprof record") != 0) Die("goerrprof record failed: %s", run.summary.c_str());
    unsigned long long errors = 0, dropped = 0;
    const char* p = strstr(run.summary.c_str(), "target exited: ");
    if (!p || sscanf(p, "target exited: %llu errors and %*u panics at %*u sites, %llu dropped",
                     &errors, &dropped) != 2)
      Die("cannot parse goerrprof's summary '%s'", run.summary.c_str());
    run.errors = errors, run.dropped = dropped;
    unlink(out_file.c_str());
  }
  return run;
}

AttachRun Attach(const AttachTarget& target, const std::string& goerrprof, const ElfImage& elf,
                 const std::vector<uint64_t>& addrs, const std::vector<uint8_t>& file_bytes,
                 const std::string& out_file, const std::string& plan_cache) {
  Child es = Spawn(target.argv, true, false, false);
  auto t0 = Clock::now();
  Child rec = Spawn({goerrprof, "record", "--pid", std::to_string(es.pid), "-o", out_file,
                     "--plan_cache=" + plan_cache},
                    false, false, true);
  LineReader r(rec.err);
  std::string line = AwaitRecording(r, rec);
  AttachRun a;
  a.ready_s = Since(t0);
  unsigned long long pid = 0;
  size_t probes = 0;
  char dur[64] = {};
  if (sscanf(line.c_str(), "goerrprof: recording pid %llu: %zu probes attached in %63s", &pid,
             &probes, dur) != 3)
    Die("cannot parse '%s'", line.c_str());
  a.probes = probes;
  a.attach_s = ParseGoDuration(dur);
  a.armed = Armed(es.pid, elf, addrs, file_bytes);
  auto t1 = Clock::now();
  kill(rec.pid, SIGINT);
  a.summary = ReadSummary(r, 120);
  int st = Wait(rec, 120, "goerrprof record after SIGINT");
  a.detach_s = Since(t1);
  if (st != 0) Die("goerrprof record exited with status %d: %s", st, a.summary.c_str());
  if (kill(es.pid, 0) != 0) Die("%s exited while recorded", target.argv[0].c_str());
  a.left = Armed(es.pid, elf, addrs, file_bytes);
  // EOF: esbuild bundles nothing and exits; a server stops on SIGTERM.
  if (target.ends_on_eof) {
    CloseFd(es.in);
  } else {
    kill(es.pid, SIGTERM);
  }
  if (Wait(es, 30, target.argv[0].c_str()) != 0)
    Die("%s failed after the recording", target.argv[0].c_str());
  unlink(out_file.c_str());
  return a;
}

}  // namespace goerrprof::bench
