// Real BPF against real errgen processes (probes placed as
// bpf_session_fixture.h says) must see exactly the errors errgen reports
// creating, with the same types, messages and Unwrap chains, a goroutine
// id and a stack in main.*; and nothing of ours may be left in the kernel.
// The session's options and failures: bpf_session_config_test.cc,
// bpf_session_start_test.cc. Needs root.
#include <chrono>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "session/bpf_session.h"
#include "symbolizer/error_types.h"
#include "tests/session/bpf_session_fixture.h"
#include "tests/test_support.h"

namespace goerrprof::testing {
namespace {

using profiler::BpfSession;
using profiler::CapturedAddr;
using profiler::CapturedError;
using profiler::CapturedLink;

// errgen's scenarios that create their errors on a goroutine of their own
// (testdata/go_binaries/errgen/goroutines.go).
const std::set<std::string> kGoroutineSites = {"main.siteLabelled", "main.siteManyLabels"};

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

void CheckErrgenWith(const std::string& path, const std::string& label, bool multi,
                     bool sleepable = true) {
  Target t;
  ASSERT_NO_FATAL_FAILURE(Prepare(path, &t));
  t.config.uprobe_multi = multi;
  t.config.sleepable = sleepable;
  constexpr int kN = 2;
  std::unique_ptr<Child> child;
  ASSERT_NO_FATAL_FAILURE(StartTarget(&t, &child, kN));

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
  // Only the functions probed here (kSites, frame-keeping epilogues): the
  // planner's own shapes (errgen's paths.go) are record_test's.
  std::set<std::string> probed;
  for (const auto& [addr, fn] : t.probe_func) probed.insert(fn);
  for (const auto& sc : Get(*truth, "scenarios").list_value().values()) {
    std::string fn = GetString(sc, "function");
    if (!probed.contains(fn)) continue;
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
  CheckErrgenWith(CorpusBinaryPath(b), b.Label(), true);
}

// A checked probe (GEP_LOC_F_CHECK, where the planner probes a return that
// other paths reach too) records a hit only when its itab location holds
// the site's itab. Here every epilogue is checked against one type's error
// itab: that type's returns are all recorded, every other return (another
// type, nil) is counted as not created here and recorded nowhere.
TEST(BpfSession, CheckedProbesRecordOnlyTheirItab) {
  if (!IsRoot()) GTEST_SKIP() << "needs root for BPF";
  const std::string kType = "*errors.errorString";
  Target t;
  ASSERT_NO_FATAL_FAILURE(PrepareNewestErrgen(&t));
  auto reader = t.bin->types();
  ASSERT_TRUE(reader.ok()) << reader.status();
  auto types = symbolizer::FindErrorTypes(**reader);
  ASSERT_TRUE(types.ok()) << types.status();
  uint64_t itab = 0;
  for (const symbolizer::ErrorType& e : *types) {
    if (e.name != kType) continue;
    for (size_t i = 0; i < e.itabs.size() && i < e.interfaces.size(); ++i) {
      if (e.interfaces[i] == "error") itab = e.itabs[i];
    }
  }
  ASSERT_NE(itab, 0u) << "no " << kType << ",error itab";
  for (profiler::ProbeSpec& p : t.config.probes) {
    p.cookie |= GEP_LOC_F_CHECK;
    p.check_tab = itab;
  }
  std::unique_ptr<BpfSession> session;
  std::vector<CapturedError> events;
  CommandResult run;
  ASSERT_NO_FATAL_FAILURE(CaptureErrgen(&t, &session, &events, 2, &run));
  std::vector<uint32_t> ids = session->prog_ids();
  profiler::SessionCounters c = session->Counters();
  session.reset();
  ExpectNothingLeft(ids, t.path);

  auto truth = ParseJson(run.out);
  ASSERT_TRUE(truth.ok()) << truth.status();
  std::set<std::string> probed;
  for (const auto& [addr, fn] : t.probe_func) probed.insert(fn);
  std::map<std::string, int> want, got;
  int others = 0;
  for (const auto& sc : Get(*truth, "scenarios").list_value().values()) {
    std::string fn = GetString(sc, "function");
    if (!probed.contains(fn)) continue;
    int n = static_cast<int>(GetInt(sc, "count"));
    if (GetString(sc, "type") == kType) {
      want[fn] += n;
    } else {
      others += n;
    }
  }
  for (const CapturedError& e : events) {
    ASSERT_FALSE(e.links.empty());
    EXPECT_EQ(e.links[0].type_name, kType);
    auto it = t.probe_func.find(e.ip);
    ASSERT_NE(it, t.probe_func.end());
    ++got[it->second];
  }
  EXPECT_FALSE(want.empty()) << "errgen's probed sites return no " << kType;
  EXPECT_GT(others, 0) << "every probed site returns " << kType;
  EXPECT_EQ(got, want);
  EXPECT_EQ(c.dropped_events(), 0u);
  EXPECT_EQ(c[GEP_CTR_EVENTS], events.size());
  // Every other return ran the probe and stopped at the check.
  EXPECT_EQ(c[GEP_CTR_NOT_HERE], c[GEP_CTR_HITS] - events.size());
  EXPECT_GE(c[GEP_CTR_NOT_HERE], static_cast<uint64_t>(others));
  EXPECT_EQ(c[GEP_CTR_NIL], 0u);
}

// The per-probe perf-event attach (kernels before 6.6) gives the same result.
TEST(BpfSession, PerProbeAttach) {
  if (!IsRoot()) GTEST_SKIP() << "needs root for BPF";
  std::string path = NewestPath("errgen");
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
  std::string path = NewestPath("errgen");
  ASSERT_FALSE(path.empty()) << "no errgen in the corpus";
  CheckErrgenWith(path, "non-sleepable", true, false);
}

}  // namespace
}  // namespace goerrprof::testing

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  goerrprof::testing::RegisterCorpusTests("BpfSessionErrgen", "errgen", false,
                                          goerrprof::testing::CheckErrgen);
  return RUN_ALL_TESTS();
}
