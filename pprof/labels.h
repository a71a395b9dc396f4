// Every label key goerrprof puts on pprof samples, defined once: error
// profiles, the goroutine snapshot and park tracing share the goroutine ones.
#ifndef GOERRPROF_PPROF_LABELS_H_
#define GOERRPROF_PPROF_LABELS_H_

namespace goerrprof::profiler {

// Error samples.
inline constexpr char kLabelType[] = "error.type";
inline constexpr char kLabelMessage[] = "error.message";
inline constexpr char kLabelChain[] = "error.chain";
// Panic samples (sample type panics/count): whether something recovered the
// panic ("true"/"false"), and "true" for the runtime's own errors
// (runtime.Error values: nil map writes, bounds, failed assertions, nil
// dereferences). error.type / error.message are the panic value's.
inline constexpr char kLabelPanicRecovered[] = "panic.recovered";
inline constexpr char kLabelPanicRuntimeError[] = "panic.runtime_error";
inline constexpr char kLabelBinary[] = "process.binary";  // executable's base name
inline constexpr char kLabelPid[] = "process.pid";        // numeric
// Agent windows: the process's container and Kubernetes pod, when its
// cgroup path names them (agent/cgroup.h).
inline constexpr char kLabelContainerId[] = "container.id";
inline constexpr char kLabelPodUid[] = "k8s.pod.uid";
// "true" on samples whose count includes creations estimated while the
// overhead budget had their site off; their observed count is the
// errors_observed value.
inline constexpr char kLabelEstimated[] = "errors.estimated";
inline constexpr char kSampleObserved[] = "errors_observed";

// Goroutines. The creator is the go statement: its function (the physical
// one, as Go's "created by" names it) and file:line; absent for goroutine
// 1. A goroutine's own pprof labels follow under their own keys.
inline constexpr char kLabelGoroutine[] = "goroutine";  // numeric id
inline constexpr char kLabelCreatedBy[] = "goroutine.created_by";
inline constexpr char kLabelCreatedAt[] = "goroutine.created_at";
inline constexpr char kLabelParent[] = "goroutine.parent";
inline constexpr char kLabelState[] = "goroutine.state";
inline constexpr char kLabelWaitReason[] = "goroutine.wait_reason";
inline constexpr char kLabelWait[] = "goroutine.wait";

// Park tracing.
inline constexpr char kLabelWaker[] = "goroutine.waker";
inline constexpr char kLabelParkState[] = "goroutine.park_state";
inline constexpr char kLabelWoken[] = "goroutine.woken";

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_PPROF_LABELS_H_
