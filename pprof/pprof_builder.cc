#include "pprof/pprof_builder.h"

#include <elf.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "base/errno.h"

namespace goerrprof::profiler {

namespace pp = perftools::profiles;

PprofBuilder::PprofBuilder() { String(""); }

int64_t PprofBuilder::String(absl::string_view s) {
  auto it = strings_.find(s);
  if (it != strings_.end()) return it->second;
  int64_t i = p_.string_table_size();
  p_.add_string_table(std::string(s));
  strings_.emplace(std::string(s), i);
  return i;
}

void PprofBuilder::AddSampleType(absl::string_view type, absl::string_view unit) {
  pp::ValueType* st = p_.add_sample_type();
  st->set_type(String(type));
  st->set_unit(String(unit));
  if (p_.sample_type_size() == 1) {
    p_.mutable_period_type()->set_type(String(type));
    p_.mutable_period_type()->set_unit(String(unit));
    p_.set_period(1);
  }
}

absl::StatusOr<int> PprofBuilder::AddBinary(const symbolizer::GoBinary& binary,
                                            absl::string_view path) {
  const symbolizer::ElfFile& elf = binary.elf();
  // pprof checks a mapping's build_id against the file's GNU build ID.
  const std::string& build_id =
      elf.gnu_build_id().empty() ? elf.go_build_id() : elf.gnu_build_id();
  Binary b{&binary, {}, {}};
  for (const symbolizer::ElfSegment& seg : elf.loads()) {
    if (!(seg.flags & PF_X)) continue;
    pp::Mapping* m = p_.add_mapping();
    m->set_id(p_.mapping_size());
    m->set_memory_start(seg.vaddr);
    m->set_memory_limit(seg.vaddr + seg.memsz);
    m->set_file_offset(seg.offset);
    m->set_filename(String(path.empty() ? absl::string_view(elf.path()) : path));
    m->set_build_id(String(build_id));
    // Locations carry their symbols: pprof need not find the binary.
    m->set_has_functions(true);
    m->set_has_filenames(true);
    m->set_has_line_numbers(true);
    m->set_has_inline_frames(true);
    b.ranges.emplace_back(seg.vaddr, seg.vaddr + seg.memsz);
    b.mapping_ids.push_back(m->id());
  }
  if (b.ranges.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(elf.path(), ": no executable PT_LOAD segment"));
  }
  binaries_.push_back(std::move(b));
  return static_cast<int>(binaries_.size() - 1);
}

uint64_t PprofBuilder::FunctionId(absl::string_view name, absl::string_view file) {
  auto [it, inserted] =
      functions_.try_emplace(std::make_pair(std::string(name), std::string(file)), 0);
  if (!inserted) return it->second;
  pp::Function* fn = p_.add_function();
  fn->set_id(p_.function_size());
  fn->set_name(String(name));
  fn->set_system_name(String(name));
  fn->set_filename(String(file));
  it->second = fn->id();
  return fn->id();
}

uint64_t PprofBuilder::Location(int bin, uint64_t pc, bool ret) {
  auto [it, inserted] = locations_.try_emplace(std::make_tuple(bin, pc, ret), 0);
  if (!inserted) return it->second;
  const Binary& b = binaries_[bin];
  uint64_t addr = ret && pc > 0 ? pc - 1 : pc;
  pp::Location* loc = p_.add_location();
  loc->set_id(p_.location_size());
  loc->set_address(addr);
  for (size_t i = 0; i < b.ranges.size(); ++i) {
    if (addr >= b.ranges[i].first && addr < b.ranges[i].second) {
      loc->set_mapping_id(b.mapping_ids[i]);
    }
  }
  auto frames = b.binary->Symbolize(addr);
  if (frames.ok()) {
    for (const symbolizer::SourceFrame& f : *frames) {  // innermost first, as pprof wants
      pp::Line* line = loc->add_line();
      line->set_function_id(FunctionId(f.function, f.file));
      line->set_line(f.line);
    }
  }
  it->second = loc->id();
  return loc->id();
}

pp::Sample* PprofBuilder::AddSample(int bin, absl::Span<const uint64_t> stack) {
  pp::Sample* s = p_.add_sample();
  for (size_t i = 0; i < stack.size(); ++i) s->add_location_id(Location(bin, stack[i], i > 0));
  return s;
}

void PprofBuilder::Label(pp::Sample* s, absl::string_view key, absl::string_view value) {
  pp::Label* l = s->add_label();
  l->set_key(String(key));
  l->set_str(String(value));
}

void PprofBuilder::NumLabel(pp::Sample* s, absl::string_view key, int64_t value,
                            absl::string_view unit) {
  pp::Label* l = s->add_label();
  l->set_key(String(key));
  l->set_num(value);
  if (!unit.empty()) l->set_num_unit(String(unit));
}

void PprofBuilder::AddHeaderComments(absl::string_view title,
                                     const symbolizer::GoBinary& binary,
                                     int64_t duration_nanos) {
  std::string go_version = binary.build_info().go_version;
  if (go_version.empty()) go_version = binary.version().ToString();
  AddComment(title);
  AddComment(absl::StrCat("go version: ", go_version));
  AddComment(absl::StrCat("duration: ", absl::FormatDuration(absl::Nanoseconds(duration_nanos))));
}

}  // namespace goerrprof::profiler
