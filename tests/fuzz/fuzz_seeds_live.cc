#include "tests/fuzz/fuzz_seeds_live.h"

#include <sys/uio.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <mutex>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "goabi/g_layout.h"
#include "goroutines/goroutine_locate.h"
#include "goroutines/goroutine_memory.h"
#include "goroutines/goroutine_snapshot.h"
#include "symbolizer/go_binary.h"
#include "symbolizer/load_bias.h"
#include "tests/fuzz/goroutines_fuzz_input.h"
#include "tests/test_support.h"

namespace goerrprof::fuzz {
namespace {

// process_vm_readv on pid, keeping a copy of every byte read.
class RecordingSource : public profiler::MemorySource {
 public:
  explicit RecordingSource(pid_t pid) : pid_(pid) {}
  ssize_t ReadV(const iovec* local, const iovec* remote, size_t n) override {
    ssize_t got = process_vm_readv(pid_, local, n, remote, n, 0);
    if (got <= 0) return got;
    std::lock_guard<std::mutex> lock(mu_);
    uint64_t left = static_cast<uint64_t>(got);
    for (size_t i = 0; i < n && left > 0; ++i) {
      uint64_t k = std::min<uint64_t>(left, remote[i].iov_len);
      std::string& m = read_[reinterpret_cast<uint64_t>(remote[i].iov_base)];
      if (m.size() < k) m.assign(static_cast<const char*>(local[i].iov_base), k);
      left -= k;
    }
    return got;
  }
  // What was read, overlapping ranges joined (a lookup finds one range).
  std::map<uint64_t, std::string> Joined() const {
    std::map<uint64_t, std::string> out;
    for (const auto& [addr, bytes] : read_) {
      if (!out.empty()) {
        auto& [last, prev] = *out.rbegin();
        if (addr <= last + prev.size()) {
          uint64_t skip = last + prev.size() - addr;
          if (skip < bytes.size()) prev += bytes.substr(skip);
          continue;
        }
      }
      out[addr] = bytes;
    }
    return out;
  }

 private:
  pid_t pid_;
  std::mutex mu_;
  std::map<uint64_t, std::string> read_;
};

}  // namespace

absl::StatusOr<int> GoroutineSeeds(const std::string& dir) {
  std::vector<std::string> paths = GoroutineBinaries();
  int n = 0;
  for (size_t b = 0; b < paths.size(); ++b) {
    auto bin = symbolizer::GoBinary::Open(paths[b]);
    if (!bin.ok()) return bin.status();
    auto layout = goabi::GLayoutFor((*bin)->version());
    if (!layout.ok()) return layout.status();
    auto allgs = profiler::FindAllgs(**bin);
    if (!allgs.ok()) return allgs.status();
    auto child = testing::Child::Spawn({paths[b]});
    if (!child.ok()) return child.status();
    auto ready = (*child)->ReadLine(false, 60);
    if (!ready.ok() || !absl::StartsWith(*ready, "ready ")) {
      return absl::UnavailableError(absl::StrCat(paths[b], " did not get ready"));
    }
    auto bias = symbolizer::LoadBias((*child)->pid(), (*bin)->elf());
    if (!bias.ok()) return bias.status();
    RecordingSource source((*child)->pid());
    profiler::SnapshotOptions options;
    options.threads = 1;
    options.include_system = true;
    auto snap = profiler::ReadSnapshot((*child)->pid(), &source, **bin, *layout, *allgs + *bias,
                                       *bias, options);
    if (!snap.ok()) return snap.status();
    GoroutinesInput in;
    in.binary = static_cast<uint8_t>(b);
    in.bias = *bias;
    in.mappings = source.Joined();
    std::ofstream(absl::StrCat(dir, "/parked", b), std::ios::binary) << WriteGoroutinesInput(in);
    ++n;
    (*child)->CloseStdin();
    (void)(*child)->Finish(30);
  }
  return n;
}

}  // namespace goerrprof::fuzz
