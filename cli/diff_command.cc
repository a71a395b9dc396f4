// `goerrprof diff BASE NEW`: what changed between two error profiles, as a
// table, Markdown (for a CI job summary) or JSON. Exit 0: nothing regressed;
// 1: something did; 2: bad input. The rules are in profile_diff.h.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "cli/json_writer.h"
#include "diff/profile_diff.h"

// Strings, so a bad value gets exit code 2 and our own message rather than
// absl's parse failure (exit 1, which means "regressed" here).
ABSL_FLAG(std::string, threshold, "20",
          "diff: growth of a site beyond this percentage of BASE regresses");
ABSL_FLAG(std::string, min_increase, "5",
          "diff: growth by fewer errors than this never regresses (absolute floor)");
ABSL_FLAG(std::string, estimate_tolerance, "10",
          "diff: added to --threshold for sites whose counts were estimated (record's "
          "overhead budget: errors.estimated=true)");
ABSL_FLAG(bool, markdown, false, "diff: print a Markdown table and summary");

namespace goerrprof::profiler {
namespace {

constexpr int kBadInput = 2;

int BadInput(const absl::Status& status) {
  std::fprintf(stderr, "goerrprof: diff: %s\n", std::string(status.message()).c_str());
  return kBadInput;
}

absl::StatusOr<DiffOptions> OptionsFromFlags() {
  DiffOptions o;
  const std::string threshold = absl::GetFlag(FLAGS_threshold);
  if (!absl::SimpleAtod(threshold, &o.threshold_percent)) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid --threshold \"", threshold, "\" (want a percentage, e.g. 20)"));
  }
  const std::string floor = absl::GetFlag(FLAGS_min_increase);
  if (!absl::SimpleAtoi(floor, &o.min_increase)) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid --min-increase \"", floor, "\" (want a count, e.g. 5)"));
  }
  const std::string tolerance = absl::GetFlag(FLAGS_estimate_tolerance);
  if (!absl::SimpleAtod(tolerance, &o.estimate_tolerance_percent)) {
    return absl::InvalidArgumentError(absl::StrCat("invalid --estimate-tolerance \"", tolerance,
                                                   "\" (want a percentage, e.g. 10)"));
  }
  if (absl::Status s = ValidateDiffOptions(o); !s.ok()) return s;
  return o;
}

const char* KindText(FindingKind k) {
  switch (k) {
    case FindingKind::kNewSite: return "new site";
    case FindingKind::kGrowth: return "growth";
    case FindingKind::kNewChain: return "new chain";
    case FindingKind::kVanishedSite: return "vanished site";
    case FindingKind::kVanishedChain: return "vanished chain";
  }
  return "?";
}

std::string ChangeText(const Finding& f) {
  switch (f.kind) {
    case FindingKind::kNewSite:
    case FindingKind::kNewChain: return "new";
    case FindingKind::kVanishedSite:
    case FindingKind::kVanishedChain: return "gone";
    case FindingKind::kGrowth:
      return absl::StrFormat("%+.1f%%%s", f.ChangePercent(), f.estimated ? " (estimated)" : "");
  }
  return "?";
}

// Chain findings are about the chain; site findings show the type.
std::string What(const Finding& f) {
  bool chain = f.kind == FindingKind::kNewChain || f.kind == FindingKind::kVanishedChain;
  const std::string& s = chain ? f.chain : f.site.type;
  return s.empty() ? "?" : s;
}

// "errors.New from main.load": the creating function, and your code that
// called it when that function is the standard library's.
std::string SiteName(const SiteKey& k) {
  return k.origin.empty() ? k.function : absl::StrCat(k.function, " from ", k.origin);
}

bool AnyBinaries(const DiffResult& r) {
  for (const Finding& f : r.findings) {
    if (!f.binaries.empty()) return true;
  }
  return false;
}

std::string Summary(const DiffResult& r, const DiffOptions& o) {
  size_t count[5] = {};
  for (const Finding& f : r.findings) ++count[static_cast<int>(f.kind)];
  return absl::StrFormat(
      "%d regression%s (%d new site%s, %d grown, %d new chain%s); %d vanished site%s, %d "
      "vanished chain%s. BASE: %d errors at %d sites; NEW: %d errors at %d sites. Rule: new "
      "sites and chains regress; growth regresses beyond +%s%% and by at least %d errors.",
      r.regressions(), r.regressions() == 1 ? "" : "s", count[0], count[0] == 1 ? "" : "s",
      count[1], count[2], count[2] == 1 ? "" : "s", count[3], count[3] == 1 ? "" : "s",
      count[4], count[4] == 1 ? "" : "s", r.base_total, r.base_sites, r.new_total, r.new_sites,
      absl::StrCat(o.threshold_percent), o.min_increase);
}

void PrintTable(const DiffResult& r, const DiffOptions& o) {
  std::vector<std::string> header = {"RESULT", "FINDING", "SITE", "LOCATION",
                                     "TYPE / CHAIN", "BASE", "NEW", "CHANGE"};
  const bool binaries = AnyBinaries(r);
  if (binaries) header.push_back("BINARIES");
  std::vector<std::vector<std::string>> rows = {header};
  for (const Finding& f : r.findings) {
    rows.push_back({f.regression ? "FAIL" : "ok", KindText(f.kind), SiteName(f.site),
                    f.location.empty() ? "?" : f.location, What(f),
                    absl::StrCat(f.base_count), absl::StrCat(f.new_count), ChangeText(f)});
    if (binaries) rows.back().push_back(absl::StrJoin(f.binaries, ","));
  }
  if (!r.findings.empty()) {
    std::vector<size_t> width(header.size(), 0);
    for (const auto& row : rows) {
      for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
    }
    for (const auto& row : rows) {
      std::string line;
      for (size_t i = 0; i < row.size(); ++i) {
        // Counts and changes right-aligned.
        const bool numeric = i >= 5 && i <= 7;
        std::string cell = numeric ? std::string(width[i] - row[i].size(), ' ') + row[i]
                                   : row[i] + std::string(width[i] - row[i].size(), ' ');
        absl::StrAppend(&line, i == 0 ? "" : "  ", cell);
      }
      while (!line.empty() && line.back() == ' ') line.pop_back();
      std::printf("%s\n", line.c_str());
    }
    std::printf("\n");
  }
  std::printf("%s\n", Summary(r, o).c_str());
}

// A table cell: code-formatted, with pipes escaped (GFM allows \| even
// inside code spans in tables).
std::string MdCode(const std::string& s) {
  std::string escaped = absl::StrReplaceAll(s, {{"|", "\\|"}});
  if (s.find('`') != std::string::npos) return absl::StrCat("`` ", escaped, " ``");
  return absl::StrCat("`", escaped, "`");
}

void PrintMarkdown(const DiffResult& r, const DiffOptions& o) {
  const size_t n = r.regressions();
  std::printf("### goerrprof diff: %s\n\n",
              n == 0 ? "no regressions"
                     : absl::StrCat(n, " regression", n == 1 ? "" : "s").c_str());
  if (!r.findings.empty()) {
    const bool binaries = AnyBinaries(r);
    std::printf("| Result | Finding | Site | Location | Type / chain | Base | New | Change |%s\n",
                binaries ? " Binaries |" : "");
    std::printf("|---|---|---|---|---|--:|--:|--:|%s\n", binaries ? "---|" : "");
    for (const Finding& f : r.findings) {
      std::string row = absl::StrCat(
          "| ", f.regression ? "**FAIL**" : "ok", " | ", KindText(f.kind), " | ",
          MdCode(SiteName(f.site)), " | ", f.location.empty() ? "?" : MdCode(f.location), " | ",
          MdCode(What(f)), " | ", f.base_count, " | ", f.new_count, " | ", ChangeText(f), " |");
      if (binaries) absl::StrAppend(&row, " ", MdCode(absl::StrJoin(f.binaries, ", ")), " |");
      std::printf("%s\n", row.c_str());
    }
    std::printf("\n");
  }
  std::printf("%s\n", Summary(r, o).c_str());
}

std::string Quote(absl::string_view s) { return JsonWriter().String(s).str(); }

void PrintJson(const DiffResult& r, const DiffOptions& o, const std::string& base_path,
               const std::string& new_path) {
  std::string out = absl::StrCat(
      "{\"base\":{\"path\":", Quote(base_path), ",\"errors\":", r.base_total,
      ",\"sites\":", r.base_sites, "},\"new\":{\"path\":", Quote(new_path),
      ",\"errors\":", r.new_total, ",\"sites\":", r.new_sites,
      "},\"threshold_percent\":", o.threshold_percent, ",\"min_increase\":", o.min_increase,
      ",\"regressions\":", r.regressions(), ",\"findings\":[");
  for (size_t i = 0; i < r.findings.size(); ++i) {
    const Finding& f = r.findings[i];
    std::vector<std::string> bins;
    for (const std::string& b : f.binaries) bins.push_back(Quote(b));
    absl::StrAppend(&out, i == 0 ? "" : ",", "{\"kind\":\"", FindingKindName(f.kind),
                    "\",\"regression\":", f.regression ? "true" : "false",
                    ",\"function\":", Quote(f.site.function),
                    ",\"origin\":", Quote(f.site.origin), ",\"type\":", Quote(f.site.type),
                    ",\"chain\":", Quote(f.chain), ",\"location\":", Quote(f.location),
                    ",\"base_count\":", f.base_count, ",\"new_count\":", f.new_count,
                    ",\"change_percent\":",
                    f.base_count > 0 ? absl::StrCat(f.ChangePercent()) : "null",
                    ",\"binaries\":[", absl::StrJoin(bins, ","), "]}");
  }
  absl::StrAppend(&out, "]}");
  std::printf("%s\n", out.c_str());
}

}  // namespace

int RunDiff(const std::vector<std::string>& args) {
  if (args.size() != 2) {
    return BadInput(absl::InvalidArgumentError(absl::StrCat(
        "want two profiles, BASE and NEW (got ", args.size(), " arguments)")));
  }
  const bool json = absl::GetFlag(FLAGS_json);
  const bool markdown = absl::GetFlag(FLAGS_markdown);
  if (json && markdown) {
    return BadInput(absl::InvalidArgumentError("--json and --markdown exclude each other"));
  }
  absl::StatusOr<DiffOptions> options = OptionsFromFlags();
  if (!options.ok()) return BadInput(options.status());
  absl::StatusOr<ErrorSites> base = LoadErrorSites(args[0]);
  if (!base.ok()) return BadInput(base.status());
  absl::StatusOr<ErrorSites> next = LoadErrorSites(args[1]);
  if (!next.ok()) return BadInput(next.status());

  DiffResult r = DiffErrorSites(*base, *next, *options);
  if (json) {
    PrintJson(r, *options, args[0], args[1]);
  } else if (markdown) {
    PrintMarkdown(r, *options);
  } else {
    PrintTable(r, *options);
  }
  std::fflush(stdout);
  return r.regressions() > 0 ? 1 : 0;
}

}  // namespace goerrprof::profiler
