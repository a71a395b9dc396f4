/* The creating goroutine's pprof labels, read from g.labels as each Go
 * release stores them: a sorted slice from 1.24, a map[string]string up to
 * 1.23 (buckets, overflow buckets, and the old buckets of a map still
 * growing). Part of errors.bpf.c (included once, after its maps and
 * scratch), apart to keep each file readable. */
#ifndef GOERRPROF_BPF_ERRORS_LABELS_BPF_H_
#define GOERRPROF_BPF_ERRORS_LABELS_BPF_H_

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
  int rk = gep_put_str(s, key, n);
  int rv = gep_put_str(s, val, n);
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

/* Go <= 1.23 label maps: the classic map[string]string bucket: tophash[8], keys[8], elems[8],
 * overflow pointer. A tophash below 5 marks an empty or evacuated slot. */
#define GEP_MAP_BUCKET_BYTES 272
#define GEP_MAP_KEYS_OFF 8
#define GEP_MAP_ELEMS_OFF 136
#define GEP_MAP_MIN_TOPHASH 5
#define GEP_MAP_MAX_B 3 /* 8 buckets (64 labels): more is cut */

/* bpf_loop body: appends label `i` of a slice, or visits the next slot of
 * a map: slots of the current bucket, then its overflow buckets, then the
 * next bucket (new ones, then old ones). Returns 1 to stop. */
static long label_one(__u32 i, void *entry) {
  struct gep_scratch *s = my_scratch(entry);
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

#endif /* GOERRPROF_BPF_ERRORS_LABELS_BPF_H_ */
