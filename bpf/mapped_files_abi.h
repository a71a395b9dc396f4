/* What bpf/mapped_files.bpf.c writes per file-backed mapping, read by
 * session/backing_file.cc. */
#ifndef GOERRPROF_BPF_MAPPED_FILES_ABI_H_
#define GOERRPROF_BPF_MAPPED_FILES_ABI_H_

#ifdef __cplusplus
#include <cstdint>
typedef uint32_t gmf_u32;
typedef uint64_t gmf_u64;
#else
typedef __u32 gmf_u32;
typedef __u64 gmf_u64;
#endif

struct gmf_record {
  gmf_u64 start; /* the mapping's first address */
  gmf_u64 ino;   /* the mapped file's inode */
  gmf_u32 dev;   /* its filesystem's device, the kernel's encoding (major << 20 | minor) */
  gmf_u32 pad;
};

#endif /* GOERRPROF_BPF_MAPPED_FILES_ABI_H_ */
