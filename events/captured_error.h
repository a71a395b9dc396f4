// One error creation as the BPF probe saw it, decoded from its ring buffer
// record (bpf/probe_abi.h: struct gep_event). Addresses are file virtual
// addresses of the target executable (the load bias is removed), so they
// match GoBinary::Symbolize and symbolizer::ErrorType::type_addr.
#ifndef GOERRPROF_EVENTS_CAPTURED_ERROR_H_
#define GOERRPROF_EVENTS_CAPTURED_ERROR_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "bpf/errors_abi.h"

namespace goerrprof::profiler {

struct CapturedString {
  uint32_t field = 0;  // index among the type's string fields
  uint64_t offset = 0;  // field offset in the object
  std::string name;     // field name ("msg"); empty if the layout had none
  std::string value;    // the bytes copied (at most GEP_MAX_STR)
  uint64_t length = 0;  // the string's true length in the target
  bool read_failed = false;
  bool truncated() const { return !read_failed && value.size() < length; }
};

// An address interface field of an error (net.OpError's Source and Addr):
// its dynamic type and, for the types the probe decodes (gep_addr_kind),
// the fields their String() prints.
struct CapturedAddr {
  uint32_t field = 0;     // index among the type's address fields
  std::string name;       // field name ("Addr"); empty if the layout had none
  uint64_t type = 0;      // dynamic type (file address); 0 if nil or unreadable
  std::string type_name;  // "*net.TCPAddr"; empty unless decoded
  uint64_t data = 0;      // the interface's data word; 0 for a nil pointer
  gep_addr_kind kind = GEP_ADDR_NONE;
  std::string ip;          // IP's first bytes (at most GEP_MAX_IP)
  uint64_t ip_length = 0;  // len(IP) in the target
  int64_t port = 0;
  std::vector<CapturedString> strings;  // "Zone"; or "Name", "Net"
  uint32_t flags = 0;                   // GEP_ADDR_F_*

  bool nil() const { return (flags & GEP_ADDR_F_NIL) != 0; }
  // The fields were read: kind says how to print them (data 0: "<nil>").
  bool decoded() const {
    return kind != GEP_ADDR_NONE && !(flags & (GEP_ADDR_F_READ_FAILED | GEP_ADDR_F_UNKNOWN_TYPE));
  }
  const CapturedString* String(const std::string& field_name) const {
    for (const CapturedString& s : strings) {
      if (s.name == field_name) return &s;
    }
    return nullptr;
  }
};

// One error of the Unwrap tree, in depth-first pre-order (links[0] is the
// error created at the probe).
struct CapturedLink {
  uint64_t type = 0;       // type descriptor address; 0 if the itab was unreadable
  std::string type_name;   // from the layouts given to the session; empty if unknown
  int32_t parent = -1;     // index in CapturedError::links of the wrapping error
  uint32_t depth = 0;
  uint64_t data = 0;       // the interface's data word (runtime address, not rebased)
  uint64_t value = 0;      // first bytes of a boxed value (syscall.Errno, CodeError.Code), else = data
  uint32_t flags = 0;      // GEP_LINK_*
  std::vector<CapturedString> strings;
  std::vector<CapturedAddr> addrs;

  const CapturedString* String(const std::string& field_name) const {
    for (const CapturedString& s : strings) {
      if (s.name == field_name) return &s;
    }
    return nullptr;
  }
  const CapturedAddr* Addr(const std::string& field_name) const {
    for (const CapturedAddr& a : addrs) {
      if (a.name == field_name) return &a;
    }
    return nullptr;
  }
};

// What the probe saw (plan/layouts.h: ProbeKind): an error's creation, a
// panic with its value, or a panic nothing recovered, ending the process.
enum class EventKind : uint8_t { kCreation, kPanic, kFatalPanic };

struct CapturedError {
  EventKind kind = EventKind::kCreation;
  uint64_t timestamp_ns = 0;  // CLOCK_MONOTONIC
  uint64_t ip = 0;            // the probed instruction
  // The creating instruction (the itab/type reference, or the allocation
  // inside an inlined errors.New): the planner's site for the probe at `ip`,
  // in the same function, so stack[1..] are its callers too. 0: unknown.
  uint64_t site = 0;
  uint64_t cookie = 0;        // the probe's GEP_COOKIE
  uint64_t goid = 0;          // 0 when unknown
  // The goroutine's go statement (g.gopc) as a file vaddr; 0 when unknown.
  uint64_t gopc = 0;
  // The goroutine's pprof labels, as stored (sorted by key from Go 1.24;
  // in map order before). GEP_EV_LABELS_FAILED/CUT in flags say if partial.
  std::vector<std::pair<std::string, std::string>> labels;
  uint32_t pid = 0;
  uint32_t tid = 0;
  uint32_t flags = 0;         // GEP_EV_*
  uint64_t load_bias = 0;     // add to get runtime addresses back
  // User stack, innermost first. stack[0] == ip; later entries are return
  // addresses, so symbolize pc-1 for the call's line.
  std::vector<uint64_t> stack;
  std::vector<CapturedLink> links;

  // Children of links[i] in order.
  std::vector<size_t> Children(size_t i) const {
    std::vector<size_t> out;
    for (size_t k = i + 1; k < links.size(); ++k) {
      if (links[k].parent == static_cast<int32_t>(i)) out.push_back(k);
    }
    return out;
  }
  bool complete() const {
    if (flags & (GEP_EV_TRUNCATED | GEP_EV_LINKS_CUT | GEP_EV_LABELS_FAILED | GEP_EV_LABELS_CUT)) {
      return false;
    }
    for (const CapturedLink& l : links) {
      if (l.flags & ~static_cast<uint32_t>(GEP_LINK_UNKNOWN_TYPE)) return false;
      for (const CapturedString& s : l.strings) {
        if (s.read_failed || s.truncated()) return false;
      }
      // An address of a type the probe does not decode is not a loss of
      // the capture (like an error type without a layout).
      for (const CapturedAddr& a : l.addrs) {
        if ((a.flags & GEP_ADDR_F_READ_FAILED) || a.ip_length > a.ip.size()) return false;
        for (const CapturedString& s : a.strings) {
          if (s.read_failed || s.truncated()) return false;
        }
      }
    }
    return true;
  }
};

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_EVENTS_CAPTURED_ERROR_H_
