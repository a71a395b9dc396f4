/* Reading one link's fields into the record: strings, net.Addr-like
 * addresses, and the wrapped errors (error and []error fields) queued for
 * the walk. Part of errors.bpf.c (included once, after its maps and
 * scratch), apart to keep each file readable. Each bpf_loop body keeps its
 * state in the scratch map, so the verifier checks it once per call site. */
#ifndef GOERRPROF_BPF_ERRORS_FIELDS_BPF_H_
#define GOERRPROF_BPF_ERRORS_FIELDS_BPF_H_

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
static __noinline int gep_put_str(struct gep_scratch *s, __u64 src, __u32 field) {
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
static __noinline long gep_put_addr(struct gep_scratch *s, __u64 src, __u32 field) {
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
  __u64 type_key = type - s->bias;
  struct gep_addr_layout *al = bpf_map_lookup_elem(&addr_types, &type_key);
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
    int r = gep_put_str(s, obj + al->str_off[k], k);
    if (r < 0) break;
    a->n_str++;
    if (r == 1) addr_failed(a);
    if (r == 2) a->flags |= GEP_ADDR_F_READ_FAILED; /* counted as STR_READ */
  }
  return a->flags;
}

/* bpf_loop body: string field i of the current link. */
static long str_field(__u32 i, void *slot) {
  struct gep_scratch *s = my_scratch(slot);
  if (!s || i >= GEP_MAX_STR_FIELDS) return 1;
  int r = gep_put_str(s, s->cur.data + s->cur.lay.str_off[i], i);
  if (r < 0) return 1;
  s->cur.n_str++;
  if (r == 1) {
    s->cur.flags |= GEP_LINK_FIELD_FAILED;
    bump(GEP_CTR_FIELD_READ);
  }
  return 0;
}

/* bpf_loop body: address field i of the current link. */
static long addr_field(__u32 i, void *slot) {
  struct gep_scratch *s = my_scratch(slot);
  if (!s || i >= GEP_MAX_ADDR_FIELDS) return 1;
  long flags = gep_put_addr(s, s->cur.data + s->cur.lay.addr_off[i], i);
  if (flags < 0) return 1;
  s->cur.n_addr++;
  if (flags & GEP_ADDR_F_READ_FAILED) s->cur.flags |= GEP_LINK_ADDR_FAILED;
  return 0;
}

/* bpf_loop body: queues []error element i, last first, so that children
 * pop in field order. */
static long elem_child(__u32 i, void *slot) {
  struct gep_scratch *s = my_scratch(slot);
  if (!s) return 1;
  __u32 n = s->cur.n_elems;
  if (i >= n || n > GEP_MAX_SLICE_ELEMS) return 1;
  __u32 e = (n - 1 - i) & (GEP_MAX_SLICE_ELEMS - 1);
  child(s, s->elems[2 * e], s->elems[2 * e + 1]);
  return 0;
}

/* bpf_loop body: the current link's []error fields, last first. */
static long slice_field(__u32 i, void *slot) {
  struct gep_scratch *s = my_scratch(slot);
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
  bpf_loop((__u32)len, elem_child, slot, 0);
  return 0;
}

/* bpf_loop body: the current link's error fields, last first. */
static long err_field(__u32 i, void *slot) {
  struct gep_scratch *s = my_scratch(slot);
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

#endif /* GOERRPROF_BPF_ERRORS_FIELDS_BPF_H_ */
