/* goerrprof's error-creation probe: one program, attached at every site
 * with a cookie saying where the new error interface's two words are. It
 * records the error, its Unwrap tree (by the per-type layouts user space
 * put in the layout map), the user stack and the goroutine id, and sends
 * one variable-size record per hit through the ring buffer.
 *
 * Loaded sleepable (BPF_F_SLEEPABLE, set by user space where the kernel has
 * sleepable uprobes) so bpf_copy_from_user can fault in pages the target
 * has not touched yet (string literals in .rodata), instead of losing them.
 * Only reads target memory.
 *
 * Shaped for the verifier of every kernel we support: each item of work (a
 * link, a string field, an address, a []error, a wrapped error, a label)
 * is its own bpf_loop callback or global function, and everything that
 * varies from item to item lives in the per-CPU scratch map, which the
 * verifier does not track value by value. No loop is unrolled inside
 * another, so the explored states grow with the number of callbacks, not
 * with the product of their iterations. */
#include "vmlinux.h"

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "bpf/errors_abi.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by user space before load. The one process probed, or 0: the
 * processes in `targets`, replicas of one executable sharing this program
 * and its links (which then trap in every process running the file). */
const volatile __u32 target_tgid = 0;
/* Stamped on every record: one ring may serve many sessions (the agent).
 * With target_tgid 0, each member's own id, from `targets`. */
const volatile __u32 session_id = 0;
const volatile __u32 max_chain = 8; /* max link depth (root = depth 0) */
const volatile __u32 g_source = GEP_G_NONE;
const volatile __s32 goid_offset = -1;
const volatile __s32 tls_g_offset = -8;
const volatile __u32 itab_type_offset = 8;
const volatile __u32 capture_stack = 1;
/* Goroutine context: g.gopc and g.labels offsets (-1: not read) and how the
 * labels are stored (gep_label_storage). */
const volatile __s32 gopc_offset = -1;
const volatile __s32 labels_offset = -1;
const volatile __u32 label_storage = GEP_LABELS_NONE;
/* 0: wake the reader for every record. Else only once this many bytes wait:
 * a wakeup (irq_work + context switch) cost ~4 us per hit when measured,
 * more than this program, and the reader polls with a timeout anyway. */
const volatile __u32 wakeup_bytes = 0;
/* The PID namespace target_tgid is counted in (goerrprof's own: inside a
 * container it is not the kernel's); 0: the initial namespace. */
const volatile __u64 pidns_dev = 0;
const volatile __u64 pidns_ino = 0;
/* 1: loaded sleepable (uprobe.s), target reads may fault pages in. 0: user
 * space cleared BPF_F_SLEEPABLE (a kernel without sleepable uprobes) and
 * reads that would fault fail instead. The verifier never visits the
 * other branch, so the program holds no helper the kernel refuses. */
const volatile __u32 sleepable = 1;
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1); /* resized by user space */
  __type(key, __u64);
  __type(value, struct gep_type_layout);
} layouts SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1);
  __type(key, __u64);
  __type(value, struct gep_site);
} sites SEC(".maps");

/* The processes sharing this program (target_tgid 0): tgid, as goerrprof
 * counts it, -> its session id and load bias. Preallocated: older kernels
 * let tracing programs use no other hash map. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1); /* resized by user space */
  __type(key, __u32);
  __type(value, struct gep_member);
} targets SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1); /* resized by user space */
  __type(key, __u64);
  __type(value, struct gep_addr_layout);
} addr_types SEC(".maps");

/* Probes whose shared link was replaced (the overhead budget took a
 * neighbour off), keyed by address (as sites): the generation bit
 * (GEP_COOKIE_F_GEN) of the link that counts. See probe_abi.h. */
struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1); /* resized by user space */
  __type(key, __u64);
  __type(value, __u32);
} link_gen SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, GEP_CTR__COUNT);
  __type(key, __u32);
  __type(value, __u64);
} counters SEC(".maps");

struct gep_pending {
  __u64 tab; /* itab; 0 when type is already known */
  __u64 type;
  __u64 data;
  __s16 parent;
  __u8 depth;
  __u8 pad[5];
};

/* The link being walked, shared by walk_one and its per-field callbacks. */
struct gep_cur {
  struct gep_type_layout lay;
  __u64 data;   /* the object the layout's offsets are relative to */
  __u32 flags;  /* gep_link flags so far */
  __u32 n_str;
  __u32 n_addr;
  __u32 depth;  /* children's depth */
  __s32 me;     /* this link's index: the children's parent */
  __u32 n_elems; /* []error elements in elems */
};

/* Largest single write past the cursor: a gep_str header plus its bytes. */
#define GEP_SLACK 512
#define GEP_EVENT_MASK (GEP_EVENT_MAX - 1)

/* Per-CPU working state. Too large for the 512-byte BPF stack, and a
 * PERCPU_ARRAY value is capped at 32 KiB, so this is an ARRAY indexed by
 * CPU (migration is disabled while the program runs). */
struct gep_scratch {
  __u32 busy;
  __u32 off; /* write cursor in buf */
  __u32 n_links;
  __u32 sp; /* entries in pending */
  __u32 ev_flags;
  __u32 n_labels;
  /* Label walk (bpf_loop state): the slice's array, or the map's buckets
   * and old buckets (during growth, entries not yet moved live there). */
  __u64 lab_base;
  __u64 lab_old;
  __u32 lab_count; /* slice elements, or buckets */
  __u32 lab_old_count;
  __u64 lab_cur;    /* map: the bucket being visited */
  __u32 lab_bucket; /* map: its index among new then old buckets */
  __u32 lab_slot;   /* map: next slot in lab_cur */
  __u64 bias;       /* the hit's process's, for address-keyed lookups */
  __u64 regs[16];   /* the probed thread's registers, in gep_reg order */
  __u64 tmp[4];     /* headers read from the target (strings, slices) */
  struct gep_cur cur;
  struct gep_pending pending[GEP_PENDING_CAP];
  __u64 elems[GEP_MAX_SLICE_ELEMS * 2];
  __u8 buf[GEP_EVENT_MAX + GEP_SLACK];
};

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1); /* set to the number of possible CPUs */
  __type(key, __u32);
  __type(value, struct gep_scratch);
} scratch SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 1 << 22); /* resized by user space */
} events SEC(".maps");

static __always_inline void bump_n(__u32 c, __u64 n) {
  __u64 *v = bpf_map_lookup_elem(&counters, &c);
  /* Atomic: a sleepable handler can be preempted by another on this CPU. */
  if (v) __sync_fetch_and_add(v, n);
}
#define bump(c) bump_n((c), 1)

static __always_inline long rd(void *dst, __u32 size, __u64 src) {
  if (sleepable) return bpf_copy_from_user(dst, size, (const void *)src);
  return bpf_probe_read_user(dst, size, (const void *)src);
}

/* The scratch entry the hit took (gep_on_error), by the key its bpf_loop
 * callbacks are handed. */
static __always_inline struct gep_scratch *my_scratch(const void *slot) {
  __u32 key = *(const __u32 *)slot;
  return bpf_map_lookup_elem(&scratch, &key);
}

#include "bpf/pidns.bpf.h"

/* The registers in gep_reg order, in the scratch map: a location then
 * picks one by index (the verifier rejects variable ctx offsets, and a
 * 16-word array on the stack would eat the combined stack budget). */
static __always_inline void load_regs(struct pt_regs *r, __u64 *regs) {
  regs[GEP_RAX] = r->ax;
  regs[GEP_RBX] = r->bx;
  regs[GEP_RCX] = r->cx;
  regs[GEP_RDX] = r->dx;
  regs[GEP_RSI] = r->si;
  regs[GEP_RDI] = r->di;
  regs[GEP_RBP] = r->bp;
  regs[GEP_RSP] = r->sp;
  regs[GEP_R8] = r->r8;
  regs[GEP_R9] = r->r9;
  regs[GEP_R10] = r->r10;
  regs[GEP_R11] = r->r11;
  regs[GEP_R12] = r->r12;
  regs[GEP_R13] = r->r13;
  regs[GEP_R14] = r->r14;
  regs[GEP_R15] = r->r15;
}

/* A cookie location's value into *out; NONE reads as 0. */
static __always_inline long read_loc(struct gep_scratch *s, __u32 loc, __u64 *out) {
  __u32 kind = GEP_LOC_KIND(loc);
  *out = 0;
  if (kind == GEP_LOC_NONE) return 0;
  __u64 base = s->regs[GEP_LOC_REGNO(loc) & 15];
  if (kind == GEP_LOC_REG) {
    *out = base;
    return 0;
  }
  if (kind == GEP_LOC_MEM) return rd(out, 8, base + (__s64)GEP_LOC_DISP(loc));
  return -1;
}

#include "bpf/errors_fields.bpf.h"
#include "bpf/errors_labels.bpf.h"

/* bpf_loop body: pops one pending error and appends its link: header,
 * strings, addresses; then queues its wrapped errors. */
static long walk_one(__u32 index, void *slot) {
  struct gep_scratch *s = my_scratch(slot);
  if (!s) return 1;
  __u32 sp = s->sp;
  if (sp == 0 || sp > GEP_PENDING_CAP) return 1;
  sp--;
  s->sp = sp;
  struct gep_pending *p = &s->pending[sp & (GEP_PENDING_CAP - 1)];
  __u64 tab = p->tab, type = p->type, data = p->data;
  __s16 parent = p->parent;
  __u8 depth = p->depth;

  __u32 link_off = s->off;
  if (link_off > GEP_EVENT_MAX - sizeof(struct gep_link)) {
    s->ev_flags |= GEP_EV_TRUNCATED;
    bump(GEP_CTR_EVENT_TRUNC);
    return 1;
  }
  s->off = link_off + sizeof(struct gep_link);
  s->cur.me = s->n_links++;
  s->cur.flags = 0;
  s->cur.n_str = 0;
  s->cur.n_addr = 0;
  s->cur.depth = (__u32)depth + 1;
  s->cur.data = data;
  __u64 value = data;
  if (tab && rd(&type, 8, tab + itab_type_offset)) {
    type = 0;
    s->cur.flags |= GEP_LINK_TYPE_FAILED;
    bump(GEP_CTR_TYPE_READ);
  }
  __u64 type_key = type - s->bias;
  struct gep_type_layout *lay = type ? bpf_map_lookup_elem(&layouts, &type_key) : NULL;
  if (!lay) {
    if (type) {
      s->cur.flags |= GEP_LINK_UNKNOWN_TYPE;
      bump(GEP_CTR_UNKNOWN_TYPE);
    }
  } else if ((lay->flags & GEP_TYPE_DEREF) && data) {
    s->cur.lay = *lay;
    __u32 vsz = lay->value_size;
    if (vsz) {
      value = 0;
      if (vsz > 8) vsz = 8;
      if (rd(&value, vsz, data)) {
        value = 0;
        s->cur.flags |= GEP_LINK_VALUE_FAILED;
        bump(GEP_CTR_VALUE_READ);
      }
    }
    bpf_loop(s->cur.lay.n_str, str_field, slot, 0);
    bpf_loop(s->cur.lay.n_addr, addr_field, slot, 0);
    /* []error elements pop after error fields: queue them first. */
    bpf_loop(s->cur.lay.n_slice, slice_field, slot, 0);
    bpf_loop(s->cur.lay.n_err, err_field, slot, 0);
  }

  struct gep_link *l = (void *)&s->buf[link_off & GEP_EVENT_MASK];
  l->type = type;
  l->data = data;
  l->value = value;
  l->parent = parent;
  l->depth = depth;
  l->n_str = (__u8)s->cur.n_str;
  l->flags = (__u16)s->cur.flags;
  l->n_addr = (__u8)s->cur.n_addr;
  l->pad = 0;
  return s->n_links >= GEP_MAX_LINKS;
}

/* The creating goroutine's id, go statement and label storage, into the
 * event; flags what failed. */
static __always_inline __u64 read_g(struct gep_scratch *s, struct pt_regs *ctx,
                                    struct gep_event *ev) {
  __u64 g = 0, labels = 0;
  ev->goid = 0;
  ev->gopc = 0;
  if (g_source == GEP_G_NONE || goid_offset < 0) return 0;
  if (g_source == GEP_G_R14) {
    g = ctx->r14;
  } else {
    struct task_struct *task = bpf_get_current_task_btf();
    __u64 fsbase = BPF_CORE_READ(task, thread.fsbase);
    if (rd(&g, 8, fsbase + (__s64)tls_g_offset)) g = 0;
  }
  if (!g || rd(&ev->goid, 8, g + goid_offset)) {
    ev->goid = 0;
    s->ev_flags |= GEP_EV_GOID_FAILED;
    bump(GEP_CTR_GOID_READ);
    return 0;
  }
  if (gopc_offset >= 0 && rd(&ev->gopc, 8, g + gopc_offset)) ev->gopc = 0;
  if (labels_offset >= 0 && label_storage != GEP_LABELS_NONE &&
      rd(&labels, 8, g + labels_offset)) {
    labels = 0;
    s->ev_flags |= GEP_EV_LABELS_FAILED;
    bump(GEP_CTR_LABELS_READ);
  }
  return labels;
}

/* The user stack after the header: innermost first, ip at [0]. Returns
 * the number of PCs. */
static __always_inline __u16 capture(struct gep_scratch *s, struct pt_regs *ctx, __u32 tloc) {
  bool frameless = tloc & GEP_LOC_F_FRAMELESS;
  __u64 *slots = (__u64 *)&s->buf[sizeof(struct gep_event)];
  /* Frameless: walk into slots[1..], then slots[0] = ip, slots[1] = [rsp]. */
  long n = bpf_get_stack(ctx, frameless ? (void *)&slots[1] : (void *)slots,
                         (GEP_MAX_STACK - 1) * 8, BPF_F_USER_STACK);
  if (n >= 8 && frameless && bpf_probe_read_user(&s->tmp[0], 8, (void *)s->regs[GEP_RSP]))
    n = -1;
  if (n < 0) {
    s->ev_flags |= GEP_EV_STACK_FAILED;
    bump(GEP_CTR_STACK_FAILED);
    return 0;
  }
  __u16 n_stack = (__u16)((__u64)n / 8);
  if (n_stack > GEP_MAX_STACK - 1) n_stack = GEP_MAX_STACK - 1;
  if (frameless && n_stack > 0) {
    slots[0] = slots[1];
    slots[1] = s->tmp[0];
    n_stack++;
  }
  return n_stack;
}

SEC("uprobe") /* made sleepable by user space where the kernel allows it */
int gep_on_error(struct pt_regs *ctx) {
  bump(GEP_CTR_HITS);
  __u32 tgid = 0, tid = 0;
  __u32 sid = session_id;
  __u64 bias = 0;
  if (!current_ids(&tgid, &tid)) {
    bump(GEP_CTR_FOREIGN);
    return 0;
  }
  if (target_tgid) {
    if (tgid != target_tgid) {
      bump(GEP_CTR_FOREIGN);
      return 0;
    }
  } else {
    /* A shared program: a process running the file that is not a member
     * (not selected, not yet attached) paid the trap, and nothing more. */
    struct gep_member *member = bpf_map_lookup_elem(&targets, &tgid);
    if (!member) {
      bump(GEP_CTR_FOREIGN);
      return 0;
    }
    sid = member->session;
    bias = member->bias;
  }
  __u64 cookie = bpf_get_attach_cookie(ctx);
  __u32 tloc = GEP_COOKIE_TAB(cookie), dloc = GEP_COOKIE_DATA(cookie);
  __u64 ip = PT_REGS_IP(ctx);
  __u64 ip_key = ip - bias;
  if (!(cookie & GEP_COOKIE_F_SOLO)) {
    __u32 *gen = bpf_map_lookup_elem(&link_gen, &ip_key);
    if (gen && *gen != !!(cookie & GEP_COOKIE_F_GEN)) {
      bump(GEP_CTR_STALE_LINK);
      return 0;
    }
  }

  /* A free one of this CPU's scratch entries: a sleepable probe preempted
   * on this CPU (by any process sharing the scratch) may hold another. */
  __u32 slot = bpf_get_smp_processor_id() * GEP_SCRATCH_SLOTS;
  struct gep_scratch *s = NULL;
  bool any = false;
  for (__u32 i = 0; i < GEP_SCRATCH_SLOTS; i++) {
    struct gep_scratch *c = bpf_map_lookup_elem(&scratch, &slot);
    if (!c) break;
    any = true;
    if (__sync_val_compare_and_swap(&c->busy, 0, 1) == 0) {
      s = c;
      break;
    }
    slot++;
  }
  if (!s) {
    bump(any ? GEP_CTR_DROP_BUSY : GEP_CTR_DROP_NO_SCRATCH);
    return 0;
  }
  s->bias = bias;
  struct gep_pending *root = &s->pending[0];
  root->tab = root->type = root->data = 0;
  root->parent = -1;
  root->depth = 0;
  __u64 want_tab = 0;
  if (GEP_LOC_KIND(tloc) == GEP_LOC_CONST || GEP_LOC_KIND(dloc) == GEP_LOC_CONST ||
      (tloc & GEP_LOC_F_CHECK)) {
    struct gep_site *site = bpf_map_lookup_elem(&sites, &ip_key);
    if (!site) {
      bump(GEP_CTR_DROP_NO_SITE);
      goto out;
    }
    root->type = site->type ? site->type + bias : 0;
    root->data = site->data ? site->data + bias : 0;
    want_tab = site->tab ? site->tab + bias : 0;
  }
  load_regs(ctx, s->regs);
  if (GEP_LOC_KIND(tloc) != GEP_LOC_CONST) {
    if (read_loc(s, tloc, &root->tab)) {
      bump(GEP_CTR_DROP_ROOT_READ);
      goto out;
    }
    if ((tloc & GEP_LOC_F_CHECK) && root->tab != want_tab) {
      bump(GEP_CTR_NOT_HERE);
      goto out;
    }
    if (!root->tab) {
      bump(GEP_CTR_NIL);
      goto out;
    }
    if (tloc & GEP_LOC_F_TYPE) { /* eface: the word is the type */
      root->type = root->tab;
      root->tab = 0;
    }
  }
  if (GEP_LOC_KIND(dloc) != GEP_LOC_CONST && read_loc(s, dloc, &root->data)) {
    bump(GEP_CTR_DROP_ROOT_READ);
    goto out;
  }

  struct gep_event *ev = (void *)s->buf;
  s->ev_flags = 0;
  __u64 labels = read_g(s, ctx, ev);
  ev->ts_ns = bpf_ktime_get_ns();
  ev->ip = ip;
  ev->cookie = cookie;
  ev->pid = tgid;
  ev->tid = tid;
  ev->version = GEP_EVENT_VERSION;
  ev->pad16 = 0;
  ev->session = sid;
  __u16 n_stack = capture_stack ? capture(s, ctx, tloc) : 0;

  s->off = sizeof(struct gep_event) + n_stack * 8;
  s->n_labels = 0;
  __u32 label_iters = labels_setup(s, labels);
  if (label_iters) bpf_loop(label_iters, label_one, &slot, 0);

  s->sp = 1;
  s->n_links = 0;
  bpf_loop(GEP_MAX_LINKS, walk_one, &slot, 0);
  if (s->sp) {
    s->ev_flags |= GEP_EV_LINKS_CUT;
    bump_n(GEP_CTR_CHAIN_LINKS, s->sp);
  }

  __u32 size = s->off;
  if (size > GEP_EVENT_MAX) size = GEP_EVENT_MAX;
  ev->size = size;
  ev->flags = s->ev_flags;
  ev->n_stack = n_stack;
  ev->n_links = s->n_links;
  ev->n_labels = (__u16)s->n_labels;
  __u64 rb_flags = 0;
  if (wakeup_bytes)
    rb_flags = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) + size >= wakeup_bytes
                   ? BPF_RB_FORCE_WAKEUP
                   : BPF_RB_NO_WAKEUP;
  if (bpf_ringbuf_output(&events, s->buf, size, rb_flags))
    bump(GEP_CTR_DROP_RINGBUF);
  else
    bump(GEP_CTR_EVENTS);
out:
  s->busy = 0;
  return 0;
}
