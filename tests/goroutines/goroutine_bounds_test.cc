// Counts and lengths read from a target's memory are capped before they
// size an allocation: crafted memory images (no process) that once made
// the goroutine reader allocate gigabytes before reading a byte.
#include <errno.h>

#include <cstring>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "goabi/g_layout.h"
#include "goroutines/goroutine_labels.h"
#include "goroutines/goroutine_memory.h"
#include "goroutines/goroutine_snapshot.h"
#include "gtest/gtest.h"
#include "symbolizer/go_binary.h"
#include "tests/bounded_child.h"
#include "tests/memory_image.h"
#include "tests/synthetic_go_binary.h"

namespace goerrprof::testing {
namespace {

constexpr int kTimeLimit = 10;
constexpr int64_t kRssLimitKb = 128 << 10;  // 128 MB
constexpr uint64_t kHeap = 0xc000000000;   // where Go's heap starts

std::string Words(std::initializer_list<uint64_t> words) {
  std::string s;
  for (uint64_t w : words) s.append(reinterpret_cast<const char*>(&w), 8);
  return s;
}

// runtime.allgs claims 2^26 - 1 goroutines but its array is one page: the
// pointer array used to be allocated (512 MB, zeroed) before the read.
TEST(GoroutineBounds, AllgsLongerThanItsMemory) {
  std::string bytes = BuildSyntheticGoBinary({});
  auto bin = symbolizer::GoBinary::FromBytes(
      "synthetic", {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()});
  ASSERT_TRUE(bin.ok()) << bin.status();
  auto layout = goabi::GLayoutFor((*bin)->version());
  ASSERT_TRUE(layout.ok()) << layout.status();
  MemoryImage image;
  uint64_t len = (uint64_t{1} << 26) - 1;
  image.Map(kSyntheticData, Words({kHeap, len, len}));
  image.Map(kHeap, std::string(4096, '\0'));
  BoundedRun run = RunInChild(
      [&] {
        auto snap = profiler::ReadSnapshot(1, &image, **bin, *layout, kSyntheticData, 0, {});
        if (snap.ok()) return 2;
        return absl::StrContains(snap.status().message(), "goroutine list") ? 0 : 3;
      },
      kTimeLimit);
  EXPECT_TRUE(run.finished && run.exit_code == 0) << run.Describe();
  EXPECT_LT(run.rss_growth_kb, kRssLimitKb) << run.Describe();
}

// 1.24+ labels: 4096 labels whose keys and values each claim 64 KB: the
// strings used to be allocated (512 MB, zeroed) before they were read.
TEST(GoroutineBounds, LabelStringsLongerThanPlausible) {
  MemoryImage image;
  uint64_t list = kHeap + 0x1000, n = 4096;
  image.Map(kHeap, Words({list, n, n}));
  std::string labels;
  for (uint64_t i = 0; i < n; ++i) labels += Words({kHeap, 65536, kHeap, 65536});
  image.Map(list, labels);
  BoundedRun run = RunInChild(
      [&] {
        profiler::ProcessMemory mem(1, &image);
        auto l = profiler::ReadLabels(mem, kHeap, goabi::LabelStorage::kSortedSlice);
        if (l.ok()) return 2;
        return absl::IsDataLoss(l.status()) ? 0 : 3;
      },
      kTimeLimit);
  EXPECT_TRUE(run.finished && run.exit_code == 0) << run.Describe();
  EXPECT_LT(run.rss_growth_kb, kRssLimitKb) << run.Describe();
}

// A read of 512 MB (a g's bounds said so) of which 16 KB are mapped: the
// failed read used to be retried through a zeroed 512 MB buffer. (Under
// ASan the reader's scratch costs an eighth of its size in shadow.)
TEST(GoroutineBounds, FaultingHugeRangeIsNotReadAgain) {
  MemoryImage image;
  image.Map(kHeap, std::string(16 << 10, 'x'));
  BoundedRun run = RunInChild(
      [&] {
        profiler::ProcessMemory mem(1, &image);
        std::vector<profiler::ReadRange> ranges = {{kHeap, uint64_t{512} << 20}};
        bool saw_null = false;
        absl::Status s = mem.Visit(ranges, 0, [&](size_t, const uint8_t* b) {
          saw_null = b == nullptr;
        });
        return s.ok() && saw_null ? 0 : 2;
      },
      kTimeLimit);
  EXPECT_TRUE(run.finished && run.exit_code == 0) << run.Describe();
  EXPECT_LT(run.rss_growth_kb, kRssLimitKb) << run.Describe();
}

// A memory image plus a region of any size that reads as zeros without
// being stored.
class ImageWithZeros : public MemoryImage {
 public:
  ImageWithZeros(uint64_t zeros, uint64_t len) : zeros_(zeros), len_(len) {}
  ssize_t ReadV(const iovec* local, const iovec* remote, size_t n) override {
    ssize_t total = 0;
    for (size_t i = 0; i < n; ++i) {
      uint64_t addr = reinterpret_cast<uint64_t>(remote[i].iov_base);
      if (addr >= zeros_ && addr - zeros_ <= len_ && remote[i].iov_len <= len_ - (addr - zeros_)) {
        std::memset(local[i].iov_base, 0, remote[i].iov_len);
      } else if (MemoryImage::ReadV(&local[i], &remote[i], 1) !=
                 static_cast<ssize_t>(remote[i].iov_len)) {
        break;
      }
      total += static_cast<ssize_t>(remote[i].iov_len);
    }
    if (total == 0 && n > 0) {
      errno = EFAULT;
      return -1;
    }
    return total;
  }

 private:
  uint64_t zeros_, len_;
};

// A waiting g whose stack is 1 GB, all of it readable, and whose frame
// pointer lies past the first read: the whole stack used to be read (1 GB
// of memory) to follow one frame.
TEST(GoroutineBounds, StackReadIsCapped) {
  std::string bytes = BuildSyntheticGoBinary({});
  auto bin = symbolizer::GoBinary::FromBytes(
      "synthetic", {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()});
  ASSERT_TRUE(bin.ok()) << bin.status();
  auto layout = goabi::GLayoutFor((*bin)->version());
  ASSERT_TRUE(layout.ok()) << layout.status();
  const uint64_t stack = 0xc000400000, stack_len = uint64_t{1} << 30, g = kHeap + 0x100;
  ImageWithZeros image(stack, stack_len);
  image.Map(kSyntheticData, Words({kHeap, 1, 1}));  // runtime.allgs: one g
  std::string gbytes(1024, '\0');
  auto put = [&](int32_t off, uint64_t v) {
    if (off >= 0) std::memcpy(&gbytes[off], &v, 8);
  };
  uint64_t sp = stack + 64;
  put(layout->stack_lo, stack);
  put(layout->stack_hi, stack + stack_len);
  put(layout->sched_sp, sp);
  put(layout->sched_pc, kSyntheticText + 16);  // in main.main
  put(layout->sched_bp, sp + 20000);           // past the first 16 KB read
  put(layout->goid, 5);
  put(layout->startpc, kSyntheticText);
  gbytes[layout->atomicstatus] = static_cast<char>(goabi::kGwaiting);
  gbytes[layout->waitreason] = 0;
  image.Map(kHeap, Words({g}));
  image.Map(g, gbytes);
  BoundedRun run = RunInChild(
      [&] {
        profiler::SnapshotOptions options;
        options.max_attempts = 1;
        options.threads = 1;
        auto snap = profiler::ReadSnapshot(1, &image, **bin, *layout, kSyntheticData, 0, options);
        return snap.ok() ? 0 : 2;
      },
      kTimeLimit);
  EXPECT_TRUE(run.finished && run.exit_code == 0) << run.Describe();
  EXPECT_LT(run.rss_growth_kb, kRssLimitKb) << run.Describe();
}

}  // namespace
}  // namespace goerrprof::testing
