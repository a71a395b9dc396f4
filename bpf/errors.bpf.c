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

#include "bpf/probe_abi.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by user space before load. */
const volatile __u32 target_tgid = 0;
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

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1); /* resized by user space */
  __type(key, __u64);
  __type(value, struct gep_addr_layout);
} addr_types SEC(".maps");

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

static __always_inline struct gep_scratch *my_scratch(void) {
  __u32 cpu = bpf_get_smp_processor_id();
  return bpf_map_lookup_elem(&scratch, &cpu);
}

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

/* Queues a non-nil wrapped error of the current link; flags what is cut. */
static __always_inline void child(struct gep_scratch *s, __u64 tab, __u64 data) {
  if (!tab) return;
  __u32 depth = s->cur.depth;
  if (depth >= max_chain || depth >= GEP_MAX_CHAIN) {
    s->cur.flags |= GEP_LINK_DEPTH_CUT;
    bump(GEP_CTR_CHAIN_DEPTH);
    return;
  }
  __u32 sp = s->sp;
  if (sp >= GEP_PENDING_CAP) {
    s->cur.flags |= GEP_LINK_LINKS_CUT;
    bump(GEP_CTR_CHAIN_LINKS);
    return;
  }
  struct gep_pending *p = &s->pending[sp & (GEP_PENDING_CAP - 1)];
  p->tab = tab;
  p->type = 0;
  p->data = data;
  p->parent = (__s16)s->cur.me;
  p->depth = (__u8)depth;
  s->sp = sp + 1;
}

/* Appends a gep_str at s->off for the Go string header at src, with its
 * bytes, and advances s->off. Returns -1 when the record is full (nothing
 * written), 1 when the header was unreadable, 2 when the bytes were, else
 * 0. A subprogram, not inlined; static, because a global function that
 * holds bpf_copy_from_user counts as sleeping even where the rodata makes
 * that call dead, and the non-sleepable variant would not load. */
static __noinline int gep_put_str(__u64 src, __u32 field) {
  struct gep_scratch *s = my_scratch();
  if (!s) return -1;
  __u32 off = s->off;
  if (off > GEP_EVENT_MAX - sizeof(struct gep_str) - GEP_MAX_STR) {
    s->ev_flags |= GEP_EV_TRUNCATED;
    bump(GEP_CTR_EVENT_TRUNC);
    return -1;
  }
  struct gep_str *gs = (void *)&s->buf[off & GEP_EVENT_MASK];
  gs->field = (__u8)field;
  gs->flags = 0;
  gs->pad = 0;
  gs->copied = 0;
  gs->len = 0;
  off += sizeof(struct gep_str);
  s->off = off;
  if (rd(s->tmp, 16, src)) {
    gs->flags = GEP_STR_READ_FAILED;
    return 1;
  }
  __u64 len = s->tmp[1];
  gs->len = len;
  __u32 n = len > GEP_MAX_STR ? GEP_MAX_STR : (__u32)len;
  if (len > GEP_MAX_STR) bump(GEP_CTR_STR_TRUNC);
  if (n && rd(&s->buf[off & GEP_EVENT_MASK], n & (2 * GEP_MAX_STR - 1), s->tmp[0])) {
    gs->flags = GEP_STR_READ_FAILED;
    bump(GEP_CTR_STR_READ);
    return 2;
  }
  gs->copied = n;
  s->off = off + ((n + 7) & ~7u);
  return 0;
}

static __always_inline void addr_failed(struct gep_addr *a) {
  a->flags |= GEP_ADDR_F_READ_FAILED;
  bump(GEP_CTR_ADDR_READ);
}

/* Appends at s->off a gep_addr record, then its strings, for the
 * net.Addr-like interface at src. Only the types user space put in the
 * address map are decoded: their String() needs nothing but these fields.
 * Returns the record's flags, or -1 when the record is full. */
static __noinline long gep_put_addr(__u64 src, __u32 field) {
  struct gep_scratch *s = my_scratch();
  if (!s) return -1;
  __u32 off = s->off;
  if (off > GEP_EVENT_MAX - sizeof(struct gep_addr)) {
    s->ev_flags |= GEP_EV_TRUNCATED;
    bump(GEP_CTR_EVENT_TRUNC);
    return -1;
  }
  struct gep_addr *a = (void *)&s->buf[off & GEP_EVENT_MASK];
  s->off = off + sizeof(struct gep_addr);
  a->type = 0;
  a->data = 0;
  a->port = 0;
  a->ip_len = 0;
  __builtin_memset(a->ip, 0, GEP_MAX_IP);
  a->field = (__u8)field;
  a->kind = GEP_ADDR_NONE;
  a->n_str = 0;
  a->flags = 0;
  a->pad = 0;
  if (rd(s->tmp, 16, src)) {
    addr_failed(a);
    return a->flags;
  }
  __u64 tab = s->tmp[0], obj = s->tmp[1];
  if (!tab) {
    a->flags = GEP_ADDR_F_NIL;
    return a->flags;
  }
  a->data = obj;
  __u64 type = 0;
  if (rd(&type, 8, tab + itab_type_offset)) {
    addr_failed(a);
    return a->flags;
  }
  a->type = type;
  struct gep_addr_layout *al = bpf_map_lookup_elem(&addr_types, &type);
  if (!al) {
    a->flags = GEP_ADDR_F_UNKNOWN_TYPE;
    bump(GEP_CTR_ADDR_UNKNOWN);
    return a->flags;
  }
  a->kind = (__u8)al->kind;
  if (!obj) return a->flags; /* typed nil pointer: String() is "<nil>" */
  if (al->ip_off != GEP_ADDR_NO_FIELD) {
    if (rd(s->tmp, 16, obj + al->ip_off)) { /* IP []byte: ptr, len */
      addr_failed(a);
    } else {
      __u64 ip_len = s->tmp[1];
      a->ip_len = ip_len;
      __u32 n = ip_len > GEP_MAX_IP ? GEP_MAX_IP : (__u32)ip_len;
      if (n && rd(a->ip, n & (2 * GEP_MAX_IP - 1), s->tmp[0])) addr_failed(a);
    }
  }
  if (al->port_off != GEP_ADDR_NO_FIELD && rd(&a->port, 8, obj + al->port_off)) addr_failed(a);
  __u32 n_str = al->n_str;
  for (__u32 k = 0; k < GEP_MAX_ADDR_STR; k++) {
    if (k >= n_str) break;
    int r = gep_put_str(obj + al->str_off[k], k);
    if (r < 0) break;
    a->n_str++;
    if (r == 1) addr_failed(a);
    if (r == 2) a->flags |= GEP_ADDR_F_READ_FAILED; /* counted as STR_READ */
  }
  return a->flags;
}

/* Appends the label whose key and value string headers are at key and
 * val. Returns 1 to stop the walk. */
static __always_inline long put_label(struct gep_scratch *s, __u64 key, __u64 val) {
  __u32 n = s->n_labels;
  if (n >= GEP_MAX_LABELS) {
    s->ev_flags |= GEP_EV_LABELS_CUT;
    bump(GEP_CTR_LABELS_CUT);
    return 1;
  }
  /* Both strings or neither: a key without its value would misalign. */
  if (s->off > GEP_EVENT_MAX - 2 * (sizeof(struct gep_str) + GEP_MAX_STR)) {
    s->ev_flags |= GEP_EV_TRUNCATED;
    bump(GEP_CTR_EVENT_TRUNC);
    return 1;
  }
  int rk = gep_put_str(key, n);
  int rv = gep_put_str(val, n);
  s->n_labels = n + 1;
  if (rk > 0 || rv > 0) {
    s->ev_flags |= GEP_EV_LABELS_FAILED;
    bump(GEP_CTR_LABELS_READ);
  }
  return 0;
}

static __always_inline void labels_failed(struct gep_scratch *s) {
  s->ev_flags |= GEP_EV_LABELS_FAILED;
  bump(GEP_CTR_LABELS_READ);
}

/* bpf_loop body: appends label `i` of a slice, or visits the next slot of
 * a map: slots of the current bucket, then its overflow buckets, then the
 * next bucket (new ones, then old ones). Returns 1 to stop. */
static long label_one(__u32 i, void *unused) {
  struct gep_scratch *s = my_scratch();
  if (!s) return 1;
  if (label_storage == GEP_LABELS_SLICE) {
    if (i >= s->lab_count) return 1;
    __u64 key = s->lab_base + (__u64)i * 32;
    return put_label(s, key, key + 16);
  }
  if (s->lab_slot >= 8) {
    __u64 next = 0;
    if (rd(&next, 8, s->lab_cur + GEP_MAP_BUCKET_BYTES - 8)) {
      labels_failed(s);
      next = 0;
    }
    if (!next) {
      __u32 b = ++s->lab_bucket;
      if (b < s->lab_count)
        next = s->lab_base + (__u64)b * GEP_MAP_BUCKET_BYTES;
      else if (b - s->lab_count < s->lab_old_count)
        next = s->lab_old + (__u64)(b - s->lab_count) * GEP_MAP_BUCKET_BYTES;
      else
        return 1;
    }
    s->lab_cur = next;
    s->lab_slot = 0;
  }
  __u32 slot = s->lab_slot++ & 7;
  __u8 top = 0;
  if (rd(&top, 1, s->lab_cur + slot)) {
    labels_failed(s);
    return 0;
  }
  if (top < GEP_MAP_MIN_TOPHASH) return 0;
  return put_label(s, s->lab_cur + GEP_MAP_KEYS_OFF + slot * 16,
                   s->lab_cur + GEP_MAP_ELEMS_OFF + slot * 16);
}

/* Sets up the label walk for the goroutine's g.labels value and returns
 * how many bpf_loop iterations it needs. */
static __always_inline __u32 labels_setup(struct gep_scratch *s, __u64 labels) {
  s->lab_base = s->lab_old = s->lab_cur = 0;
  s->lab_count = s->lab_old_count = s->lab_bucket = s->lab_slot = 0;
  if (!labels) return 0;
  if (label_storage == GEP_LABELS_SLICE) {
    if (rd(s->tmp, 16, labels)) goto failed; /* []label: ptr, len */
    s->lab_base = s->tmp[0];
    __u64 n = s->tmp[1];
    if (n > GEP_MAX_LABELS) n = GEP_MAX_LABELS + 1; /* one more, to flag the cut */
    s->lab_count = (__u32)n;
    return (__u32)n;
  }
  __u64 h = 0;
  if (rd(&h, 8, labels)) goto failed;
  if (!h) return 0;
  /* hmap: count; flags, B, noverflow, hash0; buckets; oldbuckets */
  if (rd(s->tmp, 32, h)) goto failed;
  if (!s->tmp[0]) return 0;
  __u64 word = s->tmp[1];
  __u32 B = (word >> 8) & 0xff;
  if (B > GEP_MAP_MAX_B) {
    s->ev_flags |= GEP_EV_LABELS_CUT;
    bump(GEP_CTR_LABELS_CUT);
    B = GEP_MAP_MAX_B;
  }
  s->lab_base = s->lab_cur = s->tmp[2];
  s->lab_count = 1u << B;
  if (s->tmp[3]) { /* growing: old buckets are half as many unless same-size */
    s->lab_old = s->tmp[3];
    s->lab_old_count = (word & 8) || B == 0 ? (1u << B) : (1u << (B - 1));
  }
  /* Overflow buckets add slots: allow as many again, then stop. */
  return (s->lab_count + s->lab_old_count) * 16;
failed:
  labels_failed(s);
  return 0;
}

/* bpf_loop body: string field i of the current link. */
static long str_field(__u32 i, void *unused) {
  struct gep_scratch *s = my_scratch();
  if (!s || i >= GEP_MAX_STR_FIELDS) return 1;
  int r = gep_put_str(s->cur.data + s->cur.lay.str_off[i], i);
  if (r < 0) return 1;
  s->cur.n_str++;
  if (r == 1) {
    s->cur.flags |= GEP_LINK_FIELD_FAILED;
    bump(GEP_CTR_FIELD_READ);
  }
  return 0;
}

/* bpf_loop body: address field i of the current link. */
static long addr_field(__u32 i, void *unused) {
  struct gep_scratch *s = my_scratch();
  if (!s || i >= GEP_MAX_ADDR_FIELDS) return 1;
  long flags = gep_put_addr(s->cur.data + s->cur.lay.addr_off[i], i);
  if (flags < 0) return 1;
  s->cur.n_addr++;
  if (flags & GEP_ADDR_F_READ_FAILED) s->cur.flags |= GEP_LINK_ADDR_FAILED;
  return 0;
}

/* bpf_loop body: queues []error element i, last first, so that children
 * pop in field order. */
static long elem_child(__u32 i, void *unused) {
  struct gep_scratch *s = my_scratch();
  if (!s) return 1;
  __u32 n = s->cur.n_elems;
  if (i >= n || n > GEP_MAX_SLICE_ELEMS) return 1;
  __u32 e = (n - 1 - i) & (GEP_MAX_SLICE_ELEMS - 1);
  child(s, s->elems[2 * e], s->elems[2 * e + 1]);
  return 0;
}

/* bpf_loop body: the current link's []error fields, last first. */
static long slice_field(__u32 i, void *unused) {
  struct gep_scratch *s = my_scratch();
  if (!s) return 1;
  __u32 n = s->cur.lay.n_slice;
  if (i >= n || n > GEP_MAX_SLICE_FIELDS) return 1;
  __u32 j = (n - 1 - i) & (GEP_MAX_SLICE_FIELDS - 1);
  if (rd(s->tmp, 24, s->cur.data + s->cur.lay.slice_off[j])) { /* ptr, len, cap */
    s->cur.flags |= GEP_LINK_FIELD_FAILED;
    bump(GEP_CTR_FIELD_READ);
    return 0;
  }
  __u64 len = s->tmp[1];
  if (len > GEP_MAX_SLICE_ELEMS) {
    s->cur.flags |= GEP_LINK_WIDTH_CUT;
    bump_n(GEP_CTR_CHAIN_WIDTH, len - GEP_MAX_SLICE_ELEMS);
    len = GEP_MAX_SLICE_ELEMS;
  }
  if (!len || !s->tmp[0]) return 0;
  if (rd(s->elems, ((__u32)len * 16) & (sizeof(s->elems) * 2 - 1), s->tmp[0])) {
    s->cur.flags |= GEP_LINK_FIELD_FAILED;
    bump(GEP_CTR_FIELD_READ);
    return 0;
  }
  s->cur.n_elems = (__u32)len;
  bpf_loop((__u32)len, elem_child, NULL, 0);
  return 0;
}

/* bpf_loop body: the current link's error fields, last first. */
static long err_field(__u32 i, void *unused) {
  struct gep_scratch *s = my_scratch();
  if (!s) return 1;
  __u32 n = s->cur.lay.n_err;
  if (i >= n || n > GEP_MAX_ERR_FIELDS) return 1;
  __u32 j = (n - 1 - i) & (GEP_MAX_ERR_FIELDS - 1);
  if (rd(s->tmp, 16, s->cur.data + s->cur.lay.err_off[j])) {
    s->cur.flags |= GEP_LINK_FIELD_FAILED;
    bump(GEP_CTR_FIELD_READ);
    return 0;
  }
  child(s, s->tmp[0], s->tmp[1]);
  return 0;
}

/* bpf_loop body: pops one pending error and appends its link: header,
 * strings, addresses; then queues its wrapped errors. */
static long walk_one(__u32 index, void *unused) {
  struct gep_scratch *s = my_scratch();
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
  struct gep_type_layout *lay = type ? bpf_map_lookup_elem(&layouts, &type) : NULL;
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
    bpf_loop(s->cur.lay.n_str, str_field, NULL, 0);
    bpf_loop(s->cur.lay.n_addr, addr_field, NULL, 0);
    /* []error elements pop after error fields: queue them first. */
    bpf_loop(s->cur.lay.n_slice, slice_field, NULL, 0);
    bpf_loop(s->cur.lay.n_err, err_field, NULL, 0);
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
  if (!current_ids(&tgid, &tid) || tgid != target_tgid) {
    bump(GEP_CTR_FOREIGN);
    return 0;
  }
  __u64 cookie = bpf_get_attach_cookie(ctx);
  __u32 tloc = GEP_COOKIE_TAB(cookie), dloc = GEP_COOKIE_DATA(cookie);
  __u64 ip = PT_REGS_IP(ctx);

  struct gep_scratch *s = my_scratch();
  if (!s) {
    bump(GEP_CTR_DROP_NO_SCRATCH);
    return 0;
  }
  if (__sync_val_compare_and_swap(&s->busy, 0, 1) != 0) {
    bump(GEP_CTR_DROP_BUSY);
    return 0;
  }
  struct gep_pending *root = &s->pending[0];
  root->tab = root->type = root->data = 0;
  root->parent = -1;
  root->depth = 0;
  if (GEP_LOC_KIND(tloc) == GEP_LOC_CONST || GEP_LOC_KIND(dloc) == GEP_LOC_CONST) {
    struct gep_site *site = bpf_map_lookup_elem(&sites, &ip);
    if (!site) {
      bump(GEP_CTR_DROP_NO_SITE);
      goto out;
    }
    root->type = site->type;
    root->data = site->data;
  }
  load_regs(ctx, s->regs);
  if (GEP_LOC_KIND(tloc) != GEP_LOC_CONST) {
    if (read_loc(s, tloc, &root->tab)) {
      bump(GEP_CTR_DROP_ROOT_READ);
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
  ev->pad32 = 0;
  __u16 n_stack = capture_stack ? capture(s, ctx, tloc) : 0;

  s->off = sizeof(struct gep_event) + n_stack * 8;
  s->n_labels = 0;
  __u32 label_iters = labels_setup(s, labels);
  if (label_iters) bpf_loop(label_iters, label_one, NULL, 0);

  s->sp = 1;
  s->n_links = 0;
  bpf_loop(GEP_MAX_LINKS, walk_one, NULL, 0);
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
