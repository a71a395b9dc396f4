#include "pprof/profile_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "base/fault_point.h"
#include "absl/functional/function_ref.h"
#include "absl/strings/str_cat.h"
#include "base/errno.h"
#include "base/read_file.h"

namespace goerrprof::profiler {
namespace {

namespace pp = perftools::profiles;

absl::StatusOr<std::string> Gzip(const std::string& in) {
  z_stream z{};
  // windowBits 15 + 16: a gzip header and trailer rather than zlib's.
  // Fastest level, as Go's runtime/pprof writes: a 100 000-goroutine
  // profile gzips twice as fast for ~1% more bytes.
  if (deflateInit2(&z, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
      Z_OK) {
    return absl::InternalError("deflateInit2 failed");
  }
  std::string out(deflateBound(&z, in.size()), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = in.size();
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = out.size();
  int rc = deflate(&z, Z_FINISH);
  deflateEnd(&z);
  if (rc != Z_STREAM_END) return absl::InternalError(absl::StrCat("deflate failed: ", rc));
  out.resize(z.total_out);
  return out;
}

// A profile larger than this once gunzipped is refused: real ones are a
// few MB, and a gzip bomb inflates a thousandfold.
constexpr uint64_t kMaxProfileBytes = uint64_t{256} << 20;

// Inflates `in`, handing each piece to `sink`; fails past `limit` bytes.
absl::Status Inflate(const std::string& in, uint64_t limit,
                     absl::FunctionRef<void(const char*, size_t)> sink) {
  z_stream z{};
  if (inflateInit2(&z, 15 + 16) != Z_OK) return absl::InternalError("inflateInit2 failed");
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = static_cast<uInt>(in.size());  // ParseProfile's cap keeps it below 4 GB
  char buf[1 << 16];
  uint64_t total = 0;
  int rc;
  do {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof(buf);
    rc = inflate(&z, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) break;
    size_t n = sizeof(buf) - z.avail_out;
    total += n;
    if (total > limit) {
      inflateEnd(&z);
      return absl::InvalidArgumentError(
          absl::StrCat("decompresses to more than ", limit >> 20, " MB, refusing it"));
    }
    sink(buf, n);
  } while (rc != Z_STREAM_END);
  inflateEnd(&z);
  if (rc != Z_STREAM_END) return absl::InvalidArgumentError("corrupt or truncated gzip data");
  return absl::OkStatus();
}

// Gunzips in two passes: the first only measures, so a bomb is refused
// before any of it is held, and the second fills a buffer of that size.
absl::StatusOr<std::string> Gunzip(const std::string& in) {
  uint64_t size = 0;
  absl::Status s = Inflate(in, kMaxProfileBytes, [&](const char*, size_t n) { size += n; });
  if (!s.ok()) return s;
  std::string out;
  out.reserve(size);
  s = Inflate(in, size, [&](const char* p, size_t n) { out.append(p, n); });
  if (!s.ok()) return s;
  return out;
}

}  // namespace

absl::Status WriteProfileFile(const pp::Profile& p, const std::string& path) {
  std::string raw;
  if (!p.SerializeToString(&raw)) return absl::InternalError("cannot serialize the profile");
  absl::StatusOr<std::string> gz = Gzip(raw);
  if (!gz.ok()) return gz.status();
  std::string tmp = path + ".tmp.XXXXXX";  // same directory: rename stays atomic
  int fd = mkstemp(tmp.data());
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("cannot create a temporary file for ", path));
  auto fail = [&](absl::string_view what) {
    absl::Status s = ErrnoStatus(errno, absl::StrCat(what, " ", tmp));
    if (fd >= 0) close(fd);
    unlink(tmp.c_str());
    return s;
  };
  if (fchmod(fd, 0644) != 0) return fail("cannot chmod");
  const char* data = gz->data();
  size_t left = gz->size();
  while (left > 0) {
    ssize_t n = write(fd, data, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail("cannot write");
    data += n;
    left -= static_cast<size_t>(n);
  }
  // On disk before it replaces the previous output: a crash leaves one or
  // the other whole.
  if (fsync(fd) != 0) return fail("cannot sync");
  int rc = close(fd);
  fd = -1;
  if (rc != 0) return fail("cannot close");
  FaultPoint("writing");
  if (rename(tmp.c_str(), path.c_str()) != 0) return fail("cannot rename");
  return absl::OkStatus();
}

absl::Status CheckWritable(const std::string& path) {
  std::string tmp = path + ".tmp.XXXXXX";
  int fd = mkstemp(tmp.data());
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("cannot write ", path));
  close(fd);
  unlink(tmp.c_str());
  return absl::OkStatus();
}

absl::StatusOr<pp::Profile> ReadProfile(const std::string& path) {
  absl::StatusOr<std::string> file = ReadWholeFile(path);
  if (!file.ok()) return file.status();
  return ParseProfile(*file, path);
}

absl::StatusOr<pp::Profile> ParseProfile(const std::string& bytes, const std::string& name) {
  if (bytes.size() > kMaxProfileBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": larger than ", kMaxProfileBytes >> 20, " MB, refusing it"));
  }
  const std::string* data = &bytes;
  std::string raw;
  if (bytes.size() >= 2 && static_cast<uint8_t>(bytes[0]) == 0x1f &&
      static_cast<uint8_t>(bytes[1]) == 0x8b) {
    absl::StatusOr<std::string> gunzipped = Gunzip(bytes);
    if (!gunzipped.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(name, ": ", gunzipped.status().message()));
    }
    raw = std::move(*gunzipped);
    data = &raw;
  }
  pp::Profile p;
  if (!p.ParseFromString(*data)) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": not a pprof profile"));
  }
  return p;
}

}  // namespace goerrprof::profiler
