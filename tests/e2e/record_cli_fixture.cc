#include "tests/e2e/record_cli_fixture.h"

#include <dirent.h>
#include <unistd.h>

#include <cstdio>
#include <regex>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace goerrprof::testing {
namespace {

using perftools::profiles::Profile;

// Ids of BPF programs and links some process holds an fd to (fdinfo lists
// prog_id / link_id), so those that no process holds can be told apart.
void HeldBpfIds(std::set<uint64_t>* progs, std::set<uint64_t>* links) {
  DIR* proc = opendir("/proc");
  if (!proc) return;
  while (dirent* p = readdir(proc)) {
    int pid = 0;
    if (!absl::SimpleAtoi(p->d_name, &pid)) continue;
    std::string fd_dir = absl::StrCat("/proc/", pid, "/fd");
    DIR* fds = opendir(fd_dir.c_str());
    if (!fds) continue;
    while (dirent* f = readdir(fds)) {
      if (f->d_name[0] == '.') continue;
      char target[64] = {};
      std::string link = absl::StrCat(fd_dir, "/", f->d_name);
      if (readlink(link.c_str(), target, sizeof(target) - 1) <= 0) continue;
      absl::string_view t(target);
      if (t != "anon_inode:bpf-prog" && t != "anon_inode:bpf_link") continue;
      std::string info = ReadFileOrEmpty(absl::StrCat("/proc/", pid, "/fdinfo/", f->d_name));
      for (absl::string_view line : absl::StrSplit(info, '\n')) {
        std::vector<absl::string_view> kv = absl::StrSplit(line, absl::ByAnyChar(":\t "),
                                                           absl::SkipEmpty());
        uint64_t id = 0;
        if (kv.size() != 2 || !absl::SimpleAtoi(kv[1], &id)) continue;
        if (kv[0] == "prog_id") progs->insert(id);
        if (kv[0] == "link_id") links->insert(id);
      }
    }
    closedir(fds);
  }
  closedir(proc);
}

// gep_on_error programs and uprobe_multi links (type 12 in bpftool 7.1's
// JSON, "uprobe_multi" in newer ones) as bpftool lists them.
struct BpfObjects {
  std::set<uint64_t> progs, links;
  std::string error;
};

BpfObjects ListGepObjects() {
  BpfObjects out;
  CommandResult progs = RunCommand({"bpftool", "-j", "prog", "list"}, kTimeout);
  CommandResult links = RunCommand({"bpftool", "-j", "link", "list"}, kTimeout);
  if (progs.exit_code != 0 || links.exit_code != 0) {
    out.error = absl::StrCat("bpftool failed: ", progs.err, links.err);
    return out;
  }
  auto pj = ParseJson(progs.out);
  auto lj = ParseJson(links.out);
  if (!pj.ok() || !lj.ok()) {
    out.error = absl::StrCat("bpftool JSON: ", progs.out.substr(0, 200), links.out.substr(0, 200));
    return out;
  }
  for (const auto& p : pj->list_value().values()) {
    // Unnamed programs have no "name" key (Get would throw).
    if (p.struct_value().fields().contains("name") && GetString(p, "name") == "gep_on_error") {
      out.progs.insert(GetInt(p, "id"));
    }
  }
  for (const auto& l : lj->list_value().values()) {
    const auto& type = Get(l, "type");
    if (type.string_value() == "uprobe_multi" || type.number_value() == 12) {
      out.links.insert(GetInt(l, "id"));
    }
  }
  return out;
}

}  // namespace

CorpusBinary NewestErrgen() {
  auto b = NewestCorpusBinary(false, "errgen", "default");
  if (!b) {
    ADD_FAILURE() << "no errgen in " << CorpusDir() << "/manifest.tsv: run scripts/test.sh";
    return {};
  }
  return *b;
}

std::optional<Summary> ParseSummary(const std::string& stderr_text) {
  static const std::regex re(
      R"(^goerrprof: (.+): (\d+) errors and (\d+) panics at (\d+) sites, (\d+) dropped, )"
      R"((\d+) probes attached )"
      R"(in \S+ \(\d+ references unplanned\) -> (.+)$)");
  std::vector<std::string> lines = absl::StrSplit(stderr_text, '\n', absl::SkipEmpty());
  if (lines.empty()) return std::nullopt;
  std::smatch m;
  if (!std::regex_match(lines.back(), m, re)) return std::nullopt;
  Summary s;
  s.reason = m[1];
  s.errors = std::stoull(m[2]);
  s.panics = std::stoull(m[3]);
  s.sites = std::stoull(m[4]);
  s.dropped = std::stoull(m[5]);
  s.probes = std::stoull(m[6]);
  s.file = m[7];
  return s;
}

// Structural validity: every reference resolves, every function is named.
void ExpectValidProfile(const Profile& p) {
  const int nstr = p.string_table_size();
  ASSERT_GT(nstr, 0);
  EXPECT_EQ(p.string_table(0), "");
  auto str_ok = [&](int64_t i) { return i >= 0 && i < nstr; };
  ASSERT_GE(p.sample_type_size(), 1);
  for (const auto& t : p.sample_type()) EXPECT_TRUE(str_ok(t.type()) && str_ok(t.unit()));
  std::set<uint64_t> mappings, functions, locations;
  for (const auto& m : p.mapping()) {
    EXPECT_NE(m.id(), 0u);
    EXPECT_TRUE(mappings.insert(m.id()).second) << "duplicate mapping " << m.id();
  }
  for (const auto& f : p.function()) {
    EXPECT_NE(f.id(), 0u);
    EXPECT_TRUE(functions.insert(f.id()).second) << "duplicate function " << f.id();
    ASSERT_TRUE(str_ok(f.name()) && str_ok(f.filename())) << "function " << f.id();
    EXPECT_FALSE(p.string_table(f.name()).empty()) << "unnamed function " << f.id();
  }
  for (const auto& l : p.location()) {
    EXPECT_NE(l.id(), 0u);
    EXPECT_TRUE(locations.insert(l.id()).second) << "duplicate location " << l.id();
    if (l.mapping_id() != 0) {
      EXPECT_TRUE(mappings.contains(l.mapping_id())) << l.id();
    }
    for (const auto& line : l.line()) {
      EXPECT_TRUE(functions.contains(line.function_id())) << "location " << l.id();
    }
  }
  for (const auto& s : p.sample()) {
    EXPECT_EQ(s.value_size(), p.sample_type_size());
    EXPECT_GT(s.location_id_size(), 0);
    for (uint64_t id : s.location_id()) EXPECT_TRUE(locations.contains(id)) << "location " << id;
    for (const auto& l : s.label()) EXPECT_TRUE(str_ok(l.key()) && str_ok(l.str()));
  }
  for (int64_t c : p.comment()) EXPECT_TRUE(str_ok(c));
}

std::vector<std::string> Comments(const Profile& p) {
  std::vector<std::string> out;
  for (int64_t c : p.comment()) out.push_back(p.string_table(static_cast<int>(c)));
  return out;
}

void RecordCliTest::TearDown() {
  constexpr int kOrphanSeconds = 10;
  std::optional<std::set<uint64_t>> orphan_progs, orphan_links;
  auto deadline = Clock::now() + std::chrono::seconds(kOrphanSeconds);
  int listings = 0;
  do {
    BpfObjects listed = ListGepObjects();
    ASSERT_EQ(listed.error, "");
    ++listings;
    std::set<uint64_t> held_progs, held_links;
    HeldBpfIds(&held_progs, &held_links);
    auto still = [](const std::set<uint64_t>& listed, const std::set<uint64_t>& held,
                    std::optional<std::set<uint64_t>>& orphans) {
      std::set<uint64_t> next;
      for (uint64_t id : listed) {
        if (!held.contains(id) && (!orphans || orphans->contains(id))) next.insert(id);
      }
      orphans = next;
    };
    still(listed.progs, held_progs, orphan_progs);
    still(listed.links, held_links, orphan_links);
  } while ((!orphan_progs->empty() || !orphan_links->empty()) && Clock::now() < deadline);
  EXPECT_TRUE(orphan_progs->empty()) << "gep_on_error programs held by no process for "
                                     << kOrphanSeconds << "s (" << listings << " listings): "
                                     << absl::StrJoin(*orphan_progs, ",");
  EXPECT_TRUE(orphan_links->empty()) << "uprobe_multi links held by no process for "
                                     << kOrphanSeconds << "s: "
                                     << absl::StrJoin(*orphan_links, ",");
  // goerrprof never uses tracefs probes; any entry would be a leak.
  const char* events = "/sys/kernel/tracing/uprobe_events";
  if (access(events, F_OK) == 0) {
    EXPECT_EQ(std::string(absl::StripAsciiWhitespace(ReadFileOrEmpty(events))), "");
  }
}

std::string RecordCliTest::OutPath(const std::string& what) const {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  // The pid keeps concurrent runs of this binary apart.
  std::string path = absl::StrCat(::testing::TempDir(), "record_cli_", getpid(), "_",
                                  info->name(), "_", what, ".pb.gz");
  std::remove(path.c_str());
  return path;
}

std::unique_ptr<Child> StartRecord(pid_t pid, const std::string& out,
                                   const std::vector<std::string>& extra) {
  std::vector<std::string> argv = {GoerrprofPath(), "record", "--max_overhead=0",
                                   absl::StrCat("--pid=", pid), "-o",
                                   out};
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto rec = Child::Spawn(argv);
  if (!rec.ok()) {
    ADD_FAILURE() << rec.status();
    return nullptr;
  }
  // --goroutines warns of its cost first; nothing else may come before.
  bool warned = false;
  for (;;) {
    auto line = (*rec)->ReadLine(true, kTimeout);
    if (!line.ok()) {
      ADD_FAILURE() << "record did not attach: " << line.status();
      return nullptr;
    }
    if (absl::StartsWith(*line, absl::StrCat("goerrprof: recording pid ", pid, ": "))) break;
    if (!warned && absl::StartsWith(*line, "goerrprof: warning: --goroutines")) {
      warned = true;
      continue;
    }
    ADD_FAILURE() << "unexpected line before attaching: " << *line;
    return nullptr;
  }
  return std::move(*rec);
}

void FinishRecord(Child& rec, const std::string& want_reason, Summary* summary,
                  std::string* stderr_text) {
  auto rec_run = rec.Finish(kTimeout);
  ASSERT_TRUE(rec_run.ok()) << rec_run.status();
  if (stderr_text) *stderr_text = rec_run->err;
  ASSERT_EQ(rec_run->exit_code, 0) << rec_run->err;
  auto parsed = ParseSummary(rec_run->err);
  ASSERT_TRUE(parsed) << rec_run->err;
  EXPECT_EQ(parsed->reason, want_reason);
  *summary = *parsed;
}

}  // namespace goerrprof::testing
