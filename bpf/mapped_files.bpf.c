/* The files a process's mappings really map, as uprobes see them. Since
 * Linux 6.8, /proc/PID/maps names an overlayfs file by the overlay's own
 * inode (one per container), while the mapping itself, and every uprobe
 * attached through that path, is on the layer's file underneath. A task_vma
 * iterator (filtered to one process by user space) reads the mapping's own
 * file: one record per file-backed mapping, in address order. */
#include "vmlinux.h"

#include <bpf/bpf_core_read.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

#include "bpf/mapped_files_abi.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("iter/task_vma")
int gmf_mapping(struct bpf_iter__task_vma *ctx) {
  struct vm_area_struct *vma = ctx->vma;
  if (!vma) return 0;
  struct file *file = BPF_CORE_READ(vma, vm_file);
  if (!file) return 0;
  struct inode *inode = BPF_CORE_READ(file, f_inode);
  if (!inode) return 0;
  struct gmf_record r = {
      .start = BPF_CORE_READ(vma, vm_start),
      .ino = BPF_CORE_READ(inode, i_ino),
      .dev = BPF_CORE_READ(inode, i_sb, s_dev),
  };
  bpf_seq_write(ctx->meta->seq, &r, sizeof(r));
  return 0;
}
