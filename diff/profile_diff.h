// Compares two goerrprof error profiles (`goerrprof diff BASE NEW`), for CI:
// which kinds of errors are new, which grew, which are gone.
//
// Keys, and why:
// - A site is (function, origin, error.type). function: that of the first
//   Line of the sample's first location, i.e. the innermost (inlined)
//   function, as pprof's flat view attributes it. Real creations are often
//   there in the standard library (inlined errors.New, fmt.Errorf,
//   os.openFileNolog), so a site in the standard library also has an
//   origin: the first frame outward that is not (the code that asked for
//   the error); without it every fmt.Errorf of a program would be one site
//   and a new one in your code would go unnoticed. Standard library by
//   Go's own rule: the import path's first element has no dot (and is not
//   "main"); a module path without a dot is mistaken for it (its errors
//   then get an origin further out, or none). Names, not addresses: a
//   rebuilt binary moves every PC.
// - A chain is (site, error.chain): the Unwrap tree's types. A chain new
//   under an existing site means the site now makes a different kind of
//   error (a new cause) and regresses like a new site.
// - Counts are summed over every other label. error.message is left out
//   (it carries ids, paths, ports), and so are goroutine, process.pid,
//   goroutine.created_by and the goroutine's own pprof labels: they differ
//   from run to run and say nothing about which code made the error.
// - process.binary is not part of the key, only shown: the function name is
//   already package-qualified and unique, the same function linked into two
//   test binaries is the same code, base names collide (two packages named
//   util both give util.test) and change with `go test -c -o`, and a profile
//   of one process (record --pid) has no such label at all.
//
// Rule: a site regresses when it is new, or when it grew beyond the
// threshold: new > base * (1 + threshold/100) and new - base >= min_increase
// (the absolute floor keeps 1 -> 2 from failing a build). A new chain under
// an existing site regresses too. Vanished sites and chains are reported
// and never regress. Counts are absolute (not per second): compare
// recordings of the same workload, such as one test suite run. A site
// whose count the overhead budget estimated in either profile (samples
// labelled errors.estimated=true) grows only beyond threshold +
// estimate_tolerance: an estimate is not an exact count.
#ifndef GOERRPROF_DIFF_PROFILE_DIFF_H_
#define GOERRPROF_DIFF_PROFILE_DIFF_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "github.com/google/pprof/proto/profile.pb.h"

namespace goerrprof::profiler {

struct SiteKey {
  std::string function;  // "0x<addr>" when the location has no lines
  // First frame outward outside the standard library when `function` is
  // in it; "" otherwise, or when every frame is.
  std::string origin;
  std::string type;      // error.type
  auto operator<=>(const SiteKey&) const = default;
};

struct SiteStats {
  int64_t count = 0;
  // Count per "file:line" of the origin frame, or of the innermost frame
  // without an origin; a function can create the same type at several
  // lines.
  std::map<std::string, int64_t> lines;
  std::map<std::string, int64_t> chains;  // count per error.chain
  std::set<std::string> binaries;         // process.binary values seen
  bool estimated = false;  // some of count was estimated (errors.estimated)
  // The line with most errors (ties: the smallest), "" when unknown.
  std::string TopLine() const;
};

struct ErrorSites {
  std::map<SiteKey, SiteStats> sites;
  int64_t total = 0;
};

// Reads the sites of an error profile (sample type errors/count). An error
// (InvalidArgument) for any other profile and for broken references inside
// one; never crashes on a malformed file.
absl::StatusOr<ErrorSites> SummarizeProfile(const perftools::profiles::Profile& p);
// ReadProfile + SummarizeProfile; messages name the path.
absl::StatusOr<ErrorSites> LoadErrorSites(const std::string& path);

// Whether a Go function (symbol name) is in the standard library (or the
// runtime); false for package main and for import paths with a dot.
bool InStandardLibrary(absl::string_view function);

struct DiffOptions {
  double threshold_percent = 20;  // growth relative to BASE
  int64_t min_increase = 5;       // growth by fewer errors never regresses
  // Added to the threshold for sites with estimated counts on either side.
  double estimate_tolerance_percent = 10;
};
// InvalidArgument for a negative or non-finite threshold or negative floor.
absl::Status ValidateDiffOptions(const DiffOptions& options);

enum class FindingKind { kNewSite, kGrowth, kNewChain, kVanishedSite, kVanishedChain };
// "new_site", "growth", "new_chain", "vanished_site", "vanished_chain".
const char* FindingKindName(FindingKind kind);

struct Finding {
  FindingKind kind;
  bool regression = false;
  SiteKey site;
  std::string chain;     // chain findings only
  std::string location;  // SiteStats::TopLine of the site (NEW's, else BASE's)
  int64_t base_count = 0;  // of the site, or of the chain for chain findings
  int64_t new_count = 0;
  bool estimated = false;  // either count was estimated (errors.estimated)
  std::set<std::string> binaries;  // process.binary values, both profiles
  // Change relative to BASE in percent; only meaningful when base_count > 0.
  double ChangePercent() const;
};

struct DiffResult {
  // Regressions first, then by size of the change (largest first), then
  // by kind, function, type and chain: deterministic.
  std::vector<Finding> findings;
  int64_t base_total = 0, new_total = 0;
  size_t base_sites = 0, new_sites = 0;
  size_t regressions() const;
};

DiffResult DiffErrorSites(const ErrorSites& base, const ErrorSites& next,
                          const DiffOptions& options);

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_DIFF_PROFILE_DIFF_H_
