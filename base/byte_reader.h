// Bounds-checked reads of untrusted bytes (a binary's tables, another
// process's memory, ring-buffer records): one place where an offset and a
// length are checked against a size, without overflow, before any load.
// Values are little-endian, as on the x86-64 targets and the host.
#ifndef GOERRPROF_BASE_BYTE_READER_H_
#define GOERRPROF_BASE_BYTE_READER_H_

#include <bit>
#include <cstdint>
#include <cstring>
#include <optional>
#include <type_traits>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace goerrprof {

static_assert(std::endian::native == std::endian::little, "loads assume a little-endian host");

// Does [off, off + len) lie within [0, size)? Never overflows.
constexpr bool InBounds(uint64_t off, uint64_t len, uint64_t size) {
  return off <= size && len <= size - off;
}

// A non-owning view of bytes; random access by offset.
class ByteView {
 public:
  ByteView() = default;
  ByteView(const uint8_t* data, uint64_t size) : data_(data), size_(size) {}
  ByteView(absl::Span<const uint8_t> s) : data_(s.data()), size_(s.size()) {}  // NOLINT

  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  absl::Span<const uint8_t> span() const { return {data_, static_cast<size_t>(size_)}; }

  // The sizeof(T) bytes at `off` as a T (an integer or a plain struct);
  // false, leaving *out alone, when they are not all in the view.
  template <typename T>
  bool Read(uint64_t off, T* out) const {
    static_assert(std::is_trivially_copyable_v<T>);
    if (!InBounds(off, sizeof(T), size_)) return false;
    std::memcpy(out, data_ + off, sizeof(T));
    return true;
  }
  template <typename T>
  std::optional<T> Get(uint64_t off) const {
    T v;
    if (!Read(off, &v)) return std::nullopt;
    return v;
  }
  std::optional<uint8_t> U8(uint64_t off) const { return Get<uint8_t>(off); }
  std::optional<uint16_t> U16(uint64_t off) const { return Get<uint16_t>(off); }
  std::optional<uint32_t> U32(uint64_t off) const { return Get<uint32_t>(off); }
  std::optional<uint64_t> U64(uint64_t off) const { return Get<uint64_t>(off); }
  // An unsigned word of `width` bytes (1, 2, 4 or 8; others fail): a
  // pointer or uintptr of a target whose word size is known at run time.
  std::optional<uint64_t> Uint(uint64_t off, uint64_t width) const {
    if (width != 1 && width != 2 && width != 4 && width != 8) return std::nullopt;
    if (!InBounds(off, width, size_)) return std::nullopt;
    uint64_t v = 0;
    std::memcpy(&v, data_ + off, width);  // the low bytes, little-endian
    return v;
  }

  // The `len` bytes at `off`.
  std::optional<ByteView> Sub(uint64_t off, uint64_t len) const {
    if (!InBounds(off, len, size_)) return std::nullopt;
    return ByteView(data_ + off, len);
  }
  // The bytes from `off` up to (not including) the next NUL; nullopt when
  // off is outside the view or no NUL follows.
  std::optional<absl::string_view> CString(uint64_t off) const {
    return CString(off, size_);
  }
  // The same, for a string of at most max_len bytes: nullopt when no NUL
  // follows within that, so a table of names costs at most max_len a
  // lookup (crafted tables name long suffixes of one unterminated run).
  std::optional<absl::string_view> CString(uint64_t off, uint64_t max_len) const {
    if (off >= size_) return std::nullopt;
    const char* p = reinterpret_cast<const char*>(data_ + off);
    uint64_t avail = size_ - off;
    uint64_t window = max_len < avail ? max_len + 1 : avail;
    const void* nul = std::memchr(p, 0, window);
    if (nul == nullptr) return std::nullopt;
    return absl::string_view(p, static_cast<const char*>(nul) - p);
  }

 private:
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

// A cursor over a ByteView for records read field after field. A read
// that does not fit returns 0 (or an empty view) and puts the reader in
// error for good, so a run of reads needs one ok() check at its end.
class ByteReader {
 public:
  // A varint of Go's encoding/binary: 7 bits a byte, at most 10 bytes.
  static constexpr int kMaxVarintBytes = 10;

  // Starts at `pos`; a pos past the end is an error.
  explicit ByteReader(ByteView view, uint64_t pos = 0)
      : view_(view), pos_(pos), ok_(pos <= view.size()) {}

  bool ok() const { return ok_; }
  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return ok_ ? view_.size() - pos_ : 0; }

  template <typename T>
  bool Read(T* out) {
    if (!ok_ || !view_.Read(pos_, out)) {
      Fail();
      return false;
    }
    pos_ += sizeof(T);
    return true;
  }
  uint8_t U8() { return Next<uint8_t>(); }
  uint16_t U16() { return Next<uint16_t>(); }
  uint32_t U32() { return Next<uint32_t>(); }
  uint64_t U64() { return Next<uint64_t>(); }
  // A word of `width` bytes, as ByteView::Uint.
  uint64_t Uint(uint64_t width) {
    std::optional<uint64_t> v = ok_ ? view_.Uint(pos_, width) : std::nullopt;
    if (!v) return Fail();
    pos_ += width;
    return *v;
  }
  // Unsigned LEB128 as Go writes it; an error when it runs past the end,
  // is longer than 10 bytes or does not fit in 64 bits.
  uint64_t Uvarint() {
    uint64_t v = 0;
    for (int i = 0; i < kMaxVarintBytes; ++i) {
      uint8_t b = U8();
      if (!ok_ || (i == kMaxVarintBytes - 1 && b > 1)) break;
      v |= uint64_t{b & 0x7fu} << (7 * i);
      if (b < 0x80) return v;
    }
    return Fail();
  }
  // The next n bytes as a view (empty on error).
  ByteView Bytes(uint64_t n) {
    std::optional<ByteView> v = ok_ ? view_.Sub(pos_, n) : std::nullopt;
    if (!v) {
      Fail();
      return ByteView();
    }
    pos_ += n;
    return *v;
  }
  bool Skip(uint64_t n) {
    Bytes(n);
    return ok_;
  }

 private:
  template <typename T>
  T Next() {
    T v{};
    Read(&v);
    return v;
  }
  // Puts the reader in error; 0 for the caller to return.
  uint64_t Fail() {
    ok_ = false;
    return 0;
  }

  ByteView view_;
  uint64_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace goerrprof

#endif  // GOERRPROF_BASE_BYTE_READER_H_
