#include "pprof/otlp_profile.h"

#include <cstdint>
#include <random>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"

namespace goerrprof::profiler {
namespace {

namespace pp = perftools::profiles;

// Protobuf's wire format, enough of it for this one message. Scalars that
// are zero are left out, as proto3 does; messages are always written (an
// empty table entry must still be there).
class Pb {
 public:
  void Varint(int field, uint64_t v) {
    if (v != 0) VarintAlways(field, v);
  }
  // For a oneof member, whose presence is the value.
  void VarintAlways(int field, uint64_t v) {
    Tag(field, 0);
    Put(v);
  }
  void Fixed64(int field, uint64_t v) {
    if (v == 0) return;
    Tag(field, 1);
    for (int i = 0; i < 8; ++i) out_.push_back(static_cast<char>(v >> (8 * i)));
  }
  void Bytes(int field, std::string_view s) {
    Tag(field, 2);
    Put(s.size());
    out_.append(s);
  }
  void Message(int field, const Pb& m) { Bytes(field, m.out_); }
  template <typename Int>
  void Packed(int field, const std::vector<Int>& values) {
    if (values.empty()) return;
    Pb inner;
    for (Int v : values) inner.Put(static_cast<uint64_t>(static_cast<int64_t>(v)));
    Message(field, inner);
  }
  const std::string& bytes() const { return out_; }

 private:
  void Tag(int field, int wire) {
    Put(static_cast<uint64_t>(field) << 3 | static_cast<uint64_t>(wire));
  }
  void Put(uint64_t v) {
    while (v >= 0x80) {
      out_.push_back(static_cast<char>(v | 0x80));
      v >>= 7;
    }
    out_.push_back(static_cast<char>(v));
  }
  std::string out_;
};

// ProfilesDictionary's tables, by field number.
enum Table { kMappings = 1, kLocations, kFunctions, kLinks, kStrings, kAttributes, kStacks };

// The request's dictionary: strings, attributes and stacks deduplicated,
// index 0 of every table the empty entry (as OTLP asks).
class Dictionary {
 public:
  Dictionary() {
    Str("");
    for (Table t : {kMappings, kLocations, kFunctions, kLinks, kAttributes, kStacks}) {
      Add(t, Pb());
    }
    attribute_index_[""] = 0;
    stack_index_[{}] = 0;
  }

  int32_t Str(const std::string& s) {
    auto [it, fresh] = strings_.try_emplace(s, static_cast<int32_t>(strings_.size()));
    if (fresh) tables_.Bytes(kStrings, s);
    return it->second;
  }
  // A string attribute or, with is_int, an integer one.
  int32_t Attribute(const std::string& key, bool is_int, const std::string& str, int64_t num,
                    const std::string& unit) {
    std::string id = absl::StrCat(key, "\x01", is_int ? "i" : "s", str, "\x01", num, "\x01", unit);
    auto [it, fresh] = attribute_index_.try_emplace(id, next_attribute_);
    if (!fresh) return it->second;
    ++next_attribute_;
    Pb value, kv;
    if (is_int) {
      value.VarintAlways(3, static_cast<uint64_t>(num));  // AnyValue.int_value
    } else {
      value.Bytes(1, str);  // AnyValue.string_value
    }
    kv.Varint(1, static_cast<uint64_t>(Str(key)));
    kv.Message(2, value);
    if (!unit.empty()) kv.Varint(3, static_cast<uint64_t>(Str(unit)));
    Add(kAttributes, kv);
    return it->second;
  }
  int32_t Stack(const std::vector<int32_t>& locations) {
    auto [it, fresh] = stack_index_.try_emplace(locations, next_stack_);
    if (!fresh) return it->second;
    ++next_stack_;
    Pb s;
    s.Packed(1, locations);  // Stack.location_indices, leaf first
    Add(kStacks, s);
    return it->second;
  }
  void Add(Table t, const Pb& entry) { tables_.Message(t, entry); }
  // The ProfilesDictionary message. Its repeated fields need not be in
  // field order, nor each one's entries together.
  const Pb& message() const { return tables_; }

 private:
  Pb tables_;
  absl::flat_hash_map<std::string, int32_t> strings_;
  absl::flat_hash_map<std::string, int32_t> attribute_index_;
  int32_t next_attribute_ = 1;
  absl::flat_hash_map<std::vector<int32_t>, int32_t> stack_index_;
  int32_t next_stack_ = 1;
};

// 16 random bytes, never all zero (OTLP's profile_id).
std::string ProfileId() {
  std::random_device rd;
  std::string id(16, '\0');
  for (size_t i = 0; i < id.size(); i += 4) {
    uint32_t r = rd();
    for (size_t j = 0; j < 4; ++j) id[i + j] = static_cast<char>(r >> (8 * j));
  }
  id[0] |= 1;
  return id;
}

bool IsHex40(const std::string& s) {
  if (s.size() != 40) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<std::string> PprofToOtlp(const pp::Profile& profile, const OtlpResource& resource) {
  // A string index out of range reads as "" and fails the whole at the end.
  int64_t bad_string = -1;
  const std::string empty;
  auto str = [&](int64_t i) -> const std::string& {
    if (i >= 0 && i < profile.string_table_size()) return profile.string_table(static_cast<int>(i));
    bad_string = i;
    return empty;
  };
  Dictionary dict;

  absl::flat_hash_map<uint64_t, int32_t> mapping_index, function_index, location_index;
  int32_t next = 1;
  for (const pp::Mapping& m : profile.mapping()) {
    const std::string& filename = str(m.filename());
    const std::string& build_id = str(m.build_id());
    Pb e;
    e.Varint(1, m.memory_start());
    e.Varint(2, m.memory_limit());
    e.Varint(3, m.file_offset());
    e.Varint(4, static_cast<uint64_t>(dict.Str(filename)));
    if (!build_id.empty()) {
      const char* key = IsHex40(build_id) ? "process.executable.build_id.gnu"
                                          : "process.executable.build_id.go";
      e.Packed(5, std::vector<int32_t>{dict.Attribute(key, false, build_id, 0, "")});
    }
    dict.Add(kMappings, e);
    mapping_index[m.id()] = next++;
  }
  next = 1;
  for (const pp::Function& f : profile.function()) {
    const std::string& name = str(f.name());
    const std::string& system_name = str(f.system_name());
    const std::string& filename = str(f.filename());
    Pb e;
    e.Varint(1, static_cast<uint64_t>(dict.Str(name)));
    e.Varint(2, static_cast<uint64_t>(dict.Str(system_name)));
    e.Varint(3, static_cast<uint64_t>(dict.Str(filename)));
    e.Varint(4, static_cast<uint64_t>(f.start_line()));
    dict.Add(kFunctions, e);
    function_index[f.id()] = next++;
  }
  next = 1;
  for (const pp::Location& l : profile.location()) {
    Pb e;
    if (l.mapping_id() != 0) {
      auto m = mapping_index.find(l.mapping_id());
      if (m == mapping_index.end()) {
        return absl::InvalidArgumentError(absl::StrCat("pprof mapping ", l.mapping_id(), " unknown"));
      }
      e.Varint(1, static_cast<uint64_t>(m->second));
    }
    e.Varint(2, l.address());
    for (const pp::Line& line : l.line()) {  // innermost (inlined) first, as in pprof
      auto f = function_index.find(line.function_id());
      if (f == function_index.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat("pprof function ", line.function_id(), " unknown"));
      }
      Pb le;
      le.Varint(1, static_cast<uint64_t>(f->second));
      le.Varint(2, static_cast<uint64_t>(line.line()));
      e.Message(3, le);
    }
    dict.Add(kLocations, e);
    location_index[l.id()] = next++;
  }

  // One Profile per sample type: OTLP's has a single one.
  Pb scope_profiles;
  {
    Pb scope;
    scope.Bytes(1, resource.scope_name);
    if (!resource.scope_version.empty()) scope.Bytes(2, resource.scope_version);
    scope_profiles.Message(1, scope);
  }
  std::vector<int32_t> stack;
  std::vector<int32_t> attrs;
  for (int t = 0; t < profile.sample_type_size(); ++t) {
    const pp::ValueType& vt = profile.sample_type(t);
    const std::string& type = str(vt.type());
    const std::string& unit = str(vt.unit());
    Pb out, value_type;
    value_type.Varint(1, static_cast<uint64_t>(dict.Str(type)));
    value_type.Varint(2, static_cast<uint64_t>(dict.Str(unit)));
    out.Message(1, value_type);
    for (const pp::Sample& s : profile.sample()) {
      if (s.value_size() != profile.sample_type_size()) {
        return absl::InvalidArgumentError("pprof sample with a value count unlike its types");
      }
      if (s.value(t) == 0) continue;
      stack.clear();
      for (uint64_t id : s.location_id()) {
        auto l = location_index.find(id);
        if (l == location_index.end()) {
          return absl::InvalidArgumentError(absl::StrCat("pprof location ", id, " unknown"));
        }
        stack.push_back(l->second);
      }
      attrs.clear();
      for (const pp::Label& label : s.label()) {
        const std::string& key = str(label.key());
        const std::string& text = str(label.str());
        const std::string& num_unit = str(label.num_unit());
        attrs.push_back(label.str() != 0 ? dict.Attribute(key, false, text, 0, "")
                                         : dict.Attribute(key, true, "", label.num(), num_unit));
      }
      Pb sample;
      sample.Varint(1, static_cast<uint64_t>(dict.Stack(stack)));
      sample.Packed(2, attrs);
      sample.Packed(4, std::vector<int64_t>{s.value(t)});
      out.Message(2, sample);
    }
    out.Fixed64(3, static_cast<uint64_t>(profile.time_nanos()));
    out.Varint(4, static_cast<uint64_t>(profile.duration_nanos()));
    if (profile.has_period_type()) {
      const std::string& ptype = str(profile.period_type().type());
      const std::string& punit = str(profile.period_type().unit());
      Pb period_type;
      period_type.Varint(1, static_cast<uint64_t>(dict.Str(ptype)));
      period_type.Varint(2, static_cast<uint64_t>(dict.Str(punit)));
      out.Message(5, period_type);
    }
    out.Varint(6, static_cast<uint64_t>(profile.period()));
    out.Bytes(7, ProfileId());
    scope_profiles.Message(2, out);
  }
  if (bad_string >= 0) {
    return absl::InvalidArgumentError(absl::StrCat("pprof string index ", bad_string, " out of range"));
  }

  Pb res;
  for (const auto& [key, value] : resource.attributes) {
    Pb any, kv;
    any.Bytes(1, value);
    kv.Bytes(1, key);
    kv.Message(2, any);
    res.Message(1, kv);
  }
  Pb resource_profiles;
  resource_profiles.Message(1, res);
  resource_profiles.Message(2, scope_profiles);
  Pb request;
  request.Message(1, resource_profiles);
  request.Message(2, dict.message());
  return request.bytes();
}

}  // namespace goerrprof::profiler
