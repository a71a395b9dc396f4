/* Follows a command's process tree for `goerrprof record -- COMMAND`:
 * forks of followed processes join the followed set, and every exec of a
 * followed process is stopped with SIGSTOP before its first user
 * instruction and reported, so user space can attach the error probes of
 * the new executable and continue it without missing its early errors.
 * Only BTF tracepoints: no kprobes, nothing written to any process.
 *
 * Pids are goerrprof's: inside a container (its own PID namespace) the
 * followed set and the reports hold each process's pid in goerrprof's
 * namespace, not the kernel's task->tgid, so that user space can use them
 * with /proc, kill() and the uprobe pid filters. */
#include "vmlinux.h"

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "bpf/follow_abi.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define GEF_SIGSTOP 19

/* 0: report execs without stopping them (user space cannot keep up). */
const volatile __u32 stop_on_exec = 1;
/* The agent's discovery: every exec in goerrprof's PID namespace is
 * reported (never stopped), followed or not. */
const volatile __u32 every_exec = 0;
/* The inode of goerrprof's PID namespace; 0: the initial one, whose pids
 * are task->tgid. */
const volatile __u32 pidns_ino = 0;

#define GEF_MAX_PIDNS_LEVEL 32 /* the kernel's MAX_PID_NS_LEVEL */

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 65536);
  __type(key, __u32); /* tgid */
  __type(value, __u32);
} followed SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 1 << 16);
} follow_events SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, GEF_CTR__COUNT);
  __type(key, __u32);
  __type(value, __u64);
} follow_counters SEC(".maps");

static __always_inline void bump(__u32 c) {
  __u64 *v = bpf_map_lookup_elem(&follow_counters, &c);
  if (v) *v += 1;
}

/* The pid of task's process in goerrprof's PID namespace (what
 * task_tgid_nr_ns() would say there); 0 when it has none, i.e. it runs in
 * a namespace goerrprof cannot see. The process's struct pid holds its
 * number at each level from the initial namespace down to its own; the
 * level of goerrprof's is found by the namespace's inode. */
static __always_inline __u32 visible_tgid(struct task_struct *task) {
  if (!pidns_ino) return BPF_CORE_READ(task, tgid);
  struct pid *pid = BPF_CORE_READ(task, signal, pids[PIDTYPE_TGID]);
  if (!pid) return 0;
  __u32 level = BPF_CORE_READ(pid, level);
  const char *numbers = (const char *)pid + bpf_core_field_offset(struct pid, numbers);
  __u64 upid_size = bpf_core_type_size(struct upid);
  /* From its own level up: mostly it runs in goerrprof's namespace. A
   * bounded loop (Linux 5.3+) with an exact counter: the verifier walks
   * each of at most 33 iterations once. */
  for (__u32 up = 0; up <= GEF_MAX_PIDNS_LEVEL; up++) {
    if (up > level) break;
    const struct upid *u = (const struct upid *)(numbers + (level - up) * upid_size);
    struct pid_namespace *ns = BPF_CORE_READ(u, ns);
    if (!ns) return 0;
    if (BPF_CORE_READ(ns, ns.inum) == pidns_ino) return BPF_CORE_READ(u, nr);
  }
  return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(gef_fork, struct task_struct *parent, struct task_struct *child) {
  if (BPF_CORE_READ(child, tgid) == BPF_CORE_READ(parent, tgid)) return 0; /* a new thread */
  __u32 ptgid = visible_tgid(parent);
  if (!ptgid || !bpf_map_lookup_elem(&followed, &ptgid)) return 0;
  __u32 ctgid = visible_tgid(child);
  if (!ctgid) return 0; /* outside goerrprof's namespace: cannot be recorded */
  __u32 one = 1;
  if (bpf_map_update_elem(&followed, &ctgid, &one, BPF_NOEXIST) == 0)
    bump(GEF_CTR_FORKS);
  else
    bump(GEF_CTR_DROP_FULL);
  return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(gef_exec, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm) {
  __u32 tgid = visible_tgid(p); /* p is current */
  if (!tgid || (!every_exec && !bpf_map_lookup_elem(&followed, &tgid))) return 0;
  bump(GEF_CTR_EXECS);
  /* Reserve first: a process stopped without a report would never be
   * continued. */
  struct gef_exec_event *ev = bpf_ringbuf_reserve(&follow_events, sizeof(*ev), 0);
  if (!ev) {
    bump(GEF_CTR_DROP_RINGBUF);
    return 0;
  }
  ev->ts_ns = bpf_ktime_get_ns();
  ev->pid = tgid;
  ev->ppid = visible_tgid(BPF_CORE_READ(p, real_parent));
  ev->stopped = 0;
  ev->pad = 0;
  if (stop_on_exec && !every_exec) {
    /* Delivered on the way back to user space: before the first instruction. */
    if (bpf_send_signal(GEF_SIGSTOP) == 0)
      ev->stopped = 1;
    else
      bump(GEF_CTR_SIGNAL_FAILED);
  }
  bpf_ringbuf_submit(ev, 0);
  return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(gef_exit, struct task_struct *p) {
  /* The process ends with its last thread (do_exit counts signal->live
   * down before this tracepoint): its tgid may then be reused. Not with
   * the leader's exit: a thread that execs (Go's toolchain switch does)
   * makes the old leader exit in de_thread while the process lives on,
   * under the same pid, as the new program. */
  if (BPF_CORE_READ(p, signal, live.counter) != 0) return 0;
  __u32 tgid = visible_tgid(p);
  if (tgid) bpf_map_delete_elem(&followed, &tgid);
  return 0;
}
