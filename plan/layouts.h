// What a session loads for the error probe, computed from the binary: the
// per-type layouts the probe follows (strings, wrapped errors, addresses)
// and each probe's address and final cookie.
#ifndef GOERRPROF_PLAN_LAYOUTS_H_
#define GOERRPROF_PLAN_LAYOUTS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "bpf/errors_abi.h"
#include "plan/probe_plan.h"
#include "symbolizer/error_types.h"
#include "symbolizer/go_binary.h"

namespace goerrprof::profiler {

// What the probe does with a field: copy a string, follow a wrapped error
// or []error, or decode an address interface (one whose methods include
// Network and String, like net.Addr) through the address types.
enum class LayoutFieldKind : uint8_t { kString, kError, kErrorSlice, kAddr };
LayoutFieldKind ToLayoutFieldKind(symbolizer::ErrorFieldKind kind);

// A net.Addr implementation the probe decodes when it is the dynamic type of
// an address field: *net.TCPAddr, *net.UDPAddr, *net.IPAddr, *net.UnixAddr.
// Their String() depends on nothing but these fields. Offsets are in the
// pointee, read from the binary's type data.
struct AddrTypeLayout {
  gep_addr_kind kind = GEP_ADDR_NONE;
  uint32_t ip = GEP_ADDR_NO_FIELD;    // IP []byte
  uint32_t port = GEP_ADDR_NO_FIELD;  // Port int
  // Zone (TCP, UDP, IP); Name and Net (Unix). At most GEP_MAX_ADDR_STR.
  std::vector<std::pair<std::string, uint32_t>> strings;
};

// What the BPF program needs to know about one error type, or about one
// address type (addr_type set). Addresses are file virtual addresses; the
// session rebases them.
struct ErrorLayout {
  struct Field {
    std::string name;
    uint32_t offset = 0;
    LayoutFieldKind kind = LayoutFieldKind::kString;
  };
  uint64_t type_addr = 0;
  std::string name;  // "*main.QueryError"
  // The interface's data word points at the object (pointer types, and
  // values boxed in the interface); fields are at data + offset.
  bool deref = false;
  // Bytes of the object captured as the link's value (numeric kinds such as
  // syscall.Errno, small structs); 0 for pointer types.
  uint8_t value_size = 0;
  std::vector<Field> fields;  // at most GEP_MAX_{STR,ERR,SLICE,ADDR}_FIELDS of each kind
  // Not an error type but an address type: it goes to the address map (and
  // `fields` is empty). A type can have one layout of each sort.
  std::optional<AddrTypeLayout> addr_type;
};

// Layouts for symbolizer's error types, with each type's direct-interface
// bit read from its descriptor (which decides `deref`) and their address
// interface fields (which FindErrorTypes does not report), followed by the
// address types found among the itabs of address interfaces.
absl::StatusOr<std::vector<ErrorLayout>> LayoutsFor(
    const symbolizer::GoBinary& binary, const std::vector<symbolizer::ErrorType>& types);

// One layout exactly as the session loads it into the probe's maps: the
// value, and the names the decoder gives to what the probe copies (only the
// fields that fit the value's GEP_MAX_* slots, in slot order).
struct LayoutMapEntry {
  uint64_t type_addr = 0;  // file address: the key once rebased
  bool is_addr = false;    // goes to the address map, not the layout map
  gep_type_layout type = {};
  gep_addr_layout addr = {};
  std::string name;
  std::vector<std::pair<std::string, uint32_t>> strings;  // name, offset
  std::vector<std::string> addrs;                         // address fields' names
  size_t fields_dropped = 0;  // beyond the slots: never captured
};
std::vector<LayoutMapEntry> MapEntriesFor(const std::vector<ErrorLayout>& layouts);

// What a probe of the error program sees: an error's creation, a panic
// (runtime.gopanic's entry), or a panic nothing recovered, about to end the
// process (runtime.fatalpanic's entry).
enum class ProbeKind : uint8_t { kCreation, kPanic, kFatalPanic };

struct ProbeSpec {
  uint64_t vaddr = 0;   // file virtual address of the instruction
  // The bpf_cookie as attached: GEP_COOKIE(tab_loc, data_loc) with the tab
  // location's flags (GEP_LOC_F_TYPE, GEP_LOC_F_FRAMELESS) set.
  uint64_t cookie = 0;
  // For a GEP_LOC_CONST itab location: the type descriptor's file address.
  uint64_t const_type = 0;
  // For a GEP_LOC_CONST data location: the data word as a file address.
  uint64_t const_data = 0;
  // With GEP_LOC_F_CHECK: the itab (the type for an `any`), a file address,
  // that the tab location holds when this run is the creation.
  uint64_t check_tab = 0;
  // The creating instruction (CreationProbe::site): the sample's leaf.
  // 0: the probe's own pc.
  uint64_t site = 0;
  ProbeKind kind = ProbeKind::kCreation;
};

// The planner's creation probes as the session attaches them, each with its
// final cookie: the planner's locations, GEP_LOC_F_TYPE where the tab word
// is a type descriptor (an error value boxed in `any`), and
// GEP_LOC_F_FRAMELESS where the frame is gone (or never made), so the
// frame-pointer walk would skip the caller.
std::vector<ProbeSpec> ProbeSpecsFor(const std::vector<CreationProbe>& probes);

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_PLAN_LAYOUTS_H_
