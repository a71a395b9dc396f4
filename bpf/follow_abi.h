/* What bpf/exec_follow.bpf.c and session/process_follower share: the
 * records it sends when a followed process execs, and its counters. */
#ifndef GOERRPROF_BPF_FOLLOW_ABI_H_
#define GOERRPROF_BPF_FOLLOW_ABI_H_

#ifdef __cplusplus
#include <cstdint>
typedef uint32_t gef_u32;
typedef uint64_t gef_u64;
#else
typedef __u32 gef_u32;
typedef __u64 gef_u64;
#endif

/* A followed process (the recorded command or one of its descendants)
 * finished an exec: it is stopped (SIGSTOP) before its first instruction
 * when `stopped` is set, and must be continued by user space. */
struct gef_exec_event {
  gef_u64 ts_ns;
  gef_u32 pid;  /* tgid, in goerrprof's PID namespace */
  gef_u32 ppid; /* the parent's, likewise; 0 when outside that namespace */
  gef_u32 stopped;
  gef_u32 pad;
};

enum gef_counter {
  GEF_CTR_FORKS = 0,     /* new processes added to the followed set */
  GEF_CTR_EXECS,         /* execs of followed processes */
  GEF_CTR_DROP_RINGBUF,  /* exec not reported (ring full): not stopped, not recorded */
  GEF_CTR_DROP_FULL,     /* followed set full: the new process is not followed */
  GEF_CTR_SIGNAL_FAILED, /* SIGSTOP could not be sent: early errors may be missed */
  GEF_CTR__COUNT,
};

#endif /* GOERRPROF_BPF_FOLLOW_ABI_H_ */
