#include "events/counters.h"

namespace goerrprof::profiler {

absl::string_view CounterName(gep_counter c) {
  switch (c) {
    case GEP_CTR_HITS: return "hits";
    case GEP_CTR_EVENTS: return "events";
    case GEP_CTR_NIL: return "nil_at_site";
    case GEP_CTR_FOREIGN: return "foreign_process";
    case GEP_CTR_NOT_HERE: return "not_created_here";
    case GEP_CTR_DROP_RINGBUF: return "drop_ringbuf_full";
    case GEP_CTR_DROP_BUSY: return "drop_scratch_busy";
    case GEP_CTR_DROP_NO_SCRATCH: return "drop_no_scratch";
    case GEP_CTR_DROP_ROOT_READ: return "drop_site_read";
    case GEP_CTR_DROP_NO_SITE: return "drop_no_site";
    case GEP_CTR_TYPE_READ: return "type_read_failed";
    case GEP_CTR_VALUE_READ: return "value_read_failed";
    case GEP_CTR_FIELD_READ: return "field_read_failed";
    case GEP_CTR_STR_READ: return "string_read_failed";
    case GEP_CTR_STR_TRUNC: return "string_truncated";
    case GEP_CTR_GOID_READ: return "goid_read_failed";
    case GEP_CTR_STACK_FAILED: return "stack_failed";
    case GEP_CTR_UNKNOWN_TYPE: return "unknown_type";
    case GEP_CTR_CHAIN_DEPTH: return "chain_depth_cut";
    case GEP_CTR_CHAIN_WIDTH: return "chain_width_cut";
    case GEP_CTR_CHAIN_LINKS: return "chain_links_cut";
    case GEP_CTR_EVENT_TRUNC: return "event_truncated";
    case GEP_CTR_ADDR_READ: return "addr_read_failed";
    case GEP_CTR_ADDR_UNKNOWN: return "addr_unknown_type";
    case GEP_CTR_LABELS_READ: return "labels_read_failed";
    case GEP_CTR_LABELS_CUT: return "labels_cut";
    case GEP_CTR_STALE_LINK: return "stale_link";
    case GEP_CTR__COUNT: break;
  }
  return "unknown";
}

uint64_t SessionCounters::dropped_events() const {
  return bpf[GEP_CTR_DROP_RINGBUF] + bpf[GEP_CTR_DROP_BUSY] + bpf[GEP_CTR_DROP_NO_SCRATCH] +
         bpf[GEP_CTR_DROP_ROOT_READ] + bpf[GEP_CTR_DROP_NO_SITE] + decode_errors;
}

uint64_t SessionCounters::partial_losses() const {
  uint64_t n = 0;
  for (int c = GEP_CTR_TYPE_READ; c < GEP_CTR__COUNT; ++c) {
    // Types without a layout are coverage, not losses of what was read.
    // nor is a run ignored because the other link counts it.
    if (c != GEP_CTR_UNKNOWN_TYPE && c != GEP_CTR_ADDR_UNKNOWN && c != GEP_CTR_STALE_LINK) {
      n += bpf[c];
    }
  }
  return n;
}

std::vector<std::pair<absl::string_view, uint64_t>> SessionCounters::Named() const {
  std::vector<std::pair<absl::string_view, uint64_t>> out;
  for (int c = 0; c < GEP_CTR__COUNT; ++c) {
    if (bpf[c]) out.emplace_back(CounterName(static_cast<gep_counter>(c)), bpf[c]);
  }
  if (decode_errors) out.emplace_back("drop_decode_error", decode_errors);
  return out;
}

}  // namespace goerrprof::profiler
