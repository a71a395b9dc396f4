#include "symbolizer/creation_site.h"

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace goerrprof::symbolizer {

absl::StatusOr<CreationSite> CreatedBy(const GoBinary& binary, uint64_t gopc) {
  const Pclntab& tab = binary.pclntab();
  auto f = tab.FindFunc(gopc);
  if (!f) return absl::NotFoundError(absl::StrFormat("pc 0x%x is in no function", gopc));
  uint64_t entry = tab.FuncEntry(*f);
  // Back up into the call instruction, as the runtime does for file:line.
  uint64_t tracepc = gopc > entry ? gopc - 1 : gopc;
  auto frames = binary.Symbolize(tracepc);
  if (!frames.ok()) return frames.status();
  if (frames->empty()) return absl::NotFoundError("no frames");
  CreationSite site;
  site.function = std::string(tab.FuncName(*f));
  site.file = std::string(frames->front().file);
  site.line = frames->front().line;
  site.offset = gopc - entry;
  return site;
}

}  // namespace goerrprof::symbolizer
