// bench/overhead: the cheapest uprobe programs. overhead_empty does nothing
// (raw trap cost); overhead_count counts hits in a per-CPU slot (the cost of
// the product's traps at its planned sites, without its work).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
} hits SEC(".maps");

SEC("uprobe")
int overhead_empty(void *ctx) { return 0; }

SEC("uprobe")
int overhead_count(void *ctx) {
  __u32 key = 0;
  __u64 *n = bpf_map_lookup_elem(&hits, &key);
  if (n) *n += 1;
  return 0;
}
