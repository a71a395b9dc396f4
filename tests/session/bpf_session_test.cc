// Real BPF against real errgen processes: probes placed by hand (until the
// planner exists) at the epilogue of each errgen site function, where the
// returned error is in RAX/RBX, must see exactly the errors errgen reports
// creating, with the same types, messages and Unwrap chains, a goroutine
// id and a stack in main.*; and nothing of ours may be left in the kernel.
// Needs root.
#include <bpf/bpf.h>
#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <fstream>
#include <future>
#include <map>
#include <set>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "goabi/g_layout.h"
#include "gtest/gtest.h"
#include "session/bpf_session.h"
#include "symbolizer/go_binary.h"
#include "tests/test_support.h"
#include "x86/decoder.h"

namespace goerrprof::testing {
namespace {

// errgen's scenarios that create their errors on a goroutine of their own
// (testdata/go_binaries/errgen/goroutines.go).
const std::set<std::string> kGoroutineSites = {"main.siteLabelled", "main.siteManyLabels"};

using profiler::BpfSession;
using profiler::CapturedAddr;
using profiler::CapturedError;
using profiler::CapturedLink;
using profiler::SessionConfig;

// errgen's site functions (scenarios.go, scenarios_go120.go).
const char* const kSites[] = {
    "main.siteNewCall",     "main.siteNewInline", "main.siteErrorfPlain", "main.siteWrapChain",
    "main.siteOpenMissing", "main.siteDialRefused", "main.siteCodeValue", "main.siteQueryPtr",
    "main.siteMulti",       "main.siteAtoi",      "main.siteJSON",        "main.sitePanic",
    "main.siteTwoW",        "main.siteJoin",      "main.siteLabelled",    "main.siteManyLabels",
};

// ---- errgen as a child process ----

std::unique_ptr<Child> SpawnOrNull(const std::vector<std::string>& argv) {
  auto c = Child::Spawn(argv);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? std::move(*c) : nullptr;
}

// The first stdout line (errgen's "ready <pid>"), or why there is none.
std::string FirstLine(Child& c) {
  auto line = c.ReadLine(/*from_stderr=*/false, 20);
  return line.ok() ? *line : line.status().ToString();
}

// Releases errgen and collects its output in the background while the test
// polls the session: its JSON could otherwise fill the pipe and stall it.
std::future<absl::StatusOr<CommandResult>> Release(Child& c) {
  (void)c.Write("\n");
  return std::async(std::launch::async, [&c] { return c.Finish(); });
}

// ---- Probe points ----

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

uint64_t ResultCookie() {
  return GEP_COOKIE(GEP_LOC(GEP_LOC_REG, GEP_RAX, 0), GEP_LOC(GEP_LOC_REG, GEP_RBX, 0));
}

// ---- Rendering Error() from captured fields, for errgen's types ----

std::string Quote(const std::string& s) { return "\"" + s + "\""; }  // plain ASCII only

// TCPAddr.String() for the addresses errgen dials: IPv4 (4 bytes or
// IPv4-mapped 16), no zone. Anything else is not rendered here.
std::optional<std::string> TcpAddrText(const CapturedAddr& a) {
  if (a.type_name != "*net.TCPAddr" || a.kind != GEP_ADDR_TCP || !a.decoded() || a.data == 0) {
    return std::nullopt;
  }
  const auto* zone = a.String("Zone");
  if (!zone || zone->read_failed || !zone->value.empty()) return std::nullopt;
  std::string ip = a.ip;
  if (ip.size() != a.ip_length) return std::nullopt;
  if (ip.size() == 16 && ip.compare(0, 12, std::string("\0\0\0\0\0\0\0\0\0\0\xff\xff", 12)) == 0) {
    ip = ip.substr(12);
  }
  if (ip.size() != 4) return std::nullopt;
  auto b = [&](int k) { return static_cast<unsigned>(static_cast<uint8_t>(ip[k])); };
  return absl::StrCat(b(0), ".", b(1), ".", b(2), ".", b(3), ":", a.port);
}

std::optional<std::string> Render(const CapturedError& e, size_t i) {
  const CapturedLink& l = e.links[i];
  auto str = [&](const char* f) -> std::optional<std::string> {
    const auto* s = l.String(f);
    if (!s || s->read_failed || s->truncated()) return std::nullopt;
    return s->value;
  };
  std::vector<size_t> kids = e.Children(i);
  auto kid = [&](size_t k) -> std::optional<std::string> {
    if (k >= kids.size()) return std::nullopt;
    return Render(e, kids[k]);
  };
  const std::string& t = l.type_name;
  if (t == "*errors.errorString" || t == "*json.SyntaxError") return str(t[1] == 'e' ? "s" : "msg");
  if (t == "*fmt.wrapError" || t == "*fmt.wrapErrors") return str("msg");
  if (t == "*main.PanicError") {
    auto r = str("Reason");
    if (r) return "panic: " + *r;
    return std::nullopt;
  }
  if (t == "main.CodeError") {
    auto m = str("Msg");
    if (m) return absl::StrCat("code ", static_cast<int64_t>(l.value), ": ", *m);
    return std::nullopt;
  }
  if (t == "syscall.Errno") {
    static const std::map<uint64_t, std::string> kErrno = {
        {2, "no such file or directory"}, {111, "connection refused"}};
    auto it = kErrno.find(l.value);
    if (it != kErrno.end()) return it->second;
    return std::nullopt;
  }
  if (t == "*errors.joinError") {
    std::vector<std::string> parts;
    for (size_t k = 0; k < kids.size(); ++k) {
      auto m = kid(k);
      if (!m) return std::nullopt;
      parts.push_back(*m);
    }
    return absl::StrJoin(parts, "\n");
  }
  auto a = kid(0);
  if (t == "*main.QueryError") {
    auto q = str("Query");
    if (q && a) return "query " + *q + " failed: " + *a;
  } else if (t == "*main.MultiError") {
    auto op = str("Op");
    if (op && a) return absl::StrCat(*op, ": ", kids.size(), " errors, first: ", *a);
  } else if (t == "*fs.PathError") {
    auto op = str("Op"), p = str("Path");
    if (op && p && a) return *op + " " + *p + ": " + *a;
  } else if (t == "*os.SyscallError") {
    auto sc = str("Syscall");
    if (sc && a) return *sc + ": " + *a;
  } else if (t == "*net.OpError") {
    // Go: Op [" " Net] [" " Source] [(Source ? "->" : " ") Addr] ": " Err.
    auto op = str("Op"), net = str("Net");
    const CapturedAddr* src = l.Addr("Source");
    const CapturedAddr* dst = l.Addr("Addr");
    if (!op || !net || !src || !dst || !a) return std::nullopt;
    std::string s = *op;
    if (!net->empty()) s += " " + *net;
    if (!src->nil()) {
      auto x = TcpAddrText(*src);
      if (!x) return std::nullopt;
      s += " " + *x;
    }
    if (!dst->nil()) {
      auto x = TcpAddrText(*dst);
      if (!x) return std::nullopt;
      s += (src->nil() ? " " : "->") + *x;
    }
    return s + ": " + *a;
  } else if (t == "*strconv.NumError") {
    auto f = str("Func"), num = str("Num");
    if (f && num && a) return "strconv." + *f + ": parsing " + Quote(*num) + ": " + *a;
  }
  return std::nullopt;
}

// ---- The session under test ----

struct Target {
  std::unique_ptr<symbolizer::GoBinary> bin;
  SessionConfig config;
  std::map<uint64_t, std::string> probe_func;  // probe vaddr -> site function
};

void Prepare(const std::string& path, Target* t) {
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

// Polls until the target has exited and everything is drained.
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

bool ProgGone(uint32_t id) {
  for (int i = 0; i < 100; ++i) {  // freeing is RCU-deferred
    int fd = bpf_prog_get_fd_by_id(id);
    if (fd < 0 && errno == ENOENT) return true;
    if (fd >= 0) close(fd);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Nothing of ours left: the program (by id), legacy uprobe events.
void ExpectNothingLeft(const std::vector<uint32_t>& ids, const std::string& exe) {
  for (uint32_t id : ids) EXPECT_TRUE(ProgGone(id)) << "BPF program " << id << " still loaded";
  for (const char* f :
       {"/sys/kernel/tracing/uprobe_events", "/sys/kernel/debug/tracing/uprobe_events"}) {
    if (access(f, R_OK) != 0) continue;
    std::string text = Slurp(f);
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

bool IsRoot() { return geteuid() == 0; }

// The manifest's path, or the same file under this checkout's corpus when
// the manifest was written elsewhere.
std::string BinaryPath(const CorpusBinary& b) {
  if (access(b.path.c_str(), X_OK) == 0) return b.path;
  return absl::StrCat(CorpusDir(), "/", b.go_version, "/", b.program, "-", b.flavour);
}

// The default-flavour build of `program` from the newest release in the corpus.
std::string NewestCorpusBinary(const std::string& program) {
  auto corpus = LoadCorpus(false);
  if (!corpus.ok()) return "";
  std::string path;
  for (const auto& b : *corpus) {
    if (b.program == program && b.flavour == "default") path = BinaryPath(b);
  }
  return path;
}

// Runs `path -wait` under a session with t's config until it exits 0,
// collecting every event; the session stays open for its counters.
void CaptureErrgen(const std::string& path, Target* t, std::unique_ptr<BpfSession>* session,
                   std::vector<CapturedError>* events) {
  auto child = SpawnOrNull({path, "-wait"});
  ASSERT_NE(child, nullptr);
  ASSERT_EQ(FirstLine(*child), absl::StrCat("ready ", child->pid()));
  t->config.pid = child->pid();
  auto started = BpfSession::Start(t->config);
  ASSERT_TRUE(started.ok()) << started.status();
  *session = std::move(*started);
  auto finished = Release(*child);
  ASSERT_NO_FATAL_FAILURE(Drain(**session, events));
  auto run = finished.get();
  ASSERT_TRUE(run.ok()) << run.status();
  ASSERT_EQ(run->exit_code, 0);
}

void CheckErrgenWith(const std::string& path, const std::string& label, bool multi,
                     bool sleepable = true) {
  Target t;
  ASSERT_NO_FATAL_FAILURE(Prepare(path, &t));
  t.config.uprobe_multi = multi;
  t.config.sleepable = sleepable;
  constexpr int kN = 2;
  auto child = SpawnOrNull({path, "-wait", "-n", std::to_string(kN)});
  ASSERT_NE(child, nullptr);
  std::string ready = FirstLine(*child);
  ASSERT_EQ(ready, absl::StrCat("ready ", child->pid()));

  t.config.pid = child->pid();
  auto session = BpfSession::Start(t.config);
  ASSERT_TRUE(session.ok()) << session.status();
  std::vector<uint32_t> ids = (*session)->prog_ids();
  ASSERT_EQ(ids.size(), 1u);
  const auto& st = (*session)->attach_stats();
  EXPECT_EQ(st.multi, multi);
  std::cout << label << ": " << st.probes << " probes, load "
            << std::chrono::duration<double, std::milli>(st.load).count() << " ms, attach "
            << std::chrono::duration<double, std::milli>(st.attach).count() << " ms, bias 0x"
            << std::hex << (*session)->load_bias() << std::dec << "\n";
  EXPECT_EQ(st.fields_dropped, 0u);

  auto finished = Release(*child);
  std::vector<CapturedError> events;
  ASSERT_NO_FATAL_FAILURE(Drain(**session, &events));
  auto run = finished.get();
  ASSERT_TRUE(run.ok()) << run.status();
  ASSERT_EQ(run->exit_code, 0) << run->err;
  profiler::SessionCounters c = (*session)->Counters();
  std::vector<std::string> named;
  for (auto& [k, v] : c.Named()) named.push_back(absl::StrCat(k, "=", v));
  std::cout << "  counters: " << absl::StrJoin(named, " ") << "\n";
  session->reset();
  ExpectNothingLeft(ids, path);

  EXPECT_EQ(c.dropped_events(), 0u);
  EXPECT_EQ(c.partial_losses(), 0u);
  EXPECT_EQ(c[GEP_CTR_EVENTS], events.size());
  EXPECT_EQ(c[GEP_CTR_HITS], events.size());

  auto truth = ParseJson(run->out);
  ASSERT_TRUE(truth.ok()) << truth.status() << "\n" << run->out;

  // Ours, per site function: count, and per root message (or type chain
  // when a type cannot be rendered) the count.
  std::map<std::string, int> got_count;
  std::map<std::string, std::map<std::string, int>> got_keys;
  std::map<std::string, std::vector<const CapturedError*>> by_func;
  uint64_t goid = 0;
  for (const CapturedError& e : events) {
    auto it = t.probe_func.find(e.ip);
    ASSERT_NE(it, t.probe_func.end()) << "event at unknown ip 0x" << std::hex << e.ip;
    const std::string& fn = it->second;
    ++got_count[fn];
    by_func[fn].push_back(&e);
    // Goroutine: errgen creates everything on its main goroutine, except
    // its goroutine scenarios (goroutines.go), each on a goroutine of its own.
    const bool own_goroutine = kGoroutineSites.contains(fn);
    EXPECT_GT(e.goid, 0u);
    if (own_goroutine) {
      EXPECT_GT(e.goid, 1u) << fn;
      EXPECT_FALSE(e.labels.empty()) << fn;
      EXPECT_NE(e.gopc, 0u) << fn;
    } else {
      if (goid == 0) goid = e.goid;
      EXPECT_EQ(e.goid, goid);
      EXPECT_TRUE(e.labels.empty()) << fn;
    }
    EXPECT_EQ(e.pid, static_cast<uint32_t>(t.config.pid));
    EXPECT_TRUE(e.complete()) << fn << " flags " << e.flags;
    // Stack: the site function, then its caller main.main.
    ASSERT_GE(e.stack.size(), 2u) << fn;
    EXPECT_EQ(e.stack[0], e.ip);
    auto f0 = t.bin->Symbolize(e.stack[0]);
    ASSERT_TRUE(f0.ok()) << f0.status();
    EXPECT_EQ(f0->back().function, fn);
    bool saw_main = false;
    for (size_t k = 1; k < e.stack.size(); ++k) {
      auto f = t.bin->Symbolize(e.stack[k] - 1);
      if (f.ok() && f->back().function == (own_goroutine ? "main.labelledWorker" : "main.main")) {
        saw_main = true;
      }
    }
    // Before Go 1.21 recover() left RBP pointing at itself (the frame
    // pointer was not restored), so the walk loops in sitePanic.
    bool broken_fp = fn == "main.sitePanic" && !t.bin->version().AtLeast(1, 21);
    if (!saw_main && !broken_fp) {
      std::string frames;
      for (uint64_t pc : e.stack) {
        auto f = t.bin->Symbolize(pc == e.ip ? pc : pc - 1);
        absl::StrAppend(&frames, "\n  0x", absl::Hex(pc), " ",
                        f.ok() ? std::string(f->back().function) : f.status().ToString());
      }
      ADD_FAILURE() << fn << ": main.main not on the stack:" << frames;
    }
  }

  int scenarios = 0, compared = 0, dial_checked = 0;
  std::map<std::string, int> want_count;
  // Goroutine scenarios list one message once per label set: compare
  // messages with their total.
  std::map<std::pair<std::string, std::string>, int> message_count;
  for (const auto& sc : Get(*truth, "scenarios").list_value().values()) {
    message_count[{GetString(sc, "function"), GetString(sc, "message")}] += GetInt(sc, "count");
  }
  for (const auto& sc : Get(*truth, "scenarios").list_value().values()) {
    std::string fn = GetString(sc, "function");
    want_count[fn] += static_cast<int>(GetInt(sc, "count"));
    auto total = message_count.find({fn, GetString(sc, "message")});
    if (total == message_count.end()) continue;  // compared already
    int count = total->second;
    message_count.erase(total);
    ++scenarios;
    const auto& chain = Get(sc, "chain").list_value().values();
    std::vector<std::string> want_types;
    for (const auto& l : chain) want_types.push_back(GetString(l, "type"));
    // Find our events with this root message (or this type chain when the
    // root cannot be rendered from its fields).
    int matched = 0;
    for (const CapturedError* e : by_func[fn]) {
      std::vector<std::string> types;
      for (const CapturedLink& l : e->links) types.push_back(l.type_name);
      auto msg = Render(*e, 0);
      bool same = msg ? *msg == GetString(sc, "message") : types == want_types;
      if (fn == "main.siteDialRefused") {
        // The address is captured: the exact text, never the type fallback.
        ASSERT_TRUE(msg.has_value()) << fn;
        EXPECT_EQ(*msg, GetString(sc, "message")) << fn;
        ++dial_checked;
      }
      if (!same) continue;
      ++matched;
      if (matched > 1) continue;  // check the chain once per distinct message
      ASSERT_EQ(types, want_types) << fn;
      for (int k = 0; k < chain.size(); ++k) {
        auto m = Render(*e, k);
        ASSERT_TRUE(m.has_value()) << fn << " link " << k << " " << e->links[k].type_name;
        EXPECT_EQ(*m, GetString(chain[k], "message")) << fn << " link " << k;
        ++compared;
      }
    }
    EXPECT_EQ(matched, count) << fn << ": " << GetString(sc, "message");
  }
  EXPECT_GE(scenarios, 12);
  EXPECT_GT(dial_checked, 0) << "no *net.OpError compared";
  EXPECT_EQ(c[GEP_CTR_ADDR_UNKNOWN], 0u);
  EXPECT_GE(compared, 40) << "too few link messages compared";
  EXPECT_EQ(got_count, want_count);
  EXPECT_EQ(goid, 1u) << "errgen runs its scenarios on the main goroutine";
}

void CheckErrgen(const CorpusBinary& b) {
  if (!IsRoot()) GTEST_SKIP() << "needs root for BPF";
  CheckErrgenWith(BinaryPath(b), b.Label(), true);
}

// The per-probe perf-event attach (kernels before 6.6) gives the same result.
TEST(BpfSession, PerProbeAttach) {
  if (!IsRoot()) GTEST_SKIP() << "needs root for BPF";
  std::string path = NewestCorpusBinary("errgen");
  ASSERT_FALSE(path.empty()) << "no errgen in the corpus";
  auto t0 = std::chrono::steady_clock::now();
  CheckErrgenWith(path, "per-probe", false);
  std::cout << "  whole run incl. detach: "
            << std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()
            << " s\n";
}

// The non-sleepable variant (kernels without sleepable uprobes) loads and
// gives the same result: errgen's strings are on pages already touched.
TEST(BpfSession, NonSleepableVariant) {
  if (!IsRoot()) GTEST_SKIP() << "needs root for BPF";
  std::string path = NewestCorpusBinary("errgen");
  ASSERT_FALSE(path.empty()) << "no errgen in the corpus";
  CheckErrgenWith(path, "non-sleepable", true, false);
}

// Destroying the session must take every probe out: the target then runs
// to completion as if never traced.
TEST(BpfSession, DetachLeavesTargetIntact) {
  if (!IsRoot()) GTEST_SKIP() << "needs root for BPF";
  std::string path = NewestCorpusBinary("errgen");
  ASSERT_FALSE(path.empty()) << "no errgen in the corpus";
  Target t;
  ASSERT_NO_FATAL_FAILURE(Prepare(path, &t));
  auto child = SpawnOrNull({path, "-wait"});
  ASSERT_NE(child, nullptr);
  ASSERT_EQ(FirstLine(*child), absl::StrCat("ready ", child->pid()));
  t.config.pid = child->pid();
  std::vector<uint32_t> ids;
  {
    auto session = BpfSession::Start(t.config);
    ASSERT_TRUE(session.ok()) << session.status();
    ids = (*session)->prog_ids();
  }
  ExpectNothingLeft(ids, path);
  auto run = Release(*child).get();
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->exit_code, 0) << run->err;
  EXPECT_NE(run->out.find("\"scenarios\""), std::string::npos);
}

// A ring buffer too small to hold everything: losses are counted, and
// delivered + dropped == hits.
TEST(BpfSession, RingBufferOverflowIsCounted) {
  if (!IsRoot()) GTEST_SKIP() << "needs root for BPF";
  std::string path = NewestCorpusBinary("errgen");
  ASSERT_FALSE(path.empty()) << "no errgen in the corpus";
  Target t;
  ASSERT_NO_FATAL_FAILURE(Prepare(path, &t));
  t.config.ringbuf_bytes = 4096;
  auto child = SpawnOrNull({path, "-wait", "-n", "50"});
  ASSERT_NE(child, nullptr);
  ASSERT_EQ(FirstLine(*child), absl::StrCat("ready ", child->pid()));
  t.config.pid = child->pid();
  auto session = BpfSession::Start(t.config);
  ASSERT_TRUE(session.ok()) << session.status();
  auto run = Release(*child).get();  // no polling while it runs: the ring fills
  ASSERT_TRUE(run.ok()) << run.status();
  ASSERT_EQ(run->exit_code, 0);
  std::vector<CapturedError> events;
  ASSERT_NO_FATAL_FAILURE(Drain(**session, &events));
  profiler::SessionCounters c = (*session)->Counters();
  EXPECT_GT(c[GEP_CTR_DROP_RINGBUF], 0u);
  EXPECT_EQ(c[GEP_CTR_EVENTS], events.size());
  EXPECT_EQ(c[GEP_CTR_EVENTS] + c[GEP_CTR_DROP_RINGBUF], c[GEP_CTR_HITS]);
  EXPECT_EQ(c[GEP_CTR_HITS], 50u * (1 + 2 + 3 + 4 + 5 + 6 + 7 + 8 + 9 + 10 + 11 + 12 + 13 + 14 + 15 + 16));
}

// --max-chain cuts deep chains visibly.
TEST(BpfSession, MaxChainCutIsCounted) {
  if (!IsRoot()) GTEST_SKIP() << "needs root for BPF";
  std::string path = NewestCorpusBinary("errgen");
  ASSERT_FALSE(path.empty()) << "no errgen in the corpus";
  Target t;
  ASSERT_NO_FATAL_FAILURE(Prepare(path, &t));
  t.config.max_chain = 2;
  std::unique_ptr<BpfSession> session;
  std::vector<CapturedError> events;
  ASSERT_NO_FATAL_FAILURE(CaptureErrgen(path, &t, &session, &events));
  int wrap = 0;
  for (const CapturedError& e : events) {
    if (t.probe_func[e.ip] != "main.siteWrapChain") continue;
    ++wrap;
    ASSERT_EQ(e.links.size(), 2u);  // outer, middle; inner + root cut
    EXPECT_TRUE(e.links[1].flags & GEP_LINK_DEPTH_CUT);
    EXPECT_FALSE(e.complete());
  }
  EXPECT_EQ(wrap, 4);
  EXPECT_GE(session->Counters()[GEP_CTR_CHAIN_DEPTH], 4u);
}

// The TLS slot gives the same goroutine as R14 (internally linked binary).
TEST(BpfSession, GoroutineIdFromTls) {
  if (!IsRoot()) GTEST_SKIP() << "needs root for BPF";
  std::string path = NewestCorpusBinary("errgen");
  ASSERT_FALSE(path.empty()) << "no errgen in the corpus";
  Target t;
  ASSERT_NO_FATAL_FAILURE(Prepare(path, &t));
  t.config.g_source = profiler::GSource::kTls;
  std::unique_ptr<BpfSession> session;
  std::vector<CapturedError> events;
  ASSERT_NO_FATAL_FAILURE(CaptureErrgen(path, &t, &session, &events));
  ASSERT_FALSE(events.empty());
  for (const CapturedError& e : events) {
    // Only errgen's goroutine scenarios run under labels, off goroutine 1.
    if (e.labels.empty()) {
      EXPECT_EQ(e.goid, 1u);
    } else {
      EXPECT_GT(e.goid, 1u);
    }
  }
  EXPECT_EQ(session->Counters()[GEP_CTR_GOID_READ], 0u);
}

TEST(BpfSession, ClearErrors) {
  if (!IsRoot()) GTEST_SKIP() << "needs root for BPF";
  std::string path = NewestCorpusBinary("errgen"), other = NewestCorpusBinary("inlframes");
  ASSERT_FALSE(path.empty()) << "no errgen in the corpus";
  Target t;
  ASSERT_NO_FATAL_FAILURE(Prepare(path, &t));

  // A pid that no longer exists.
  auto gone = SpawnOrNull({"/bin/true"});
  ASSERT_NE(gone, nullptr);
  pid_t dead = gone->pid();
  (void)gone->Finish();
  t.config.pid = dead;
  auto s = BpfSession::Start(t.config);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kNotFound) << s.status();
  EXPECT_NE(s.status().message().find("no process"), std::string::npos) << s.status();

  auto child = SpawnOrNull({path, "-wait"});
  ASSERT_NE(child, nullptr);
  ASSERT_EQ(FirstLine(*child), absl::StrCat("ready ", child->pid()));
  t.config.pid = child->pid();

  // Not the binary the process runs.
  if (!other.empty()) {
    SessionConfig c = t.config;
    c.executable = other;
    auto r = BpfSession::Start(c);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("runs"), std::string::npos) << r.status();
  }
  // A probe outside the text.
  {
    SessionConfig c = t.config;
    c.probes.push_back({0x10, ResultCookie(), 0, 0});
    auto r = BpfSession::Start(c);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << r.status();
  }
  // Failed Starts leave nothing behind; a good one still works.
  auto ok = BpfSession::Start(t.config);
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->get()->attach_stats().probes, t.config.probes.size());
}

// Without privileges: a one-line PermissionDenied, whether it is the
// target's /proc entry (root-owned target) or the BPF load (own target)
// that is refused. Runs Start as `nobody` in a forked child.
TEST(BpfSession, UnprivilegedIsPermissionDenied) {
  if (!IsRoot()) GTEST_SKIP() << "needs root to drop privileges";
  std::string path = NewestCorpusBinary("errgen");
  ASSERT_FALSE(path.empty()) << "no errgen in the corpus";
  Target t;
  ASSERT_NO_FATAL_FAILURE(Prepare(path, &t));
  auto root_child = SpawnOrNull({path, "-wait"});
  ASSERT_NE(root_child, nullptr);
  ASSERT_EQ(FirstLine(*root_child), absl::StrCat("ready ", root_child->pid()));
  int p[2];
  ASSERT_EQ(pipe(p), 0);
  pid_t pid = fork();
  if (pid == 0) {
    close(p[0]);
    std::string report;
    if (setgid(65534) != 0 || setuid(65534) != 0) _exit(2);
    SessionConfig c = t.config;
    c.pid = root_child->pid();
    auto r1 = BpfSession::Start(c);
    auto own = Child::Spawn({path, "-wait"});
    std::string ready = own.ok() ? FirstLine(**own) : "";
    c.pid = own.ok() ? (*own)->pid() : -1;
    auto r2 = BpfSession::Start(c);
    for (const auto* r : {&r1, &r2}) {
      absl::StrAppend(&report, absl::StatusCodeToString(r->status().code()), "\t",
                      r->status().message(), "\n");
    }
    (void)!write(p[1], report.data(), report.size());
    _exit(0);
  }
  close(p[1]);
  std::string report;
  char buf[4096];
  for (ssize_t n; (n = read(p[0], buf, sizeof(buf))) > 0;) report.append(buf, n);
  close(p[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  std::cout << report;
  std::vector<std::string> lines = absl::StrSplit(report, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u) << report;
  for (const std::string& l : lines) {
    EXPECT_TRUE(absl::StartsWith(l, "PERMISSION_DENIED\t")) << l;
    EXPECT_EQ(l.find('\n'), std::string::npos);
  }
  EXPECT_NE(lines[1].find("loading BPF was refused"), std::string::npos) << lines[1];
}

// Whether uprobes have written a breakpoint into pid's text yet: the
// written page becomes an anonymous copy in the executable mapping.
bool TextHasBreakpoint(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/smaps"));
  std::string line;
  bool in_text = false;
  while (std::getline(in, line)) {
    if (!line.empty() && std::isxdigit(static_cast<unsigned char>(line[0])) &&
        line.find(' ') != std::string::npos && line.find(':') > line.find(' ')) {
      in_text = line.find(" r-xp ") != std::string::npos;
    } else if (in_text && absl::StartsWith(line, "Anonymous:")) {
      if (line.find(" 0 kB") == std::string::npos) return true;
    }
  }
  return false;
}

// A target that dies once attaching has begun: a one-line "exited during
// attach" error, and nothing left behind. Per-probe mode, where attach is
// many syscalls (uprobe_multi is one).
TEST(BpfSession, TargetExitingDuringAttach) {
  if (!IsRoot()) GTEST_SKIP() << "needs root for BPF";
  std::string path = NewestCorpusBinary("errgen");
  ASSERT_FALSE(path.empty()) << "no errgen in the corpus";
  Target t;
  ASSERT_NO_FATAL_FAILURE(Prepare(path, &t));
  std::vector<profiler::ProbeSpec> many;
  for (int i = 0; i < 20; ++i) many.insert(many.end(), t.config.probes.begin(), t.config.probes.end());
  t.config.probes = many;
  t.config.uprobe_multi = false;
  auto child = SpawnOrNull({path, "-wait"});
  ASSERT_NE(child, nullptr);
  ASSERT_EQ(FirstLine(*child), absl::StrCat("ready ", child->pid()));
  t.config.pid = child->pid();
  std::atomic<bool> stop{false};
  std::thread killer([&] {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!stop && std::chrono::steady_clock::now() < deadline) {
      if (TextHasBreakpoint(child->pid())) {
        kill(child->pid(), SIGKILL);
        return;
      }
    }
  });
  auto s = BpfSession::Start(t.config);
  stop = true;
  killer.join();
  std::vector<uint32_t> ids;
  ASSERT_FALSE(s.ok()) << "attach finished before the kill landed";
  EXPECT_EQ(s.status().code(), absl::StatusCode::kUnavailable) << s.status();
  EXPECT_NE(s.status().message().find("exited during attach"), std::string::npos) << s.status();
  std::cout << s.status() << "\n";
  (void)child->Finish();
  ExpectNothingLeft(ids, path);
}

}  // namespace
}  // namespace goerrprof::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  goerrprof::testing::RegisterCorpusTests("BpfSessionErrgen", "errgen", false,
                                          goerrprof::testing::CheckErrgen);
  return RUN_ALL_TESTS();
}
