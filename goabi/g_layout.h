// Byte offsets in runtime.g and runtime.m, goroutine status values and the
// runtime's wait-reason words, per Go release, for linux/amd64. Facts come
// from runtime/runtime2.go of each release; nothing here reads a binary.
#ifndef GOERRPROF_GOABI_G_LAYOUT_H_
#define GOERRPROF_GOABI_G_LAYOUT_H_

#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "goabi/go_version.h"

namespace goerrprof::goabi {

// Values of g.atomicstatus (runtime2.go). kGscan is OR'ed in while the GC
// scans the stack, so mask it off before comparing.
inline constexpr uint32_t kGidle = 0;
inline constexpr uint32_t kGrunnable = 1;
inline constexpr uint32_t kGrunning = 2;
inline constexpr uint32_t kGsyscall = 3;
inline constexpr uint32_t kGwaiting = 4;
inline constexpr uint32_t kGmoribundUnused = 5;
inline constexpr uint32_t kGdead = 6;
inline constexpr uint32_t kGenqueueUnused = 7;
inline constexpr uint32_t kGcopystack = 8;
inline constexpr uint32_t kGpreempted = 9;
inline constexpr uint32_t kGleaked = 10;     // 1.26+
inline constexpr uint32_t kGdeadextra = 11;  // 1.26+
inline constexpr uint32_t kGscan = 0x1000;

// How g.labels is to be read (runtime/pprof/label.go). g.labels is a
// *labelMap, nil when the goroutine has no labels.
enum class LabelStorage {
  // 1.16-1.23: labelMap is map[string]string, so g.labels points at one
  // word holding the *hmap (classic buckets of 8 string/string pairs).
  kMapPointer,
  // 1.24+: labelMap is struct{ LabelSet } holding one []label, sorted by
  // key without duplicates; each label is {key, value string}, 32 bytes.
  kSortedSlice,
};

struct GLayout {
  static constexpr int32_t kAbsent = -1;

  // runtime.g
  int32_t stack_lo = 0;  // stack.lo
  int32_t stack_hi = 8;  // stack.hi
  int32_t m = 48;        // *m, nil unless running or in a syscall
  int32_t sched_sp = 56;  // sched.sp: saved when the goroutine is not running
  int32_t sched_pc = 64;
  int32_t sched_bp = kAbsent;
  int32_t syscallsp = kAbsent;  // valid in _Gsyscall
  int32_t syscallpc = kAbsent;
  int32_t syscallbp = kAbsent;  // 1.23+
  int32_t atomicstatus = kAbsent;  // uint32
  int32_t goid = kAbsent;          // int64 (uint64 from 1.20)
  int32_t waitsince = kAbsent;     // int64 nanotime, 0 if unknown
  int32_t waitreason = kAbsent;    // uint8 index into wait_reasons
  int32_t parent_goid = kAbsent;   // uint64, 1.21+
  int32_t gopc = kAbsent;          // pc of the go statement
  int32_t startpc = kAbsent;       // pc of the goroutine's function
  int32_t labels = kAbsent;        // unsafe.Pointer, see label_storage
  // 1.20+: casgstatus samples about one status change in eight (g.tracking,
  // bool) and stamps it (g.trackingStamp, int64 nanotime); for mutex waits
  // that stamp is when the goroutine parked.
  int32_t tracking = kAbsent;
  int32_t tracking_stamp = kAbsent;

  // runtime.m
  int32_t m_procid = kAbsent;  // uint64 thread id (the tid on Linux)
  int32_t m_curg = kAbsent;    // *g running user code on this thread

  LabelStorage label_storage = LabelStorage::kSortedSlice;

  // runtime._panic.arg (any): the panic value, read through fatalpanic's
  // *_panic argument (1.26 dropped the argp field before it).
  int32_t panic_arg = 0;

  // Where the running thread's g is. In Go code built with the register
  // ABI (1.17+ on amd64) R14 holds it, but only inside ABIInternal
  // functions; assembly, cgo and signal code do not keep it. The TLS slot
  // at fs_base + tls_g_offset holds it in every release and state. -8 for
  // internally linked binaries; an externally linked one (cgo) must place
  // runtime.tlsg by its PT_TLS segment instead.
  bool g_in_r14 = true;
  int32_t tls_g_offset = -8;

  // waitReason value -> the words the runtime prints ("chan receive").
  absl::Span<const std::string_view> wait_reasons;
  // Status value (kGscan cleared) -> runtime's gStatusStrings word; ""
  // where the runtime has none.
  absl::Span<const std::string_view> status_names;

  // Bounds-checked lookups; "" for a value the table lacks.
  std::string_view WaitReason(uint32_t reason) const;
  std::string_view StatusName(uint32_t status) const;
};

// Errors with Unimplemented before 1.16; a release newer than the newest
// known one gets the newest layout.
absl::StatusOr<GLayout> GLayoutFor(const GoVersion& version);

}  // namespace goerrprof::goabi

#endif  // GOERRPROF_GOABI_G_LAYOUT_H_
