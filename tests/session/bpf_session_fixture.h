// What the bpf_session_test sources share: a session config for errgen with
// probes placed by hand (until the planner exists) at the epilogue of each
// site function, where the returned error is in RAX/RBX; running errgen
// under it; and the check that nothing of ours is left in the kernel.
#ifndef GOERRPROF_TESTS_SESSION_BPF_SESSION_FIXTURE_H_
#define GOERRPROF_TESTS_SESSION_BPF_SESSION_FIXTURE_H_

#include <cstdint>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "session/bpf_session.h"
#include "symbolizer/go_binary.h"
#include "tests/test_support.h"

namespace goerrprof::testing {

// How long errgen may take to say "ready <pid>".
constexpr int kReadySeconds = 20;

bool IsRoot();

// The BPF cookie of a probe that reads the returned error from RAX/RBX.
uint64_t ResultCookie();

// The default-flavour build of `program` from the newest release in the
// corpus, or "" without one.
std::string NewestPath(const std::string& program);

// Releases errgen and collects its output in the background while the test
// polls the session: its JSON could otherwise fill the pipe and stall it.
std::future<absl::StatusOr<CommandResult>> Release(Child& c);

struct Target {
  std::string path;
  std::unique_ptr<symbolizer::GoBinary> bin;
  profiler::SessionConfig config;
  std::map<uint64_t, std::string> probe_func;  // probe vaddr -> site function
};

// The config for the binary at `path`: its layouts, its g, a probe at
// every epilogue of errgen's site functions.
void Prepare(const std::string& path, Target* t);
// Prepare for the newest errgen of the corpus.
void PrepareNewestErrgen(Target* t);
// `errgen -wait -n n` of t->path started and ready; t->config.pid is its pid.
void StartTarget(Target* t, std::unique_ptr<Child>* child, int n = 1);
// PrepareNewestErrgen, then StartTarget.
void StartNewestErrgen(Target* t, std::unique_ptr<Child>* child, int n = 1);

// Polls until the target has exited and everything is drained.
void Drain(profiler::BpfSession& s, std::vector<profiler::CapturedError>* events);

// Runs `errgen -wait -n n` under a session with t's config until it exits 0,
// collecting every event (and its output, its truth, in `result`); the
// session stays open for its counters.
void CaptureErrgen(Target* t, std::unique_ptr<profiler::BpfSession>* session,
                   std::vector<profiler::CapturedError>* events, int n = 1,
                   CommandResult* result = nullptr);

// Nothing of ours left: the programs (by id), legacy uprobe events.
void ExpectNothingLeft(const std::vector<uint32_t>& ids, const std::string& exe);

}  // namespace goerrprof::testing

#endif  // GOERRPROF_TESTS_SESSION_BPF_SESSION_FIXTURE_H_
