// End to end against ground truth: errgen (every release × default,
// stripped, PIE) runs its scenarios while `goerrprof record` is attached;
// the profile's counts, types, messages and chains per creating site must
// equal what errgen printed about itself.
#include "gtest/gtest.h"
#include "tests/e2e/errgen_truth.h"
#include "tests/test_support.h"

namespace goerrprof::testing {
namespace {

void RecordErrgen(const CorpusBinary& b) {
  ErrgenRecording r;
  ASSERT_NO_FATAL_FAILURE(RecordErrgenRun(b, {}, &r));
  ExpectErrgenTruth(r.profile, r.truth);
}

}  // namespace
}  // namespace goerrprof::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  for (const char* flavour : {"errgen-default", "errgen-stripped", "errgen-pie"}) {
    goerrprof::testing::RegisterCorpusTests("Record", flavour, false,
                                            goerrprof::testing::RecordErrgen);
  }
  return RUN_ALL_TESTS();
}
