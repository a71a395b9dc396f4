// Shared helpers for goerrprof's tests: the Go corpus manifests, running a
// command, and parsing the JSON ground truth the Go test programs print.
#ifndef GOERRPROF_TESTS_TEST_SUPPORT_H_
#define GOERRPROF_TESTS_TEST_SUPPORT_H_

#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "github.com/google/pprof/proto/profile.pb.h"
#include "google/protobuf/struct.pb.h"
#include "symbolizer/go_binary.h"

namespace goerrprof::testing {

struct CorpusBinary {
  std::string go_version;  // "go1.21.13"
  std::string program;     // "errgen", "inlframes", "esbuild"
  std::string flavour;     // "default", "stripped", "pie", "cgo"; esbuild: its version
  std::string path;
  std::string Label() const;  // usable as a gtest name
};

// This checkout ($GOERRPROF_REPO or the source directory built from).
std::string RepoDir();
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
  int64_t value = 0;            // the first sample type's
  std::vector<int64_t> values;  // every sample type's
  std::vector<std::string> functions;
  std::map<std::string, std::string> labels;
  std::map<std::string, int64_t> num_labels;
  size_t label_count = 0;  // labels on the sample, repeats included
};
std::vector<ProfileSample> ProfileSamples(const perftools::profiles::Profile& profile);

// The first PC of `function` past its entry (so pc-1 is in it too, as for a
// return address) that symbolizes to frames, innermost first, for which
// `want` holds; 0 when there is none or no such function.
uint64_t FindPcWhere(
    const symbolizer::GoBinary& bin, absl::string_view function,
    absl::FunctionRef<bool(uint64_t pc, const std::vector<symbolizer::SourceFrame>& frames)> want);

absl::StatusOr<google::protobuf::Value> ParseJson(const std::string& text);
// Field lookups on parsed JSON that fail loudly rather than default.
const google::protobuf::Value& Get(const google::protobuf::Value& obj, const std::string& key);
std::string GetString(const google::protobuf::Value& obj, const std::string& key);
int64_t GetInt(const google::protobuf::Value& obj, const std::string& key);

// b's path, or the same file under this checkout's corpus when the
// manifest was written elsewhere.
std::string CorpusBinaryPath(const CorpusBinary& b);
// The binary of `program` in `flavour` built by the newest Go release
// (esbuild: any, by the newest Go); none without a corpus.
std::optional<CorpusBinary> NewestCorpusBinary(bool esbuild, const std::string& program,
                                               const std::string& flavour);
// A file's whole text; "" when it cannot be read.
std::string ReadFileOrEmpty(const std::string& path);
// A loopback TCP port free at the time of asking, for servers that cannot
// pick one and report it (go tool pprof -http, Prometheus); -1 on failure.
int FreeLoopbackPort();

}  // namespace goerrprof::testing

#endif  // GOERRPROF_TESTS_TEST_SUPPORT_H_
