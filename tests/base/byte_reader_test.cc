// base/byte_reader.h: reads inside the bytes, reads that end exactly at
// the end, offsets and lengths whose sum overflows, and Go varints that are
// truncated or too long.
#include "base/byte_reader.h"

#include <cstdint>
#include <limits>
#include <vector>

#include "gtest/gtest.h"

namespace goerrprof {
namespace {

constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();

const std::vector<uint8_t> kBytes = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
                                     0x09, 0x0a, 0x0b, 0x0c, 0x61, 0x62, 0x00, 0x63};

ByteView View() { return ByteView(kBytes.data(), kBytes.size()); }

TEST(InBoundsTest, ChecksWithoutOverflow) {
  EXPECT_TRUE(InBounds(0, 16, 16));
  EXPECT_TRUE(InBounds(16, 0, 16));
  EXPECT_FALSE(InBounds(17, 0, 16));
  EXPECT_FALSE(InBounds(8, 9, 16));
  EXPECT_FALSE(InBounds(8, kMax, 16));
  EXPECT_FALSE(InBounds(kMax, 2, 16));
  EXPECT_FALSE(InBounds(kMax - 1, 2, kMax - 1));  // the sum wraps to 0
}

TEST(ByteViewTest, ReadsLittleEndianInRange) {
  ByteView v = View();
  EXPECT_EQ(v.U8(1), 0x02);
  EXPECT_EQ(v.U16(0), 0x0201);
  EXPECT_EQ(v.U32(4), 0x08070605u);
  EXPECT_EQ(v.U64(0), 0x0807060504030201u);
  EXPECT_EQ(v.Get<int32_t>(0), 0x04030201);
  EXPECT_EQ(v.Uint(0, 4), 0x04030201u);
  EXPECT_EQ(v.Uint(0, 8), 0x0807060504030201u);
  EXPECT_EQ(v.Uint(0, 3), std::nullopt);  // not a word size
  struct Pair {
    uint32_t a, b;
  } p{};
  ASSERT_TRUE(v.Read(8, &p));
  EXPECT_EQ(p.a, 0x0c0b0a09u);
  EXPECT_EQ(p.b, 0x63006261u);
}

TEST(ByteViewTest, ReadsAtTheVeryEnd) {
  ByteView v = View();
  EXPECT_EQ(v.U8(15), 0x63);
  EXPECT_EQ(v.U64(8), 0x630062610c0b0a09u);
  EXPECT_EQ(v.U8(16), std::nullopt);
  EXPECT_EQ(v.U16(15), std::nullopt);
  EXPECT_EQ(v.U64(9), std::nullopt);
  EXPECT_EQ(v.Uint(12, 8), std::nullopt);
  ASSERT_TRUE(v.Sub(16, 0).has_value());
  EXPECT_TRUE(v.Sub(16, 0)->empty());
  EXPECT_EQ(v.Sub(17, 0), std::nullopt);
}

TEST(ByteViewTest, FailedReadLeavesOutputAlone) {
  uint64_t out = 42;
  EXPECT_FALSE(View().Read(9, &out));
  EXPECT_EQ(out, 42u);
}

TEST(ByteViewTest, OffsetPlusLengthOverflow) {
  ByteView v = View();
  for (uint64_t off : {kMax, kMax - 1, kMax - 7, kMax - 15}) {
    EXPECT_EQ(v.U8(off), std::nullopt) << off;
    EXPECT_EQ(v.U64(off), std::nullopt) << off;
    EXPECT_EQ(v.Uint(off, 8), std::nullopt) << off;
    EXPECT_EQ(v.CString(off), std::nullopt) << off;
  }
  EXPECT_EQ(v.Sub(8, kMax), std::nullopt);
  EXPECT_EQ(v.Sub(kMax, 17), std::nullopt);  // kMax + 17 wraps to 16
  // A view as large as the address space still refuses a wrapping sum.
  ByteView huge(kBytes.data(), kMax);
  EXPECT_EQ(huge.Sub(kMax - 3, 8), std::nullopt);
  EXPECT_EQ(huge.U64(kMax - 3), std::nullopt);
}

TEST(ByteViewTest, CString) {
  ByteView v = View();
  EXPECT_EQ(v.CString(12), "ab");
  EXPECT_EQ(v.CString(14), "");
  EXPECT_EQ(v.CString(15), std::nullopt);  // no NUL before the end
  EXPECT_EQ(v.CString(16), std::nullopt);
}

// A bounded lookup finds a string of up to max_len bytes, right to the end
// of the view, and never reads past either.
TEST(ByteViewTest, CStringWithin) {
  const uint8_t bytes[] = {'a', 'b', 'c', 0, 'x', 'y', 'z'};
  ByteView v(bytes, 4);  // "abc\0": the NUL is the view's last byte
  EXPECT_EQ(v.CString(0, 3), "abc");
  EXPECT_EQ(v.CString(0, 2), std::nullopt);  // longer than max_len
  EXPECT_EQ(v.CString(1, 2), "bc");
  EXPECT_EQ(v.CString(0, ~uint64_t{0}), "abc");
  EXPECT_EQ(ByteView(bytes, 3).CString(0, 3), std::nullopt);  // no NUL in the view
}

TEST(ByteReaderTest, ReadsInOrderAndStopsAtTheEnd) {
  ByteReader r(View());
  EXPECT_EQ(r.U8(), 0x01);
  EXPECT_EQ(r.U16(), 0x0302);
  EXPECT_TRUE(r.Skip(1));
  EXPECT_EQ(r.U32(), 0x08070605u);
  EXPECT_EQ(r.pos(), 8u);
  EXPECT_EQ(r.remaining(), 8u);
  EXPECT_EQ(r.U64(), 0x630062610c0b0a09u);
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.remaining(), 0u);
  EXPECT_EQ(r.U8(), 0);
  EXPECT_FALSE(r.ok());
}

TEST(ByteReaderTest, ErrorIsSticky) {
  ByteReader r(View(), 12);
  EXPECT_EQ(r.U64(), 0u);  // only 4 bytes left
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.U8(), 0);  // would fit, but the reader is in error
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.remaining(), 0u);
  EXPECT_TRUE(r.Bytes(0).empty());
}

TEST(ByteReaderTest, StartPastTheEndIsAnError) {
  EXPECT_TRUE(ByteReader(View(), 16).ok());
  EXPECT_FALSE(ByteReader(View(), 17).ok());
  EXPECT_FALSE(ByteReader(View(), kMax).ok());
}

TEST(ByteReaderTest, SkipAndBytesCheckTheLength) {
  ByteReader r(View(), 8);
  EXPECT_FALSE(r.Skip(kMax));  // pos + n wraps
  ByteReader s(View(), 12);
  ByteView b = s.Bytes(3);
  EXPECT_EQ(b.size(), 3u);
  EXPECT_EQ(b.U8(0), 0x61);
  EXPECT_TRUE(s.Bytes(2).empty());
  EXPECT_FALSE(s.ok());
}

TEST(ByteReaderTest, Uint) {
  ByteReader r(View());
  EXPECT_EQ(r.Uint(4), 0x04030201u);
  EXPECT_EQ(r.Uint(8), 0x0c0b0a0908070605u);
  EXPECT_EQ(r.Uint(5), 0u);
  EXPECT_FALSE(r.ok());
}

uint64_t Varint(const std::vector<uint8_t>& bytes, bool* ok, uint64_t* pos = nullptr) {
  ByteReader r(ByteView(bytes.data(), bytes.size()));
  uint64_t v = r.Uvarint();
  *ok = r.ok();
  if (pos != nullptr) *pos = r.pos();
  return v;
}

TEST(ByteReaderTest, Uvarint) {
  bool ok = false;
  uint64_t pos = 0;
  EXPECT_EQ(Varint({0x00}, &ok), 0u);
  EXPECT_TRUE(ok);
  EXPECT_EQ(Varint({0x7f, 0xff}, &ok, &pos), 127u);
  EXPECT_TRUE(ok);
  EXPECT_EQ(pos, 1u);
  EXPECT_EQ(Varint({0xac, 0x02}, &ok, &pos), 300u);
  EXPECT_TRUE(ok);
  EXPECT_EQ(pos, 2u);
  EXPECT_EQ(Varint({0xff, 0xff, 0xff, 0xff, 0x0f}, &ok), 0xffffffffu);
  EXPECT_TRUE(ok);
  // The largest: ten bytes, the last holding the top bit.
  EXPECT_EQ(Varint({0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, &ok), kMax);
  EXPECT_TRUE(ok);
}

TEST(ByteReaderTest, TruncatedUvarint) {
  bool ok = true;
  Varint({}, &ok);
  EXPECT_FALSE(ok);
  Varint({0x80}, &ok);
  EXPECT_FALSE(ok);
  Varint({0xff, 0xff, 0xff}, &ok);
  EXPECT_FALSE(ok);
}

TEST(ByteReaderTest, UvarintLongerThanTenBytes) {
  bool ok = true;
  Varint({0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00}, &ok);
  EXPECT_FALSE(ok);
  // Ten bytes whose last one overflows 64 bits.
  Varint({0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02}, &ok);
  EXPECT_FALSE(ok);
  Varint({0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80}, &ok);
  EXPECT_FALSE(ok);
}

}  // namespace
}  // namespace goerrprof
