#include "goroutines/goroutine_text.h"

#include <algorithm>
#include <map>
#include <tuple>

#include "absl/container/node_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "goabi/g_layout.h"

namespace goerrprof::profiler {
namespace {

std::string Duration(int64_t ns) {
  // Milliseconds are plenty for a lower bound set at GC time.
  return absl::FormatDuration(absl::Trunc(absl::Nanoseconds(ns), absl::Milliseconds(1)));
}

std::string Quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (static_cast<unsigned char>(c) < 0x20) {
      out += absl::StrFormat("\\u%04x", c);
      continue;
    }
    out += c;
  }
  return out + "\"";
}

void AppendFrames(const std::vector<ShownFrame>& frames, std::string* out) {
  for (const ShownFrame& f : frames) {
    absl::StrAppend(out, f.function, "(...)\n\t", f.file, ":", f.line);
    if (!f.inlined && f.offset > 0) absl::StrAppend(out, absl::StrFormat(" +0x%x", f.offset));
    out->push_back('\n');
  }
}

void AppendCreator(const Goroutine& g, GoFrames& frames, std::string* out) {
  auto site = frames.ShownCreator(g);
  if (!site) return;
  absl::StrAppend(out, "created by ", site->function);
  if (g.parent_id != 0) absl::StrAppend(out, " in goroutine ", g.parent_id);
  absl::StrAppend(out, "\n\t", site->file, ":", site->line);
  if (site->offset > 0) absl::StrAppend(out, absl::StrFormat(" +0x%x", site->offset));
  out->push_back('\n');
}

// Rendered stacks, once per distinct stack: goroutines share most of
// them. `limited`: as the dump shows them (Go's frame limit), else every
// shown frame (the leak report's grouping key).
class StackTexts {
 public:
  explicit StackTexts(GoFrames& frames) : frames_(frames) {}

  const std::string& Get(const std::vector<uint64_t>& stack, bool limited) {
    Cache& c = limited ? limited_ : plain_;
    if (c.last != nullptr && *c.last_stack == stack) return *c.last;
    auto [it, inserted] = c.texts.try_emplace(stack);
    if (inserted) {
      std::string& out = it->second;
      if (limited) {
        GoFrames::Limited shown = frames_.Limit(frames_.Frames(stack), stack.size());
        AppendFrames(shown.before, &out);
        if (!shown.marker.empty()) absl::StrAppend(&out, shown.marker, "\n");
        AppendFrames(shown.after, &out);
      } else {
        AppendFrames(frames_.Frames(stack), &out);
      }
    }
    // Node-based map: the key and text stay where they are.
    c.last_stack = &it->first;
    c.last = &it->second;
    return it->second;
  }

 private:
  struct Cache {
    absl::node_hash_map<std::vector<uint64_t>, std::string> texts;
    const std::vector<uint64_t>* last_stack = nullptr;
    const std::string* last = nullptr;
  };
  GoFrames& frames_;
  Cache limited_, plain_;
};

}  // namespace

std::string StateWithWait(const Goroutine& g) {
  std::string s(g.state);
  if (g.scan) s += " (scan)";
  if (g.wait_kind == WaitKnowledge::kLowerBound) absl::StrAppend(&s, ", ≥", Duration(g.wait_ns));
  if (g.wait_kind == WaitKnowledge::kExact) absl::StrAppend(&s, ", ", Duration(g.wait_ns));
  if (g.wait_kind == WaitKnowledge::kUnknown) s += ", wait unknown";
  return s;
}

std::string FormatDump(const Snapshot& snap, GoFrames& frames) {
  std::string out;
  StackTexts texts(frames);
  for (const Goroutine& g : snap.goroutines) {
    if (!out.empty()) out += '\n';
    absl::StrAppend(&out, "goroutine ", g.id, " [", StateWithWait(g), "]:\n");
    if (!g.labels.empty() || g.labels_unreadable) {
      std::vector<std::string> kv;
      for (const auto& [k, v] : g.labels) kv.push_back(absl::StrCat(Quote(k), ":", Quote(v)));
      absl::StrAppend(&out, "# labels: {", absl::StrJoin(kv, ", "), "}",
                      g.labels_unreadable ? " (unreadable)" : "", "\n");
    }
    if (g.stack_kind == StackKind::kNone) {
      out += "\tgoroutine running on other thread; stack unavailable\n";
    } else {
      out += texts.Get(g.stack, true);
      if (g.stack_kind == StackKind::kTruncated) {
        out += "...stack truncated: the frame-pointer chain ended early...\n";
      }
    }
    AppendCreator(g, frames, &out);
  }
  return out;
}

std::string FormatLeaks(const Snapshot& snap, GoFrames& frames, int64_t min_wait_ns) {
  struct Group {
    std::vector<const Goroutine*> members;
    int64_t min_wait = INT64_MAX, max_wait = 0;
  };
  // Key: state, creator line, rendered stack.
  std::map<std::tuple<std::string, std::string, std::string>, Group> groups;
  size_t unknown = 0, waiting = 0;
  StackTexts texts(frames);
  for (const Goroutine& g : snap.goroutines) {
    if (g.status != goabi::kGwaiting) continue;
    ++waiting;
    bool known = g.wait_kind == WaitKnowledge::kLowerBound || g.wait_kind == WaitKnowledge::kExact;
    if (!known && min_wait_ns > 0) {
      ++unknown;
      continue;
    }
    int64_t wait = known ? g.wait_ns : 0;
    if (wait < min_wait_ns) continue;
    std::string creator;
    AppendCreator(g, frames, &creator);
    Group& grp = groups[{std::string(g.state), creator, texts.Get(g.stack, false)}];
    grp.members.push_back(&g);
    grp.min_wait = std::min(grp.min_wait, wait);
    grp.max_wait = std::max(grp.max_wait, wait);
  }
  std::vector<std::pair<const decltype(groups)::key_type*, const Group*>> order;
  size_t leaked = 0;
  for (const auto& [k, v] : groups) {
    order.emplace_back(&k, &v);
    leaked += v.members.size();
  }
  std::stable_sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
    return a.second->members.size() > b.second->members.size();
  });
  std::string out = absl::StrFormat(
      "%d goroutines in %d groups waiting at least %s (of %d waiting, %d goroutines shown)\n",
      leaked, groups.size(), Duration(min_wait_ns), waiting, snap.goroutines.size());
  if (unknown > 0) {
    absl::StrAppend(&out, unknown,
                    " waiting goroutines not considered: their wait is unknown (no GC cycle has "
                    "seen them blocked yet; --min-wait=0 includes them)\n");
  }
  for (const auto& [key, grp] : order) {
    const auto& [state, creator, stack] = *key;
    out += '\n';
    absl::StrAppend(&out, grp->members.size(), " goroutines [", state, ", waiting ≥",
                    Duration(grp->min_wait));
    if (grp->max_wait != grp->min_wait) absl::StrAppend(&out, " to ≥", Duration(grp->max_wait));
    out += "]:\n";
    out += stack;
    out += creator;
    std::vector<std::string> ids;
    for (size_t i = 0; i < grp->members.size() && i < 10; ++i) {
      ids.push_back(absl::StrCat(grp->members[i]->id));
    }
    absl::StrAppend(&out, "# goroutines: ", absl::StrJoin(ids, " "),
                    grp->members.size() > 10 ? " ..." : "", "\n");
  }
  return out;
}

}  // namespace goerrprof::profiler
