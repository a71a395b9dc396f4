// What the libFuzzer harnesses (tests/fuzz/*_fuzzer.cc) and their seed
// generator share: the corpus binaries they start from, one walk over
// everything goerrprof reads of a Go binary, and the type names the
// record decoder is given.
#ifndef GOERRPROF_TESTS_FUZZ_FUZZ_SUPPORT_H_
#define GOERRPROF_TESTS_FUZZ_FUZZ_SUPPORT_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "events/decode.h"
#include "symbolizer/go_binary.h"

namespace goerrprof::fuzz {

// Corpus binaries by Go release prefix and file name: {"go1.19", "errgen-default"}
// is <corpus>/go1.19.*/errgen-default. The corpus is $GOERRPROF_CORPUS or
// <repo>/.cache/corpus; the environment variable `env` (colon-separated
// paths) replaces the picks. Exits with a message when none is there
// (scripts/build_go_corpus.sh builds them).
std::vector<std::string> CorpusBinaries(
    const std::vector<std::pair<std::string, std::string>>& picks, const char* env);

// The binaries the patch harness patches ($GOERRPROF_FUZZ_BINARIES).
std::vector<std::string> PatchBinaries();

// The whole file; exits with a message when it cannot be read.
std::string ReadFileOrDie(const std::string& path);

// What `inspect`, `record` and `goroutines` read of a binary: build info,
// every function's name and the frames at its entry and middle (at most
// max_functions of them, spread over the table), the creator of a pc,
// the error types and runtime.allgs. `candidates`: the type references
// of the code (TypeDescriptorRefs, a scan of all text), when known.
void Exercise(const symbolizer::GoBinary& bin, size_t max_functions,
              const std::vector<uint64_t>* candidates = nullptr);

// Runtime type addresses the record decoder knows (the error types the
// renderer knows by name, with their layouts' field names), and the
// address types of net.Addr fields.
struct KnownType {
  uint64_t addr;
  const char* name;
  std::vector<std::string> strings;  // string fields, by index
  std::vector<std::string> addrs;    // address fields, by index
};
const std::vector<KnownType>& KnownErrorTypes();
const std::vector<KnownType>& KnownAddrTypes();
profiler::RecordNames MakeRecordNames();

}  // namespace goerrprof::fuzz

#endif  // GOERRPROF_TESTS_FUZZ_FUZZ_SUPPORT_H_
