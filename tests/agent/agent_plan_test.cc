// The agent plans a new executable on a thread of its own: a process of it
// counts as planning, with nothing attached, until CollectPlans takes the
// plan; then it is attached, and the next process of the same executable
// attaches at once from the kept plan. In-process, with real BPF.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "agent/agent.h"
#include "gtest/gtest.h"
#include "tests/test_support.h"

namespace goerrprof::testing {
namespace {

using profiler::Agent;
using profiler::AgentOptions;
using profiler::ProcessStatus;

size_t Count(const Agent& a, ProcessStatus s) {
  return a.StatusCounts()[static_cast<size_t>(s)];
}

TEST(AgentBackgroundPlanning, PlanningThenAttachedThenReused) {
  auto errgen = NewestCorpusBinary(false, "errgen", "default");
  ASSERT_TRUE(errgen) << "no errgen in " << CorpusDir() << ": run scripts/test.sh";
  // A private copy under a name of its own: only it passes --include, and
  // no plan is cached for it (the cache is off), so planning really runs.
  const std::string copy =
      absl::StrCat(::testing::TempDir(), "/errgen-plan-", getpid());
  std::filesystem::copy_file(errgen->path, copy,
                             std::filesystem::copy_options::overwrite_existing);
  AgentOptions o;
  o.include = absl::StrCat("errgen-plan-", getpid());
  o.record.max_overhead = 0;
  auto agent = Agent::Create(o);
  ASSERT_TRUE(agent.ok()) << agent.status();
  std::vector<std::string> said;  // the agent's lines, shown on failure
  (*agent)->set_log([&](const std::string& line) { said.push_back(line); });
  (*agent)->PlanInBackground();

  // errgen under a shell, not as our child: the agent never takes its own
  // children (here the test is the agent).
  std::vector<pid_t> targets;
  struct Reap {
    std::vector<pid_t>& pids;
    ~Reap() {
      for (pid_t p : pids) kill(p, SIGKILL);
    }
  } reap{targets};
  auto start = [&](std::unique_ptr<Child>* out, pid_t* pid) {
    // (An asynchronous list reads /dev/null unless told otherwise.)
    auto c = Child::Spawn({"/bin/sh", "-c", "exec 3<&0; \"$0\" -wait <&3 & wait", copy});
    ASSERT_TRUE(c.ok()) << c.status();
    auto ready = (*c)->ReadLine(false);
    ASSERT_TRUE(ready.ok()) << ready.status();
    absl::string_view line = *ready;
    ASSERT_TRUE(absl::ConsumePrefix(&line, "ready ")) << *ready;
    ASSERT_TRUE(absl::SimpleAtoi(line, pid)) << *ready;
    targets.push_back(*pid);
    *out = std::move(*c);
  };
  std::unique_ptr<Child> first, second;
  pid_t first_pid = 0, second_pid = 0;
  ASSERT_NO_FATAL_FAILURE(start(&first, &first_pid));
  (*agent)->OnExec(first_pid);
  // Handed to the worker: nothing waited here, nothing is attached yet.
  EXPECT_EQ(Count(**agent, ProcessStatus::kPlanning), 1u);
  EXPECT_EQ((*agent)->recorder().live_sessions(), 0u);

  // The plan arrives when the worker is done (bounded).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  size_t plans = 0;
  while ((plans = (*agent)->CollectPlans()) == 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_EQ(plans, 1u) << "no plan within 60 s";
  EXPECT_EQ(Count(**agent, ProcessStatus::kPlanning), 0u);
  EXPECT_EQ(Count(**agent, ProcessStatus::kAttached), 1u) << absl::StrJoin(said, "\n");

  // The same executable again: its plan is kept, so it attaches at once.
  ASSERT_NO_FATAL_FAILURE(start(&second, &second_pid));
  (*agent)->OnExec(second_pid);
  EXPECT_EQ(Count(**agent, ProcessStatus::kPlanning), 0u);
  EXPECT_EQ(Count(**agent, ProcessStatus::kAttached), 2u);
  EXPECT_EQ((*agent)->CollectPlans(), 0u);

  (*agent)->DetachAll();
  first.reset();
  second.reset();
  std::filesystem::remove(copy);
}

}  // namespace
}  // namespace goerrprof::testing
