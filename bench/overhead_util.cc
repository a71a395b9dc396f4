#include "bench/overhead_util.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace goerrprof::bench {
namespace {

// ---- children: registered so every exit path kills them.
constexpr int kMaxKids = 16;
volatile pid_t g_kids[kMaxKids];

void Unregister(pid_t pid) {
  for (int i = 0; i < kMaxKids; ++i)
    if (g_kids[i] == pid) g_kids[i] = 0;
}

}  // namespace

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

void CloseFd(int& fd) {
  if (fd >= 0) close(fd);
  fd = -1;
}

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

bool LineReader::Next(std::string* line, Clock::time_point deadline, const char* what,
                      size_t keep) {
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

ElfImage ElfImage::Open(const std::string& path, bool want_syms) {
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

uint64_t ElfImage::FileOffset(uint64_t vaddr) const {
  for (const Load& l : loads)
    if (l.exec && vaddr >= l.vaddr && vaddr < l.vaddr + l.filesz) return vaddr - l.vaddr + l.offset;
  Die("%s: 0x%llx is in no executable segment", path.c_str(), (unsigned long long)vaddr);
}

std::vector<uint8_t> ElfImage::Bytes(uint64_t vaddr, size_t n) const {
  std::vector<uint8_t> b(n);
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 || pread(fd, b.data(), n, static_cast<off_t>(FileOffset(vaddr))) != (ssize_t)n)
    Die("read %s: %s", path.c_str(), strerror(errno));
  close(fd);
  return b;
}

}  // namespace goerrprof::bench
