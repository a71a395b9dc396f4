// Shared by the suites of `goerrprof goroutines`: goroutine dumps (Go's
// debug=2 text, or ours) parsed, and the parked test program started with
// its own dump and labels as the truth to compare with.
#ifndef GOERRPROF_TESTS_GOROUTINES_GOROUTINES_TEST_UTIL_H_
#define GOERRPROF_TESTS_GOROUTINES_GOROUTINES_TEST_UTIL_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tests/test_support.h"

namespace goerrprof::testing {

inline constexpr int kTimeout = 120;
inline const std::vector<std::string> kPprof = {"env", "GOTOOLCHAIN=local",
                                                "/usr/local/go/bin/go", "tool", "pprof"};

struct Frame {
  std::string function, file;
  int64_t line = 0;
  int64_t offset = -1;  // -1: none printed
  bool operator==(const Frame&) const = default;
};

struct Dumped {
  uint64_t id = 0;
  std::string state;
  std::string wait;  // what follows the state in the header, if anything
  std::string marker;  // a "..." line: frames left out
  std::vector<Frame> frames;
  std::optional<Frame> creator;
  uint64_t parent = 0;
};

// "function file:line +offset", for failure messages.
std::string Describe(const Frame& f);

// Parses Go's debug=2 dump, or ours (same shape, plus "# ..." lines).
std::map<uint64_t, Dumped> ParseDump(const std::string& text);

using Labels = std::map<std::string, std::string>;

struct Truth {
  std::map<uint64_t, Dumped> dump;
  std::map<uint64_t, Labels> labels;
  uint64_t dumper = 0;  // running at dump time
};

// Starts parked and reads its truth; the child stays blocked on stdin.
std::unique_ptr<Child> StartParked(const std::string& path, Truth* truth, bool gc = false);

// Checks registered per corpus binary by main() (goroutines_test.cc).
void CheckParked(const CorpusBinary& b);
void CheckAllgs(const CorpusBinary& b);
void CheckAllocCounter(const CorpusBinary& b);
void CheckChurn(const CorpusBinary& b);
void CheckEsbuild(const CorpusBinary& b);

}  // namespace goerrprof::testing

#endif  // GOERRPROF_TESTS_GOROUTINES_GOROUTINES_TEST_UTIL_H_
