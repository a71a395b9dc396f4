#include "diff/profile_diff.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <tuple>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "pprof/labels.h"
#include "pprof/profile_file.h"

namespace goerrprof::profiler {
namespace {

namespace pp = perftools::profiles;

// Frames looked at per sample: a recorded stack has at most 127 locations
// (GEP_MAX_STACK) of a few inlined frames each. A crafted sample names one
// location of many frames thousands of times.
constexpr int kMaxFramesPerSample = 1024;
// Text copied into site keys over the whole profile: one long string can be
// named by every sample, and keys are compared in full.
constexpr uint64_t kMaxKeyBytes = uint64_t{512} << 20;

absl::Status Broken(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("malformed profile: ", what));
}

// Adds without overflow: a hostile file must not reach undefined behaviour.
bool AddCount(int64_t* sum, int64_t v) {
  if (*sum > std::numeric_limits<int64_t>::max() - v) return false;
  *sum += v;
  return true;
}

}  // namespace

bool InStandardLibrary(absl::string_view function) {
  // Type arguments can hold any path: "pkg.F[go.shape.*example.com/x.T]".
  function = function.substr(0, function.find('['));
  size_t slash = function.find('/');
  absl::string_view first =
      slash != absl::string_view::npos ? function.substr(0, slash)
                                       : function.substr(0, function.find('.'));
  if (slash == absl::string_view::npos && first == "main") return false;
  return first.find('.') == absl::string_view::npos;
}

std::string SiteStats::TopLine() const {
  std::string best;
  int64_t best_count = -1;
  for (const auto& [line, n] : lines) {  // ascending: ties keep the smallest
    if (n > best_count) {
      best = line;
      best_count = n;
    }
  }
  return best;
}

absl::StatusOr<ErrorSites> SummarizeProfile(const pp::Profile& p) {
  const int64_t nstrings = p.string_table_size();
  bool bad_string = false;
  auto str = [&](int64_t i) -> const std::string& {
    static const std::string kEmpty;
    if (i < 0 || i >= nstrings) {
      bad_string = true;
      return kEmpty;
    }
    return p.string_table(static_cast<int>(i));
  };

  int value_index = -1, panic_index = -1;
  std::vector<std::string> types;
  for (int i = 0; i < p.sample_type_size(); ++i) {
    const std::string& type = str(p.sample_type(i).type());
    const std::string& unit = str(p.sample_type(i).unit());
    if (type == "errors" && unit == "count") value_index = i;
    if (type == "panics" && unit == "count") panic_index = i;
    types.push_back(absl::StrCat(type, "/", unit));
  }
  if (bad_string) return Broken("sample type outside the string table");
  if (value_index < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "not an error profile (no errors/count sample type; has ",
        types.empty() ? "none" : absl::StrJoin(types, ", "), ")"));
  }

  absl::flat_hash_map<uint64_t, const pp::Location*> locations;
  for (const pp::Location& l : p.location()) locations[l.id()] = &l;
  absl::flat_hash_map<uint64_t, const pp::Function*> functions;
  for (const pp::Function& f : p.function()) functions[f.id()] = &f;

  // Whether a name is in the standard library, by string: worked out once
  // per string, however many frames name it.
  absl::flat_hash_map<const std::string*, bool> std_lib;
  auto in_std_lib = [&](const std::string* name) {
    auto [it, fresh] = std_lib.try_emplace(name, false);
    if (fresh) it->second = InStandardLibrary(*name);
    return it->second;
  };
  static const std::string kUnknownName = "?";
  static const std::string kEmptyString;

  ErrorSites out;
  uint64_t key_bytes = 0;
  for (const pp::Sample& s : p.sample()) {
    if (s.value_size() <= value_index) return Broken("sample without an errors/count value");
    // A panic is a site like an error's creation (its type marked below).
    const bool panic = panic_index >= 0 && s.value_size() > panic_index &&
                       s.value(panic_index) != 0;
    const int64_t count = panic ? s.value(panic_index) : s.value(value_index);
    if (count < 0) return Broken("negative error count (a diff, not a recording?)");
    if (count == 0) continue;

    // The sample's frames, innermost first: each location's Lines are its
    // inlined frames, innermost first.
    SiteKey key;
    std::string line;
    bool want_origin = false;
    int frames = 0;
    for (int i = 0; i < s.location_id_size() && frames < kMaxFramesPerSample; ++i) {
      auto loc = locations.find(s.location_id(i));
      if (loc == locations.end()) return Broken("sample names a missing location");
      const pp::Location& l = *loc->second;
      if (l.line_size() == 0 && i == 0) {
        key.function = absl::StrFormat("0x%x", l.address());
        want_origin = true;
      }
      for (const pp::Line& ln : l.line()) {
        if (++frames > kMaxFramesPerSample) break;
        auto fn = functions.find(ln.function_id());
        if (fn == functions.end()) return Broken("location names a missing function");
        const std::string* name = &str(fn->second->name());
        if (name->empty()) name = &str(fn->second->system_name());
        if (name->empty()) name = &kUnknownName;
        const std::string& file = str(fn->second->filename());
        auto at = [&] { return file.empty() ? "" : absl::StrCat(file, ":", ln.line()); };
        if (i == 0 && key.function.empty()) {
          key.function = *name;
          line = at();
          want_origin = in_std_lib(name);
          if (!want_origin) break;
        } else if (!in_std_lib(name)) {
          key.origin = *name;
          line = at();
          want_origin = false;
          break;
        }
      }
      if (!want_origin) break;
    }
    if (key.function.empty()) key.function = "<no stack>";
    // The last of each label wins; copied once.
    const std::string* type = nullptr;
    const std::string* chain_label = nullptr;
    const std::string* binary_label = nullptr;
    bool estimated = false;
    for (const pp::Label& label : s.label()) {
      const std::string& k = str(label.key());
      if (k == kLabelEstimated) {
        estimated = str(label.str()) == "true";
      } else if (k == kLabelType) {
        type = &str(label.str());
      } else if (k == kLabelChain) {
        chain_label = &str(label.str());
      } else if (k == kLabelBinary) {
        binary_label = &str(label.str());
      }
    }
    if (bad_string) return Broken("index outside the string table");
    const std::string& chain = chain_label ? *chain_label : kEmptyString;
    const std::string& binary = binary_label ? *binary_label : kEmptyString;
    if (type != nullptr) key.type = *type;
    if (panic) key.type = absl::StrCat("panic: ", key.type);
    key_bytes += key.function.size() + key.origin.size() + key.type.size() + line.size() +
                 chain.size() + binary.size();
    if (key_bytes > kMaxKeyBytes) return Broken("its sites name more than 512 MB of text");

    SiteStats& site = out.sites[key];
    if (!AddCount(&site.count, count) || !AddCount(&out.total, count) ||
        !AddCount(&site.chains[chain], count) ||
        (!line.empty() && !AddCount(&site.lines[line], count))) {
      return Broken("error counts overflow");
    }
    if (!binary.empty()) site.binaries.insert(binary);
    site.estimated |= estimated;
  }
  return out;
}

absl::StatusOr<ErrorSites> LoadErrorSites(const std::string& path) {
  absl::StatusOr<pp::Profile> p = ReadProfile(path);
  if (!p.ok()) return p.status();  // ReadProfile's messages name the path
  absl::StatusOr<ErrorSites> sites = SummarizeProfile(*p);
  if (!sites.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", sites.status().message()));
  }
  return sites;
}

absl::Status ValidateDiffOptions(const DiffOptions& o) {
  if (!std::isfinite(o.threshold_percent) || o.threshold_percent < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid threshold ", o.threshold_percent, " (want a percentage >= 0)"));
  }
  if (o.min_increase < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid minimum increase ", o.min_increase, " (want >= 0)"));
  }
  if (!std::isfinite(o.estimate_tolerance_percent) || o.estimate_tolerance_percent < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid estimate tolerance ", o.estimate_tolerance_percent, " (want a percentage >= 0)"));
  }
  return absl::OkStatus();
}

const char* FindingKindName(FindingKind kind) {
  switch (kind) {
    case FindingKind::kNewSite: return "new_site";
    case FindingKind::kGrowth: return "growth";
    case FindingKind::kNewChain: return "new_chain";
    case FindingKind::kVanishedSite: return "vanished_site";
    case FindingKind::kVanishedChain: return "vanished_chain";
  }
  return "?";
}

double Finding::ChangePercent() const {
  if (base_count == 0) return 0;
  return 100.0 * (static_cast<double>(new_count) - static_cast<double>(base_count)) /
         static_cast<double>(base_count);
}

size_t DiffResult::regressions() const {
  return std::count_if(findings.begin(), findings.end(),
                       [](const Finding& f) { return f.regression; });
}

DiffResult DiffErrorSites(const ErrorSites& base, const ErrorSites& next,
                          const DiffOptions& options) {
  DiffResult r;
  r.base_total = base.total;
  r.new_total = next.total;
  r.base_sites = base.sites.size();
  r.new_sites = next.sites.size();

  auto make = [](FindingKind kind, const SiteKey& key, const SiteStats* b, const SiteStats* n) {
    Finding f;
    f.kind = kind;
    f.site = key;
    f.location = n != nullptr ? n->TopLine() : b->TopLine();
    if (b != nullptr) f.binaries.insert(b->binaries.begin(), b->binaries.end());
    if (n != nullptr) f.binaries.insert(n->binaries.begin(), n->binaries.end());
    return f;
  };

  for (const auto& [key, n] : next.sites) {
    auto it = base.sites.find(key);
    if (it == base.sites.end()) {
      Finding f = make(FindingKind::kNewSite, key, nullptr, &n);
      f.new_count = n.count;
      f.regression = true;
      r.findings.push_back(std::move(f));
      continue;
    }
    const SiteStats& b = it->second;
    // Exact for integral thresholds: (n-b)*100 > b*t, no 1.2*100 rounding.
    const double grown = (static_cast<double>(n.count) - static_cast<double>(b.count)) * 100.0;
    const bool estimated = b.estimated || n.estimated;
    const double threshold =
        options.threshold_percent + (estimated ? options.estimate_tolerance_percent : 0);
    if (grown > static_cast<double>(b.count) * threshold &&
        n.count - b.count >= options.min_increase) {
      Finding f = make(FindingKind::kGrowth, key, &b, &n);
      f.estimated = estimated;
      f.base_count = b.count;
      f.new_count = n.count;
      f.regression = true;
      r.findings.push_back(std::move(f));
    }
    for (const auto& [chain, count] : n.chains) {
      if (b.chains.contains(chain)) continue;
      Finding f = make(FindingKind::kNewChain, key, &b, &n);
      f.chain = chain;
      f.new_count = count;
      f.regression = true;
      r.findings.push_back(std::move(f));
    }
    for (const auto& [chain, count] : b.chains) {
      if (n.chains.contains(chain)) continue;
      Finding f = make(FindingKind::kVanishedChain, key, &b, &n);
      f.chain = chain;
      f.base_count = count;
      r.findings.push_back(std::move(f));
    }
  }
  for (const auto& [key, b] : base.sites) {
    if (next.sites.contains(key)) continue;
    Finding f = make(FindingKind::kVanishedSite, key, &b, nullptr);
    f.base_count = b.count;
    r.findings.push_back(std::move(f));
  }

  std::sort(r.findings.begin(), r.findings.end(), [](const Finding& x, const Finding& y) {
    auto size = [](const Finding& f) {
      // Magnitudes of int64 counts: compare as unsigned to avoid overflow.
      return f.new_count >= f.base_count
                 ? static_cast<uint64_t>(f.new_count) - static_cast<uint64_t>(f.base_count)
                 : static_cast<uint64_t>(f.base_count) - static_cast<uint64_t>(f.new_count);
    };
    return std::make_tuple(!x.regression, size(y), x.kind, x.site,
                           x.chain) <
           std::make_tuple(!y.regression, size(x), y.kind, y.site,
                           y.chain);
  });
  return r;
}

}  // namespace goerrprof::profiler
