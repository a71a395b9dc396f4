#include "plan/plan_cache.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "base/errno.h"
#include "base/read_file.h"
#include "plan/plan_cache.pb.h"
#include "symbolizer/elf_file.h"

namespace goerrprof::profiler {
namespace {

namespace pc = ::goerrprof::plancache;

constexpr uint32_t kFormat = 2;  // 2: the checksum trailer
// An entry bigger than this is not read: a real plan is a few MB at most.
constexpr size_t kMaxEntryBytes = 256u << 20;

// Each entry ends with the CRC-32 of the serialized plan before it (little
// endian) and these four bytes.
constexpr size_t kTrailerBytes = 8;
constexpr char kTrailerMagic[] = "gepc";

uint32_t Crc32(const char* p, size_t n) {
  uLong crc = crc32(0L, Z_NULL, 0);
  for (size_t off = 0; off < n; off += 1u << 30) {
    crc = crc32(crc, reinterpret_cast<const Bytef*>(p + off),
                static_cast<uInt>(std::min<size_t>(n - off, 1u << 30)));
  }
  return static_cast<uint32_t>(crc);
}

uint32_t LoadLe32(const char* p) {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return u[0] | u[1] << 8 | u[2] << 16 | static_cast<uint32_t>(u[3]) << 24;
}

// The goerrprof doing the planning: any rebuild of it (a planner change)
// makes older entries misses.
const std::string& PlannerId() {
  static const std::string* id = [] {
    auto self = symbolizer::ElfFile::Open("/proc/self/exe");
    std::string s = self.ok() ? (*self)->gnu_build_id() : "";
    if (s.empty() && self.ok()) s = absl::StrCat("size-", (*self)->file_size());
    return new std::string(s);
  }();
  return *id;
}

struct Identity {
  std::string build_id;
  uint64_t size = 0;
  int64_t mtime_ns = 0;
};

absl::StatusOr<Identity> IdentityOf(const symbolizer::GoBinary& bin) {
  Identity id;
  const symbolizer::ElfFile& elf = bin.elf();
  id.build_id = !elf.go_build_id().empty() ? elf.go_build_id() : elf.gnu_build_id();
  struct stat st;
  if (stat(elf.path().c_str(), &st) != 0) return ErrnoStatus(errno, "cannot stat " + elf.path());
  id.size = static_cast<uint64_t>(st.st_size);
  id.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  return id;
}

// CRC-32 of every loaded segment's file bytes: what the plan was made from.
uint32_t ContentCrc(const symbolizer::GoBinary& bin) {
  uLong crc = crc32(0L, Z_NULL, 0);
  for (const symbolizer::ElfSegment& seg : bin.elf().loads()) {
    auto bytes = bin.elf().ReadVirtual(seg.vaddr, seg.filesz);
    if (!bytes.ok()) continue;
    for (size_t off = 0; off < bytes->size(); off += 1u << 30) {
      size_t n = std::min<size_t>(bytes->size() - off, 1u << 30);
      crc = crc32(crc, bytes->data() + off, static_cast<uInt>(n));
    }
  }
  return static_cast<uint32_t>(crc);
}

std::string Sanitize(const std::string& s) {
  std::string out;
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_';
    out.push_back(ok ? c : '_');
  }
  return out;
}

void ToProto(const CachedPlan& plan, pc::Plan* out) {
  out->set_skipped(plan.skipped);
  for (const ProbeSpec& p : plan.probes) {
    pc::Probe* q = out->add_probes();
    q->set_vaddr(p.vaddr);
    q->set_cookie(p.cookie);
    q->set_const_type(p.const_type);
    q->set_const_data(p.const_data);
    q->set_check_tab(p.check_tab);
    q->set_site(p.site);
    q->set_kind(static_cast<uint32_t>(p.kind));
  }
  for (const ErrorLayout& l : plan.layouts) {
    pc::Layout* q = out->add_layouts();
    q->set_type_addr(l.type_addr);
    q->set_name(l.name);
    q->set_deref(l.deref);
    q->set_value_size(l.value_size);
    for (const ErrorLayout::Field& f : l.fields) {
      pc::Field* g = q->add_fields();
      g->set_name(f.name);
      g->set_offset(f.offset);
      g->set_kind(static_cast<uint32_t>(f.kind));
    }
    if (l.addr_type) {
      pc::AddrLayout* a = q->mutable_addr_type();
      a->set_kind(static_cast<uint32_t>(l.addr_type->kind));
      a->set_ip(l.addr_type->ip);
      a->set_port(l.addr_type->port);
      for (const auto& [name, off] : l.addr_type->strings) {
        pc::Field* g = a->add_strings();
        g->set_name(name);
        g->set_offset(off);
      }
    }
  }
}

// The entry's contents, checked field by field against what this build of
// goerrprof and this executable allow.
std::optional<CachedPlan> FromProto(const pc::Plan& in, const symbolizer::GoBinary& bin,
                                    std::string* miss) {
  CachedPlan out;
  out.skipped = in.skipped();
  const symbolizer::Pclntab& tab = bin.pclntab();
  for (const pc::Probe& q : in.probes()) {
    if (q.kind() > static_cast<uint32_t>(ProbeKind::kFatalPanic) || !tab.FindFunc(q.vaddr())) {
      *miss = "corrupt (a probe outside the text)";
      return std::nullopt;
    }
    ProbeSpec p;
    p.vaddr = q.vaddr();
    p.cookie = q.cookie();
    p.const_type = q.const_type();
    p.const_data = q.const_data();
    p.check_tab = q.check_tab();
    p.site = q.site();
    p.kind = static_cast<ProbeKind>(q.kind());
    out.probes.push_back(p);
  }
  for (const pc::Layout& q : in.layouts()) {
    ErrorLayout l;
    l.type_addr = q.type_addr();
    l.name = q.name();
    l.deref = q.deref();
    if (q.value_size() > 255) {
      *miss = "corrupt (a value size)";
      return std::nullopt;
    }
    l.value_size = static_cast<uint8_t>(q.value_size());
    for (const pc::Field& g : q.fields()) {
      if (g.kind() > static_cast<uint32_t>(LayoutFieldKind::kAddr)) {
        *miss = "corrupt (a field kind)";
        return std::nullopt;
      }
      l.fields.push_back({g.name(), g.offset(), static_cast<LayoutFieldKind>(g.kind())});
    }
    if (q.has_addr_type()) {
      AddrTypeLayout a;
      if (q.addr_type().kind() > GEP_ADDR_UNIX) {
        *miss = "corrupt (an address kind)";
        return std::nullopt;
      }
      a.kind = static_cast<gep_addr_kind>(q.addr_type().kind());
      a.ip = q.addr_type().ip();
      a.port = q.addr_type().port();
      for (const pc::Field& g : q.addr_type().strings()) a.strings.push_back({g.name(), g.offset()});
      l.addr_type = std::move(a);
    }
    out.layouts.push_back(std::move(l));
  }
  return out;
}

}  // namespace

std::string PlanCache::DefaultDir() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  if (xdg != nullptr && xdg[0] == '/') return absl::StrCat(xdg, "/goerrprof/plans");
  const char* home = std::getenv("HOME");
  if (home != nullptr && home[0] == '/') return absl::StrCat(home, "/.cache/goerrprof/plans");
  return "";
}

std::string PlanCache::PathFor(const symbolizer::GoBinary& bin) const {
  auto id = IdentityOf(bin);
  std::string key = !id.ok() ? "unknown"
                    : !id->build_id.empty()
                        ? absl::StrCat("id-", Sanitize(id->build_id))
                        : absl::StrCat("size-", id->size, "-mtime-", id->mtime_ns);
  return absl::StrCat(dir_, "/", key, ".plan");
}

std::optional<CachedPlan> PlanCache::Load(const symbolizer::GoBinary& bin,
                                          std::string* miss) const {
  if (!enabled()) {
    *miss = "disabled";
    return std::nullopt;
  }
  auto id = IdentityOf(bin);
  if (!id.ok()) {
    *miss = std::string(id.status().message());
    return std::nullopt;
  }
  std::string path = PathFor(bin);
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    *miss = "absent";
    return std::nullopt;
  }
  // Probes go where the entry says: only an entry this user wrote, in a
  // directory no one else can write, is read.
  struct stat dir_st;
  if (st.st_uid != geteuid() || (st.st_mode & 022) != 0 || stat(dir_.c_str(), &dir_st) != 0 ||
      dir_st.st_uid != geteuid() || (dir_st.st_mode & 022) != 0) {
    *miss = "not trusted (owned or writable by another user)";
    return std::nullopt;
  }
  if (static_cast<size_t>(st.st_size) > kMaxEntryBytes) {
    *miss = "corrupt (too big)";
    return std::nullopt;
  }
  auto bytes = ReadWholeFile(path, kMaxEntryBytes);
  if (!bytes.ok() || bytes->size() < kTrailerBytes ||
      bytes->compare(bytes->size() - 4, 4, kTrailerMagic) != 0) {
    *miss = "corrupt (unreadable)";
    return std::nullopt;
  }
  // A protobuf cut at a field boundary still parses: the trailer's CRC says
  // whether every byte written is there.
  size_t body = bytes->size() - kTrailerBytes;
  if (LoadLe32(bytes->data() + body) != Crc32(bytes->data(), body)) {
    *miss = "corrupt (checksum)";
    return std::nullopt;
  }
  pc::Plan entry;
  if (!entry.ParseFromArray(bytes->data(), static_cast<int>(body))) {
    *miss = "corrupt (unreadable)";
    return std::nullopt;
  }
  if (entry.format() != kFormat || entry.planner() != PlannerId()) {
    *miss = "planned by another goerrprof";
    return std::nullopt;
  }
  if (entry.build_id() != id->build_id || entry.size() != id->size ||
      (id->build_id.empty() && entry.mtime_ns() != id->mtime_ns) ||
      entry.crc32() != ContentCrc(bin)) {
    *miss = "executable changed";
    return std::nullopt;
  }
  return FromProto(entry, bin, miss);
}

absl::Status PlanCache::Store(const symbolizer::GoBinary& bin, const CachedPlan& plan) const {
  if (!enabled()) return absl::OkStatus();
  auto id = IdentityOf(bin);
  if (!id.ok()) return id.status();
  pc::Plan entry;
  entry.set_format(kFormat);
  entry.set_planner(PlannerId());
  entry.set_build_id(id->build_id);
  entry.set_size(id->size);
  entry.set_mtime_ns(id->mtime_ns);
  entry.set_crc32(ContentCrc(bin));
  ToProto(plan, &entry);
  std::string bytes;
  if (!entry.SerializeToString(&bytes)) return absl::InternalError("cannot serialize a plan");
  uint32_t crc = Crc32(bytes.data(), bytes.size());
  for (int i = 0; i < 4; ++i) bytes.push_back(static_cast<char>(crc >> (8 * i)));
  bytes.append(kTrailerMagic, 4);
  // mkdir -p, 0700: plans name a user's executables.
  for (size_t i = 1; i <= dir_.size(); ++i) {
    if (i == dir_.size() || dir_[i] == '/') {
      std::string part = dir_.substr(0, i);
      if (mkdir(part.c_str(), 0700) != 0 && errno != EEXIST) {
        return ErrnoStatus(errno, "cannot create " + part);
      }
    }
  }
  std::string path = PathFor(bin);
  std::string tmp = path + ".tmp.XXXXXX";
  int fd = mkstemp(tmp.data());  // mode 0600
  if (fd < 0) return ErrnoStatus(errno, "cannot create " + tmp);
  const char* p = bytes.data();
  size_t left = bytes.size();
  while (left > 0) {
    ssize_t n = write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      absl::Status s = ErrnoStatus(errno, "cannot write " + tmp);
      close(fd);
      unlink(tmp.c_str());
      return s;
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  close(fd);
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    absl::Status s = ErrnoStatus(errno, "cannot rename " + tmp);
    unlink(tmp.c_str());
    return s;
  }
  return absl::OkStatus();
}

}  // namespace goerrprof::profiler
