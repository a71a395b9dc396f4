// errgen's ground truth against a recording: errgen (testdata/go_binaries/
// errgen) prints what it created, per scenario and per panic; a profile
// `goerrprof record` made of it must hold exactly that. Shared by
// record_test (every release and flavour) and record_messages_test (each
// --messages setting).
#ifndef GOERRPROF_TESTS_E2E_ERRGEN_TRUTH_H_
#define GOERRPROF_TESTS_E2E_ERRGEN_TRUTH_H_

#include <functional>
#include <string>
#include <vector>

#include "github.com/google/pprof/proto/profile.pb.h"
#include "google/protobuf/struct.pb.h"
#include "tests/test_support.h"

namespace goerrprof::testing {

struct ErrgenRecording {
  perftools::profiles::Profile profile;
  google::protobuf::Value truth;  // errgen's JSON
  std::string record_stderr;      // what goerrprof said
};

// Runs `errgen -wait -n 2 -fatal-panic` with `goerrprof record --pid PID
// flags...` attached from before its first scenario until it exits (status
// 2, its fatal panic); record must exit 0 with nothing dropped.
void RecordErrgenRun(const CorpusBinary& b, const std::vector<std::string>& flags,
                     ErrgenRecording* recording);

// What the recording kept of the text read from errgen: each truth message
// and goroutine label value goes through `text` before the comparison, and
// `labels` false means the profile has no goroutine labels.
struct TruthText {
  std::function<std::string(const std::string&)> text = [](const std::string& s) { return s; };
  bool labels = true;
};

// Per creating site the profile's counts, types, messages, chains, labels
// and known leaf frames equal the truth's; per panic site its value and
// fate. Failures are gtest failures.
void ExpectErrgenTruth(const perftools::profiles::Profile& profile,
                       const google::protobuf::Value& truth, const TruthText& text = {});

}  // namespace goerrprof::testing

#endif  // GOERRPROF_TESTS_E2E_ERRGEN_TRUTH_H_
