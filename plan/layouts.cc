#include "plan/layouts.h"

#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "base/status_macros.h"
#include "symbolizer/go_types.h"

namespace goerrprof::profiler {

using symbolizer::ErrorFieldKind;
using symbolizer::GoKind;
using symbolizer::GoType;
using symbolizer::TypeReader;

LayoutFieldKind ToLayoutFieldKind(ErrorFieldKind kind) {
  switch (kind) {
    case ErrorFieldKind::kString: return LayoutFieldKind::kString;
    case ErrorFieldKind::kError: return LayoutFieldKind::kError;
    case ErrorFieldKind::kErrorSlice: return LayoutFieldKind::kErrorSlice;
  }
  return LayoutFieldKind::kString;
}

namespace {

bool HasMethod(const GoType& t, absl::string_view name) {
  return std::find(t.methods.begin(), t.methods.end(), name) != t.methods.end();
}

// Whether the type at addr is an interface like net.Addr, cached by address.
class AddrInterfaces {
 public:
  explicit AddrInterfaces(const TypeReader& types) : types_(types) {}
  bool Is(uint64_t addr) {
    auto [it, fresh] = cache_.try_emplace(addr, false);
    if (fresh) {
      auto t = types_.Read(addr);
      it->second = t.ok() && t->kind == GoKind::kInterface && HasMethod(*t, "Network") &&
                   HasMethod(*t, "String");
    }
    return it->second;
  }

 private:
  const TypeReader& types_;
  absl::flat_hash_map<uint64_t, bool> cache_;
};

// The struct whose fields a probe reads for a type: the type itself or,
// for a pointer, its pointee.
std::optional<GoType> ObjectStruct(const TypeReader& types, uint64_t addr) {
  auto t = types.Read(addr);
  if (!t.ok()) return std::nullopt;
  if (t->kind == GoKind::kPointer) {
    t = types.Read(t->elem);
    if (!t.ok()) return std::nullopt;
  }
  if (t->kind != GoKind::kStruct) return std::nullopt;
  return *std::move(t);
}

// The decodable address types: the standard library's, recognised by name
// and checked field by field (a field of another kind leaves the type out).
std::optional<AddrTypeLayout> AddrTypeFor(const TypeReader& types, const GoType& ptr) {
  struct Known {
    absl::string_view name;
    gep_addr_kind kind;
    bool ip, port;
    std::vector<absl::string_view> strings;
  };
  static const Known kKnown[] = {
      {"*net.TCPAddr", GEP_ADDR_TCP, true, true, {"Zone"}},
      {"*net.UDPAddr", GEP_ADDR_UDP, true, true, {"Zone"}},
      {"*net.IPAddr", GEP_ADDR_IP, true, false, {"Zone"}},
      {"*net.UnixAddr", GEP_ADDR_UNIX, false, false, {"Name", "Net"}},
  };
  const Known* k = nullptr;
  for (const Known& c : kKnown) {
    if (ptr.name == c.name) k = &c;
  }
  if (k == nullptr || ptr.kind != GoKind::kPointer) return std::nullopt;
  std::optional<GoType> st = ObjectStruct(types, ptr.addr);
  if (!st) return std::nullopt;
  auto field = [&](absl::string_view name, GoKind kind) -> std::optional<uint32_t> {
    for (const symbolizer::GoField& f : st->fields) {
      if (f.name != name) continue;
      auto ft = types.Read(f.type);
      if (!ft.ok() || ft->kind != kind) return std::nullopt;
      if (kind == GoKind::kSlice) {  // IP: []byte
        auto elem = types.Kind(ft->elem);
        if (!elem.ok() || *elem != GoKind::kUint8) return std::nullopt;
      }
      return static_cast<uint32_t>(f.offset);
    }
    return std::nullopt;
  };
  AddrTypeLayout a;
  a.kind = k->kind;
  if (k->ip) {
    auto off = field("IP", GoKind::kSlice);
    if (!off) return std::nullopt;
    a.ip = *off;
  }
  if (k->port) {
    auto off = field("Port", GoKind::kInt);
    if (!off) return std::nullopt;
    a.port = *off;
  }
  for (absl::string_view name : k->strings) {
    auto off = field(name, GoKind::kString);
    if (!off) return std::nullopt;
    a.strings.emplace_back(std::string(name), *off);
  }
  return a;
}

}  // namespace

absl::StatusOr<std::vector<ErrorLayout>> LayoutsFor(
    const symbolizer::GoBinary& binary, const std::vector<symbolizer::ErrorType>& types) {
  const goabi::TypeLayout& tl = binary.layout().type;
  constexpr uint8_t kDirectIface = 1 << 5;
  // Without type data there are no address fields to find; errors still work.
  auto reader = binary.types();
  const TypeReader* tr = reader.ok() ? *reader : nullptr;
  std::optional<AddrInterfaces> addr_ifaces;
  if (tr) addr_ifaces.emplace(*tr);
  std::vector<ErrorLayout> out;
  out.reserve(types.size());
  for (const symbolizer::ErrorType& t : types) {
    int32_t at = tl.direct_iface_in_tflag ? tl.tflag : tl.kind;
    ASSIGN_OR_RETURN(absl::Span<const uint8_t> b, binary.elf().ReadVirtual(t.type_addr + at, 1));
    bool direct = (b[0] & kDirectIface) != 0;
    ErrorLayout l;
    l.type_addr = t.type_addr;
    l.name = t.name;
    l.deref = !direct || t.kind == GoKind::kPointer;
    // Boxed values: capture their first word (Errno's number, CodeError.Code).
    l.value_size = (!direct && t.kind != GoKind::kPointer)
                       ? static_cast<uint8_t>(std::min<uint64_t>(t.size, 8))
                       : 0;
    for (const symbolizer::ErrorField& f : t.fields) {
      l.fields.push_back({f.name, static_cast<uint32_t>(f.offset), ToLayoutFieldKind(f.kind)});
    }
    // A string type (runtime.plainError, net.UnknownNetworkError): the
    // boxed string itself is the text.
    if (t.kind == GoKind::kString && t.fields.empty()) {
      l.fields.push_back({"", 0, LayoutFieldKind::kString});
    }
    if (tr && l.deref) {
      if (std::optional<GoType> st = ObjectStruct(*tr, t.type_addr)) {
        for (const symbolizer::GoField& f : st->fields) {
          if (addr_ifaces->Is(f.type)) {
            l.fields.push_back({f.name, static_cast<uint32_t>(f.offset), LayoutFieldKind::kAddr});
          }
        }
      }
    }
    out.push_back(std::move(l));
  }
  if (!tr) return out;

  // Address types: the concrete types of the linker's itabs for address
  // interfaces (there is one wherever the program converts such a type to
  // net.Addr). Without itabs, addresses render as unknown; errors still work.
  auto itabs = tr->Itabs();
  if (!itabs.ok()) return out;
  absl::flat_hash_map<uint64_t, bool> seen;
  for (const symbolizer::GoItab& itab : *itabs) {
    if (!addr_ifaces->Is(itab.inter) || !seen.try_emplace(itab.type, true).second) continue;
    auto t = tr->Read(itab.type);
    if (!t.ok()) continue;
    std::optional<AddrTypeLayout> a = AddrTypeFor(*tr, *t);
    if (!a) continue;
    ErrorLayout l;
    l.type_addr = t->addr;
    l.name = t->name;
    l.deref = true;
    l.addr_type = std::move(*a);
    out.push_back(std::move(l));
  }
  return out;
}

namespace {

// Appends to a fixed slot array; false (and counted) once it is full.
template <size_t N, typename Count>
bool Put(uint32_t (&slots)[N], Count* n, uint32_t value, size_t* dropped) {
  if (*n >= N) {
    ++*dropped;
    return false;
  }
  slots[(*n)++] = value;
  return true;
}

}  // namespace

std::vector<LayoutMapEntry> MapEntriesFor(const std::vector<ErrorLayout>& layouts) {
  std::vector<LayoutMapEntry> out;
  out.reserve(layouts.size());
  for (const ErrorLayout& l : layouts) {
    LayoutMapEntry e;
    e.type_addr = l.type_addr;
    e.name = l.name;
    if (l.addr_type) {
      const AddrTypeLayout& a = *l.addr_type;
      e.is_addr = true;
      e.addr.kind = a.kind;
      e.addr.ip_off = a.ip;
      e.addr.port_off = a.port;
      for (const auto& [name, offset] : a.strings) {
        if (Put(e.addr.str_off, &e.addr.n_str, offset, &e.fields_dropped)) {
          e.strings.emplace_back(name, offset);
        }
      }
      out.push_back(std::move(e));
      continue;
    }
    gep_type_layout& v = e.type;
    v.flags = l.deref ? GEP_TYPE_DEREF : 0;
    v.value_size = std::min<uint8_t>(l.value_size, 8);
    for (const ErrorLayout::Field& f : l.fields) {
      switch (f.kind) {
        case LayoutFieldKind::kString:
          if (Put(v.str_off, &v.n_str, f.offset, &e.fields_dropped)) {
            e.strings.emplace_back(f.name, f.offset);
          }
          break;
        case LayoutFieldKind::kError:
          Put(v.err_off, &v.n_err, f.offset, &e.fields_dropped);
          break;
        case LayoutFieldKind::kErrorSlice:
          Put(v.slice_off, &v.n_slice, f.offset, &e.fields_dropped);
          break;
        case LayoutFieldKind::kAddr:
          if (Put(v.addr_off, &v.n_addr, f.offset, &e.fields_dropped)) e.addrs.push_back(f.name);
          break;
      }
    }
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<ProbeSpec> ProbeSpecsFor(const std::vector<CreationProbe>& probes) {
  std::vector<ProbeSpec> out;
  out.reserve(probes.size());
  for (const CreationProbe& p : probes) {
    ProbeSpec spec;
    spec.vaddr = p.addr;
    spec.site = p.site != 0 ? p.site : p.ref_addr;
    spec.cookie = p.cookie;  // low half: the tab location, where the flags go
    if (p.frameless) spec.cookie |= GEP_LOC_F_FRAMELESS;
    if (p.kind == CreationProbe::kEface) spec.cookie |= GEP_LOC_F_TYPE;
    // A statically known word (GEP_LOC_CONST) is given by the plan.
    if (GEP_LOC_KIND(p.tab_loc) == GEP_LOC_CONST) spec.const_type = p.type;
    if (GEP_LOC_KIND(p.data_loc) == GEP_LOC_CONST) spec.const_data = p.data_const;
    if (p.checked) {
      spec.cookie |= GEP_LOC_F_CHECK;
      spec.check_tab = p.kind == CreationProbe::kEface ? p.type : p.itab;
    }
    out.push_back(spec);
  }
  return out;
}

}  // namespace goerrprof::profiler
