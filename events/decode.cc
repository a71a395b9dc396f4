#include "events/decode.h"

#include <algorithm>

#include "base/byte_reader.h"

namespace goerrprof::profiler {
namespace {

// The next gep_str and its bytes, named from `names` (may be null).
bool DecodeString(ByteReader& r, const std::vector<std::pair<std::string, uint32_t>>* names,
                  CapturedString* out) {
  gep_str gs;
  if (!r.Read(&gs) || gs.copied > GEP_MAX_STR) return false;
  ByteView bytes = r.Bytes((gs.copied + 7u) & ~7u);  // padded to 8
  if (!r.ok()) return false;
  out->field = gs.field;
  if (names != nullptr && gs.field < names->size()) {
    out->name = (*names)[gs.field].first;
    out->offset = (*names)[gs.field].second;
  }
  out->value.assign(reinterpret_cast<const char*>(bytes.data()), gs.copied);
  out->length = gs.len;
  out->read_failed = (gs.flags & GEP_STR_READ_FAILED) != 0;
  return true;
}

}  // namespace

bool DecodeErrorRecord(const uint8_t* data, size_t size, const RecordNames& names,
                       uint64_t bias_, CapturedError* out) {
  gep_event h;
  if (!ByteView(data, size).Read(0, &h)) return false;
  if (h.version != GEP_EVENT_VERSION) return false;
  if (h.size > size || h.size < sizeof(h)) return false;
  ByteReader r(ByteView(data, h.size), sizeof(h));  // the record's own size bounds every read
  out->timestamp_ns = h.ts_ns;
  out->ip = h.ip - bias_;
  out->cookie = h.cookie;
  out->goid = h.goid;
  out->pid = h.pid;
  out->tid = h.tid;
  out->flags = h.flags;
  out->load_bias = bias_;
  // A go statement's pc is in the text: outside it the read was torn.
  out->gopc = h.gopc > bias_ ? h.gopc - bias_ : 0;
  if (h.n_stack > GEP_MAX_STACK || r.remaining() < h.n_stack * 8ull) return false;
  out->stack.resize(h.n_stack);
  for (uint16_t i = 0; i < h.n_stack; ++i) out->stack[i] = r.U64() - bias_;
  if (h.n_labels > GEP_MAX_LABELS) return false;
  out->labels.resize(h.n_labels);
  for (uint16_t i = 0; i < h.n_labels; ++i) {
    CapturedString key, value;
    if (!DecodeString(r, nullptr, &key) || !DecodeString(r, nullptr, &value)) {
      return false;
    }
    if (key.read_failed || value.read_failed || key.truncated() || value.truncated()) {
      out->flags |= GEP_EV_LABELS_FAILED;
    }
    out->labels[i] = {std::move(key.value), std::move(value.value)};
  }
  if (h.n_links > GEP_MAX_LINKS) return false;
  out->links.resize(h.n_links);
  for (uint16_t i = 0; i < h.n_links; ++i) {
    gep_link l;
    if (!r.Read(&l)) return false;
    if (l.parent >= static_cast<int>(i) || l.parent < -1) return false;
    if (l.n_str > GEP_MAX_STR_FIELDS || l.n_addr > GEP_MAX_ADDR_FIELDS) return false;
    CapturedLink& cl = out->links[i];
    cl.type = l.type ? l.type - bias_ : 0;
    cl.parent = l.parent;
    cl.depth = l.depth;
    cl.data = l.data;
    cl.value = l.value;
    cl.flags = l.flags;
    auto ti = l.type ? names.types.find(l.type - bias_ + names.key_bias) : names.types.end();
    const TypeNames* info = ti != names.types.end() ? &ti->second : nullptr;
    if (info) cl.type_name = info->name;
    cl.strings.resize(l.n_str);
    for (uint8_t k = 0; k < l.n_str; ++k) {
      if (!DecodeString(r, info ? &info->strings : nullptr, &cl.strings[k])) {
        return false;
      }
    }
    cl.addrs.resize(l.n_addr);
    for (uint8_t k = 0; k < l.n_addr; ++k) {
      gep_addr ga;
      if (!r.Read(&ga)) return false;
      if (ga.n_str > GEP_MAX_ADDR_STR || ga.kind > GEP_ADDR_UNIX) return false;
      CapturedAddr& a = cl.addrs[k];
      a.field = ga.field;
      if (info && ga.field < info->addrs.size()) a.name = info->addrs[ga.field];
      a.type = ga.type ? ga.type - bias_ : 0;
      a.data = ga.data;
      a.kind = static_cast<gep_addr_kind>(ga.kind);
      a.flags = ga.flags;
      a.port = ga.port;
      a.ip_length = ga.ip_len;
      a.ip.assign(reinterpret_cast<const char*>(ga.ip),
                  std::min<uint64_t>(ga.ip_len, GEP_MAX_IP));
      auto ai = ga.type ? names.addr_types.find(ga.type - bias_ + names.key_bias)
                        : names.addr_types.end();
      const TypeNames* ainfo = ai != names.addr_types.end() ? &ai->second : nullptr;
      if (ainfo && a.kind != GEP_ADDR_NONE) a.type_name = ainfo->name;
      a.strings.resize(ga.n_str);
      for (uint8_t m = 0; m < ga.n_str; ++m) {
        if (!DecodeString(r, ainfo ? &ainfo->strings : nullptr, &a.strings[m])) {
          return false;
        }
      }
    }
  }
  return true;
}

}  // namespace goerrprof::profiler
