#include "goabi/g_layout.h"

#include <cstdint>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace goerrprof::goabi {
namespace {

// waitReasonStrings of runtime/runtime2.go, indexed by the waitReason
// constant; a new table wherever the list changed. 1.22 and 1.23 only
// appended; 1.20, 1.24 and 1.25 inserted (1.25 also reworded the synctest
// entries) and 1.26 reordered, so old indexes do not carry over.

// 1.16-1.19.
constexpr std::string_view kWaitReasons116[] = {
    "",  // 0
    "GC assist marking",  // 1
    "IO wait",  // 2
    "chan receive (nil chan)",  // 3
    "chan send (nil chan)",  // 4
    "dumping heap",  // 5
    "garbage collection",  // 6
    "garbage collection scan",  // 7
    "panicwait",  // 8
    "select",  // 9
    "select (no cases)",  // 10
    "GC assist wait",  // 11
    "GC sweep wait",  // 12
    "GC scavenge wait",  // 13
    "chan receive",  // 14
    "chan send",  // 15
    "finalizer wait",  // 16
    "force gc (idle)",  // 17
    "semacquire",  // 18
    "sleep",  // 19
    "sync.Cond.Wait",  // 20
    "timer goroutine (idle)",  // 21
    "trace reader (blocked)",  // 22
    "wait for GC cycle",  // 23
    "GC worker (idle)",  // 24
    "preempted",  // 25
    "debug call",  // 26
};

// 1.20-1.23. 1.22 and 1.23 only appended, so 1.20-1.21 read the first
// kWaitReasons120Len entries and 1.22 the first kWaitReasons122Len.
constexpr std::string_view kWaitReasons123[] = {
    "",  // 0
    "GC assist marking",  // 1
    "IO wait",  // 2
    "chan receive (nil chan)",  // 3
    "chan send (nil chan)",  // 4
    "dumping heap",  // 5
    "garbage collection",  // 6
    "garbage collection scan",  // 7
    "panicwait",  // 8
    "select",  // 9
    "select (no cases)",  // 10
    "GC assist wait",  // 11
    "GC sweep wait",  // 12
    "GC scavenge wait",  // 13
    "chan receive",  // 14
    "chan send",  // 15
    "finalizer wait",  // 16
    "force gc (idle)",  // 17
    "semacquire",  // 18
    "sleep",  // 19
    "sync.Cond.Wait",  // 20
    "sync.Mutex.Lock",  // 21
    "sync.RWMutex.RLock",  // 22
    "sync.RWMutex.Lock",  // 23
    "trace reader (blocked)",  // 24
    "wait for GC cycle",  // 25
    "GC worker (idle)",  // 26
    "GC worker (active)",  // 27
    "preempted",  // 28
    "debug call",  // 29
    "GC mark termination",  // 30
    "stopping the world",  // 31
    "flushing proc caches",  // 32
    "trace goroutine status",  // 33
    "trace proc status",  // 34
    "page trace flush",  // 35
    "coroutine",  // 36
    "GC weak to strong wait",  // 37
};

constexpr size_t kWaitReasons120Len = 32;
constexpr size_t kWaitReasons122Len = 37;

// 1.24.
constexpr std::string_view kWaitReasons124[] = {
    "",  // 0
    "GC assist marking",  // 1
    "IO wait",  // 2
    "chan receive (nil chan)",  // 3
    "chan send (nil chan)",  // 4
    "dumping heap",  // 5
    "garbage collection",  // 6
    "garbage collection scan",  // 7
    "panicwait",  // 8
    "select",  // 9
    "select (no cases)",  // 10
    "GC assist wait",  // 11
    "GC sweep wait",  // 12
    "GC scavenge wait",  // 13
    "chan receive",  // 14
    "chan send",  // 15
    "finalizer wait",  // 16
    "force gc (idle)",  // 17
    "semacquire",  // 18
    "sleep",  // 19
    "sync.Cond.Wait",  // 20
    "sync.Mutex.Lock",  // 21
    "sync.RWMutex.RLock",  // 22
    "sync.RWMutex.Lock",  // 23
    "sync.WaitGroup.Wait",  // 24
    "trace reader (blocked)",  // 25
    "wait for GC cycle",  // 26
    "GC worker (idle)",  // 27
    "GC worker (active)",  // 28
    "preempted",  // 29
    "debug call",  // 30
    "GC mark termination",  // 31
    "stopping the world",  // 32
    "flushing proc caches",  // 33
    "trace goroutine status",  // 34
    "trace proc status",  // 35
    "page trace flush",  // 36
    "coroutine",  // 37
    "GC weak to strong wait",  // 38
    "synctest.Run",  // 39
    "synctest.Wait",  // 40
    "chan receive (synctest)",  // 41
    "chan send (synctest)",  // 42
    "select (synctest)",  // 43
};

// 1.25.
constexpr std::string_view kWaitReasons125[] = {
    "",  // 0
    "GC assist marking",  // 1
    "IO wait",  // 2
    "chan receive (nil chan)",  // 3
    "chan send (nil chan)",  // 4
    "dumping heap",  // 5
    "garbage collection",  // 6
    "garbage collection scan",  // 7
    "panicwait",  // 8
    "select",  // 9
    "select (no cases)",  // 10
    "GC assist wait",  // 11
    "GC sweep wait",  // 12
    "GC scavenge wait",  // 13
    "chan receive",  // 14
    "chan send",  // 15
    "finalizer wait",  // 16
    "force gc (idle)",  // 17
    "GOMAXPROCS updater (idle)",  // 18
    "semacquire",  // 19
    "sleep",  // 20
    "sync.Cond.Wait",  // 21
    "sync.Mutex.Lock",  // 22
    "sync.RWMutex.RLock",  // 23
    "sync.RWMutex.Lock",  // 24
    "sync.WaitGroup.Wait",  // 25
    "trace reader (blocked)",  // 26
    "wait for GC cycle",  // 27
    "GC worker (idle)",  // 28
    "GC worker (active)",  // 29
    "preempted",  // 30
    "debug call",  // 31
    "GC mark termination",  // 32
    "stopping the world",  // 33
    "flushing proc caches",  // 34
    "trace goroutine status",  // 35
    "trace proc status",  // 36
    "page trace flush",  // 37
    "coroutine",  // 38
    "GC weak to strong wait",  // 39
    "synctest.Run",  // 40
    "synctest.Wait",  // 41
    "chan receive (durable)",  // 42
    "chan send (durable)",  // 43
    "select (durable)",  // 44
    "sync.WaitGroup.Wait (durable)",  // 45
    "cleanup wait",  // 46
};

// 1.26-1.27.
constexpr std::string_view kWaitReasons126[] = {
    "",  // 0
    "GC assist marking",  // 1
    "IO wait",  // 2
    "dumping heap",  // 3
    "garbage collection",  // 4
    "garbage collection scan",  // 5
    "panicwait",  // 6
    "GC assist wait",  // 7
    "GC sweep wait",  // 8
    "GC scavenge wait",  // 9
    "finalizer wait",  // 10
    "force gc (idle)",  // 11
    "GOMAXPROCS updater (idle)",  // 12
    "semacquire",  // 13
    "sleep",  // 14
    "chan receive (nil chan)",  // 15
    "chan send (nil chan)",  // 16
    "select (no cases)",  // 17
    "select",  // 18
    "chan receive",  // 19
    "chan send",  // 20
    "sync.Cond.Wait",  // 21
    "sync.Mutex.Lock",  // 22
    "sync.RWMutex.RLock",  // 23
    "sync.RWMutex.Lock",  // 24
    "sync.WaitGroup.Wait",  // 25
    "trace reader (blocked)",  // 26
    "wait for GC cycle",  // 27
    "GC worker (idle)",  // 28
    "GC worker (active)",  // 29
    "preempted",  // 30
    "debug call",  // 31
    "GC mark termination",  // 32
    "stopping the world",  // 33
    "flushing proc caches",  // 34
    "trace goroutine status",  // 35
    "trace proc status",  // 36
    "page trace flush",  // 37
    "coroutine",  // 38
    "GC weak to strong wait",  // 39
    "synctest.Run",  // 40
    "synctest.Wait",  // 41
    "chan receive (durable)",  // 42
    "chan send (durable)",  // 43
    "select (durable)",  // 44
    "sync.WaitGroup.Wait (durable)",  // 45
    "cleanup wait",  // 46
};

// gStatusStrings of runtime/traceback.go; "" for the unused values.
constexpr std::string_view kStatusNames116[] = {
    "idle", "runnable", "running", "syscall", "waiting",
    "",     "dead",     "",        "copystack", "preempted",
};
// 1.26+: _Gleaked (goroutine leak detection) and _Gdeadextra.
constexpr std::string_view kStatusNames126[] = {
    "idle", "runnable", "running", "syscall", "waiting",
    "",     "dead",     "",        "copystack", "preempted",
    "leaked", "waiting for cgo callback",
};

// Offsets worked out by hand from runtime/runtime2.go (g, gobuf, m) and
// checked against the DWARF of binaries built by each toolchain.

// 1.16: gobuf is 56 bytes (sp, pc, g, ctxt, ret, lr, bp).
GLayout G116() {
  GLayout g;
  g.sched_bp = 104;
  g.syscallsp = 112;
  g.syscallpc = 120;
  g.atomicstatus = 144;
  g.goid = 152;
  g.waitsince = 168;
  g.waitreason = 176;
  g.gopc = 280;
  g.startpc = 296;
  g.labels = 344;
  g.m_procid = 72;
  g.m_curg = 192;
  g.label_storage = LabelStorage::kMapPointer;
  g.g_in_r14 = false;
  g.wait_reasons = kWaitReasons116;
  g.status_names = kStatusNames116;
  return g;
}

// 1.17-1.20: tracking, trackingSeq, runnableStamp, runnableTime inserted
// before sysexitticks: +16 from there on. Register ABI puts g in R14.
GLayout G117() {
  GLayout g = G116();
  g.gopc = 296;
  g.startpc = 312;
  g.labels = 360;
  g.g_in_r14 = true;
  return g;
}

// 1.21-1.22: sysblocktraced, sysexitticks, traceseq, tracelastp removed,
// parentGoid added before gopc: -16 at gopc.
GLayout G121() {
  GLayout g = G117();
  g.parent_goid = 272;
  g.gopc = 280;
  g.startpc = 296;
  g.labels = 344;
  return g;
}

// 1.23-1.24: syscallbp after syscallpc: +8 from stktopsp on (1.24's
// fipsIndicator fits in padding).
GLayout G123() {
  GLayout g = G121();
  g.syscallbp = 128;
  g.atomicstatus = 152;
  g.goid = 160;
  g.waitsince = 176;
  g.waitreason = 184;
  g.parent_goid = 280;
  g.gopc = 288;
  g.startpc = 304;
  g.labels = 352;
  return g;
}

// 1.25: gobuf lost ret (now 48 bytes): -8 after sched in g and after
// morebuf in m.
GLayout G125() {
  GLayout g = G123();
  g.sched_bp = 96;
  g.syscallsp = 104;
  g.syscallpc = 112;
  g.syscallbp = 120;
  g.atomicstatus = 144;
  g.goid = 152;
  g.waitsince = 168;
  g.waitreason = 176;
  g.parent_goid = 272;
  g.gopc = 280;
  g.startpc = 296;
  g.labels = 344;
  g.m_procid = 64;
  g.m_curg = 184;
  return g;
}

// 1.26-1.27: fipsOnlyBypass, ditWanted and secret push writebuf and what
// follows it down 8 bytes.
GLayout G126() {
  GLayout g = G125();
  g.parent_goid = 280;
  g.gopc = 288;
  g.startpc = 304;
  g.labels = 352;
  g.status_names = kStatusNames126;
  return g;
}

absl::Span<const std::string_view> WaitReasonsFor(const GoVersion& v) {
  if (v.AtLeast(1, 26)) return kWaitReasons126;
  if (v.AtLeast(1, 25)) return kWaitReasons125;
  if (v.AtLeast(1, 24)) return kWaitReasons124;
  if (v.AtLeast(1, 23)) return kWaitReasons123;
  if (v.AtLeast(1, 22)) return absl::MakeConstSpan(kWaitReasons123, kWaitReasons122Len);
  if (v.AtLeast(1, 20)) return absl::MakeConstSpan(kWaitReasons123, kWaitReasons120Len);
  return kWaitReasons116;
}

}  // namespace

std::string_view GLayout::WaitReason(uint32_t reason) const {
  return reason < wait_reasons.size() ? wait_reasons[reason] : "";
}

std::string_view GLayout::StatusName(uint32_t status) const {
  status &= ~kGscan;
  return status < status_names.size() ? status_names[status] : "";
}

absl::StatusOr<GLayout> GLayoutFor(const GoVersion& version) {
  if (!version.AtLeast(1, 16)) {
    return absl::UnimplementedError("Go 1.15 and older are not supported");
  }
  GLayout g;
  if (version.AtLeast(1, 26)) {
    g = G126();
  } else if (version.AtLeast(1, 25)) {
    g = G125();
  } else if (version.AtLeast(1, 23)) {
    g = G123();
  } else if (version.AtLeast(1, 21)) {
    g = G121();
  } else if (version.AtLeast(1, 17)) {
    g = G117();
  } else {
    g = G116();
  }
  // g.tracking / g.trackingStamp moved with the fields before them more
  // often than the layouts above changed.
  if (version.AtLeast(1, 25)) {
    g.tracking = 190, g.tracking_stamp = 192;
  } else if (version.AtLeast(1, 23)) {
    g.tracking = 198, g.tracking_stamp = 200;
  } else if (version.AtLeast(1, 22)) {
    g.tracking = 190, g.tracking_stamp = 192;
  } else if (version.AtLeast(1, 21)) {
    g.tracking = 187, g.tracking_stamp = 192;
  } else if (version.AtLeast(1, 20)) {
    g.tracking = 188, g.tracking_stamp = 192;
  }
  g.panic_arg = version.AtLeast(1, 26) ? 0 : 8;
  // pprof labels became a sorted slice in 1.24.
  g.label_storage = version.AtLeast(1, 24) ? LabelStorage::kSortedSlice
                                           : LabelStorage::kMapPointer;
  g.wait_reasons = WaitReasonsFor(version);
  return g;
}

}  // namespace goerrprof::goabi
