// The profile reader `diff` uses, on any bytes: gunzip (or not), parse,
// summarize the error sites, and diff them against themselves and nothing.
// Seeds: profiles written by the pprof writer for corpus binaries.
#include <cstddef>
#include <cstdint>
#include <string>

#include "diff/profile_diff.h"
#include "pprof/profile_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace gp = goerrprof::profiler;
  std::string bytes(reinterpret_cast<const char*>(data), size);
  auto profile = gp::ParseProfile(bytes, "fuzz-input");
  if (!profile.ok()) return 0;
  auto sites = gp::SummarizeProfile(*profile);
  if (!sites.ok()) return 0;
  gp::ErrorSites none;
  gp::DiffOptions options;
  for (const auto& [base, next] : {std::pair{&*sites, &*sites}, std::pair{&none, &*sites},
                                   std::pair{&*sites, &none}}) {
    gp::DiffResult r = gp::DiffErrorSites(*base, *next, options);
    for (const gp::Finding& f : r.findings) (void)f.ChangePercent();
  }
  return 0;
}
