// Bad input is refused with one clear line and a non-zero exit, never a
// crash: these tests run under ASan and UBSan in scripts/test.sh.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "symbolizer/error_types.h"
#include "symbolizer/go_binary.h"
#include "tests/test_support.h"

namespace goerrprof::testing {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::string WriteTemp(const std::string& name, const std::string& bytes) {
  std::string path = absl::StrCat(::testing::TempDir(), "/goerrprof_", getpid(), "_", name);
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

// A Go binary from the corpus to mutate: the newest release's default build.
std::string SampleGoBinary() {
  auto corpus = LoadCorpus(false);
  if (!corpus.ok()) return "";
  std::string best;
  for (const auto& b : *corpus) {
    if (b.program == "errgen" && b.flavour == "stripped") best = b.path;
  }
  return best;
}

// The CLI must print exactly one line on stderr and exit non-zero.
void ExpectCliRefuses(const std::vector<std::string>& args, const std::string& want) {
  std::vector<std::string> argv = {GoerrprofPath()};
  argv.insert(argv.end(), args.begin(), args.end());
  CommandResult r = RunCommand(argv);
  EXPECT_NE(r.exit_code, 0) << r.out;
  EXPECT_LT(r.exit_code, 128) << "crashed: " << r.err;
  EXPECT_TRUE(absl::StartsWith(r.err, "goerrprof: ")) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, want)) << r.err;
}

TEST(BadInput, NotAnElf) {
  std::string path = WriteTemp("text", "hello, this is not an executable\n");
  ExpectCliRefuses({"inspect", path}, "not an ELF file");
  ExpectCliRefuses({"inspect", WriteTemp("empty", "")}, "not an ELF file");
}

TEST(BadInput, ElfThatIsNotGo) {
  ExpectCliRefuses({"inspect", "/bin/ls"}, "not a Go binary");
  ExpectCliRefuses({"symbolize", "/bin/ls", "0x1000"}, "not a Go binary");
}

TEST(BadInput, MissingFileAndDeadPid) {
  ExpectCliRefuses({"inspect", "/nonexistent/binary"}, "cannot open");
  pid_t child = fork();
  if (child == 0) _exit(0);
  waitpid(child, nullptr, 0);  // reaped: the pid is dead
  ExpectCliRefuses({"inspect", absl::StrCat("--pid=", child)}, "no process with pid");
}

TEST(BadInput, BadAddresses) {
  std::string go = SampleGoBinary();
  ASSERT_FALSE(go.empty()) << "Go corpus missing";
  ExpectCliRefuses({"symbolize", go, "1234"}, "bad address");
  ExpectCliRefuses({"symbolize", go}, "no addresses");
}

TEST(BadInput, TruncatedGoBinary) {
  std::string go = SampleGoBinary();
  ASSERT_FALSE(go.empty()) << "Go corpus missing";
  std::string bytes = ReadFile(go);
  for (double frac : {0.001, 0.1, 0.5, 0.9, 0.999}) {
    std::string path = WriteTemp("truncated", bytes.substr(0, bytes.size() * frac));
    auto bin = symbolizer::GoBinary::Open(path);
    EXPECT_FALSE(bin.ok()) << "accepted a binary cut at " << frac;
    if (!bin.ok()) {
      EXPECT_TRUE(absl::StrContains(bin.status().message(), path));
    }
  }
  ExpectCliRefuses({"inspect", WriteTemp("truncated", bytes.substr(0, bytes.size() / 2))},
                   "truncated");
}

TEST(BadInput, UnknownPclntabMagic) {
  std::string go = SampleGoBinary();
  ASSERT_FALSE(go.empty()) << "Go corpus missing";
  auto bin = symbolizer::GoBinary::Open(go);
  ASSERT_TRUE(bin.ok()) << bin.status();
  const auto* sec = (*bin)->elf().FindSection(".gopclntab");
  ASSERT_NE(sec, nullptr);
  std::string bytes = ReadFile(go);
  const uint32_t future = 0xfffffff2;
  std::memcpy(&bytes[sec->offset], &future, 4);
  ExpectCliRefuses({"inspect", WriteTemp("future", bytes)}, "unknown pclntab magic 0xfffffff2");
  const uint32_t go115 = 0xfffffffb;
  std::memcpy(&bytes[sec->offset], &go115, 4);
  ExpectCliRefuses({"inspect", WriteTemp("go115", bytes)}, "unknown pclntab magic 0xfffffffb");
}

// Random bit flips anywhere must never crash the reader: whatever opens must
// also symbolize and list error types without faults.
TEST(BadInput, BitFlippedGoBinaries) {
  std::string go = SampleGoBinary();
  ASSERT_FALSE(go.empty()) << "Go corpus missing";
  std::string original = ReadFile(go);
  auto clean = symbolizer::GoBinary::Open(go);
  ASSERT_TRUE(clean.ok());
  const auto* pcln = (*clean)->elf().FindSection(".gopclntab");
  ASSERT_NE(pcln, nullptr);
  std::mt19937_64 rng(20261121);
  int opened = 0;
  for (int round = 0; round < 60; ++round) {
    std::string bytes = original;
    // Half the rounds aim at the pclntab, where the parser works hardest.
    bool aim = round % 2 == 0;
    uint64_t base = aim ? pcln->offset : 0, span = aim ? pcln->size : bytes.size();
    for (int flips = 0; flips < 64; ++flips) {
      uint64_t off = base + rng() % span;
      bytes[off] ^= static_cast<char>(1u << (rng() % 8));
    }
    std::string path = WriteTemp("flipped", bytes);
    auto bin = symbolizer::GoBinary::Open(path);
    if (!bin.ok()) continue;
    ++opened;
    const auto& tab = (*bin)->pclntab();
    for (uint64_t pc = tab.text_start(); pc < tab.text_end(); pc += 977) {
      auto frames = (*bin)->Symbolize(pc);
      (void)frames;  // any answer is fine; faults are not
    }
    if (auto types = (*bin)->types(); types.ok()) {
      auto found = symbolizer::FindErrorTypes(**types);
      (void)found;
    }
  }
  EXPECT_GT(opened, 0) << "no mutated binary opened: the flips test nothing";
}

}  // namespace
}  // namespace goerrprof::testing
