// Nothing goerrprof runs writes the target's memory (README: "Nothing is
// written to the target"): no BPF program it builds calls
// bpf_probe_write_user (or bpf_override_return), read from the objects'
// instructions by two decoders that must agree (ours and llvm-objdump);
// and neither goerrprof's sources nor its binary use process_vm_writev,
// ptrace, or /proc/PID/mem other than read-only.
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <linux/bpf.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "tests/test_support.h"

namespace goerrprof::testing {
namespace {

namespace fs = std::filesystem;

// Helpers that change the target: its memory, or a function's result.
const std::map<int32_t, std::string> kForbiddenHelpers = {
    {BPF_FUNC_probe_write_user, "bpf_probe_write_user"},
    {BPF_FUNC_override_return, "bpf_override_return"},
};

// Helper id -> calls in BPF instructions (8 bytes each; a 64-bit immediate
// load takes two, its second half no instruction). src_reg 0 marks a helper
// call; 1 a call of a BPF subprogram, 2 a kfunc.
std::map<int32_t, int> HelperCalls(const std::string& insns) {
  std::map<int32_t, int> calls;
  for (size_t i = 0; i + sizeof(bpf_insn) <= insns.size();) {
    bpf_insn in;
    std::memcpy(&in, insns.data() + i, sizeof(in));
    if (in.code == (BPF_JMP | BPF_CALL) && in.src_reg == 0) ++calls[in.imm];
    i += in.code == (BPF_LD | BPF_IMM | BPF_DW) ? 2 * sizeof(bpf_insn) : sizeof(bpf_insn);
  }
  return calls;
}

// The bytes of every executable section of an ELF object (the programs).
std::string ProgramBytes(const std::string& path) {
  std::string out;
  elf_version(EV_CURRENT);
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    ADD_FAILURE() << "cannot open " << path;
    return out;
  }
  Elf* elf = elf_begin(fd, ELF_C_READ, nullptr);
  Elf_Scn* scn = nullptr;
  while (elf != nullptr && (scn = elf_nextscn(elf, scn)) != nullptr) {
    GElf_Shdr sh;
    if (gelf_getshdr(scn, &sh) == nullptr || !(sh.sh_flags & SHF_EXECINSTR)) continue;
    if (Elf_Data* d = elf_getdata(scn, nullptr); d != nullptr && d->d_buf != nullptr) {
      out.append(static_cast<const char*>(d->d_buf), d->d_size);
    }
  }
  if (elf == nullptr) ADD_FAILURE() << path << ": " << elf_errmsg(-1);
  elf_end(elf);
  close(fd);
  return out;
}

// The same from llvm-objdump's disassembly, by the raw bytes it prints.
std::map<int32_t, int> ObjdumpHelperCalls(const std::string& path) {
  CommandResult r = RunCommand({"llvm-objdump", "-d", path}, 60);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  static const std::regex insn(R"(^\s*\d+:\s+((?:[0-9a-f]{2} ){7}[0-9a-f]{2})\s)");
  std::map<int32_t, int> calls;
  for (const std::string& line : std::vector<std::string>(absl::StrSplit(r.out, '\n'))) {
    std::smatch m;
    if (!std::regex_search(line, m, insn)) continue;
    uint8_t b[8];
    std::istringstream hex(m[1]);
    for (uint8_t& x : b) {
      unsigned v;
      hex >> std::hex >> v;
      x = static_cast<uint8_t>(v);
    }
    if (b[0] != (BPF_JMP | BPF_CALL) || (b[1] >> 4) != 0) continue;
    int32_t imm;
    std::memcpy(&imm, b + 4, 4);
    ++calls[imm];
  }
  return calls;
}

// Every BPF object of this build: one per bpf/*.bpf.c, and the benchmark's
// when it was built.
std::vector<std::string> BpfObjects() {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(fs::path(GOERRPROF_SOURCE_DIR) / "bpf")) {
    std::string name = e.path().filename();
    if (!absl::EndsWith(name, ".bpf.c")) continue;
    out.push_back(absl::StrCat(GOERRPROF_BUILD_DIR, "/bpf/",
                               name.substr(0, name.size() - 2), ".o"));
  }
  std::string bench = absl::StrCat(GOERRPROF_BUILD_DIR, "/bench/overhead_probe.bpf.o");
  if (fs::exists(bench)) out.push_back(bench);
  return out;
}

TEST(NoTargetWrites, DecoderSeesHelperCalls) {
  // r1 = 36 ll (a 64-bit load whose halves hold 36); call 36; call 1;
  // a subprogram call (src_reg 1) with imm 36.
  std::vector<bpf_insn> prog(5);
  std::memset(prog.data(), 0, prog.size() * sizeof(bpf_insn));
  prog[0].code = BPF_LD | BPF_IMM | BPF_DW;
  prog[0].imm = 36;
  prog[1].code = BPF_JMP | BPF_CALL;  // the load's second half: no call
  prog[1].imm = 36;
  prog[2].code = BPF_JMP | BPF_CALL;
  prog[2].imm = 36;
  prog[3].code = BPF_JMP | BPF_CALL;
  prog[3].imm = 1;
  prog[4].code = BPF_JMP | BPF_CALL;
  prog[4].src_reg = BPF_PSEUDO_CALL;
  prog[4].imm = 36;
  std::string bytes(reinterpret_cast<const char*>(prog.data()), prog.size() * sizeof(bpf_insn));
  EXPECT_EQ(HelperCalls(bytes), (std::map<int32_t, int>{{36, 1}, {1, 1}}));
}

TEST(NoTargetWrites, NoBpfProgramWritesUserMemory) {
  std::vector<std::string> objects = BpfObjects();
  ASSERT_GE(objects.size(), 3u);  // errors, goroutines, exec_follow
  for (const std::string& obj : objects) {
    SCOPED_TRACE(obj);
    ASSERT_TRUE(fs::exists(obj)) << "not built";
    std::map<int32_t, int> calls = HelperCalls(ProgramBytes(obj));
    // Both decoders agree on every helper call, so neither missed one.
    EXPECT_EQ(calls, ObjdumpHelperCalls(obj));
    EXPECT_FALSE(calls.empty());
    for (const auto& [id, name] : kForbiddenHelpers) {
      EXPECT_FALSE(calls.contains(id)) << calls[id] << " calls of " << name;
    }
  }
  // The error probe reads the target (bpf_probe_read_user or, sleepable,
  // bpf_copy_from_user): the decoder sees real reading calls.
  std::map<int32_t, int> errors =
      HelperCalls(ProgramBytes(absl::StrCat(GOERRPROF_BUILD_DIR, "/bpf/errors.bpf.o")));
  EXPECT_TRUE(errors.contains(BPF_FUNC_probe_read_user) ||
              errors.contains(BPF_FUNC_copy_from_user));
}

// goerrprof's own sources: every folder but the tests, test data, scripts,
// builds and caches.
std::vector<fs::path> Sources() {
  static const std::set<std::string> skip = {"tests", "testdata", "scripts"};
  std::vector<fs::path> out;
  for (const auto& top : fs::directory_iterator(GOERRPROF_SOURCE_DIR)) {
    std::string name = top.path().filename();
    if (!top.is_directory() || skip.contains(name) || name[0] == '.' ||
        absl::StartsWith(name, "build")) {
      continue;
    }
    for (const auto& f : fs::recursive_directory_iterator(top.path())) {
      std::string ext = f.path().extension();
      if (ext == ".cc" || ext == ".h" || ext == ".c") out.push_back(f.path());
    }
  }
  return out;
}

TEST(NoTargetWrites, NoSourceWritesAnotherProcess) {
  static const std::regex forbidden(
      R"(process_vm_writev|\bptrace\s*\(|SYS_ptrace|__NR_ptrace|PTRACE_[A-Z]+|)"
      R"(bpf_probe_write_user|bpf_override_return)");
  static const std::regex proc_mem(R"re(/mem")re");
  std::vector<fs::path> sources = Sources();
  ASSERT_GT(sources.size(), 50u);
  bool reads_seen = false;
  for (const fs::path& p : sources) {
    std::ifstream in(p);
    std::string line;
    for (int n = 1; std::getline(in, line); ++n) {
      std::smatch m;
      EXPECT_FALSE(std::regex_search(line, m, forbidden))
          << p.string() << ":" << n << ": " << m.str(0) << ": " << line;
      // /proc/PID/mem, read-only only.
      if (std::regex_search(line, proc_mem)) {
        EXPECT_TRUE(absl::StrContains(line, "O_RDONLY") && !absl::StrContains(line, "O_RDWR") &&
                    !absl::StrContains(line, "O_WRONLY"))
            << p.string() << ":" << n << ": " << line;
      }
      reads_seen |= absl::StrContains(line, "process_vm_readv(");
    }
  }
  EXPECT_TRUE(reads_seen) << "the goroutine reader's process_vm_readv call was not seen";
}

// The undefined dynamic symbols of an executable: what it calls in libc.
std::set<std::string> Imports(const std::string& path) {
  std::set<std::string> out;
  elf_version(EV_CURRENT);
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  Elf* elf = elf_begin(fd, ELF_C_READ, nullptr);
  Elf_Scn* scn = nullptr;
  while (elf != nullptr && (scn = elf_nextscn(elf, scn)) != nullptr) {
    GElf_Shdr sh;
    if (gelf_getshdr(scn, &sh) == nullptr || sh.sh_type != SHT_DYNSYM) continue;
    Elf_Data* d = elf_getdata(scn, nullptr);
    for (size_t i = 0; d != nullptr && sh.sh_entsize != 0 && i < sh.sh_size / sh.sh_entsize;
         ++i) {
      GElf_Sym sym;
      if (gelf_getsym(d, static_cast<int>(i), &sym) == nullptr || sym.st_shndx != SHN_UNDEF) {
        continue;
      }
      if (const char* name = elf_strptr(elf, sh.sh_link, sym.st_name)) out.insert(name);
    }
  }
  elf_end(elf);
  close(fd);
  return out;
}

TEST(NoTargetWrites, BinaryImportsNoWriter) {
  std::set<std::string> imports = Imports(GoerrprofPath());
  ASSERT_TRUE(imports.contains("process_vm_readv")) << absl::StrJoin(imports, " ");
  for (const char* f : {"process_vm_writev", "ptrace"}) {
    EXPECT_FALSE(imports.contains(f)) << GoerrprofPath() << " imports " << f;
  }
}

}  // namespace
}  // namespace goerrprof::testing
