// The live side of goerrprof: loads bpf/errors.bpf.c into the kernel,
// fills its layout map, attaches one uprobe per error-creation site of a
// running Go process and decodes what the probes send. One BpfSession owns
// the skeleton, every probe link and the ring buffer; destroying it (on any
// path, including a failed Start) removes every probe from the target.
#ifndef GOERRPROF_SESSION_BPF_SESSION_H_
#define GOERRPROF_SESSION_BPF_SESSION_H_

#include <sys/types.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "bpf/probe_abi.h"
#include "goabi/g_layout.h"
#include "events/captured_error.h"
#include "symbolizer/error_types.h"

struct errors_bpf;
struct bpf_link;
struct ring_buffer;

namespace goerrprof::symbolizer {
class GoBinary;
}

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

struct ProbeSpec {
  uint64_t vaddr = 0;   // file virtual address of the instruction
  uint64_t cookie = 0;  // GEP_COOKIE(tab_loc, data_loc)
  // For a GEP_LOC_CONST itab location: the type descriptor's file address.
  uint64_t const_type = 0;
  // For a GEP_LOC_CONST data location: the data word as a file address.
  uint64_t const_data = 0;
  // The tab word is a type descriptor (error value boxed in `any`), not an
  // itab; sets GEP_LOC_F_TYPE in the cookie's tab location.
  bool eface = false;
};

enum class GSource { kNone, kR14, kTls };

struct SessionConfig {
  pid_t pid = 0;
  // The target's executable. Empty: /proc/<pid>/exe. When given it must be
  // the same file (device and inode) the process runs.
  std::string executable;
  std::vector<ErrorLayout> layouts;
  std::vector<ProbeSpec> probes;
  uint32_t max_chain = 8;  // link depth; capped at GEP_MAX_CHAIN
  // Goroutine ids: where g is (GLayout::g_in_r14 / tls_g_offset) and
  // GLayout::goid. goid_offset < 0 records no goroutine ids.
  GSource g_source = GSource::kR14;
  int32_t tls_g_offset = -8;
  int32_t goid_offset = -1;
  // Goroutine context (needs goid_offset): GLayout::gopc, GLayout::labels
  // and label_storage; -1 reads nothing.
  int32_t gopc_offset = -1;
  int32_t labels_offset = -1;
  goabi::LabelStorage label_storage = goabi::LabelStorage::kSortedSlice;
  uint32_t ringbuf_bytes = 8u << 20;  // rounded up to a power of two
  // Wake a waiting Poll only when this fraction of the ring is filled (0:
  // after every event). Batching makes a hit several times cheaper; events
  // then reach Poll within its timeout, or at once when the ring fills up.
  double wakeup_fraction = 0.25;
  bool capture_stack = true;
  // Attach every probe through one uprobe_multi link (Linux 6.6+): one
  // syscall to attach, one RCU-tasks-trace grace period to detach. Without
  // it (or on older kernels) each probe is its own perf-event uprobe, and
  // detaching costs a grace period per probe (~0.1-0.2 s each, measured).
  bool uprobe_multi = true;
  // Sleepable program (Linux 5.19+ for uprobes): target pages not yet
  // faulted in (string literals never touched) can be read. Without it the
  // same program loads as a plain uprobe and such reads fail (counted).
  bool sleepable = true;
};

struct SessionCounters {
  std::array<uint64_t, GEP_CTR__COUNT> bpf{};  // summed over CPUs, by gep_counter
  uint64_t decode_errors = 0;  // malformed records (user side)
  uint64_t delivered = 0;      // events handed to Poll callbacks

  uint64_t operator[](gep_counter c) const { return bpf[c]; }
  // Whole events lost (the DROP_* counters plus decode errors).
  uint64_t dropped_events() const;
  // Events that lost part of their content (reads, truncation, caps).
  uint64_t partial_losses() const;
  // Every nonzero counter as "name=value", for reports.
  std::vector<std::pair<absl::string_view, uint64_t>> Named() const;
};
absl::string_view CounterName(gep_counter c);

struct AttachStats {
  std::chrono::nanoseconds load{0};    // open + verify + load the program
  std::chrono::nanoseconds attach{0};  // all uprobes
  size_t probes = 0;
  bool multi = false;  // attached through one uprobe_multi link
  // Layout fields beyond the GEP_MAX_*_FIELDS caps, left out of the map
  // (their strings / wrapped errors will not be captured).
  size_t fields_dropped = 0;
};

class BpfSession {
 public:
  // One-line errors for: no BTF, missing privileges, no such process, a
  // process that exited (before or during attach), a mismatched executable,
  // an unmappable probe address.
  static absl::StatusOr<std::unique_ptr<BpfSession>> Start(const SessionConfig& config);
  ~BpfSession();
  BpfSession(const BpfSession&) = delete;
  BpfSession& operator=(const BpfSession&) = delete;

  // Waits up to timeout_ms (-1: forever, 0: no wait) for events or the
  // target's exit, then delivers every event ready. Returns how many.
  // After target_exited(), one more Poll(0, ...) drains what is left.
  absl::StatusOr<int> Poll(int timeout_ms, absl::FunctionRef<void(const CapturedError&)> callback);
  bool target_exited();
  // A pidfd of the target: readable once it exits, for callers' own loops.
  int exit_fd() const { return pidfd_; }

  SessionCounters Counters() const;
  const AttachStats& attach_stats() const { return stats_; }
  uint64_t load_bias() const { return bias_; }
  pid_t pid() const { return pid_; }
  // Kernel ids of the loaded programs (for checking cleanup).
  std::vector<uint32_t> prog_ids() const;

 private:
  BpfSession() = default;
  absl::Status Init(const SessionConfig& config);
  static int OnSample(void* ctx, void* data, size_t size);
  bool Decode(const uint8_t* data, size_t size, CapturedError* out) const;
  // One gep_str at data[*pos], named from `names` (may be null).
  bool DecodeString(const uint8_t* data, size_t end, size_t* pos,
                    const std::vector<std::pair<std::string, uint32_t>>* names,
                    CapturedString* out) const;

  pid_t pid_ = 0;
  int pidfd_ = -1;
  bool exited_ = false;
  uint64_t bias_ = 0;
  std::string attach_path_;
  absl::Status Load(const SessionConfig& config, size_t n_sites, bool multi);
  absl::Status AttachMulti(const SessionConfig& config, const std::vector<uint64_t>& offsets);
  absl::Status AttachEach(const SessionConfig& config, const std::vector<uint64_t>& offsets);

  errors_bpf* skel_ = nullptr;
  int multi_link_fd_ = -1;
  std::vector<bpf_link*> links_;
  ring_buffer* ring_ = nullptr;
  AttachStats stats_;
  // Per runtime type address: name and string field names for decoding.
  struct TypeInfo {
    std::string name;
    std::vector<std::pair<std::string, uint32_t>> strings;  // name, offset
    std::vector<std::string> addrs;                          // address field names
  };
  absl::flat_hash_map<uint64_t, TypeInfo> types_;       // by runtime address
  absl::flat_hash_map<uint64_t, TypeInfo> addr_types_;  // address types, likewise
  absl::FunctionRef<void(const CapturedError&)>* callback_ = nullptr;
  uint64_t decode_errors_ = 0;
  uint64_t delivered_ = 0;
};

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_SESSION_BPF_SESSION_H_
