/* What bpf/goroutines.bpf.c (park tracing) and session/park_session share:
 * probe roles (the uprobe_multi cookie), the ring buffer record and the
 * counters. Plain C, no kernel headers: included by BPF and C++. */
#ifndef GOERRPROF_BPF_PARK_ABI_H_
#define GOERRPROF_BPF_PARK_ABI_H_

#ifdef __cplusplus
#include <cstdint>
typedef uint8_t gpk_u8;
typedef uint16_t gpk_u16;
typedef uint32_t gpk_u32;
typedef uint64_t gpk_u64;
#else
typedef __u8 gpk_u8;
typedef __u16 gpk_u16;
typedef __u32 gpk_u32;
typedef __u64 gpk_u64;
#endif

/* A probe's cookie: its role.
 * PARK: runtime.gopark at its CALL runtime.mcall (frame set up, g.waitreason
 *   set). RESUME: the instruction after that CALL, where gogo continues a
 *   parked goroutine whatever woke it. READY: runtime.ready's entry (the
 *   woken g is its first argument; the waker is m.curg). */
enum gpk_role { GPK_ROLE_PARK = 1, GPK_ROLE_RESUME = 2, GPK_ROLE_READY = 3 };

/* Where the running g is (rodata g_source). */
enum gpk_g_source { GPK_G_R14 = 1, GPK_G_TLS = 2 };

#define GPK_MAX_STACK 64 /* PCs per record */
#define GPK_EVENT_VERSION 1u

/* Record kinds (same values as the roles that send them). */
#define GPK_EV_PARK 1u
#define GPK_EV_RESUME 2u
#define GPK_EV_READY 3u

/* Flags. */
#define GPK_F_STACK_CUT 1u    /* stack longer than GPK_MAX_STACK */
#define GPK_F_STACK_FAILED 2u /* a frame was unreadable: stack ends early */
#define GPK_F_UNTRACKED 4u    /* RESUME: no park seen for it (parked before
                                 the probes came, or the map was full): the
                                 record carries the park stack and reason */
#define GPK_F_WAKER_SCHED 8u  /* READY: no user goroutine on the thread (the
                                 scheduler, a timer): stack is g0's */
#define GPK_F_WAKER_SELF 16u  /* READY: called on the waker's own stack */

/* One ring buffer record: this header, then n_stack u64 runtime PCs,
 * innermost first. PARK: [0] is the CALL in gopark, the rest return
 * addresses. RESUME with GPK_F_UNTRACKED: likewise, from the instruction
 * after the CALL. READY: the waker's stack; with GPK_F_WAKER_SELF or
 * GPK_F_WAKER_SCHED [0] is ready's entry and [1] its return address, else
 * (ready on the system stack for m.curg) all are return addresses taken
 * from curg.sched.bp. */
struct gpk_event {
  gpk_u64 ts_ns;      /* CLOCK_MONOTONIC */
  gpk_u64 goid;       /* parked / resumed / woken goroutine; 0 if unreadable */
  gpk_u64 other;      /* RESUME: park time from the map (0: untracked);
                         READY: the waker's goid (0: scheduler / unknown) */
  gpk_u64 g;          /* address of the g (PARK, RESUME), woken g (READY) */
  gpk_u32 tid;
  gpk_u32 flags;
  gpk_u16 n_stack;
  gpk_u8 kind;        /* GPK_EV_* */
  gpk_u8 wait_reason; /* g.waitreason (PARK, untracked RESUME) */
  gpk_u32 version;    /* GPK_EVENT_VERSION */
};

/* Per-CPU counters (array of u64). */
enum gpk_counter {
  GPK_CTR_PARK_HITS = 0,
  GPK_CTR_RESUME_HITS,
  GPK_CTR_READY_HITS,
  GPK_CTR_EVENTS,        /* records written */
  GPK_CTR_FOREIGN,       /* another process hit the probe: ignored */
  GPK_CTR_DROP_RINGBUF,  /* ring buffer full: record lost */
  GPK_CTR_DROP_BUSY,     /* every per-CPU scratch slot in use (preempted handlers) */
  GPK_CTR_G_READ,        /* g, goid or m unreadable */
  GPK_CTR_STACK_FAILED,  /* a frame unreadable: stack cut short */
  GPK_CTR_STACK_CUT,     /* stack deeper than GPK_MAX_STACK */
  GPK_CTR_MAP_FULL,      /* parked-goroutine map full */
  GPK_CTR_UNTRACKED,     /* resumes without a recorded park */
  GPK_CTR__COUNT,
};

#endif /* GOERRPROF_BPF_PARK_ABI_H_ */
