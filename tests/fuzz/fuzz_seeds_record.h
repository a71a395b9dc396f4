// Seeds of the record harness: ring-buffer records as the error probe
// writes them (bpf/errors_abi.h), for every error type the decoder is
// given names of, with wrapped chains, addresses, labels and stacks.
#ifndef GOERRPROF_TESTS_FUZZ_FUZZ_SEEDS_RECORD_H_
#define GOERRPROF_TESTS_FUZZ_FUZZ_SEEDS_RECORD_H_

#include <string>

namespace goerrprof::fuzz {

// Writes the records into dir; returns how many.
int RecordSeeds(const std::string& dir);

}  // namespace goerrprof::fuzz

#endif  // GOERRPROF_TESTS_FUZZ_FUZZ_SEEDS_RECORD_H_
