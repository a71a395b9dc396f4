// Shared helpers for goerrprof's tests: the Go corpus manifests, running a
// command, and parsing the JSON ground truth the Go test programs print.
#ifndef GOERRPROF_TESTS_TEST_SUPPORT_H_
#define GOERRPROF_TESTS_TEST_SUPPORT_H_

#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "github.com/google/pprof/proto/profile.pb.h"
#include "google/protobuf/struct.pb.h"

namespace goerrprof::testing {

struct CorpusBinary {
  std::string go_version;  // "go1.21.13"
  std::string program;     // "errgen", "inlframes", "esbuild"
  std::string flavour;     // "default", "stripped", "pie", "cgo"; esbuild: its version
  std::string path;
  std::string Label() const;  // usable as a gtest name
};

// Directory of the built Go corpus ($GOERRPROF_CORPUS or <repo>/.cache/corpus).
std::string CorpusDir();
// Rows of <corpus>/manifest.tsv, and of the esbuild manifest when `esbuild`.
absl::StatusOr<std::vector<CorpusBinary>> LoadCorpus(bool esbuild);
// Absolute path of the gosym oracle.
std::string OraclePath();
// Absolute path of the goerrprof executable under test.
std::string GoerrprofPath();

struct CommandResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};
// Runs argv (no shell) with a hard time limit; stdin is /dev/null.
CommandResult RunCommand(const std::vector<std::string>& argv, int timeout_seconds = 120);

// A child process with pipes on stdin/stdout/stderr, for tests that talk to
// the Go test programs and to goerrprof while both run. Every wait is bounded.
class Child {
 public:
  static absl::StatusOr<std::unique_ptr<Child>> Spawn(const std::vector<std::string>& argv);
  ~Child();  // kills and reaps a child still running
  pid_t pid() const { return pid_; }
  // One line from stdout (or stderr), without the newline.
  absl::StatusOr<std::string> ReadLine(bool from_stderr, int timeout_seconds = 60);
  absl::Status Write(const std::string& bytes);
  void CloseStdin();
  // Waits for exit, collecting the rest of stdout and stderr.
  absl::StatusOr<CommandResult> Finish(int timeout_seconds = 120);

 private:
  Child() = default;
  pid_t pid_ = -1;
  int in_ = -1, out_ = -1, err_ = -1;
  std::string out_buf_, err_buf_;
};

// "go1.27.4" -> {1, 27, 4}: numeric, so go1.9 sorts before go1.19.
std::vector<int> VersionKey(const std::string& go_version);

// `errgen -wait -n N` started and ready (its "ready <pid>" line read within
// timeout_seconds, and kept in *ready_line when given); null after an
// ADD_FAILURE otherwise.
std::unique_ptr<Child> StartErrgen(const std::string& path, int n = 1,
                                   std::string* ready_line = nullptr, int timeout_seconds = 60);

// Registers one gtest per corpus binary of `program` ("*" for all but the
// demo; "errgen-cgo" for one flavour), in suite `suite`, running `body`. A missing corpus registers one
// failing test that says how to build it.
void RegisterCorpusTests(const char* suite, const std::string& program, bool with_esbuild,
                         std::function<void(const CorpusBinary&)> body);

// A pprof sample as tests read it: its first value, the functions of its
// stack (leaf first, each location's inlined frames innermost first), and
// its labels by key (a key given twice keeps the last value).
struct ProfileSample {
  int64_t value = 0;
  std::vector<std::string> functions;
  std::map<std::string, std::string> labels;
  std::map<std::string, int64_t> num_labels;
  size_t label_count = 0;  // labels on the sample, repeats included
};
std::vector<ProfileSample> ProfileSamples(const perftools::profiles::Profile& profile);

absl::StatusOr<google::protobuf::Value> ParseJson(const std::string& text);
// Field lookups on parsed JSON that fail loudly rather than default.
const google::protobuf::Value& Get(const google::protobuf::Value& obj, const std::string& key);
std::string GetString(const google::protobuf::Value& obj, const std::string& key);
int64_t GetInt(const google::protobuf::Value& obj, const std::string& key);

}  // namespace goerrprof::testing

#endif  // GOERRPROF_TESTS_TEST_SUPPORT_H_
