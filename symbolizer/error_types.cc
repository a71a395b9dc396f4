#include "symbolizer/error_types.h"

#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "base/status_macros.h"

namespace goerrprof::symbolizer {
namespace {

bool HasErrorMethod(const GoType& iface) {
  return std::find(iface.methods.begin(), iface.methods.end(), "Error") != iface.methods.end();
}

// Classifies the struct's fields a probe reads: strings and wrapped errors.
void AddFields(const TypeReader& types, const GoType& st, ErrorType* out) {
  for (const GoField& f : st.fields) {
    auto ft = types.Read(f.type);
    if (!ft.ok()) continue;
    if (ft->kind == GoKind::kString) {
      out->fields.push_back({f.name, f.offset, ErrorFieldKind::kString});
    } else if (ft->kind == GoKind::kInterface && HasErrorMethod(*ft)) {
      out->fields.push_back({f.name, f.offset, ErrorFieldKind::kError});
    } else if (ft->kind == GoKind::kSlice) {
      auto elem = types.Read(ft->elem);
      if (elem.ok() && elem->kind == GoKind::kInterface && HasErrorMethod(*elem)) {
        out->fields.push_back({f.name, f.offset, ErrorFieldKind::kErrorSlice});
      }
    }
  }
}

}  // namespace

// An ErrorType for the descriptor at addr, with its field layout.
absl::StatusOr<ErrorType> Describe(const TypeReader& types, uint64_t addr) {
  ASSIGN_OR_RETURN(GoType t, types.Read(addr));
  ErrorType et;
  et.name = t.name;
  et.type_addr = t.addr;
  et.kind = t.kind;
  et.size = t.size;
  if (t.kind == GoKind::kStruct) AddFields(types, t, &et);
  if (t.kind == GoKind::kPointer) {
    auto elem = types.Read(t.elem);
    if (elem.ok()) {
      et.elem_size = elem->size;
      if (elem->kind == GoKind::kStruct) AddFields(types, *elem, &et);
    }
  }
  return et;
}

absl::StatusOr<std::vector<ErrorType>> FindErrorTypes(const TypeReader& types,
                                                      absl::Span<const uint64_t> candidates) {
  ASSIGN_OR_RETURN(std::vector<GoItab> itabs, types.Itabs());
  absl::flat_hash_map<uint64_t, bool> is_error_iface;
  absl::flat_hash_map<uint64_t, size_t> index;  // concrete type -> position in out
  std::vector<ErrorType> out;
  for (const GoItab& itab : itabs) {
    auto [it, fresh] = is_error_iface.try_emplace(itab.inter, false);
    if (fresh) {
      auto t = types.Read(itab.inter);
      if (t.ok() && t->kind == GoKind::kInterface && HasErrorMethod(*t)) {
        it->second = true;
      }
    }
    if (!it->second) continue;
    auto iface_name = types.Name(itab.inter);
    auto [pos, added] = index.try_emplace(itab.type, out.size());
    if (added) {
      auto et = Describe(types, itab.type);
      if (!et.ok()) {
        index.erase(itab.type);
        continue;
      }
      out.push_back(std::move(*et));
    }
    ErrorType& et = out[pos->second];
    et.itabs.push_back(itab.addr);
    if (iface_name.ok()) et.interfaces.push_back(*iface_name);
  }
  for (uint64_t addr : candidates) {
    if (index.contains(addr) || !types.InTypes(addr)) continue;
    index.emplace(addr, out.size());
    auto methods = types.ExportedMethods(addr);
    if (!methods.ok() || std::find(methods->begin(), methods->end(), "Error") == methods->end()) {
      continue;
    }
    auto et = Describe(types, addr);
    if (et.ok()) out.push_back(std::move(*et));
  }
  std::sort(out.begin(), out.end(),
            [](const ErrorType& a, const ErrorType& b) { return a.name < b.name; });
  return out;
}

}  // namespace goerrprof::symbolizer
