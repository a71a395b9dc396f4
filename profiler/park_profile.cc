#include "profiler/park_profile.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <cstring>
#include <tuple>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"

namespace goerrprof::profiler {
namespace {

namespace pp = perftools::profiles;

// The frames every wakeup passes through, whoever wakes.
bool IsWakeMachinery(absl::string_view fn) {
  // goready's closure is named after wherever goready was inlined
  // ("runtime.goroutineReady.goready.func1"; "_.goready.func1" in 1.27).
  return fn == "runtime.ready" || fn == "runtime.goready" || fn == "runtime.systemstack" ||
         fn == "runtime.readyWithTime" || absl::StrContains(fn, "goready.func");
}

bool IsPlumbing(absl::string_view fn) {
  return absl::StartsWith(fn, "runtime.") || absl::StartsWith(fn, "sync.") ||
         absl::StartsWith(fn, "internal/") || absl::StartsWith(fn, "runtime/") ||
         IsWakeMachinery(fn);
}

class Strings {
 public:
  explicit Strings(pp::Profile* p) : p_(p) { Index(""); }
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

// Mappings for the executable's PT_LOAD segments (file vaddrs), and one
// location per (pc, return address?) with its inlined frames as lines.
class Locations {
 public:
  Locations(pp::Profile* p, Strings* s, const symbolizer::GoBinary& b) : p_(p), s_(s), b_(b) {}

  absl::Status AddMappings(const std::string& path) {
    const symbolizer::ElfFile& elf = b_.elf();
    const std::string& build_id =
        elf.gnu_build_id().empty() ? elf.go_build_id() : elf.gnu_build_id();
    for (const symbolizer::ElfSegment& seg : elf.loads()) {
      if (!(seg.flags & PF_X)) continue;
      pp::Mapping* m = p_->add_mapping();
      m->set_id(p_->mapping_size());
      m->set_memory_start(seg.vaddr);
      m->set_memory_limit(seg.vaddr + seg.memsz);
      m->set_file_offset(seg.offset);
      m->set_filename(s_->Index(path));
      m->set_build_id(s_->Index(build_id));
      m->set_has_functions(true);
      m->set_has_filenames(true);
      m->set_has_line_numbers(true);
      m->set_has_inline_frames(true);
    }
    if (p_->mapping_size() == 0) {
      return absl::FailedPreconditionError(absl::StrCat(elf.path(), ": no executable segment"));
    }
    return absl::OkStatus();
  }

  uint64_t Id(uint64_t pc, bool ret) {
    auto [it, inserted] = ids_.try_emplace(std::make_pair(pc, ret), 0);
    if (!inserted) return it->second;
    uint64_t addr = ret && pc > 0 ? pc - 1 : pc;
    pp::Location* loc = p_->add_location();
    loc->set_id(p_->location_size());
    loc->set_address(addr);
    for (const pp::Mapping& m : p_->mapping()) {
      if (addr >= m.memory_start() && addr < m.memory_limit()) loc->set_mapping_id(m.id());
    }
    auto frames = b_.Symbolize(addr);
    if (frames.ok()) {
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
  uint64_t FunctionId(absl::string_view name, absl::string_view file) {
    auto [it, inserted] = fns_.try_emplace(std::make_pair(name, file), 0);
    if (!inserted) return it->second;
    pp::Function* fn = p_->add_function();
    fn->set_id(p_->function_size());
    fn->set_name(s_->Index(name));
    fn->set_system_name(s_->Index(name));
    fn->set_filename(s_->Index(file));
    it->second = fn->id();
    return fn->id();
  }

  pp::Profile* p_;
  Strings* s_;
  const symbolizer::GoBinary& b_;
  absl::flat_hash_map<std::pair<uint64_t, bool>, uint64_t> ids_;
  absl::flat_hash_map<std::pair<absl::string_view, absl::string_view>, uint64_t> fns_;
};

absl::StatusOr<std::string> Gzip(const std::string& in) {
  z_stream z{};
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

}  // namespace

absl::string_view ParkStateName(ParkState s) {
  switch (s) {
    case ParkState::kResumed:
      return "resumed";
    case ParkState::kStillParked:
      return "still_parked";
    case ParkState::kParkedBeforeStart:
      return "parked_before_start";
  }
  return "";
}

ParkAggregator::ParkAggregator(const symbolizer::GoBinary& binary, const goabi::GLayout& layout,
                               uint64_t start_ns)
    : binary_(binary), layout_(layout), start_ns_(start_ns) {}

const std::vector<std::string>& ParkAggregator::FunctionsAt(uint64_t pc, bool ret) {
  auto [it, inserted] = names_.try_emplace(std::make_pair(pc, ret));
  if (inserted) {
    auto frames = binary_.Symbolize(ret && pc > 0 ? pc - 1 : pc);
    if (frames.ok()) {
      for (const symbolizer::SourceFrame& f : *frames) it->second.emplace_back(f.function);
    }
  }
  return it->second;
}

std::string ParkAggregator::UserFunction(const std::vector<uint64_t>& stack) {
  for (size_t i = 0; i < stack.size(); ++i) {
    for (const std::string& fn : FunctionsAt(stack[i], i > 0)) {
      if (!IsPlumbing(fn)) return fn;
    }
  }
  return "";
}

std::string ParkAggregator::WakerFunction(const std::vector<uint64_t>& stack) {
  std::string user = UserFunction(stack);
  if (!user.empty()) return user;
  for (size_t i = 0; i < stack.size(); ++i) {
    for (const std::string& fn : FunctionsAt(stack[i], i > 0)) {
      if (!IsWakeMachinery(fn)) return fn;
    }
  }
  return "(unknown)";
}

void ParkAggregator::Finish(std::vector<uint64_t> stack, uint8_t reason, uint64_t blocked,
                            ParkState state, const Waker* waker) {
  if (waker) {
    WakeKey wk{waker->stack, reason, UserFunction(stack)};
    if (wk.woken.empty()) wk.woken = "(unknown)";
    ++wakeups_[wk];
  }
  ParkKey key{std::move(stack), reason, waker ? waker->function : "(none)", state};
  ParkValue& v = parks_[key];
  ++v.parks;
  v.blocked_ns += blocked;
}

void ParkAggregator::Add(const ParkRecord& r) {
  if (closed_) return;
  if (r.goid == 0) {
    ++totals_.unknown_goid;
    return;
  }
  switch (r.kind) {
    case ParkRecord::kPark: {
      ++totals_.parks;
      Open o{r.ts_ns, r.wait_reason, r.stack, false, {}};
      auto [it, inserted] = open_.try_emplace(r.goid, std::move(o));
      if (!inserted) {  // its resume was lost: that park's length is unknown
        ++totals_.lost_resumes;
        it->second = Open{r.ts_ns, r.wait_reason, r.stack, false, {}};
      }
      early_wake_.erase(r.goid);
      break;
    }
    case ParkRecord::kReady: {
      ++totals_.wakeups;
      Waker w{r.stack, WakerFunction(r.stack)};
      auto it = open_.find(r.goid);
      if (it != open_.end()) {
        it->second.woken = true;
        it->second.waker = std::move(w);
      } else {
        early_wake_[r.goid] = std::move(w);
      }
      break;
    }
    case ParkRecord::kResume: {
      auto it = open_.find(r.goid);
      if (it != open_.end()) {
        ++totals_.resumes;
        Open o = std::move(it->second);
        open_.erase(it);
        uint64_t blocked = r.ts_ns > o.ts_ns ? r.ts_ns - o.ts_ns : 0;
        Finish(std::move(o.stack), o.wait_reason, blocked, ParkState::kResumed,
               o.woken ? &o.waker : nullptr);
        break;
      }
      auto w = early_wake_.find(r.goid);
      std::optional<Waker> waker;
      if (w != early_wake_.end()) {
        waker = std::move(w->second);
        early_wake_.erase(w);
      }
      if (!r.untracked) {  // the probe saw the park; its record was lost
        ++totals_.lost_parks;
        break;
      }
      ++totals_.resumed_before_start;
      uint64_t blocked = r.ts_ns > start_ns_ ? r.ts_ns - start_ns_ : 0;
      Finish(r.stack, r.wait_reason, blocked, ParkState::kParkedBeforeStart,
             waker ? &*waker : nullptr);
      break;
    }
  }
}

void ParkAggregator::Close(uint64_t stop_ns) {
  if (closed_) return;
  closed_ = true;
  for (auto& [goid, o] : open_) {
    ++totals_.still_parked;
    uint64_t blocked = stop_ns > o.ts_ns ? stop_ns - o.ts_ns : 0;
    // Woken but not yet running at the stop: still counted as parked.
    Finish(std::move(o.stack), o.wait_reason, blocked, ParkState::kStillParked,
           o.woken ? &o.waker : nullptr);
  }
  open_.clear();
  totals_.orphan_wakeups = early_wake_.size();
  early_wake_.clear();
}

absl::StatusOr<pp::Profile> BuildParkProfile(const ParkAggregator& agg,
                                             const symbolizer::GoBinary& binary,
                                             const ParkProfileInfo& info) {
  pp::Profile p;
  Strings strings(&p);
  auto add_type = [&](absl::string_view type, absl::string_view unit) {
    pp::ValueType* st = p.add_sample_type();
    st->set_type(strings.Index(type));
    st->set_unit(strings.Index(unit));
  };
  add_type("parks", "count");
  add_type("blocked", "nanoseconds");
  add_type("wakeups", "count");
  p.set_default_sample_type(strings.Index("blocked"));
  p.mutable_period_type()->set_type(strings.Index("parks"));
  p.mutable_period_type()->set_unit(strings.Index("count"));
  p.set_period(1);
  p.set_time_nanos(info.time_nanos);
  p.set_duration_nanos(info.duration_nanos);

  Locations locs(&p, &strings, binary);
  auto mapped = locs.AddMappings(info.binary_path.empty() ? binary.elf().path()
                                                          : info.binary_path);
  if (!mapped.ok()) return mapped;
  const int64_t k_reason = strings.Index(kLabelWaitReason);
  const int64_t k_waker = strings.Index(kLabelWaker);
  const int64_t k_state = strings.Index(kLabelParkState);
  const int64_t k_woken = strings.Index(kLabelWoken);
  auto label = [&](pp::Sample* s, int64_t key, absl::string_view value) {
    pp::Label* l = s->add_label();
    l->set_key(key);
    l->set_str(strings.Index(value));
  };
  auto reason_of = [&](uint8_t r) {
    std::string_view w = agg.WaitReason(r);
    return w.empty() ? absl::StrCat("waitReason(", r, ")") : std::string(w);
  };
  for (const auto& [key, v] : agg.parks()) {
    pp::Sample* s = p.add_sample();
    for (size_t i = 0; i < key.stack.size(); ++i) s->add_location_id(locs.Id(key.stack[i], i > 0));
    s->add_value(static_cast<int64_t>(v.parks));
    s->add_value(static_cast<int64_t>(v.blocked_ns));
    s->add_value(0);
    label(s, k_reason, reason_of(key.wait_reason));
    label(s, k_waker, key.waker);
    label(s, k_state, ParkStateName(key.state));
  }
  for (const auto& [key, n] : agg.wakeups()) {
    pp::Sample* s = p.add_sample();
    for (size_t i = 0; i < key.stack.size(); ++i) s->add_location_id(locs.Id(key.stack[i], i > 0));
    s->add_value(0);
    s->add_value(0);
    s->add_value(static_cast<int64_t>(n));
    label(s, k_reason, reason_of(key.wait_reason));
    label(s, k_woken, key.woken);
  }

  std::string go_version = binary.build_info().go_version;
  if (go_version.empty()) go_version = binary.version().ToString();
  std::vector<std::string> comments = {
      absl::StrCat("goerrprof: goroutine parks in ", binary.elf().path()),
      absl::StrCat("go version: ", go_version),
      absl::StrCat("duration: ", absl::FormatDuration(absl::Nanoseconds(info.duration_nanos))),
  };
  const ParkTotals& t = agg.totals();
  comments.push_back(absl::StrFormat(
      "parks=%d resumes=%d wakeups=%d still_parked=%d parked_before_start=%d lost_parks=%d "
      "lost_resumes=%d orphan_wakeups=%d unknown_goid=%d",
      t.parks, t.resumes, t.wakeups, t.still_parked, t.resumed_before_start, t.lost_parks,
      t.lost_resumes, t.orphan_wakeups, t.unknown_goid));
  for (const auto& [name, value] : info.counters) {
    comments.push_back(absl::StrCat(name, "=", value));
  }
  for (const std::string& c : comments) p.add_comment(strings.Index(c));
  return p;
}

absl::Status WriteParkProfile(const pp::Profile& profile, const std::string& path) {
  std::string raw;
  if (!profile.SerializeToString(&raw)) return absl::InternalError("cannot serialize the profile");
  auto gz = Gzip(raw);
  if (!gz.ok()) return gz.status();
  std::string tmp = absl::StrCat(path, ".tmp.", getpid());
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return absl::InternalError(absl::StrCat("cannot create ", tmp, ": ", strerror(errno)));
  size_t off = 0;
  while (off < gz->size()) {
    ssize_t n = write(fd, gz->data() + off, gz->size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int err = errno;
      close(fd);
      unlink(tmp.c_str());
      return absl::InternalError(absl::StrCat("writing ", tmp, ": ", strerror(err)));
    }
    off += static_cast<size_t>(n);
  }
  if (fsync(fd) != 0 || close(fd) != 0) {
    unlink(tmp.c_str());
    return absl::InternalError(absl::StrCat("writing ", tmp, ": ", strerror(errno)));
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    unlink(tmp.c_str());
    return absl::InternalError(absl::StrCat("renaming to ", path, ": ", strerror(err)));
  }
  return absl::OkStatus();
}

}  // namespace goerrprof::profiler
