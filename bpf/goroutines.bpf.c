/* goerrprof's park tracing: one program attached at three kinds of places
 * in the Go runtime (the cookie says which, see park_abi.h):
 *   PARK   gopark's CALL runtime.mcall: goroutine id, wait reason, stack;
 *   RESUME the instruction after it, where a parked goroutine continues
 *          (gogo(&g.sched)) whichever path woke it;
 *   READY  runtime.ready's entry: who wakes whom, and the waker's stack.
 * A map of parked goroutines (goid -> park time) lets RESUME say how long
 * the goroutine was parked, and send the park stack itself for goroutines
 * that parked before the probes came. Only reads target memory. */
#include "vmlinux.h"

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "bpf/park_abi.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by user space before load (offsets from goabi/g_layout.h). */
const volatile __u32 target_tgid = 0;
const volatile __u32 g_source = GPK_G_R14;
const volatile __s32 tls_g_offset = -8;
const volatile __u32 goid_off = 152;
const volatile __u32 waitreason_off = 176;
const volatile __u32 g_m_off = 48;
const volatile __u32 m_curg_off = 192;
const volatile __u32 sched_bp_off = 104;
/* Go 1.16 passes arguments on the stack: ready's gp is at [rsp+8]. */
const volatile __u32 ready_arg_on_stack = 0;
/* 0: wake the reader for every record; else once this many bytes wait. */
const volatile __u32 wakeup_bytes = 0;
/* The PID namespace target_tgid is counted in (goerrprof's own: inside a
 * container it is not the kernel's); 0: the initial namespace. */
const volatile __u64 pidns_dev = 0;
const volatile __u64 pidns_ino = 0;

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 65536); /* resized by user space */
  __type(key, __u64);         /* goid */
  __type(value, __u64);       /* park time */
} parked SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, GPK_CTR__COUNT);
  __type(key, __u32);
  __type(value, __u64);
} counters SEC(".maps");

struct gpk_scratch {
  __u32 busy;
  __u32 slot; /* its own key in the scratch map */
  struct gpk_event ev;
  __u64 stack[GPK_MAX_STACK];
};

/* Per-CPU working records, several per CPU: a handler runs with migration
 * disabled but may be preempted, and another thread of the target can then
 * hit a probe on the same CPU; it takes the next free slot. */
#define GPK_SLOTS 4
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, GPK_SLOTS);
  __type(key, __u32);
  __type(value, struct gpk_scratch);
} scratch SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 1 << 22); /* resized by user space */
} events SEC(".maps");

static __always_inline void bump(__u32 c) {
  __u64 *v = bpf_map_lookup_elem(&counters, &c);
  if (v) __sync_fetch_and_add(v, 1);
}

static __always_inline long rd(void *dst, __u32 size, __u64 src) {
  return bpf_probe_read_user(dst, size, (const void *)src);
}

#include "bpf/pidns.bpf.h"

/* The running g: R14 under the register ABI (the probed code is all
 * ABIInternal Go), else the TLS slot. */
static __always_inline __u64 current_g(struct pt_regs *ctx) {
  if (g_source == GPK_G_R14) return ctx->r14;
  struct task_struct *task = bpf_get_current_task_btf();
  __u64 fsbase = BPF_CORE_READ(task, thread.fsbase);
  __u64 g = 0;
  if (rd(&g, 8, fsbase + (__s64)tls_g_offset)) return 0;
  return g;
}

static __always_inline __u64 goid_of(__u64 g) {
  __u64 id = 0;
  if (!g || rd(&id, 8, g + goid_off)) return 0;
  return id;
}

/* A goroutine's stack bounds (g.stack.lo, g.stack.hi at offsets 0 and 8);
 * everything when unreadable. */
struct bounds {
  __u64 lo, hi;
};
static __always_inline struct bounds stack_of(__u64 g) {
  struct bounds b = {0, 0};
  if (!g || rd(&b, sizeof(b), g) || b.lo >= b.hi) {
    b.lo = 0;
    b.hi = ~0ull;
  }
  return b;
}

/* Follows the frame-pointer chain from fp, appending return addresses at
 * stack[n...]. Go frames keep the caller's BP at [fp] and the return
 * address at [fp+8]; the chain ends at 0, only goes up the stack, and must
 * stay on the goroutine's own stack (g0's chain runs on into the user stack
 * mcall came from, which is another goroutine's story). */
__noinline __u32 gpk_walk(__u32 slot, __u32 n, __u64 fp, __u64 lo, __u64 hi) {
  __u32 key = slot;
  struct gpk_scratch *s = bpf_map_lookup_elem(&scratch, &key);
  if (!s) return n;
  struct bounds b = {lo, hi};
  for (int i = 0; i < GPK_MAX_STACK; i++) {
    if (!fp || fp < b.lo || fp > b.hi - 16) break;
    if (n >= GPK_MAX_STACK) {
      s->ev.flags |= GPK_F_STACK_CUT;
      bump(GPK_CTR_STACK_CUT);
      break;
    }
    __u64 fr[2] = {0, 0};
    if (rd(fr, sizeof(fr), fp)) {
      s->ev.flags |= GPK_F_STACK_FAILED;
      bump(GPK_CTR_STACK_FAILED);
      break;
    }
    if (!fr[1]) break;
    __u32 at = n & (GPK_MAX_STACK - 1);
    /* Keep the mask at the store: clang would otherwise carry a pointer
     * across iterations whose range the verifier cannot bound. */
    asm volatile("" : "+r"(at));
    s->stack[at] = fr[1];
    n++;
    if (fr[0] <= fp) break; /* 0 ends the chain; anything lower is garbage */
    fp = fr[0];
  }
  return n;
}

/* Global (verified once, with unknown arguments) rather than inlined at
 * each of its four call sites with their loops. */
static __always_inline __u32 walk(struct gpk_scratch *s, __u32 n, __u64 fp, struct bounds b) {
  return gpk_walk(s->slot, n, fp, b.lo, b.hi);
}

/* ip, then the caller's return address at [rsp] (a probe at a function's
 * entry runs before the frame is set up), then the chain from BP. */
static __always_inline __u32 walk_from_entry(struct gpk_scratch *s, struct pt_regs *ctx,
                                             struct bounds b) {
  s->stack[0] = PT_REGS_IP(ctx);
  __u64 ret = 0;
  if (rd(&ret, 8, PT_REGS_SP(ctx))) {
    s->ev.flags |= GPK_F_STACK_FAILED;
    bump(GPK_CTR_STACK_FAILED);
    return 1;
  }
  s->stack[1] = ret;
  return walk(s, 2, ctx->bp, b);
}

static __always_inline void send(struct gpk_scratch *s, __u32 n) {
  if (n > GPK_MAX_STACK) n = GPK_MAX_STACK;
  s->ev.n_stack = (__u16)n;
  __u64 size = sizeof(struct gpk_event) + (__u64)n * 8;
  __u64 rb_flags = 0;
  if (wakeup_bytes)
    rb_flags = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) + size >= wakeup_bytes
                   ? BPF_RB_FORCE_WAKEUP
                   : BPF_RB_NO_WAKEUP;
  if (bpf_ringbuf_output(&events, &s->ev, size, rb_flags))
    bump(GPK_CTR_DROP_RINGBUF);
  else
    bump(GPK_CTR_EVENTS);
}

static __always_inline void on_park(struct gpk_scratch *s, struct pt_regs *ctx) {
  __u64 g = current_g(ctx);
  __u64 goid = goid_of(g);
  __u8 reason = 0;
  if (!goid || rd(&reason, 1, g + waitreason_off)) bump(GPK_CTR_G_READ);
  s->ev.kind = GPK_EV_PARK;
  s->ev.goid = goid;
  s->ev.g = g;
  s->ev.wait_reason = reason;
  if (goid && bpf_map_update_elem(&parked, &goid, &s->ev.ts_ns, BPF_ANY))
    bump(GPK_CTR_MAP_FULL);
  /* The frame is set up at the CALL: BP is gopark's own frame. */
  s->stack[0] = PT_REGS_IP(ctx);
  send(s, walk(s, 1, ctx->bp, stack_of(g)));
}

static __always_inline void on_resume(struct gpk_scratch *s, struct pt_regs *ctx) {
  __u64 g = current_g(ctx);
  __u64 goid = goid_of(g);
  if (!goid) bump(GPK_CTR_G_READ);
  s->ev.kind = GPK_EV_RESUME;
  s->ev.goid = goid;
  s->ev.g = g;
  __u64 *since = goid ? bpf_map_lookup_elem(&parked, &goid) : NULL;
  if (since) {
    s->ev.other = *since;
    bpf_map_delete_elem(&parked, &goid);
    send(s, 0);
    return;
  }
  /* Parked before we came: gogo restored gopark's BP, so the chain is the
   * one the park had; the wait reason is still in g. */
  bump(GPK_CTR_UNTRACKED);
  s->ev.flags |= GPK_F_UNTRACKED;
  __u8 reason = 0;
  if (g && rd(&reason, 1, g + waitreason_off)) bump(GPK_CTR_G_READ);
  s->ev.wait_reason = reason;
  s->stack[0] = PT_REGS_IP(ctx);
  send(s, walk(s, 1, ctx->bp, stack_of(g)));
}

static __always_inline void on_ready(struct gpk_scratch *s, struct pt_regs *ctx) {
  __u64 woken = ctx->ax;
  if (ready_arg_on_stack && rd(&woken, 8, PT_REGS_SP(ctx) + 8)) woken = 0;
  s->ev.kind = GPK_EV_READY;
  s->ev.g = woken;
  s->ev.goid = goid_of(woken);
  __u64 g = current_g(ctx), m = 0, curg = 0;
  if (!g || rd(&m, 8, g + g_m_off) || !m || rd(&curg, 8, m + m_curg_off)) {
    bump(GPK_CTR_G_READ);
    curg = 0;
  }
  if (!s->ev.goid) bump(GPK_CTR_G_READ);
  if (curg && curg != g) {
    /* On the system stack for curg (goready's systemstack): curg's own
     * stack continues at the BP systemstack saved in curg.sched. */
    __u64 bp = 0;
    s->ev.other = goid_of(curg);
    if (rd(&bp, 8, curg + sched_bp_off)) {
      s->ev.flags |= GPK_F_STACK_FAILED;
      bump(GPK_CTR_STACK_FAILED);
      send(s, 0);
      return;
    }
    send(s, walk(s, 0, bp, stack_of(curg)));
    return;
  }
  if (curg) {
    s->ev.flags |= GPK_F_WAKER_SELF;
    s->ev.other = goid_of(curg);
  } else {
    s->ev.flags |= GPK_F_WAKER_SCHED;
  }
  send(s, walk_from_entry(s, ctx, stack_of(g)));
}

SEC("uprobe")
int gpk_on_event(struct pt_regs *ctx) {
  __u64 cookie = bpf_get_attach_cookie(ctx);
  __u32 role = (__u32)cookie;
  bump(role == GPK_ROLE_PARK     ? GPK_CTR_PARK_HITS
       : role == GPK_ROLE_RESUME ? GPK_CTR_RESUME_HITS
                                 : GPK_CTR_READY_HITS);
  __u32 tgid = 0, tid = 0;
  if (!current_ids(&tgid, &tid) || tgid != target_tgid) {
    bump(GPK_CTR_FOREIGN);
    return 0;
  }
  /* Unrolled: 6.1 and 6.12 verifiers call this loop infinite (a CAS result
   * is not precise enough to tell the iterations apart). */
  struct gpk_scratch *s = NULL;
#pragma clang loop unroll(full)
  for (__u32 k = 0; k < GPK_SLOTS; k++) {
    __u32 key = k;
    struct gpk_scratch *c = s ? NULL : bpf_map_lookup_elem(&scratch, &key);
    if (c && __sync_val_compare_and_swap(&c->busy, 0, 1) == 0) {
      s = c;
      s->slot = key;
    }
  }
  if (!s) {
    bump(GPK_CTR_DROP_BUSY);
    return 0;
  }
  s->ev.ts_ns = bpf_ktime_get_ns();
  s->ev.goid = 0;
  s->ev.other = 0;
  s->ev.g = 0;
  s->ev.tid = tid;
  s->ev.flags = 0;
  s->ev.n_stack = 0;
  s->ev.kind = 0;
  s->ev.wait_reason = 0;
  s->ev.version = GPK_EVENT_VERSION;
  if (role == GPK_ROLE_PARK)
    on_park(s, ctx);
  else if (role == GPK_ROLE_RESUME)
    on_resume(s, ctx);
  else if (role == GPK_ROLE_READY)
    on_ready(s, ctx);
  s->busy = 0;
  return 0;
}
