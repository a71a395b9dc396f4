// The goroutine reader against a memory image whose bytes come from the
// fuzzer: runtime.allgs, the gs, their stacks and labels are whatever the
// input maps, read as `goroutines` reads a live process, then shown as
// its dump and pprof profile show them. Seeds: memory recorded from the
// corpus's `parked` program while a snapshot of it was taken (fuzz_seeds).
//
// Input: [binary u8][bias u64] then mappings [addr u64][len u32][bytes].
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "base/byte_reader.h"
#include "goabi/g_layout.h"
#include "goroutines/goroutine_frames.h"
#include "goroutines/goroutine_locate.h"
#include "goroutines/goroutine_pprof.h"
#include "goroutines/goroutine_snapshot.h"
#include "goroutines/goroutine_text.h"
#include "tests/fuzz/fuzz_support.h"
#include "tests/fuzz/goroutines_fuzz_input.h"
#include "tests/memory_image.h"

namespace {

namespace gp = goerrprof::profiler;

struct Target {
  std::string bytes;
  std::unique_ptr<goerrprof::symbolizer::GoBinary> bin;
  goerrprof::goabi::GLayout layout;
  uint64_t allgs = 0;  // file address of the slice header
};

std::vector<Target>* targets = nullptr;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  targets = new std::vector<Target>();
  for (const std::string& p : goerrprof::fuzz::GoroutineBinaries()) {
    Target& t = targets->emplace_back();
    t.bytes = goerrprof::fuzz::ReadFileOrDie(p);
    auto bin = goerrprof::symbolizer::GoBinary::FromBytes(
        p, {reinterpret_cast<const uint8_t*>(t.bytes.data()), t.bytes.size()});
    auto layout = bin.ok() ? goerrprof::goabi::GLayoutFor((*bin)->version())
                           : absl::StatusOr<goerrprof::goabi::GLayout>(bin.status());
    auto allgs = bin.ok() ? gp::FindAllgs(**bin) : absl::StatusOr<uint64_t>(bin.status());
    if (!layout.ok() || !allgs.ok()) {
      std::fprintf(stderr, "fuzz: %s: %s\n", p.c_str(),
                   std::string((layout.ok() ? allgs.status() : layout.status()).message()).c_str());
      std::exit(2);
    }
    t.bin = std::move(*bin);
    t.layout = *layout;
    t.allgs = *allgs;
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  goerrprof::fuzz::GoroutinesInput in;
  if (!goerrprof::fuzz::ParseGoroutinesInput(data, size, &in)) return 0;
  Target& t = (*targets)[(in.binary & 0x7f) % targets->size()];
  goerrprof::testing::MemoryImage image;
  for (auto& [addr, bytes] : in.mappings) image.Map(addr, std::move(bytes));
  gp::SnapshotOptions options;
  options.include_system = (in.binary & 0x80) != 0;
  options.max_attempts = 2;
  options.threads = 1;
  auto snap = gp::ReadSnapshot(1, &image, *t.bin, t.layout, t.allgs + in.bias, in.bias, options);
  if (!snap.ok()) return 0;
  gp::GoFrames frames(*t.bin, options.include_system);
  (void)gp::FormatDump(*snap, frames);
  (void)gp::FormatLeaks(*snap, frames, 0);
  (void)gp::GoroutineProfile(*snap, *t.bin);
  return 0;
}
