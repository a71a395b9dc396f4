#include "profiler/pprof_writer.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <tuple>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"

namespace goerrprof::profiler {
namespace {

namespace pp = perftools::profiles;

class StringTable {
 public:
  explicit StringTable(pp::Profile* p) : p_(p) { Index(""); }
  int64_t Index(absl::string_view s) {
    auto it = index_.find(s);
    if (it != index_.end()) return it->second;
    int64_t i = p_->string_table_size();
    p_->add_string_table(std::string(s));
    index_.emplace(std::string(s), i);
    return i;
  }

 private:
  pp::Profile* p_;
  absl::flat_hash_map<std::string, int64_t> index_;
};

// Builds mappings per executable, and locations and functions on first use
// of each PC of each executable.
class LocationTable {
 public:
  LocationTable(pp::Profile* p, StringTable* strings) : p_(p), strings_(strings) {}

  // Adds the executable's mappings once per file; returns its number.
  absl::StatusOr<size_t> AddBinary(const symbolizer::GoBinary& binary, const std::string& path) {
    for (size_t i = 0; i < binaries_.size(); ++i) {
      if (binaries_[i].binary == &binary || binaries_[i].path == path) return i;
    }
    const symbolizer::ElfFile& elf = binary.elf();
    // pprof compares a mapping's build_id with the file's GNU build ID (hex)
    // and will not symbolize from a file that differs, so the GNU one goes
    // first; the Go build ID serves binaries without one.
    const std::string& build_id =
        elf.gnu_build_id().empty() ? elf.go_build_id() : elf.gnu_build_id();
    Binary b{&binary, path, {}};
    for (const symbolizer::ElfSegment& seg : elf.loads()) {
      if (!(seg.flags & PF_X)) continue;
      pp::Mapping* m = p_->add_mapping();
      m->set_id(p_->mapping_size());
      m->set_memory_start(seg.vaddr);
      m->set_memory_limit(seg.vaddr + seg.memsz);
      m->set_file_offset(seg.offset);
      m->set_filename(strings_->Index(path));
      m->set_build_id(strings_->Index(build_id));
      // Locations carry symbols already: pprof need not look for the binary.
      m->set_has_functions(true);
      m->set_has_filenames(true);
      m->set_has_line_numbers(true);
      m->set_has_inline_frames(true);
      b.mappings.push_back(m->id());
    }
    if (b.mappings.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat(elf.path(), ": no executable PT_LOAD segment"));
    }
    binaries_.push_back(std::move(b));
    return binaries_.size() - 1;
  }

  // `ret`: pc is a return address, described by the call before it. The
  // location then gets pc-1, inside the call instruction, as pprof's spec
  // allows for non-leaf frames, so re-symbolizing tools land on the call.
  uint64_t Id(size_t binary, uint64_t pc, bool ret) {
    auto [it, inserted] = ids_.try_emplace(std::make_tuple(binary, pc, ret), 0);
    if (!inserted) return it->second;
    uint64_t addr = ret && pc > 0 ? pc - 1 : pc;
    pp::Location* loc = p_->add_location();
    loc->set_id(p_->location_size());
    loc->set_address(addr);
    loc->set_mapping_id(MappingOf(binary, addr));
    auto frames = binaries_[binary].binary->Symbolize(addr);
    if (frames.ok()) {
      // Innermost first, which is pprof's order for inlined calls.
      for (const symbolizer::SourceFrame& f : *frames) {
        pp::Line* line = loc->add_line();
        line->set_function_id(FunctionId(f.function, f.file));
        line->set_line(f.line);
      }
    }
    it->second = loc->id();
    return loc->id();
  }

 private:
  struct Binary {
    const symbolizer::GoBinary* binary;
    std::string path;
    std::vector<uint64_t> mappings;
  };

  uint64_t MappingOf(size_t binary, uint64_t pc) const {
    for (uint64_t id : binaries_[binary].mappings) {
      const pp::Mapping& m = p_->mapping(static_cast<int>(id - 1));
      if (pc >= m.memory_start() && pc < m.memory_limit()) return m.id();
    }
    return 0;
  }

  uint64_t FunctionId(absl::string_view name, absl::string_view file) {
    auto [it, inserted] = functions_.try_emplace(std::make_pair(name, file), 0);
    if (!inserted) return it->second;
    pp::Function* fn = p_->add_function();
    fn->set_id(p_->function_size());
    fn->set_name(strings_->Index(name));
    fn->set_system_name(strings_->Index(name));
    fn->set_filename(strings_->Index(file));
    it->second = fn->id();
    return fn->id();
  }

  pp::Profile* p_;
  StringTable* strings_;
  std::vector<Binary> binaries_;
  absl::flat_hash_map<std::tuple<size_t, uint64_t, bool>, uint64_t> ids_;
  // Views into the ELF mappings, which outlive the table.
  absl::flat_hash_map<std::pair<absl::string_view, absl::string_view>, uint64_t> functions_;
};

// Go's "created by" line for a go statement's pc: the physical function
// holding it, and the file:line of the call (pc is a return address).
struct Creator {
  std::string function, position;
};
Creator CreatorOf(const symbolizer::GoBinary& binary, uint64_t gopc) {
  auto frames = binary.Symbolize(gopc - 1);
  if (!frames.ok() || frames->empty()) return {};
  return {std::string(frames->back().function),
          absl::StrCat(frames->front().file, ":", frames->front().line)};
}

std::string DropsLine(const ProfileCounters& c) {
  if (c.drops.empty()) return "drops: none";
  std::vector<std::string> parts;
  for (const auto& [reason, count] : c.drops) parts.push_back(absl::StrCat(reason, "=", count));
  return absl::StrCat("drops: ", absl::StrJoin(parts, " "), " (total ", c.dropped(), ")");
}

absl::Status ErrnoStatus(absl::string_view what, const std::string& path) {
  return absl::InternalError(absl::StrCat(what, " ", path, ": ", strerror(errno)));
}

absl::StatusOr<std::string> Gzip(const std::string& in) {
  z_stream z{};
  // windowBits 15 + 16: a gzip header and trailer rather than zlib's.
  if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
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

absl::StatusOr<std::string> Gunzip(const std::string& in) {
  z_stream z{};
  if (inflateInit2(&z, 15 + 16) != Z_OK) return absl::InternalError("inflateInit2 failed");
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  z.avail_in = in.size();
  std::string out;
  char buf[1 << 16];
  int rc;
  do {
    z.next_out = reinterpret_cast<Bytef*>(buf);
    z.avail_out = sizeof(buf);
    rc = inflate(&z, Z_NO_FLUSH);
    if (rc != Z_OK && rc != Z_STREAM_END) break;
    out.append(buf, sizeof(buf) - z.avail_out);
  } while (rc != Z_STREAM_END);
  inflateEnd(&z);
  if (rc != Z_STREAM_END) return absl::InvalidArgumentError("corrupt or truncated gzip data");
  return out;
}

}  // namespace

absl::StatusOr<pp::Profile> BuildPprof(const ErrorProfile& profile,
                                       const std::vector<ProfiledProcess>& processes,
                                       const PprofInfo& info) {
  // No process (a command that ran no Go program) still gives a valid,
  // empty profile: a CI job can diff it.
  pp::Profile p;
  StringTable strings(&p);
  const int64_t errors = strings.Index("errors");
  const int64_t count = strings.Index("count");
  pp::ValueType* st = p.add_sample_type();
  st->set_type(errors);
  st->set_unit(count);
  p.mutable_period_type()->set_type(errors);
  p.mutable_period_type()->set_unit(count);
  p.set_period(1);
  p.set_time_nanos(info.time_nanos);
  p.set_duration_nanos(info.duration_nanos);

  LocationTable locations(&p, &strings);
  std::vector<size_t> binary_of;  // process -> LocationTable binary
  std::vector<std::string> paths, names;
  for (const ProfiledProcess& proc : processes) {
    const std::string& path = proc.path.empty() ? proc.binary->elf().path() : proc.path;
    auto b = locations.AddBinary(*proc.binary, path);
    if (!b.ok()) return b.status();
    binary_of.push_back(*b);
    paths.push_back(path);
    names.push_back(path.substr(path.rfind('/') + 1));
  }

  const int64_t k_type = strings.Index(kLabelType);
  const int64_t k_message = strings.Index(kLabelMessage);
  const int64_t k_chain = strings.Index(kLabelChain);
  const int64_t k_goroutine = strings.Index(kLabelGoroutine);
  const int64_t k_created_by = strings.Index(kLabelCreatedBy);
  const int64_t k_created_at = strings.Index(kLabelCreatedAt);
  const int64_t k_binary = strings.Index(kLabelBinary);
  const int64_t k_pid = strings.Index(kLabelPid);
  absl::flat_hash_map<std::pair<uint32_t, uint64_t>, Creator> creators;
  for (const ErrorProfile::Sample& s : profile.Samples()) {
    const uint32_t proc = s.key->process;
    if (proc >= processes.size()) {
      return absl::InvalidArgumentError(absl::StrCat("sample of unknown process ", proc));
    }
    pp::Sample* out = p.add_sample();
    for (size_t i = 0; i < s.key->stack.size(); ++i) {
      out->add_location_id(locations.Id(binary_of[proc], s.key->stack[i], i > 0));
    }
    out->add_value(static_cast<int64_t>(s.count));
    auto add_str = [&](int64_t key, absl::string_view value) {
      pp::Label* l = out->add_label();
      l->set_key(key);
      l->set_str(strings.Index(value));
    };
    auto add_num = [&](int64_t key, int64_t value) {
      pp::Label* l = out->add_label();
      l->set_key(key);
      l->set_num(value);
    };
    add_str(k_type, s.key->type);
    add_str(k_message, s.key->message);
    add_str(k_chain, s.key->chain);
    add_num(k_goroutine, static_cast<int64_t>(s.key->goroutine));
    if (s.key->created_by != 0) {
      auto [it, inserted] = creators.try_emplace(std::make_pair(proc, s.key->created_by));
      if (inserted) it->second = CreatorOf(*processes[proc].binary, s.key->created_by);
      if (!it->second.function.empty()) {
        add_str(k_created_by, it->second.function);
        add_str(k_created_at, it->second.position);
      }
    }
    for (const auto& [key, value] : s.key->labels) add_str(strings.Index(key), value);
    if (info.label_processes) {
      add_str(k_binary, names[proc]);
      add_num(k_pid, processes[proc].pid);
    }
  }

  const ProfileCounters& c = profile.counters();
  std::vector<std::string> comments;
  if (processes.empty()) comments.push_back("goerrprof: no Go process recorded");
  for (size_t i = 0; i < processes.size(); ++i) {
    const symbolizer::GoBinary& binary = *processes[i].binary;
    std::string go_version = binary.build_info().go_version;
    if (go_version.empty()) go_version = binary.version().ToString();
    if (processes.size() == 1 && !info.label_processes) {
      comments.push_back(absl::StrCat("goerrprof: error creations in ", paths[i]));
      comments.push_back(absl::StrCat("go version: ", go_version));
    } else {
      comments.push_back(absl::StrCat("goerrprof: error creations in pid ", processes[i].pid,
                                      ": ", paths[i], " (", go_version, ")"));
    }
  }
  comments.push_back(
      absl::StrCat("duration: ", absl::FormatDuration(absl::Nanoseconds(info.duration_nanos))));
  comments.push_back(absl::StrCat("probes attached: ", info.probes_attached));
  comments.push_back(DropsLine(c));
  comments.push_back(absl::StrFormat(
      "counts: events=%d samples=%d sites=%d partial=%d other_messages=%d dropped=%d", c.events,
      profile.num_samples(), profile.sites().size(), c.partial, c.other_messages, c.dropped()));
  for (const std::string& line : comments) p.add_comment(strings.Index(line));
  return p;
}

absl::StatusOr<pp::Profile> BuildPprof(const ErrorProfile& profile,
                                       const symbolizer::GoBinary& binary,
                                       const PprofInfo& info) {
  return BuildPprof(profile, {ProfiledProcess{&binary, info.binary_path, 0}}, info);
}

absl::Status WritePprof(const ErrorProfile& profile, const symbolizer::GoBinary& binary,
                        const PprofInfo& info, const std::string& path) {
  return WritePprof(profile, {ProfiledProcess{&binary, info.binary_path, 0}}, info, path);
}

absl::Status WritePprof(const ErrorProfile& profile, const std::vector<ProfiledProcess>& processes,
                        const PprofInfo& info, const std::string& path) {
  absl::StatusOr<pp::Profile> p = BuildPprof(profile, processes, info);
  if (!p.ok()) return p.status();
  return WriteProfileFile(*p, path);
}

absl::Status WriteProfileFile(const pp::Profile& p, const std::string& path) {
  std::string raw;
  if (!p.SerializeToString(&raw)) return absl::InternalError("cannot serialize the profile");
  absl::StatusOr<std::string> gz = Gzip(raw);
  if (!gz.ok()) return gz.status();

  // Same directory as `path`, so the rename cannot cross file systems.
  std::string tmp = path + ".tmp.XXXXXX";
  int fd = mkstemp(tmp.data());
  if (fd < 0) return ErrnoStatus("cannot create a temporary file for", path);
  auto fail = [&](absl::string_view what) {
    absl::Status s = ErrnoStatus(what, tmp);
    if (fd >= 0) close(fd);
    unlink(tmp.c_str());
    return s;
  };
  // mkstemp makes the file 0600; a profile is not secret.
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
  if (fsync(fd) != 0) return fail("cannot sync");
  int rc = close(fd);
  fd = -1;
  if (rc != 0) return fail("cannot close");
  if (rename(tmp.c_str(), path.c_str()) != 0) return fail("cannot rename");
  return absl::OkStatus();
}

absl::StatusOr<pp::Profile> ReadProfile(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("cannot open", path);
  std::string data;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      absl::Status s = ErrnoStatus("cannot read", path);
      close(fd);
      return s;
    }
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  if (data.size() >= 2 && static_cast<uint8_t>(data[0]) == 0x1f &&
      static_cast<uint8_t>(data[1]) == 0x8b) {
    absl::StatusOr<std::string> raw = Gunzip(data);
    if (!raw.ok()) return absl::InvalidArgumentError(absl::StrCat(path, ": ", raw.status().message()));
    data = std::move(*raw);
  }
  pp::Profile p;
  if (!p.ParseFromString(data)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a pprof profile"));
  }
  return p;
}

}  // namespace goerrprof::profiler
