/* goerrprof's error-creation probe: one program, attached at every site
 * with a cookie saying where the new error interface's two words are. It
 * records the error, its Unwrap tree (by the per-type layouts user space
 * put in the layout map), the user stack and the goroutine id, and sends
 * one variable-size record per hit through the ring buffer.
 *
 * Sleepable (uprobe.s) so bpf_copy_from_user can fault in pages the target
 * has not touched yet (string literals in .rodata), instead of losing them.
 * Only reads target memory. */
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
  return bpf_copy_from_user(dst, size, (const void *)src);
}

/* The registers in gep_reg order. A switch on pt_regs fields would become
 * a table of ctx offsets, and the verifier rejects variable ctx offsets. */
static __always_inline void load_regs(struct pt_regs *r, __u64 regs[16]) {
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

/* A cookie location's value; NONE reads as 0. */
static __always_inline long read_loc(const __u64 regs[16], __u32 loc, __u64 *out) {
  __u32 kind = GEP_LOC_KIND(loc);
  *out = 0;
  if (kind == GEP_LOC_NONE) return 0;
  __u64 base = regs[GEP_LOC_REGNO(loc) & 15];
  if (kind == GEP_LOC_REG) {
    *out = base;
    return 0;
  }
  if (kind == GEP_LOC_MEM) return rd(out, 8, base + (__s64)GEP_LOC_DISP(loc));
  return -1;
}

static __always_inline struct gep_scratch *my_scratch(void) {
  __u32 cpu = bpf_get_smp_processor_id();
  return bpf_map_lookup_elem(&scratch, &cpu);
}

/* Queues a wrapped error; false when the DFS stack is full. */
static __always_inline bool push(struct gep_scratch *s, __u64 tab, __u64 data, __s16 parent,
                                 __u8 depth) {
  __u32 sp = s->sp;
  if (sp >= GEP_PENDING_CAP) return false;
  struct gep_pending *p = &s->pending[sp & (GEP_PENDING_CAP - 1)];
  p->tab = tab;
  p->type = 0;
  p->data = data;
  p->parent = parent;
  p->depth = depth;
  s->sp = sp + 1;
  return true;
}

/* Handles a non-nil child interface found in a link's object. */
static __always_inline void child(struct gep_scratch *s, __u16 *flags, __u64 tab, __u64 data,
                                  __s16 parent, __u32 depth) {
  if (!tab) return;
  if (depth >= max_chain || depth >= GEP_MAX_CHAIN) {
    *flags |= GEP_LINK_DEPTH_CUT;
    bump(GEP_CTR_CHAIN_DEPTH);
    return;
  }
  if (!push(s, tab, data, parent, depth)) {
    *flags |= GEP_LINK_LINKS_CUT;
    bump(GEP_CTR_CHAIN_LINKS);
  }
}

/* Appends a gep_str for the Go string header at src, with its bytes.
 * Returns -1 when the record is full (nothing written), 1 when the header
 * was unreadable, 2 when the bytes were, else 0. */
static __always_inline int put_str(struct gep_scratch *s, __u32 *offp, __u64 src, __u8 field) {
  __u32 off = *offp;
  if (off > GEP_EVENT_MAX - sizeof(struct gep_str) - GEP_MAX_STR) {
    s->ev_flags |= GEP_EV_TRUNCATED;
    bump(GEP_CTR_EVENT_TRUNC);
    return -1;
  }
  struct gep_str *gs = (void *)&s->buf[off & GEP_EVENT_MASK];
  __u64 hdr[2] = {0, 0};
  gs->field = field;
  gs->flags = 0;
  gs->pad = 0;
  gs->copied = 0;
  gs->len = 0;
  off += sizeof(struct gep_str);
  *offp = off;
  if (rd(hdr, sizeof(hdr), src)) {
    gs->flags = GEP_STR_READ_FAILED;
    return 1;
  }
  gs->len = hdr[1];
  __u32 n = hdr[1] > GEP_MAX_STR ? GEP_MAX_STR : (__u32)hdr[1];
  if (hdr[1] > GEP_MAX_STR) bump(GEP_CTR_STR_TRUNC);
  if (n && rd(&s->buf[off & GEP_EVENT_MASK], n & (2 * GEP_MAX_STR - 1), hdr[0])) {
    gs->flags = GEP_STR_READ_FAILED;
    bump(GEP_CTR_STR_READ);
    return 2;
  }
  gs->copied = n;
  *offp = off + ((n + 7) & ~7u);
  return 0;
}

static __always_inline void addr_failed(struct gep_addr *a) {
  a->flags |= GEP_ADDR_F_READ_FAILED;
  bump(GEP_CTR_ADDR_READ);
}

/* Appends a gep_addr record, then its strings, for the net.Addr-like
 * interface at src. Only the types user space put in the address map are
 * decoded: their String() needs nothing but these fields. Returns the new
 * write offset, or -1 when the record is full.
 *
 * Global (not inlined) so the verifier checks it once on its own: inlined,
 * its branches multiplied walk_one's paths and verification took ten times
 * the instructions. */
__noinline long gep_put_addr(__u32 off, __u64 src, __u32 field) {
  struct gep_scratch *s = my_scratch();
  if (!s) return -1;
  if (off > GEP_EVENT_MAX - sizeof(struct gep_addr)) {
    s->ev_flags |= GEP_EV_TRUNCATED;
    bump(GEP_CTR_EVENT_TRUNC);
    return -1;
  }
  struct gep_addr *a = (void *)&s->buf[off & GEP_EVENT_MASK];
  off += sizeof(struct gep_addr);
  __u64 iface[2] = {0, 0};
  a->type = 0;
  a->data = 0;
  a->port = 0;
  a->ip_len = 0;
  __builtin_memset(a->ip, 0, GEP_MAX_IP);
  a->field = field;
  a->kind = GEP_ADDR_NONE;
  a->n_str = 0;
  a->flags = 0;
  a->pad = 0;
  if (rd(iface, sizeof(iface), src)) {
    addr_failed(a);
    return off;
  }
  if (!iface[0]) {
    a->flags = GEP_ADDR_F_NIL;
    return off;
  }
  a->data = iface[1];
  __u64 type = 0;
  if (rd(&type, 8, iface[0] + itab_type_offset)) {
    addr_failed(a);
    return off;
  }
  a->type = type;
  struct gep_addr_layout *al = bpf_map_lookup_elem(&addr_types, &type);
  if (!al) {
    a->flags = GEP_ADDR_F_UNKNOWN_TYPE;
    bump(GEP_CTR_ADDR_UNKNOWN);
    return off;
  }
  a->kind = (__u8)al->kind;
  __u64 obj = iface[1];
  if (!obj) return off; /* typed nil pointer: String() is "<nil>" */
  if (al->ip_off != GEP_ADDR_NO_FIELD) {
    __u64 sh[2] = {0, 0}; /* IP []byte: ptr, len */
    if (rd(sh, sizeof(sh), obj + al->ip_off)) {
      addr_failed(a);
    } else {
      a->ip_len = sh[1];
      __u32 n = sh[1] > GEP_MAX_IP ? GEP_MAX_IP : (__u32)sh[1];
      if (n && rd(a->ip, n & (2 * GEP_MAX_IP - 1), sh[0])) addr_failed(a);
    }
  }
  if (al->port_off != GEP_ADDR_NO_FIELD && rd(&a->port, 8, obj + al->port_off)) addr_failed(a);
  for (__u32 k = 0; k < GEP_MAX_ADDR_STR; k++) {
    if (k >= al->n_str) break;
    int r = put_str(s, &off, obj + al->str_off[k], (__u8)k);
    if (r < 0) break;
    a->n_str++;
    if (r == 1) addr_failed(a);
    if (r == 2) a->flags |= GEP_ADDR_F_READ_FAILED; /* counted as STR_READ */
  }
  return off;
}

/* Appends the label whose key and value string headers are at key and
 * val. Returns 1 to stop the walk. */
static __always_inline long put_label(struct gep_scratch *s, __u64 key, __u64 val) {
  if (s->n_labels >= GEP_MAX_LABELS) {
    s->ev_flags |= GEP_EV_LABELS_CUT;
    bump(GEP_CTR_LABELS_CUT);
    return 1;
  }
  __u32 off = s->off;
  /* Both strings or neither: a key without its value would misalign. */
  if (off > GEP_EVENT_MAX - 2 * (sizeof(struct gep_str) + GEP_MAX_STR)) {
    s->ev_flags |= GEP_EV_TRUNCATED;
    bump(GEP_CTR_EVENT_TRUNC);
    return 1;
  }
  int rk = put_str(s, &off, key, (__u8)s->n_labels);
  int rv = put_str(s, &off, val, (__u8)s->n_labels);
  if (rk > 0 || rv > 0) {
    s->ev_flags |= GEP_EV_LABELS_FAILED;
    bump(GEP_CTR_LABELS_READ);
  }
  s->off = off;
  s->n_labels++;
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
    __u64 sh[2] = {0, 0}; /* []label: ptr, len */
    if (rd(sh, sizeof(sh), labels)) goto failed;
    s->lab_base = sh[0];
    __u64 n = sh[1];
    if (n > GEP_MAX_LABELS) {
      n = GEP_MAX_LABELS + 1; /* one more, to flag the cut */
    }
    s->lab_count = (__u32)n;
    return (__u32)n;
  }
  __u64 h = 0;
  if (rd(&h, 8, labels)) goto failed;
  if (!h) return 0;
  __u64 hm[4] = {0, 0, 0, 0}; /* count; flags, B, noverflow, hash0; buckets; oldbuckets */
  if (rd(hm, sizeof(hm), h)) goto failed;
  if (!hm[0]) return 0;
  __u32 B = (hm[1] >> 8) & 0xff;
  if (B > GEP_MAP_MAX_B) {
    s->ev_flags |= GEP_EV_LABELS_CUT;
    bump(GEP_CTR_LABELS_CUT);
    B = GEP_MAP_MAX_B;
  }
  s->lab_base = s->lab_cur = hm[2];
  s->lab_count = 1u << B;
  if (hm[3]) { /* growing: old buckets are half as many unless same-size */
    s->lab_old = hm[3];
    s->lab_old_count = (hm[1] & 8) || B == 0 ? (1u << B) : (1u << (B - 1));
  }
  /* Overflow buckets add slots: allow as many again, then stop. */
  return (s->lab_count + s->lab_old_count) * 16;
failed:
  labels_failed(s);
  return 0;
}

/* bpf_loop body: pops one pending error and appends its link. State lives
 * in the scratch map so the verifier checks this once. */
static long walk_one(__u32 index, void *unused) {
  struct gep_scratch *s = my_scratch();
  if (!s) return 1;
  __u32 sp = s->sp;
  if (sp == 0 || sp > GEP_PENDING_CAP) return 1;
  sp--;
  s->sp = sp;
  struct gep_pending p = s->pending[sp & (GEP_PENDING_CAP - 1)];

  __u32 off = s->off;
  if (off > GEP_EVENT_MAX - sizeof(struct gep_link)) {
    s->ev_flags |= GEP_EV_TRUNCATED;
    bump(GEP_CTR_EVENT_TRUNC);
    return 1;
  }
  __u32 link_off = off & GEP_EVENT_MASK;
  off += sizeof(struct gep_link);
  __s16 me = (__s16)s->n_links;
  s->n_links++;

  __u16 flags = 0;
  __u8 n_str = 0, n_addr = 0;
  __u64 type = p.type, value = p.data;
  if (p.tab) {
    if (rd(&type, 8, p.tab + itab_type_offset)) {
      type = 0;
      flags |= GEP_LINK_TYPE_FAILED;
      bump(GEP_CTR_TYPE_READ);
    }
  }
  struct gep_type_layout *lay = type ? bpf_map_lookup_elem(&layouts, &type) : NULL;
  if (!lay) {
    if (type) {
      flags |= GEP_LINK_UNKNOWN_TYPE;
      bump(GEP_CTR_UNKNOWN_TYPE);
    }
    goto done;
  }
  if (!(lay->flags & GEP_TYPE_DEREF) || !p.data) goto done;

  __u32 vsz = lay->value_size;
  if (vsz) {
    value = 0;
    if (vsz > 8) vsz = 8;
    if (rd(&value, vsz, p.data)) {
      flags |= GEP_LINK_VALUE_FAILED;
      bump(GEP_CTR_VALUE_READ);
    }
  }

  for (__u32 j = 0; j < GEP_MAX_STR_FIELDS; j++) {
    if (j >= lay->n_str) break;
    int r = put_str(s, &off, p.data + lay->str_off[j], (__u8)j);
    if (r < 0) break;
    n_str++;
    if (r == 1) {
      flags |= GEP_LINK_FIELD_FAILED;
      bump(GEP_CTR_FIELD_READ);
    }
  }

  for (__u32 j = 0; j < GEP_MAX_ADDR_FIELDS; j++) {
    if (j >= lay->n_addr) break;
    struct gep_addr *a = (void *)&s->buf[off & GEP_EVENT_MASK];
    long next = gep_put_addr(off, p.data + lay->addr_off[j], j);
    if (next < 0) break;
    n_addr++;
    if (a->flags & GEP_ADDR_F_READ_FAILED) flags |= GEP_LINK_ADDR_FAILED;
    off = (__u32)next;
  }

  /* Children are pushed in reverse so they pop in field order: error
   * fields first, then []error elements. */
  __u32 cdepth = (__u32)p.depth + 1;
  for (int j = GEP_MAX_SLICE_FIELDS - 1; j >= 0; j--) {
    if (j >= lay->n_slice) continue;
    __u64 sh[3] = {0, 0, 0};
    if (rd(sh, sizeof(sh), p.data + lay->slice_off[j])) {
      flags |= GEP_LINK_FIELD_FAILED;
      bump(GEP_CTR_FIELD_READ);
      continue;
    }
    __u64 len = sh[1];
    if (len > GEP_MAX_SLICE_ELEMS) {
      flags |= GEP_LINK_WIDTH_CUT;
      bump_n(GEP_CTR_CHAIN_WIDTH, len - GEP_MAX_SLICE_ELEMS);
      len = GEP_MAX_SLICE_ELEMS;
    }
    if (!len || !sh[0]) continue;
    __u32 bytes = (__u32)len * 16;
    if (bytes > sizeof(s->elems)) bytes = sizeof(s->elems);
    if (rd(s->elems, bytes, sh[0])) {
      flags |= GEP_LINK_FIELD_FAILED;
      bump(GEP_CTR_FIELD_READ);
      continue;
    }
    for (int e = GEP_MAX_SLICE_ELEMS - 1; e >= 0; e--) {
      if (e >= len) continue;
      child(s, &flags, s->elems[2 * e], s->elems[2 * e + 1], me, cdepth);
    }
  }
  for (int j = GEP_MAX_ERR_FIELDS - 1; j >= 0; j--) {
    if (j >= lay->n_err) continue;
    __u64 iface[2] = {0, 0};
    if (rd(iface, sizeof(iface), p.data + lay->err_off[j])) {
      flags |= GEP_LINK_FIELD_FAILED;
      bump(GEP_CTR_FIELD_READ);
      continue;
    }
    child(s, &flags, iface[0], iface[1], me, cdepth);
  }

done:;
  struct gep_link *l = (void *)&s->buf[link_off];
  l->type = type;
  l->data = p.data;
  l->value = value;
  l->parent = p.parent;
  l->depth = p.depth;
  l->n_str = n_str;
  l->flags = flags;
  l->n_addr = n_addr;
  l->pad = 0;
  s->off = off;
  return s->n_links >= GEP_MAX_LINKS;
}

SEC("uprobe.s")
int gep_on_error(struct pt_regs *ctx) {
  bump(GEP_CTR_HITS);
  __u64 pid_tgid = bpf_get_current_pid_tgid();
  if ((__u32)(pid_tgid >> 32) != target_tgid) {
    bump(GEP_CTR_FOREIGN);
    return 0;
  }
  __u64 cookie = bpf_get_attach_cookie(ctx);
  __u32 tloc = GEP_COOKIE_TAB(cookie), dloc = GEP_COOKIE_DATA(cookie);
  bool tconst = GEP_LOC_KIND(tloc) == GEP_LOC_CONST;
  bool dconst = GEP_LOC_KIND(dloc) == GEP_LOC_CONST;
  __u64 ip = PT_REGS_IP(ctx);
  __u64 tab = 0, type = 0, data = 0;

  if (tconst || dconst) {
    struct gep_site *site = bpf_map_lookup_elem(&sites, &ip);
    if (!site) {
      bump(GEP_CTR_DROP_NO_SITE);
      return 0;
    }
    type = site->type;
    data = site->data;
  }
  __u64 regs[16];
  load_regs(ctx, regs);
  if (!tconst) {
    if (read_loc(regs, tloc, &tab)) {
      bump(GEP_CTR_DROP_ROOT_READ);
      return 0;
    }
    if (!tab) {
      bump(GEP_CTR_NIL);
      return 0;
    }
    if (tloc & GEP_LOC_F_TYPE) { /* eface: the word is the type */
      type = tab;
      tab = 0;
    }
  }
  if (!dconst && read_loc(regs, dloc, &data)) {
    bump(GEP_CTR_DROP_ROOT_READ);
    return 0;
  }

  struct gep_scratch *s = my_scratch();
  if (!s) {
    bump(GEP_CTR_DROP_NO_SCRATCH);
    return 0;
  }
  if (__sync_val_compare_and_swap(&s->busy, 0, 1) != 0) {
    bump(GEP_CTR_DROP_BUSY);
    return 0;
  }

  __u32 ev_flags = 0;
  __u64 goid = 0, gopc = 0, labels = 0;
  if (g_source != GEP_G_NONE && goid_offset >= 0) {
    __u64 g = 0;
    if (g_source == GEP_G_R14) {
      g = ctx->r14;
    } else {
      struct task_struct *task = bpf_get_current_task_btf();
      __u64 fsbase = BPF_CORE_READ(task, thread.fsbase);
      if (rd(&g, 8, fsbase + (__s64)tls_g_offset)) g = 0;
    }
    if (!g || rd(&goid, 8, g + goid_offset)) {
      goid = 0;
      ev_flags |= GEP_EV_GOID_FAILED;
      bump(GEP_CTR_GOID_READ);
    } else {
      if (gopc_offset >= 0 && rd(&gopc, 8, g + gopc_offset)) gopc = 0;
      if (labels_offset >= 0 && label_storage != GEP_LABELS_NONE &&
          rd(&labels, 8, g + labels_offset)) {
        labels = 0;
        ev_flags |= GEP_EV_LABELS_FAILED;
        bump(GEP_CTR_LABELS_READ);
      }
    }
  }

  struct gep_event *ev = (void *)s->buf;
  ev->ts_ns = bpf_ktime_get_ns();
  ev->ip = ip;
  ev->cookie = cookie;
  ev->goid = goid;
  ev->pid = pid_tgid >> 32;
  ev->tid = (__u32)pid_tgid;
  ev->version = GEP_EVENT_VERSION;
  ev->gopc = gopc;
  ev->pad16 = 0;
  ev->pad32 = 0;

  __u32 off = sizeof(struct gep_event);
  __u16 n_stack = 0;
  if (capture_stack) {
    bool frameless = tloc & GEP_LOC_F_FRAMELESS;
    __u64 *slots = (__u64 *)&s->buf[sizeof(struct gep_event)];
    /* Frameless: walk into slots[1..], then slots[0] = ip, slots[1] = [rsp]. */
    long n = bpf_get_stack(ctx, frameless ? (void *)&slots[1] : (void *)slots,
                           (GEP_MAX_STACK - 1) * 8, BPF_F_USER_STACK);
    __u64 ret = 0;
    if (n >= 8 && frameless && bpf_probe_read_user(&ret, sizeof(ret), (void *)regs[GEP_RSP])) {
      n = -1;
    }
    if (n < 0) {
      ev_flags |= GEP_EV_STACK_FAILED;
      bump(GEP_CTR_STACK_FAILED);
    } else {
      n_stack = (__u16)((__u64)n / 8);
      if (n_stack > GEP_MAX_STACK - 1) n_stack = GEP_MAX_STACK - 1;
      if (frameless && n_stack > 0) {
        slots[0] = slots[1];
        slots[1] = ret;
        n_stack++;
      }
      off += n_stack * 8;
    }
  }

  s->off = off;
  s->ev_flags = ev_flags;
  s->n_labels = 0;
  __u32 label_iters = labels_setup(s, labels);
  if (label_iters) bpf_loop(label_iters, label_one, NULL, 0);
  off = s->off;
  ev_flags = s->ev_flags;

  s->pending[0].tab = tab;
  s->pending[0].type = type;
  s->pending[0].data = data;
  s->pending[0].parent = -1;
  s->pending[0].depth = 0;
  s->sp = 1;
  s->n_links = 0;
  s->off = off;
  s->ev_flags = ev_flags;
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
  s->busy = 0;
  return 0;
}
