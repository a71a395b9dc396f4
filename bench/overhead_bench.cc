// bench/overhead_bench: the measurements behind bench/overhead, side by side
// in one run, each repeated and reported as its median:
//  1. raw uprobe trap: overheadtarget times M calls of a noinline function,
//     without a probe and with an empty BPF program at its entry (and, for
//     comparison, at its RET, which x86 emulates instead of single-stepping);
//  2. errgen at -n N released from stdin and timed to its JSON line: alone,
//     with a counting (near-empty) uprobe at every planned site, and under
//     `goerrprof record`; per captured error vs the raw trap;
//  3. `goerrprof record` on an esbuild blocked on stdin: probes, attach time,
//     SIGINT-to-exit time, and whether the breakpoints left the target.
// Every child dies with us (PDEATHSIG, signal handlers, a global alarm);
// probes are fd-owned links, so they go with their owner.
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "overhead_probe.skel.h"

namespace {

using Clock = std::chrono::steady_clock;
double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// ---- children: registered so every exit path kills them.
constexpr int kMaxKids = 16;
volatile pid_t g_kids[kMaxKids];

void KillAllKids() {
  for (int i = 0; i < kMaxKids; ++i) {
    pid_t p = g_kids[i];
    if (p > 0) kill(p, SIGKILL);
  }
  for (int i = 0; i < kMaxKids; ++i) {
    pid_t p = g_kids[i];
    if (p > 0) waitpid(p, nullptr, 0);
    g_kids[i] = 0;
  }
}

void OnSignal(int sig) {
  for (int i = 0; i < kMaxKids; ++i)
    if (g_kids[i] > 0) kill(g_kids[i], SIGKILL);
  for (int i = 0; i < kMaxKids; ++i)
    if (g_kids[i] > 0) waitpid(g_kids[i], nullptr, 0);
  const char out_of_time[] = "overhead_bench: out of time (--budget); children killed\n";
  const char interrupted[] = "overhead_bench: interrupted; children killed\n";
  if (sig == SIGALRM) (void)!write(2, out_of_time, sizeof(out_of_time) - 1);
  else (void)!write(2, interrupted, sizeof(interrupted) - 1);
  _exit(128 + sig);
}

[[noreturn]] void Die(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::fprintf(stderr, "overhead_bench: ");
  std::vfprintf(stderr, fmt, ap);
  std::fprintf(stderr, "\n");
  va_end(ap);
  KillAllKids();
  std::exit(1);
}

struct Child {
  pid_t pid = -1;
  int in = -1, out = -1, err = -1;  // our ends of its stdin/stdout/stderr
  int pidfd = -1;
};

void CloseFd(int& fd) {
  if (fd >= 0) close(fd);
  fd = -1;
}

// Spawns argv with the requested pipes (others: /dev/null); returns once
// exec succeeded (a CLOEXEC pipe closes), dies if it failed.
Child Spawn(const std::vector<std::string>& argv, bool in, bool out, bool err) {
  int pin[2] = {-1, -1}, pout[2] = {-1, -1}, perr[2] = {-1, -1}, status[2];
  if ((in && pipe2(pin, O_CLOEXEC)) || (out && pipe2(pout, O_CLOEXEC)) ||
      (err && pipe2(perr, O_CLOEXEC)) || pipe2(status, O_CLOEXEC)) {
    Die("pipe: %s", strerror(errno));
  }
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) Die("fork: %s", strerror(errno));
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    int null = open("/dev/null", O_RDWR);
    dup2(in ? pin[0] : null, 0);
    dup2(out ? pout[1] : null, 1);
    dup2(err ? perr[1] : null, 2);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    int e = errno;
    (void)!write(status[1], &e, sizeof(e));
    _exit(127);
  }
  for (int i = 0; i < kMaxKids; ++i) {
    if (g_kids[i] == 0) {
      g_kids[i] = pid;
      break;
    }
  }
  Child c;
  c.pid = pid;
  close(status[1]);
  if (in) close(pin[0]), c.in = pin[1];
  if (out) close(pout[1]), c.out = pout[0];
  if (err) close(perr[1]), c.err = perr[0];
  int e = 0;
  ssize_t n;
  do n = read(status[0], &e, sizeof(e)); while (n < 0 && errno == EINTR);
  close(status[0]);
  if (n > 0) Die("cannot run %s: %s", argv[0].c_str(), strerror(e));
  c.pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (c.pidfd < 0) Die("pidfd_open: %s", strerror(errno));
  return c;
}

void Unregister(pid_t pid) {
  for (int i = 0; i < kMaxKids; ++i)
    if (g_kids[i] == pid) g_kids[i] = 0;
}

// Waits for the child's exit (dies after timeout_s); returns its status.
int Wait(Child& c, double timeout_s, const char* what) {
  pollfd p = {c.pidfd, POLLIN, 0};
  int r;
  do r = poll(&p, 1, static_cast<int>(timeout_s * 1000)); while (r < 0 && errno == EINTR);
  if (r == 0) Die("%s (pid %d) did not exit within %.0fs", what, c.pid, timeout_s);
  int status = 0;
  waitpid(c.pid, &status, 0);
  Unregister(c.pid);
  CloseFd(c.in), CloseFd(c.out), CloseFd(c.err), CloseFd(c.pidfd);
  c.pid = -1;
  return status;
}

void WriteLine(int fd, const char* s) {
  size_t n = strlen(s);
  if (write(fd, s, n) != static_cast<ssize_t>(n)) Die("write to child: %s", strerror(errno));
}

// Reads lines with a deadline; keeps at most `keep` bytes of each (errgen's
// JSON line is tens of MB).
class LineReader {
 public:
  explicit LineReader(int fd) : fd_(fd), buf_(1 << 20) {}
  // False at EOF. Dies at the deadline.
  bool Next(std::string* line, Clock::time_point deadline, const char* what,
            size_t keep = 1 << 16) {
    line->clear();
    for (;;) {
      for (; pos_ < len_; ++pos_) {
        char ch = buf_[pos_];
        if (ch == '\n') {
          ++pos_;
          return true;
        }
        if (line->size() < keep) line->push_back(ch);
      }
      if (eof_) return !line->empty();
      double left = std::chrono::duration<double>(deadline - Clock::now()).count();
      if (left <= 0) Die("timed out waiting for %s", what);
      pollfd p = {fd_, POLLIN, 0};
      int r = poll(&p, 1, static_cast<int>(left * 1000) + 1);
      if (r < 0 && errno != EINTR) Die("poll: %s", strerror(errno));
      if (r <= 0) continue;
      ssize_t n = read(fd_, buf_.data(), buf_.size());
      if (n < 0 && errno != EINTR) Die("read: %s", strerror(errno));
      if (n == 0) eof_ = true;
      len_ = n > 0 ? static_cast<size_t>(n) : 0;
      pos_ = 0;
    }
  }

 private:
  int fd_;
  std::vector<char> buf_;
  size_t pos_ = 0, len_ = 0;
  bool eof_ = false;
};

Clock::time_point In(double s) {
  return Clock::now() + std::chrono::microseconds(static_cast<int64_t>(s * 1e6));
}

// ---- ELF: symbols and file offsets (non-PIE or PIE; offsets are what
// uprobes want).
struct ElfImage {
  struct Load {
    uint64_t vaddr, offset, filesz;
    bool exec;
  };
  std::vector<Load> loads;
  std::map<std::string, std::pair<uint64_t, uint64_t>> syms;  // name -> addr, size
  bool exec_type = false;                                      // ET_EXEC
  std::string path;

  static ElfImage Open(const std::string& path, bool want_syms) {
    ElfImage out;
    out.path = path;
    elf_version(EV_CURRENT);
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) Die("open %s: %s", path.c_str(), strerror(errno));
    ::Elf* e = elf_begin(fd, ELF_C_READ, nullptr);
    GElf_Ehdr eh;
    if (!e || !gelf_getehdr(e, &eh)) Die("%s: not an ELF file", path.c_str());
    out.exec_type = eh.e_type == ET_EXEC;
    size_t n = 0;
    elf_getphdrnum(e, &n);
    for (size_t i = 0; i < n; ++i) {
      GElf_Phdr ph;
      if (gelf_getphdr(e, static_cast<int>(i), &ph) && ph.p_type == PT_LOAD) {
        out.loads.push_back({ph.p_vaddr, ph.p_offset, ph.p_filesz, (ph.p_flags & PF_X) != 0});
      }
    }
    for (Elf_Scn* s = nullptr; want_syms && (s = elf_nextscn(e, s));) {
      GElf_Shdr sh;
      if (!gelf_getshdr(s, &sh) || sh.sh_type != SHT_SYMTAB) continue;
      Elf_Data* d = elf_getdata(s, nullptr);
      for (size_t i = 0; d && i < sh.sh_size / sh.sh_entsize; ++i) {
        GElf_Sym sym;
        if (!gelf_getsym(d, static_cast<int>(i), &sym)) continue;
        const char* name = elf_strptr(e, sh.sh_link, sym.st_name);
        if (name && GELF_ST_TYPE(sym.st_info) == STT_FUNC) out.syms[name] = {sym.st_value, sym.st_size};
      }
    }
    elf_end(e);
    close(fd);
    return out;
  }
  uint64_t FileOffset(uint64_t vaddr) const {
    for (const Load& l : loads)
      if (l.exec && vaddr >= l.vaddr && vaddr < l.vaddr + l.filesz) return vaddr - l.vaddr + l.offset;
    Die("%s: 0x%llx is in no executable segment", path.c_str(), (unsigned long long)vaddr);
  }
  std::vector<uint8_t> Bytes(uint64_t vaddr, size_t n) const {
    std::vector<uint8_t> b(n);
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || pread(fd, b.data(), n, static_cast<off_t>(FileOffset(vaddr))) != (ssize_t)n)
      Die("read %s: %s", path.c_str(), strerror(errno));
    close(fd);
    return b;
  }
};

// Planned probe addresses, from probe_plan_tool's "probe ADDR ..." lines.
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

// ---- 1. raw trap
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

// ---- 2. errgen
struct ErrgenRun {
  double seconds = 0;
  uint64_t errors = 0, dropped = 0, hits = 0;
  std::string summary;
};

enum class Mode { kAlone, kEmptySites, kRecord };

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
    std::vector<std::string> argv = {goerrprof, "record", "--pid", std::to_string(pid), "-o",
                                     out_file};
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
    if (!p || sscanf(p, "target exited: %llu errors at %*u sites, %llu dropped", &errors,
                     &dropped) != 2)
      Die("cannot parse goerrprof's summary '%s'", run.summary.c_str());
    run.errors = errors, run.dropped = dropped;
    unlink(out_file.c_str());
  }
  return run;
}

// ---- 3. attach / detach on esbuild
struct AttachRun {
  size_t probes = 0;
  double attach_s = 0;     // goerrprof's own figure ("attached in T")
  double ready_s = 0;      // spawn -> recording line (plan + load + attach)
  double detach_s = 0;     // SIGINT -> exit (detach + write the profile)
  size_t armed = 0, left = 0;  // breakpoints seen while recording / after exit
  std::string summary;
};

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

AttachRun Attach(const std::string& esbuild, const std::string& goerrprof, const ElfImage& elf,
                 const std::vector<uint64_t>& addrs, const std::vector<uint8_t>& file_bytes,
                 const std::string& out_file) {
  // --bundle with no entry point reads stdin to EOF: it blocks until we close it.
  Child es = Spawn({esbuild, "--bundle", "--log-level=silent"}, true, false, false);
  auto t0 = Clock::now();
  Child rec = Spawn({goerrprof, "record", "--pid", std::to_string(es.pid), "-o", out_file}, false,
                    false, true);
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
  if (kill(es.pid, 0) != 0) Die("esbuild exited while recorded");
  a.left = Armed(es.pid, elf, addrs, file_bytes);
  CloseFd(es.in);  // EOF: esbuild bundles nothing and exits
  if (Wait(es, 30, "esbuild") != 0) Die("esbuild failed after the recording");
  unlink(out_file.c_str());
  return a;
}

// ---- reporting
double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n == 0 ? 0 : n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}
std::string Spread(const std::vector<double>& v, double scale, const char* fmt) {
  auto [lo, hi] = std::minmax_element(v.begin(), v.end());
  char buf[96];
  std::string f = std::string("[") + fmt + " .. " + fmt + "]";
  snprintf(buf, sizeof(buf), f.c_str(), *lo * scale, *hi * scale);
  return buf;
}
std::string LoadAvg() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

struct Args {
  std::string target, errgen, goerrprof, plan_tool, esbuild, tmp = "/tmp";
  std::string errgen_label, esbuild_label;
  long m = 200000, n = 2000;
  int trap_reps = 5, errgen_reps = 5, attach_reps = 5;
  int budget_s = 1800;
  int64_t ringbuf = 0;  // goerrprof record --ringbuf_bytes to start with; 0: its default
};

Args Parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string k = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) Die("%s needs a value", k.c_str());
      return argv[++i];
    };
    if (k == "--target") a.target = val();
    else if (k == "--errgen") a.errgen = val();
    else if (k == "--errgen_label") a.errgen_label = val();
    else if (k == "--goerrprof") a.goerrprof = val();
    else if (k == "--plan_tool") a.plan_tool = val();
    else if (k == "--esbuild") a.esbuild = val();
    else if (k == "--esbuild_label") a.esbuild_label = val();
    else if (k == "--tmp") a.tmp = val();
    else if (k == "--m") a.m = atol(val().c_str());
    else if (k == "--n") a.n = atol(val().c_str());
    else if (k == "--trap_reps") a.trap_reps = atoi(val().c_str());
    else if (k == "--errgen_reps") a.errgen_reps = atoi(val().c_str());
    else if (k == "--attach_reps") a.attach_reps = atoi(val().c_str());
    else if (k == "--budget") a.budget_s = atoi(val().c_str());
    else if (k == "--ringbuf") a.ringbuf = atoll(val().c_str());
    else Die("unknown argument %s", k.c_str());
  }
  if (a.target.empty() || a.errgen.empty() || a.goerrprof.empty() || a.plan_tool.empty() ||
      a.esbuild.empty() || a.trap_reps < 1 || a.errgen_reps < 1 || a.attach_reps < 1 ||
      a.m < 1 || a.n < 1)
    Die("usage: overhead_bench --target T --errgen E --goerrprof G --plan_tool P --esbuild B "
        "[--m M] [--n N] [--trap_reps R] [--errgen_reps R] [--attach_reps R] [--budget S] "
        "[--ringbuf BYTES]");
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  Args a = Parse(argc, argv);
  struct sigaction sa = {};
  sa.sa_handler = OnSignal;
  for (int s : {SIGINT, SIGTERM, SIGHUP, SIGALRM}) sigaction(s, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  alarm(static_cast<unsigned>(a.budget_s));
  libbpf_set_print(nullptr);
  std::string load_before = LoadAvg();
  auto t_all = Clock::now();

  // 1. Raw trap: entry (LEA, single-stepped) and RET (emulated).
  ElfImage tgt = ElfImage::Open(a.target, true);
  auto sym = tgt.syms.find("main.probeTarget");
  if (sym == tgt.syms.end()) Die("%s: no main.probeTarget", a.target.c_str());
  uint64_t entry = sym->second.first;
  std::vector<uint8_t> body = tgt.Bytes(entry, std::max<uint64_t>(sym->second.second, 1));
  auto ret = std::find(body.begin(), body.end(), 0xC3);
  if (ret == body.end()) Die("main.probeTarget: no RET found");
  uint64_t ret_addr = entry + (ret - body.begin());

  // 2. errgen: alone, empty probes at the planned sites, goerrprof record.
  ElfImage eg = ElfImage::Open(a.errgen, false);
  std::vector<uint64_t> sites = PlannedProbes(a.plan_tool, a.errgen), site_offsets;
  for (uint64_t s : sites) site_offsets.push_back(eg.FileOffset(s));
  std::string out_file = a.tmp + "/errgen.pb.gz";
  int64_t ringbuf = a.ringbuf;
  std::vector<double> none, at_entry, at_ret;
  std::vector<double> alone, empty_sites, recorded, errors, hits, ratios;
  uint64_t dropped = 0;
  std::string raised;
  // 1 and 2 interleaved, so both medians sample the same machine state; a
  // rep with both gives one ratio of neighbours.
  for (int i = 0; i < std::max(a.trap_reps, a.errgen_reps); ++i) {
    double t0 = 0, t1 = 0;
    if (i < a.trap_reps) {
      none.push_back(t0 = TrapRun(a.target, a.m, {}));
      at_entry.push_back(t1 = TrapRun(a.target, a.m, {tgt.FileOffset(entry)}));
      at_ret.push_back(TrapRun(a.target, a.m, {tgt.FileOffset(ret_addr)}));
    }
    if (i >= a.errgen_reps) continue;
    ErrgenRun r0 = Errgen(a.errgen, a.n, Mode::kAlone, "", {}, "", 0);
    ErrgenRun r1 = Errgen(a.errgen, a.n, Mode::kEmptySites, "", site_offsets, "", 0);
    ErrgenRun r2 = Errgen(a.errgen, a.n, Mode::kRecord, a.goerrprof, {}, out_file, ringbuf);
    if (r2.dropped > 0 && ringbuf < (int64_t{1} << 30)) {
      // Drops make per-error cost meaningless: raise the ring and start over.
      ringbuf = std::max(ringbuf * 8, int64_t{32} << 20);
      raised += (raised.empty() ? "" : ", ") + std::to_string(r2.dropped) +
                " dropped -> --ringbuf_bytes=" + std::to_string(ringbuf);
      for (auto* v : {&none, &at_entry, &at_ret, &alone, &empty_sites, &recorded, &errors, &hits,
                      &ratios})
        v->clear();
      i = -1;
      continue;
    }
    dropped += r2.dropped;
    alone.push_back(r0.seconds), empty_sites.push_back(r1.seconds), recorded.push_back(r2.seconds);
    errors.push_back(static_cast<double>(r2.errors)), hits.push_back(static_cast<double>(r1.hits));
    if (i < a.trap_reps && r2.errors > 0)
      ratios.push_back((r2.seconds - r0.seconds) * 1e9 / static_cast<double>(r2.errors) / (t1 - t0));
  }
  double raw_entry_ns = Median(at_entry) - Median(none);
  double raw_ret_ns = Median(at_ret) - Median(none);
  double n_errors = Median(errors), n_hits = Median(hits);
  double per_error_ns = (Median(recorded) - Median(alone)) / n_errors * 1e9;
  double per_hit_ns = (Median(empty_sites) - Median(alone)) / n_hits * 1e9;

  // 3. Attach / detach on the largest esbuild.
  ElfImage es = ElfImage::Open(a.esbuild, false);
  std::vector<uint64_t> es_sites = PlannedProbes(a.plan_tool, a.esbuild);
  std::vector<uint8_t> es_bytes;
  for (uint64_t s : es_sites) es_bytes.push_back(es.Bytes(s, 1)[0]);
  std::vector<double> attach, ready, detach;
  AttachRun last;
  size_t max_left = 0, min_armed = SIZE_MAX;
  for (int i = 0; i < a.attach_reps; ++i) {
    last = Attach(a.esbuild, a.goerrprof, es, es_sites, es_bytes, a.tmp + "/esbuild.pb.gz");
    attach.push_back(last.attach_s), ready.push_back(last.ready_s), detach.push_back(last.detach_s);
    max_left = std::max(max_left, last.left), min_armed = std::min(min_armed, last.armed);
  }
  unsigned long long unplanned = 0;
  if (const char* p = strstr(last.summary.c_str(), " references unplanned)")) {
    while (p > last.summary.c_str() && p[-1] != '(') --p;
    unplanned = strtoull(p, nullptr, 10);
  }

  // ---- table
  utsname u;
  uname(&u);
  std::printf("bench/overhead: %ld CPUs, kernel %s; load avg before %s, after %s; %.0fs\n",
              sysconf(_SC_NPROCESSORS_ONLN), u.release, load_before.c_str(), LoadAvg().c_str(),
              Since(t_all));
  std::printf("medians [min .. max] of %d trap / %d errgen / %d attach runs; traps and errgen "
              "interleaved\n\n",
              a.trap_reps, a.errgen_reps, a.attach_reps);
  std::printf("1. raw trap: overheadtarget, %ld calls of main.probeTarget (ret at +%llu)\n", a.m,
              (unsigned long long)(ret_addr - entry));
  std::printf("   %-44s %10.1f ns/call %s\n", "no probe", Median(none), Spread(none, 1, "%.1f").c_str());
  char entry_label[96];
  if (body.size() >= 2 && body[0] == 0x48 && body[1] == 0x8d)
    snprintf(entry_label, sizeof(entry_label), "empty uprobe at entry (lea: single-stepped)");
  else
    snprintf(entry_label, sizeof(entry_label), "empty uprobe at entry (insn %02x %02x ...)",
             body[0], body.size() > 1 ? body[1] : 0);
  std::printf("   %-44s %10.1f ns/call %s\n", entry_label, Median(at_entry),
              Spread(at_entry, 1, "%.0f").c_str());
  std::printf("   %-44s %10.1f ns/call %s\n", "empty uprobe at its ret (emulated)", Median(at_ret),
              Spread(at_ret, 1, "%.0f").c_str());
  std::printf("   raw trap = with - without: entry %.2f us, ret %.2f us\n\n", raw_entry_ns / 1e3,
              raw_ret_ns / 1e3);
  std::printf("2. errgen %s -n %ld, release -> JSON line\n", a.errgen_label.c_str(), a.n);
  std::printf("   %-44s %10.3f s %s\n", "no probes", Median(alone), Spread(alone, 1, "%.3f").c_str());
  char what[96];
  snprintf(what, sizeof(what), "empty uprobes at the %zu planned sites", sites.size());
  std::printf("   %-44s %10.3f s %s  %.0f hits\n", what, Median(empty_sites),
              Spread(empty_sites, 1, "%.3f").c_str(), n_hits);
  std::printf("   %-44s %10.3f s %s  %.0f errors, %llu dropped\n", "goerrprof record",
              Median(recorded), Spread(recorded, 1, "%.3f").c_str(), n_errors,
              (unsigned long long)dropped);
  if (!raised.empty()) std::printf("   ring buffer raised: %s\n", raised.c_str());
  else if (ringbuf == 0) std::printf("   ring buffer: goerrprof's default, no drops\n");
  else std::printf("   ring buffer: --ringbuf_bytes=%lld\n", (long long)ringbuf);
  std::printf("   per trap at the planned sites (empty program): %.2f us, %.2f hits per error\n",
              per_hit_ns / 1e3, n_hits / n_errors);
  std::printf("   per captured error (goerrprof record):      %.2f us = %.2fx raw trap at entry "
              "(goal <= 1.1x: %s), %.2fx at ret, %.2fx an empty trap at the same sites\n",
              per_error_ns / 1e3, per_error_ns / raw_entry_ns,
              per_error_ns <= 1.1 * raw_entry_ns ? "met" : "NOT met", per_error_ns / raw_ret_ns,
              per_error_ns / per_hit_ns);
  if (!ratios.empty())
    std::printf("   per-rep ratio (errgen rep vs the trap rep beside it): median %.2fx %s\n\n",
                Median(ratios), Spread(ratios, 1, "%.2f").c_str());
  std::printf("3. attach: esbuild %s (%s), goerrprof record, SIGINT\n", a.esbuild_label.c_str(),
              a.esbuild.c_str());
  std::printf("   probes planned / attached: %zu / %zu (%llu references unplanned)\n",
              es_sites.size(), last.probes, unplanned);
  std::printf("   %-44s %10.1f ms %s\n", "attach (goerrprof's \"recording\" line)",
              Median(attach) * 1e3, Spread(attach, 1e3, "%.1f").c_str());
  std::printf("   %-44s %10.1f ms %s\n", "start -> recording (plan + load + attach)",
              Median(ready) * 1e3, Spread(ready, 1e3, "%.1f").c_str());
  std::printf("   %-44s %10.1f ms %s\n", "SIGINT -> exit (detach + write profile)",
              Median(detach) * 1e3, Spread(detach, 1e3, "%.1f").c_str());
  if (min_armed == SIZE_MAX)
    std::printf("   breakpoint check skipped (PIE binary)\n");
  else
    std::printf("   breakpoints in esbuild's text: >= %zu of %zu while recording, <= %zu after exit\n",
                min_armed, es_sites.size(), max_left);
  bool ok = max_left == 0 && (min_armed == SIZE_MAX || min_armed > 0);
  if (!ok) std::printf("   WARNING: breakpoints not as expected\n");
  KillAllKids();
  return ok ? 0 : 1;
}
