// Seeds of the goroutine harness: the corpus's `parked` program is run,
// a snapshot of it is taken through a memory source that keeps every
// byte it reads, and those bytes become the harness's memory image.
#ifndef GOERRPROF_TESTS_FUZZ_FUZZ_SEEDS_LIVE_H_
#define GOERRPROF_TESTS_FUZZ_FUZZ_SEEDS_LIVE_H_

#include <string>

#include "absl/status/statusor.h"

namespace goerrprof::fuzz {

// Writes one image per binary of GoroutineBinaries into dir; returns how many.
absl::StatusOr<int> GoroutineSeeds(const std::string& dir);

}  // namespace goerrprof::fuzz

#endif  // GOERRPROF_TESTS_FUZZ_FUZZ_SEEDS_LIVE_H_
