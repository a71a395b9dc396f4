// The agent plans a new executable on a thread of its own: a process of it
// counts as planning, with nothing attached, until CollectPlans takes the
// plan; then it is attached, and the next process of the same executable
// attaches at once from the kept plan. In-process, with real BPF.
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "absl/strings/str_cat.h"
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
  (*agent)->PlanInBackground();

  auto start = [&](std::unique_ptr<Child>* out) {
    auto c = Child::Spawn({copy, "-wait"});
    ASSERT_TRUE(c.ok()) << c.status();
    auto ready = (*c)->ReadLine(false);
    ASSERT_TRUE(ready.ok()) << ready.status();
    ASSERT_EQ(*ready, absl::StrCat("ready ", (*c)->pid()));
    *out = std::move(*c);
  };
  std::unique_ptr<Child> first, second;
  ASSERT_NO_FATAL_FAILURE(start(&first));
  (*agent)->OnExec(first->pid());
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
  EXPECT_EQ(Count(**agent, ProcessStatus::kAttached), 1u);

  // The same executable again: its plan is kept, so it attaches at once.
  ASSERT_NO_FATAL_FAILURE(start(&second));
  (*agent)->OnExec(second->pid());
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
