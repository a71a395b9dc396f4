/* What the probe planner and the error probe share: how a probe's
 * bpf_cookie says where the new error interface's two words are (registers,
 * locations, flags). Plain C, no kernel headers: included by the BPF
 * programs and C++. The session's side (maps, records, counters) is in
 * errors_abi.h. */
#ifndef GOERRPROF_BPF_PROBE_ABI_H_
#define GOERRPROF_BPF_PROBE_ABI_H_

#ifdef __cplusplus
#include <cstdint>
typedef uint8_t gep_u8;
typedef uint16_t gep_u16;
typedef uint32_t gep_u32;
typedef uint64_t gep_u64;
typedef int32_t gep_s32;
typedef int16_t gep_s16;
typedef int64_t gep_s64;
#else
typedef __u8 gep_u8;
typedef __u16 gep_u16;
typedef __u32 gep_u32;
typedef __u64 gep_u64;
typedef __s32 gep_s32;
typedef __s16 gep_s16;
typedef __s64 gep_s64;
#endif

/* Registers as numbered in a location (not pt_regs order). */
enum gep_reg {
  GEP_RAX = 0, GEP_RBX, GEP_RCX, GEP_RDX, GEP_RSI, GEP_RDI, GEP_RBP, GEP_RSP,
  GEP_R8, GEP_R9, GEP_R10, GEP_R11, GEP_R12, GEP_R13, GEP_R14, GEP_R15,
};

/* A location is 32 bits: kind in bits 0-1, register in bits 2-5, and for
 * memory a signed displacement in bits 8-31 ([reg + disp]). */
enum gep_loc_kind { GEP_LOC_NONE = 0, GEP_LOC_REG = 1, GEP_LOC_MEM = 2, GEP_LOC_CONST = 3 };
#define GEP_LOC(kind, reg, disp) \
  ((gep_u32)(kind) | ((gep_u32)(reg) << 2) | ((gep_u32)(gep_s32)(disp) << 8))
#define GEP_LOC_KIND(loc) ((loc) & 3u)
#define GEP_LOC_REGNO(loc) (((loc) >> 2) & 15u)
#define GEP_LOC_DISP(loc) ((gep_s32)(loc) >> 8)

/* Flag in a cookie's tab location: the word there is the concrete type
 * descriptor itself (an `any` holding an error value), not an itab. */
#define GEP_LOC_F_TYPE 0x40u
/* Flag in a cookie's tab location: the probed instruction runs after the
 * frame was torn down (a RET): the frame pointer is already the caller's,
 * so a frame-pointer walk would skip the caller; its return address is at
 * [rsp] and is spliced in after the ip. */
#define GEP_LOC_F_FRAMELESS 0x80u

/* Flag in a cookie's tab location, only with GEP_LOC_REG (whose
 * displacement bits are otherwise zero): the probe sits where other paths
 * also arrive (a return past a merge), so the word there must be the site
 * map's `tab`, else this run creates nothing. */
#define GEP_LOC_F_CHECK 0x100u

/* A creation probe's cookie: where the itab word is (low 32 bits) and where
 * the data word is (high 32 bits) at the probed instruction. GEP_LOC_CONST
 * for the itab means "the planner knows it statically"; the BPF program then
 * reads the type from the site map instead. */
#define GEP_COOKIE(tab_loc, data_loc) ((gep_u64)(tab_loc) | ((gep_u64)(data_loc) << 32))
#define GEP_COOKIE_TAB(c) ((gep_u32)(c))
#define GEP_COOKIE_DATA(c) ((gep_u32)((c) >> 32))

/* Link tags, in the data location's flag bits (6-7, unused there): set by
 * the session as it attaches, never by the planner. The overhead budget
 * takes single sites off and puts them back; a uprobe_multi link cannot
 * lose one offset, so the session replaces the link (a shard of the probes)
 * that held it by one without it, its cookies' generation bit flipped, and
 * then sets each remaining probe's generation in the link_gen map. While
 * both links are in, each hit runs twice; the probe ignores the run whose
 * generation is stale. A probe being taken off is given generation 2 at
 * once (stale through every shared link) while the new link attaches. A
 * site put back gets a link of its own, tagged SOLO (never stale). */
#define GEP_COOKIE_F_SOLO (0x40ull << 32)
#define GEP_COOKIE_F_GEN (0x80ull << 32)
#define GEP_COOKIE_TAGS (GEP_COOKIE_F_SOLO | GEP_COOKIE_F_GEN)

#endif /* GOERRPROF_BPF_PROBE_ABI_H_ */
