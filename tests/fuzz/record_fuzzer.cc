// Ring-buffer records of the error probe, as arbitrary bytes: decoded with
// the layouts of the error types the renderer knows, then aggregated and
// rendered as `record` does (message, chain, addresses, panics).
// Seeds: records of each known type and chain (fuzz_seeds).
#include <cstddef>
#include <cstdint>

#include "aggregate/error_profile.h"
#include "aggregate/error_render.h"
#include "events/decode.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace gp = goerrprof::profiler;
  static const gp::RecordNames* names = new gp::RecordNames(goerrprof::fuzz::MakeRecordNames());
  gp::CapturedError e;
  if (!gp::DecodeErrorRecord(data, size, *names, /*bias=*/0, &e)) return 0;
  gp::RenderOptions old_go;
  old_go.go_version = goerrprof::goabi::GoVersion::Parse("go1.19");
  for (size_t i = 0; i < e.links.size(); ++i) {
    (void)gp::RenderMessage(e, i);
    (void)gp::RenderMessage(e, i, old_go);
    (void)gp::LinkTypeName(e.links[i]);
    for (const gp::CapturedAddr& a : e.links[i].addrs) (void)gp::AddrString(a);
  }
  (void)gp::RenderChain(e);
  (void)e.complete();
  gp::ErrorProfile profile;
  profile.Add(e, 0);
  profile.AddPanic(e, 0, old_go, (e.flags & 1) != 0);
  for (const auto& s : profile.Samples()) (void)s.key->message.size();
  return 0;
}
