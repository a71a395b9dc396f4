/* The probed thread's ids as goerrprof counts them, shared by the uprobe
 * programs. Each program declares, before including this, the PID namespace
 * its target is counted in (set by user space; 0: the initial one):
 *   const volatile __u64 pidns_dev, pidns_ino; */
#ifndef GOERRPROF_BPF_PIDNS_BPF_H_
#define GOERRPROF_BPF_PIDNS_BPF_H_

/* The current thread's tgid and tid as goerrprof counts them; false when
 * the thread is outside goerrprof's PID namespace (it cannot be the
 * target). */
static __always_inline bool current_ids(__u32 *tgid, __u32 *tid) {
  if (pidns_ino) {
    struct bpf_pidns_info ns = {0, 0};
    if (bpf_get_ns_current_pid_tgid(pidns_dev, pidns_ino, &ns, sizeof(ns))) return false;
    *tgid = ns.tgid;
    *tid = ns.pid;
    return true;
  }
  __u64 id = bpf_get_current_pid_tgid();
  *tgid = id >> 32;
  *tid = (__u32)id;
  return true;
}

#endif /* GOERRPROF_BPF_PIDNS_BPF_H_ */
