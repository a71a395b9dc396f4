#include "tests/goroutines/goroutines_test_util.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"

namespace goerrprof::testing {
namespace {

// "\t/path/file.go:12 +0x1d"
bool ParseFileLine(absl::string_view s, Frame* f) {
  if (!absl::ConsumePrefix(&s, "\t")) return false;
  size_t sp = s.find(" +0x");
  absl::string_view loc = s.substr(0, sp);
  if (sp != absl::string_view::npos) {
    uint64_t off;
    if (!absl::SimpleHexAtoi(s.substr(sp + 4), &off)) return false;
    f->offset = static_cast<int64_t>(off);
  }
  size_t colon = loc.rfind(':');
  if (colon == absl::string_view::npos) return false;
  f->file = std::string(loc.substr(0, colon));
  return absl::SimpleAtoi(loc.substr(colon + 1), &f->line);
}

// "pkg.(*T).m(0x1, {0x2, 0x3})" -> "pkg.(*T).m": drop the final
// parenthesised group.
std::string FunctionOf(absl::string_view s) {
  if (!absl::EndsWith(s, ")")) return std::string(s);
  int depth = 0;
  for (size_t i = s.size(); i-- > 0;) {
    if (s[i] == ')') ++depth;
    if (s[i] == '(' && --depth == 0) return std::string(s.substr(0, i));
  }
  return std::string(s);
}

}  // namespace

std::string Describe(const Frame& f) {
  return absl::StrCat(f.function, " ", f.file, ":", f.line, f.offset >= 0 ? " +" : "",
                      f.offset >= 0 ? absl::StrCat(f.offset) : "");
}

// Parses Go's debug=2 dump, or ours (same shape, plus "# ..." lines).
std::map<uint64_t, Dumped> ParseDump(const std::string& text) {
  std::map<uint64_t, Dumped> out;
  for (absl::string_view block : absl::StrSplit(text, "\n\n", absl::SkipWhitespace())) {
    std::vector<absl::string_view> lines = absl::StrSplit(block, '\n', absl::SkipEmpty());
    if (lines.empty()) continue;
    Dumped d;
    absl::string_view h = lines[0];
    EXPECT_TRUE(absl::ConsumePrefix(&h, "goroutine ")) << block;
    size_t sp = h.find(' ');
    EXPECT_TRUE(absl::SimpleAtoi(h.substr(0, sp), &d.id)) << block;
    size_t open = h.find('['), close = h.rfind(']');
    absl::string_view state = h.substr(open + 1, close - open - 1);
    if (size_t comma = state.find(", "); comma != absl::string_view::npos) {
      d.wait = std::string(state.substr(comma + 2));
    }
    state = state.substr(0, state.find(','));
    d.state = std::string(absl::StripSuffix(state, " (scan)"));
    for (size_t i = 1; i < lines.size(); ++i) {
      absl::string_view l = lines[i];
      if (absl::StartsWith(l, "#") || absl::StartsWith(l, "\tgoroutine running") ||
          absl::StartsWith(l, "...")) {
        if (absl::StartsWith(l, "...")) d.marker = std::string(l);
        continue;
      }
      Frame f;
      bool creator = absl::ConsumePrefix(&l, "created by ");
      if (creator) {
        size_t in = l.find(" in goroutine ");
        if (in != absl::string_view::npos) {
          EXPECT_TRUE(absl::SimpleAtoi(l.substr(in + 14), &d.parent)) << l;
          l = l.substr(0, in);
        }
        f.function = std::string(l);
      } else {
        f.function = FunctionOf(l);
      }
      EXPECT_LT(i + 1, lines.size()) << block;
      if (i + 1 >= lines.size()) break;
      EXPECT_TRUE(ParseFileLine(lines[++i], &f)) << lines[i];
      if (creator) {
        d.creator = f;
      } else {
        d.frames.push_back(f);
      }
    }
    out[d.id] = d;
  }
  return out;
}

// Starts parked and reads its truth; the child stays blocked on stdin.
std::unique_ptr<Child> StartParked(const std::string& path, Truth* truth, bool gc) {
  std::vector<std::string> argv = {path};
  if (gc) argv.push_back("-gc");
  auto child = Child::Spawn(argv);
  EXPECT_TRUE(child.ok()) << child.status();
  if (!child.ok()) return nullptr;
  auto ready = (*child)->ReadLine(false, kTimeout);
  EXPECT_TRUE(ready.ok() && absl::StartsWith(*ready, "ready ")) << ready.status();
  if (!ready.ok()) return nullptr;
  std::string dump;
  for (;;) {
    auto line = (*child)->ReadLine(false, kTimeout);
    EXPECT_TRUE(line.ok()) << line.status();
    if (!line.ok()) return nullptr;
    if (absl::StartsWith(*line, "{\"labels\"")) {
      auto js = ParseJson(*line);
      EXPECT_TRUE(js.ok()) << js.status();
      if (!js.ok()) return nullptr;
      for (const auto& [id, kv] : Get(*js, "labels").struct_value().fields()) {
        Labels& l = truth->labels[std::stoull(id)];
        for (const auto& [k, v] : kv.struct_value().fields()) l[k] = v.string_value();
      }
      break;
    }
    absl::StrAppend(&dump, *line, "\n");
  }
  truth->dump = ParseDump(dump);
  for (const auto& [id, d] : truth->dump) {
    if (d.state == "running") truth->dumper = id;
  }
  EXPECT_NE(truth->dumper, 0u) << "no running goroutine in the truth dump";
  return std::move(*child);
}

}  // namespace goerrprof::testing
