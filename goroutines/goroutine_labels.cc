#include "goroutines/goroutine_labels.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "base/byte_reader.h"

namespace goerrprof::profiler {
namespace {

constexpr uint64_t kMaxLabels = 4096;
constexpr uint64_t kMaxString = 1 << 16;
// All of one goroutine's label strings: checked before any is allocated,
// as each length is only what the target's memory claims.
constexpr uint64_t kMaxLabelBytes = 1 << 20;

struct StringRef {
  uint64_t ptr = 0, len = 0;
};

// A Go string header {ptr, len}.
StringRef ReadStringRef(ByteReader& r) {
  StringRef s;
  s.ptr = r.U64();
  s.len = r.U64();
  return s;
}

// Reads every string of `refs` in one batch.
absl::StatusOr<std::vector<std::string>> ReadStrings(ProcessMemory& mem,
                                                     const std::vector<StringRef>& refs) {
  uint64_t total = 0;
  for (const StringRef& r : refs) {
    if (r.len > kMaxString) return absl::DataLossError("implausible label length");
    total += r.len;
  }
  if (total > kMaxLabelBytes) return absl::DataLossError("implausible label sizes");
  std::vector<std::string> out(refs.size());
  std::vector<ReadRange> ranges;
  for (size_t i = 0; i < refs.size(); ++i) {
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
  ByteReader slice(ByteView(hdr, sizeof(hdr)));
  uint64_t data = slice.U64(), len = slice.U64(), cap = slice.U64();
  if (len > cap || len > kMaxLabels) return absl::DataLossError("implausible label slice");
  if (len == 0) return LabelList{};
  std::vector<uint8_t> raw(len * 32);  // label{key, value string}
  s = mem.Read(data, raw.data(), raw.size());
  if (!s.ok()) return s;
  std::vector<StringRef> refs;
  ByteReader r(ByteView(raw.data(), raw.size()));
  for (uint64_t i = 0; i < len * 2; ++i) refs.push_back(ReadStringRef(r));
  return Pair(mem, refs);
}

// runtime.bmap for map[string]string: tophash[8], keys[8], values[8],
// overflow pointer.
constexpr uint64_t kBucketSize = 8 + 8 * 16 + 8 * 16 + 8;
constexpr uint8_t kEvacuatedX = 2, kEvacuatedEmpty = 4, kMinTopHash = 5;
constexpr uint8_t kSameSizeGrow = 8;  // hmap.flags

// Adds the filled cells of one bucket; returns its overflow pointer.
uint64_t ReadBucket(ByteView bucket, std::vector<StringRef>* refs) {
  ByteReader tophash(bucket), keys(bucket, 8), values(bucket, 8 + 8 * 16);
  for (int i = 0; i < 8; ++i) {
    uint8_t top = tophash.U8();
    StringRef k = ReadStringRef(keys), v = ReadStringRef(values);
    if (top < kMinTopHash) continue;
    refs->push_back(k);
    refs->push_back(v);
  }
  return ByteReader(bucket, kBucketSize - 8).U64();
}

// Adds the filled cells of the bucket chains starting at `first` (n
// buckets back to back). Old buckets already evacuated are skipped: their
// entries live in the new array.
absl::Status CollectBuckets(ProcessMemory& mem, uint64_t first, uint64_t n, bool old,
                            std::vector<StringRef>* refs) {
  std::vector<uint8_t> raw(n * kBucketSize);
  absl::Status s = mem.Read(first, raw.data(), raw.size());
  if (!s.ok()) return s;
  uint64_t budget = kMaxLabels;  // bounds overflow chains on torn memory
  std::vector<uint8_t> chained(kBucketSize);
  ByteReader array(ByteView(raw.data(), raw.size()));
  for (uint64_t b = 0; b < n; ++b) {
    ByteView bucket = array.Bytes(kBucketSize);
    uint8_t top0 = ByteReader(bucket).U8();
    if (old && top0 >= kEvacuatedX && top0 <= kEvacuatedEmpty) continue;
    for (;;) {
      uint64_t overflow = ReadBucket(bucket, refs);
      if (overflow == 0) break;
      if (--budget == 0) return absl::DataLossError("label map overflow chain too long");
      s = mem.Read(overflow, chained.data(), chained.size());
      if (!s.ok()) return s;
      bucket = ByteView(chained.data(), chained.size());
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
  ByteReader r(ByteView(h, sizeof(h)));
  uint64_t count = r.U64();
  uint8_t flags = r.U8(), b = r.U8();
  r.Skip(6);  // noverflow uint16, hash0 uint32
  uint64_t buckets = r.U64(), oldbuckets = r.U64();
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
