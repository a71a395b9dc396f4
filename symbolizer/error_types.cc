#include "symbolizer/error_types.h"

#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "base/status_macros.h"

namespace goerrprof::symbolizer {
namespace {

// Interface names copied into the result (one per itab): real binaries
// copy kilobytes.
constexpr uint64_t kMaxInterfaceNameBytes = 64 << 20;

bool HasErrorMethod(const GoType& iface) {
  return std::find(iface.methods.begin(), iface.methods.end(), "Error") != iface.methods.end();
}

// Classifies the struct's fields a probe reads: strings and wrapped errors.
// Field types come from the reader's memo: a struct whose fields are of
// its own type is read once, not once per field.
void AddFields(const TypeReader& types, const GoType& st, ErrorType* out) {
  for (const GoField& f : st.fields) {
    auto ft = types.Get(f.type);
    if (!ft.ok()) continue;
    if ((*ft)->kind == GoKind::kString) {
      out->fields.push_back({f.name, f.offset, ErrorFieldKind::kString});
    } else if ((*ft)->kind == GoKind::kInterface && HasErrorMethod(**ft)) {
      out->fields.push_back({f.name, f.offset, ErrorFieldKind::kError});
    } else if ((*ft)->kind == GoKind::kSlice) {
      auto elem = types.Get((*ft)->elem);
      if (elem.ok() && (*elem)->kind == GoKind::kInterface && HasErrorMethod(**elem)) {
        out->fields.push_back({f.name, f.offset, ErrorFieldKind::kErrorSlice});
      }
    }
  }
}

// An ErrorType for the descriptor at addr, with its field layout.
absl::StatusOr<ErrorType> Describe(const TypeReader& types, uint64_t addr) {
  ASSIGN_OR_RETURN(const GoType* t, types.Get(addr));
  ErrorType et;
  et.name = t->name;
  et.type_addr = t->addr;
  et.kind = t->kind;
  et.size = t->size;
  if (t->kind == GoKind::kStruct) AddFields(types, *t, &et);
  if (t->kind == GoKind::kPointer) {
    auto elem = types.Get(t->elem);
    if (elem.ok()) {
      et.elem_size = (*elem)->size;
      if ((*elem)->kind == GoKind::kStruct) AddFields(types, **elem, &et);
    }
  }
  return et;
}

}  // namespace

absl::StatusOr<std::vector<ErrorType>> FindErrorTypes(const TypeReader& types,
                                                      absl::Span<const uint64_t> candidates) {
  ASSIGN_OR_RETURN(std::vector<GoItab> itabs, types.Itabs());
  // Interface type -> the error-like interface it is, or null.
  absl::flat_hash_map<uint64_t, const GoType*> error_iface;
  absl::flat_hash_map<uint64_t, size_t> index;  // concrete type -> position in out
  std::vector<ErrorType> out;
  uint64_t iface_bytes = 0;
  for (const GoItab& itab : itabs) {
    auto [it, fresh] = error_iface.try_emplace(itab.inter, nullptr);
    if (fresh) {
      auto t = types.Get(itab.inter);
      if (t.ok() && (*t)->kind == GoKind::kInterface && HasErrorMethod(**t)) it->second = *t;
    }
    if (it->second == nullptr) continue;
    const std::string& iface_name = it->second->name;
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
    // One name per itab: crafted itabs can name one long interface name
    // any number of times, so the copies are capped.
    iface_bytes += iface_name.size();
    if (iface_bytes > kMaxInterfaceNameBytes) {
      return absl::ResourceExhaustedError(
          "the itabs name more interface bytes than any binary (crafted itabs?)");
    }
    et.itabs.push_back(itab.addr);
    et.interfaces.push_back(iface_name);
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
