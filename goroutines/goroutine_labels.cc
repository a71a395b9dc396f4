#include "goroutines/goroutine_labels.h"

#include <algorithm>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace goerrprof::profiler {
namespace {

constexpr uint64_t kMaxLabels = 4096;
constexpr uint64_t kMaxString = 1 << 16;

uint64_t Word(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

struct StringRef {
  uint64_t ptr = 0, len = 0;
};

// Reads every string of `refs` in one batch.
absl::StatusOr<std::vector<std::string>> ReadStrings(ProcessMemory& mem,
                                                     const std::vector<StringRef>& refs) {
  std::vector<std::string> out(refs.size());
  std::vector<ReadRange> ranges;
  for (size_t i = 0; i < refs.size(); ++i) {
    if (refs[i].len > kMaxString) return absl::DataLossError("implausible label length");
    out[i].resize(refs[i].len);
    if (refs[i].len > 0) {
      ranges.push_back({refs[i].ptr, refs[i].len, reinterpret_cast<uint8_t*>(out[i].data())});
    }
  }
  absl::Status s = mem.ReadBatch(ranges);
  if (!s.ok()) return s;
  for (const ReadRange& r : ranges) {
    if (!r.ok) return absl::UnavailableError("label string unreadable");
  }
  return out;
}

absl::StatusOr<LabelList> Pair(ProcessMemory& mem, const std::vector<StringRef>& refs) {
  auto strings = ReadStrings(mem, refs);
  if (!strings.ok()) return strings.status();
  LabelList out;
  for (size_t i = 0; i + 1 < strings->size(); i += 2) {
    out.emplace_back(std::move((*strings)[i]), std::move((*strings)[i + 1]));
  }
  std::sort(out.begin(), out.end());
  return out;
}

// 1.24+: *labelMap points at struct{ list []label }.
absl::StatusOr<LabelList> FromSlice(ProcessMemory& mem, uint64_t labels) {
  uint8_t hdr[24];
  absl::Status s = mem.Read(labels, hdr, sizeof(hdr));
  if (!s.ok()) return s;
  uint64_t data = Word(hdr), len = Word(hdr + 8), cap = Word(hdr + 16);
  if (len > cap || len > kMaxLabels) return absl::DataLossError("implausible label slice");
  if (len == 0) return LabelList{};
  std::vector<uint8_t> raw(len * 32);
  s = mem.Read(data, raw.data(), raw.size());
  if (!s.ok()) return s;
  std::vector<StringRef> refs;
  for (uint64_t i = 0; i < len * 2; ++i) refs.push_back({Word(&raw[i * 16]), Word(&raw[i * 16 + 8])});
  return Pair(mem, refs);
}

// runtime.bmap for map[string]string: tophash[8], keys[8], values[8],
// overflow pointer.
constexpr uint64_t kBucketSize = 8 + 8 * 16 + 8 * 16 + 8;
constexpr uint8_t kEvacuatedX = 2, kEvacuatedEmpty = 4, kMinTopHash = 5;
constexpr uint8_t kSameSizeGrow = 8;  // hmap.flags

// Adds the filled cells of the bucket chains starting at `first` (n
// buckets back to back). Old buckets already evacuated are skipped: their
// entries live in the new array.
absl::Status CollectBuckets(ProcessMemory& mem, uint64_t first, uint64_t n, bool old,
                            std::vector<StringRef>* refs) {
  std::vector<uint8_t> raw(n * kBucketSize);
  absl::Status s = mem.Read(first, raw.data(), raw.size());
  if (!s.ok()) return s;
  uint64_t budget = kMaxLabels;  // bounds overflow chains on torn memory
  for (uint64_t b = 0; b < n; ++b) {
    const uint8_t* bucket = &raw[b * kBucketSize];
    if (old && bucket[0] >= kEvacuatedX && bucket[0] <= kEvacuatedEmpty) continue;
    std::vector<uint8_t> chained;
    while (bucket != nullptr) {
      for (int i = 0; i < 8; ++i) {
        if (bucket[i] < kMinTopHash) continue;
        const uint8_t* k = bucket + 8 + i * 16;
        const uint8_t* v = bucket + 8 + 128 + i * 16;
        refs->push_back({Word(k), Word(k + 8)});
        refs->push_back({Word(v), Word(v + 8)});
      }
      uint64_t overflow = Word(bucket + kBucketSize - 8);
      if (overflow == 0) break;
      if (--budget == 0) return absl::DataLossError("label map overflow chain too long");
      chained.resize(kBucketSize);
      s = mem.Read(overflow, chained.data(), chained.size());
      if (!s.ok()) return s;
      bucket = chained.data();
    }
  }
  return absl::OkStatus();
}

// Before 1.24: *labelMap points at one word, the map's *hmap.
absl::StatusOr<LabelList> FromMap(ProcessMemory& mem, uint64_t labels) {
  auto hmap = mem.ReadU64(labels);
  if (!hmap.ok()) return hmap.status();
  if (*hmap == 0) return LabelList{};
  uint8_t h[48];
  absl::Status s = mem.Read(*hmap, h, sizeof(h));
  if (!s.ok()) return s;
  uint64_t count = Word(h);
  uint8_t flags = h[8], b = h[9];
  uint64_t buckets = Word(h + 16), oldbuckets = Word(h + 24);
  if (count > kMaxLabels || b > 12) return absl::DataLossError("implausible label map");
  if (count == 0) return LabelList{};
  std::vector<StringRef> refs;
  s = CollectBuckets(mem, buckets, uint64_t{1} << b, false, &refs);
  if (!s.ok()) return s;
  if (oldbuckets != 0) {
    uint64_t n = (flags & kSameSizeGrow) || b == 0 ? uint64_t{1} << b : uint64_t{1} << (b - 1);
    s = CollectBuckets(mem, oldbuckets, n, true, &refs);
    if (!s.ok()) return s;
  }
  if (refs.size() != 2 * count) {
    return absl::DataLossError(absl::StrFormat("label map holds %d entries, found %d", count,
                                               refs.size() / 2));
  }
  return Pair(mem, refs);
}

}  // namespace

absl::StatusOr<LabelList> ReadLabels(ProcessMemory& mem, uint64_t labels,
                                     goabi::LabelStorage storage) {
  if (storage == goabi::LabelStorage::kSortedSlice) return FromSlice(mem, labels);
  return FromMap(mem, labels);
}

}  // namespace goerrprof::profiler
