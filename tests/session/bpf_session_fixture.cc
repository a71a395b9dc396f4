#include "tests/session/bpf_session_fixture.h"

#include <bpf/bpf.h>
#include <errno.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "goabi/g_layout.h"
#include "gtest/gtest.h"
#include "x86/decoder.h"

namespace goerrprof::testing {
namespace {

using profiler::BpfSession;
using profiler::CapturedError;

// errgen's site functions (scenarios.go, scenarios_go120.go).
const char* const kSites[] = {
    "main.siteNewCall",     "main.siteNewInline", "main.siteErrorfPlain", "main.siteWrapChain",
    "main.siteOpenMissing", "main.siteDialRefused", "main.siteCodeValue", "main.siteQueryPtr",
    "main.siteMulti",       "main.siteAtoi",      "main.siteJSON",        "main.sitePanic",
    "main.siteTwoW",        "main.siteJoin",      "main.siteLabelled",    "main.siteManyLabels",
    "main.siteHelperBranch", "main.siteHelperMultiReturn", "main.siteHelperTwice",
};

std::optional<size_t> FindFunc(const symbolizer::Pclntab& tab, absl::string_view name) {
  for (size_t i = 0; i < tab.num_functions(); ++i) {
    if (tab.FuncName(i) == name) return i;
  }
  return std::nullopt;
}

// For each RET of the function: the first instruction of the frame teardown
// right before it (add rsp,N / pop rbp / mov rbp,[rsp+N], and nops Go may
// put between them). There the result
// registers are final and RBP is still this frame's, so the user stack walk
// includes the caller.
std::vector<uint64_t> EpilogueProbes(const symbolizer::GoBinary& bin, absl::string_view name) {
  std::vector<uint64_t> out;
  auto fi = FindFunc(bin.pclntab(), name);
  if (!fi) return out;
  uint64_t entry = bin.pclntab().FuncEntry(*fi), end = bin.pclntab().FuncEnd(*fi);
  auto code = bin.elf().ReadVirtual(entry, end - entry);
  if (!code.ok()) return out;
  auto decoder = x86::Decoder::Create();
  if (!decoder.ok()) return out;
  std::vector<x86::TextInsn> insn = (*decoder)->DecodeText(*code, entry);
  size_t n = insn.size();
  std::vector<uint64_t> jump_targets;
  for (size_t i = 0; i < n; ++i) {
    std::string m = insn[i].mnemonic, ops = insn[i].op_str;
    if (m[0] == 'j' && absl::StartsWith(ops, "0x")) {
      jump_targets.push_back(std::stoull(ops, nullptr, 16));
    }
  }
  auto teardown = [&](const x86::TextInsn& x) {
    std::string m = x.mnemonic, ops = x.op_str;
    return m == "nop" || (m == "pop" && ops == "rbp") || (m == "add" && absl::StartsWith(ops, "rsp, ")) ||
           (m == "mov" && absl::StartsWith(ops, "rbp, qword ptr [rsp"));
  };
  for (size_t i = 0; i < n; ++i) {
    if (insn[i].mnemonic != "ret") continue;
    size_t k = i;
    while (k > 0 && teardown(insn[k - 1])) --k;
    // Nothing may jump into the middle of the epilogue, past our probe.
    for (uint64_t t : jump_targets) {
      if (t > insn[k].addr && t <= insn[i].addr) {
        ADD_FAILURE() << name << ": jump into the epilogue at 0x" << std::hex << t;
      }
    }
    out.push_back(insn[k].addr);
  }
  return out;
}

bool ProgGone(uint32_t id) {
  for (int i = 0; i < 100; ++i) {  // freeing is RCU-deferred
    int fd = bpf_prog_get_fd_by_id(id);
    if (fd < 0 && errno == ENOENT) return true;
    if (fd >= 0) close(fd);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

}  // namespace

bool IsRoot() { return geteuid() == 0; }

uint64_t ResultCookie() {
  return GEP_COOKIE(GEP_LOC(GEP_LOC_REG, GEP_RAX, 0), GEP_LOC(GEP_LOC_REG, GEP_RBX, 0));
}

std::string NewestPath(const std::string& program) {
  auto b = NewestCorpusBinary(false, program, "default");
  return b ? CorpusBinaryPath(*b) : "";
}

std::future<absl::StatusOr<CommandResult>> Release(Child& c) {
  (void)c.Write("\n");
  return std::async(std::launch::async, [&c] { return c.Finish(); });
}

void Prepare(const std::string& path, Target* t) {
  t->path = path;
  auto bin = symbolizer::GoBinary::Open(path);
  ASSERT_TRUE(bin.ok()) << bin.status();
  t->bin = std::move(*bin);
  auto reader = t->bin->types();
  ASSERT_TRUE(reader.ok()) << reader.status();
  auto types = symbolizer::FindErrorTypes(**reader);
  ASSERT_TRUE(types.ok()) << types.status();
  auto layouts = profiler::LayoutsFor(*t->bin, *types);
  ASSERT_TRUE(layouts.ok()) << layouts.status();
  t->config.layouts = std::move(*layouts);
  auto g = goabi::GLayoutFor(t->bin->version());
  ASSERT_TRUE(g.ok()) << g.status();
  t->config.goid_offset = g->goid;
  t->config.gopc_offset = g->gopc;
  t->config.labels_offset = g->labels;
  t->config.label_storage = g->label_storage;
  t->config.g_source = g->g_in_r14 ? profiler::GSource::kR14 : profiler::GSource::kTls;
  t->config.tls_g_offset = g->tls_g_offset;
  t->config.executable = path;
  for (const char* site : kSites) {
    for (uint64_t a : EpilogueProbes(*t->bin, site)) {
      t->config.probes.push_back({a, ResultCookie(), 0, 0});
      t->probe_func[a] = site;
    }
  }
  ASSERT_GE(t->config.probes.size(), 12u);
}

void PrepareNewestErrgen(Target* t) {
  std::string path = NewestPath("errgen");
  ASSERT_FALSE(path.empty()) << "no errgen in the corpus";
  Prepare(path, t);
}

void StartTarget(Target* t, std::unique_ptr<Child>* child, int n) {
  *child = StartErrgen(t->path, n, nullptr, kReadySeconds);
  ASSERT_NE(*child, nullptr);
  t->config.pid = (*child)->pid();
}

void StartNewestErrgen(Target* t, std::unique_ptr<Child>* child, int n) {
  ASSERT_NO_FATAL_FAILURE(PrepareNewestErrgen(t));
  StartTarget(t, child, n);
}

void Drain(BpfSession& s, std::vector<CapturedError>* events) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!s.target_exited() && std::chrono::steady_clock::now() < deadline) {
    auto n = s.Poll(200, [&](const CapturedError& e) { events->push_back(e); });
    ASSERT_TRUE(n.ok()) << n.status();
  }
  ASSERT_TRUE(s.target_exited());
  auto n = s.Poll(0, [&](const CapturedError& e) { events->push_back(e); });
  ASSERT_TRUE(n.ok()) << n.status();
}

void CaptureErrgen(Target* t, std::unique_ptr<BpfSession>* session,
                   std::vector<CapturedError>* events, int n, CommandResult* result) {
  std::unique_ptr<Child> child;
  ASSERT_NO_FATAL_FAILURE(StartTarget(t, &child, n));
  auto started = BpfSession::Start(t->config);
  ASSERT_TRUE(started.ok()) << started.status();
  *session = std::move(*started);
  auto finished = Release(*child);
  ASSERT_NO_FATAL_FAILURE(Drain(**session, events));
  auto run = finished.get();
  ASSERT_TRUE(run.ok()) << run.status();
  ASSERT_EQ(run->exit_code, 0) << run->err;
  if (result) *result = std::move(*run);
}

void ExpectNothingLeft(const std::vector<uint32_t>& ids, const std::string& exe) {
  for (uint32_t id : ids) EXPECT_TRUE(ProgGone(id)) << "BPF program " << id << " still loaded";
  for (const char* f :
       {"/sys/kernel/tracing/uprobe_events", "/sys/kernel/debug/tracing/uprobe_events"}) {
    if (access(f, R_OK) != 0) continue;
    std::string text = ReadFileOrEmpty(f);
    EXPECT_EQ(text.find(exe), std::string::npos) << f << ":\n" << text;
    EXPECT_EQ(text.find("libbpf_"), std::string::npos) << f << ":\n" << text;
  }
  // Freeing a sleepable program waits for an RCU-tasks-trace grace period.
  CommandResult r;
  for (int i = 0; i < 100; ++i) {
    r = RunCommand({"/usr/sbin/bpftool", "prog", "list"});
    if (r.out.find("gep_on_error") == std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  for (uint32_t id : ids) {
    EXPECT_EQ(r.out.find(absl::StrCat(id, ": ")), std::string::npos) << r.out;
  }
  EXPECT_EQ(r.out.find("gep_on_error"), std::string::npos) << r.out;
}

}  // namespace goerrprof::testing
