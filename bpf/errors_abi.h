/* What the error probe (bpf/errors.bpf.c) and user space (the session
 * that loads it, and the decoder of its records) share: hard limits, the
 * site, type-layout and address-layout map values, the ring-buffer record,
 * and the counters. Plain C, no kernel headers. */
#ifndef GOERRPROF_BPF_ERRORS_ABI_H_
#define GOERRPROF_BPF_ERRORS_ABI_H_

#include "bpf/probe_abi.h"

/* Sites whose cookie has a GEP_LOC_CONST location or GEP_LOC_F_CHECK: the
 * site map, keyed by the probe's address (what pt_regs->ip holds in the
 * handler, less the member's bias), gives the type address (CONST itab),
 * the data word (CONST data) and the word a checked site's itab location
 * must hold, at the same bias (non-zero ones are rebased by it). */
struct gep_site {
  gep_u64 type;
  gep_u64 data;
  gep_u64 tab;
};

/* A process sharing a program (the targets map's value, by tgid): the
 * session id its records carry, and its load bias. A shared program's
 * address-keyed maps (sites, layouts, address types, link generations)
 * hold file addresses, each member's runtime ones being these plus its
 * bias (a PIE file runs at one per process). A program of one process
 * holds its runtime addresses and rebases by 0. */
struct gep_member {
  gep_u32 session;
  gep_u32 pad;
  gep_u64 bias;
};

/* Hard limits; the verifier sees them as loop bounds and buffer sizes. */
#define GEP_MAX_STACK 127       /* perf_event_max_stack's default */
#define GEP_MAX_LINKS 32        /* links (errors) per event */
#define GEP_MAX_CHAIN 16        /* ceiling of the configurable depth */
#define GEP_PENDING_CAP 32      /* explicit DFS stack; power of two */
/* Scratch entries per CPU: a sleepable probe preempted while holding one
 * (its page fault, a lazily preempting kernel) leaves the others to hits
 * of other threads and processes on that CPU. */
#define GEP_SCRATCH_SLOTS 2
#define GEP_MAX_STR 256         /* bytes copied per string field */
#define GEP_MAX_STR_FIELDS 8
#define GEP_MAX_ERR_FIELDS 4
#define GEP_MAX_SLICE_FIELDS 2
#define GEP_MAX_SLICE_ELEMS 8   /* []error elements followed per slice */
#define GEP_EVENT_MAX 32768     /* bytes per event record; power of two */
#define GEP_MAX_ADDR_FIELDS 2   /* net.Addr fields per type (OpError: Source, Addr) */
#define GEP_MAX_ADDR_STR 2      /* strings per address (Zone; or Name, Net) */
#define GEP_MAX_IP 16           /* IP bytes copied per address */

/* Layout map value, keyed by the type address (u64; a shared program's:
 * the file's, see gep_member). Fields are at data + offset whenever
 * GEP_TYPE_DEREF is set (pointer types, and values boxed in the interface:
 * both make the data word point at the object). */
#define GEP_TYPE_DEREF 1u
struct gep_type_layout {
  gep_u32 flags;
  gep_u8 value_size; /* 1-8: capture that many bytes at data as the link's
                        value (numeric kinds, boxed structs); 0: the value
                        is the data word itself */
  gep_u8 n_str, n_err, n_slice;
  gep_u32 str_off[GEP_MAX_STR_FIELDS];     /* Go string: ptr, len */
  gep_u32 err_off[GEP_MAX_ERR_FIELDS];     /* error: tab, data */
  gep_u32 slice_off[GEP_MAX_SLICE_FIELDS]; /* []error: ptr, len, cap */
  /* Address interfaces (methods Network and String, like net.Addr): tab,
   * data. Decoded through the address map when the dynamic type is in it. */
  gep_u8 n_addr;
  gep_u8 pad[3];
  gep_u32 addr_off[GEP_MAX_ADDR_FIELDS];
};

/* Address map value, keyed by the address (as layouts) of a pointer type whose
 * pointee the probe decodes: *net.TCPAddr/UDPAddr (IP, Port, Zone),
 * *net.IPAddr (IP, Zone), *net.UnixAddr (Name, Net). Offsets are in the
 * pointee, from the binary's type data. */
enum gep_addr_kind {
  GEP_ADDR_NONE = 0, /* nil or undecodable: see gep_addr.flags */
  GEP_ADDR_TCP = 1,
  GEP_ADDR_UDP = 2,
  GEP_ADDR_IP = 3,
  GEP_ADDR_UNIX = 4,
};
#define GEP_ADDR_NO_FIELD 0xffffffffu
struct gep_addr_layout {
  gep_u32 kind;     /* gep_addr_kind */
  gep_u32 ip_off;   /* IP []byte, or GEP_ADDR_NO_FIELD */
  gep_u32 port_off; /* Port int, or GEP_ADDR_NO_FIELD */
  gep_u32 n_str;
  gep_u32 str_off[GEP_MAX_ADDR_STR]; /* Go strings: Zone; or Name, Net */
};

/* g pointer source (rodata g_source). */
enum gep_g_source { GEP_G_NONE = 0, GEP_G_R14 = 1, GEP_G_TLS = 2 };

/* How g.labels holds the goroutine's pprof labels (rodata label_storage):
 * Go <= 1.23 points at a map[string]string variable (so at an *hmap),
 * Go 1.24+ at a struct holding one []struct{key, value string}. */
enum gep_label_storage { GEP_LABELS_NONE = 0, GEP_LABELS_MAP = 1, GEP_LABELS_SLICE = 2 };
#define GEP_MAX_LABELS 16 /* label pairs copied per event */

/* One ring buffer record: this header, n_stack u64 PCs (user stack,
 * innermost first; [0] is the probe's ip, the rest return addresses), then
 * (version 2) n_labels label pairs, each a key gep_str and a value gep_str
 * (field = the pair's index) with their bytes, then n_links links in depth-first pre-order, each a gep_link followed by its
 * n_str gep_str records, each followed by `copied` bytes padded to 8, then
 * (version 1) its n_addr gep_addr records, each followed by its n_str
 * gep_str records. All addresses are runtime addresses in the target.
 * Readers reject records of another version. */
#define GEP_EVENT_VERSION 2u /* 1: before goroutine context; 0: before addresses */
#define GEP_EV_STACK_FAILED 1u
#define GEP_EV_GOID_FAILED 2u
#define GEP_EV_TRUNCATED 4u    /* record hit GEP_EVENT_MAX: links missing */
#define GEP_EV_LINKS_CUT 8u    /* wrapped errors left over at GEP_MAX_LINKS */
#define GEP_EV_LABELS_FAILED 16u /* label storage or a label unreadable */
#define GEP_EV_LABELS_CUT 32u    /* more labels than GEP_MAX_LABELS / map too big */
struct gep_event {
  gep_u64 ts_ns; /* CLOCK_MONOTONIC */
  gep_u64 ip;
  gep_u64 cookie;
  gep_u64 goid; /* 0 when unknown */
  gep_u32 pid;  /* tgid */
  gep_u32 tid;
  gep_u32 size; /* bytes of the whole record */
  gep_u32 flags;
  gep_u16 n_stack;
  gep_u16 n_links;
  gep_u32 version; /* GEP_EVENT_VERSION */
  gep_u64 gopc;    /* the goroutine's g.gopc (its go statement); 0 unknown */
  gep_u16 n_labels;
  gep_u16 pad16;
  gep_u32 session; /* the session's id: records of one ring shared by many */
};

#define GEP_LINK_UNKNOWN_TYPE 1u  /* type not in the layout map: no fields */
#define GEP_LINK_TYPE_FAILED 2u   /* itab unreadable: type is 0 */
#define GEP_LINK_VALUE_FAILED 4u
#define GEP_LINK_FIELD_FAILED 8u  /* a string/error/slice header unreadable */
#define GEP_LINK_DEPTH_CUT 16u    /* wraps errors not followed: max chain */
#define GEP_LINK_WIDTH_CUT 32u    /* []error longer than GEP_MAX_SLICE_ELEMS */
#define GEP_LINK_LINKS_CUT 64u    /* wrapped errors dropped: DFS stack full */
#define GEP_LINK_ADDR_FAILED 128u /* an address field not fully read */
struct gep_link {
  gep_u64 type;  /* runtime type address */
  gep_u64 data;  /* interface data word */
  gep_u64 value; /* see gep_type_layout.value_size */
  gep_s16 parent; /* index of the wrapping link; -1 for the root */
  gep_u8 depth;
  gep_u8 n_str;
  gep_u16 flags;
  gep_u8 n_addr; /* gep_addr records after the strings */
  gep_u8 pad;
};

#define GEP_STR_READ_FAILED 1u
struct gep_str {
  gep_u64 len;     /* true length in the target */
  gep_u16 copied;  /* bytes following (<= GEP_MAX_STR), then pad to 8 */
  gep_u8 field;    /* index into the layout's str_off */
  gep_u8 flags;
  gep_u32 pad;
};

/* One address field of a link. A nil interface has type 0 and
 * GEP_ADDR_F_NIL; a nil pointer of a known type has data 0 and no parts. */
#define GEP_ADDR_F_NIL 1u          /* the interface is nil */
#define GEP_ADDR_F_READ_FAILED 2u  /* interface, itab, IP or Port unreadable */
#define GEP_ADDR_F_UNKNOWN_TYPE 4u /* dynamic type not in the address map */
struct gep_addr {
  gep_u64 type;   /* dynamic type; 0 when nil or the itab was unreadable */
  gep_u64 data;   /* the interface's data word */
  gep_s64 port;
  gep_u64 ip_len; /* len(IP) in the target; min(ip_len, GEP_MAX_IP) copied */
  gep_u8 ip[GEP_MAX_IP];
  gep_u8 field;   /* index into the layout's addr_off */
  gep_u8 kind;    /* gep_addr_kind from the address map */
  gep_u8 n_str;   /* gep_str records following (field: index in str_off) */
  gep_u8 flags;
  gep_u32 pad;
};

/* Per-CPU counters map (array of u64, one slot per counter). The DROP_*
 * counters lose whole events; the others lose parts of events. */
enum gep_counter {
  GEP_CTR_HITS = 0,        /* program invocations */
  GEP_CTR_EVENTS,          /* records written to the ring buffer */
  GEP_CTR_NIL,             /* nil interface at the site: nothing to record */
  GEP_CTR_FOREIGN,         /* hit by another process: ignored */
  GEP_CTR_NOT_HERE,        /* checked site reached without its itab: no creation */
  GEP_CTR_DROP_RINGBUF,    /* ring buffer full */
  GEP_CTR_DROP_BUSY,       /* every scratch entry of the CPU in use (preempted handlers) */
  GEP_CTR_DROP_NO_SCRATCH,
  GEP_CTR_DROP_ROOT_READ,  /* interface words unreadable at the site */
  GEP_CTR_DROP_NO_SITE,    /* CONST location without a site map entry */
  GEP_CTR_TYPE_READ,       /* itab -> type read failed */
  GEP_CTR_VALUE_READ,
  GEP_CTR_FIELD_READ,      /* string/error/slice header read failed */
  GEP_CTR_STR_READ,        /* string bytes read failed */
  GEP_CTR_STR_TRUNC,       /* string longer than GEP_MAX_STR */
  GEP_CTR_GOID_READ,
  GEP_CTR_STACK_FAILED,
  GEP_CTR_UNKNOWN_TYPE,    /* link type absent from the layout map */
  GEP_CTR_CHAIN_DEPTH,     /* links not followed: max chain depth */
  GEP_CTR_CHAIN_WIDTH,     /* []error elements beyond GEP_MAX_SLICE_ELEMS */
  GEP_CTR_CHAIN_LINKS,     /* links dropped at GEP_MAX_LINKS / stack full */
  GEP_CTR_EVENT_TRUNC,     /* record full: rest of the chain dropped */
  GEP_CTR_ADDR_READ,       /* address interface, itab, IP, Port or string header unreadable */
  GEP_CTR_ADDR_UNKNOWN,    /* address of a type not in the address map */
  GEP_CTR_LABELS_READ,     /* goroutine label storage or a label unreadable */
  GEP_CTR_LABELS_CUT,      /* labels beyond GEP_MAX_LABELS (or a map too big) */
  GEP_CTR_STALE_LINK,      /* hit through a link being replaced: counted by the other */
  GEP_CTR__COUNT,
};

#endif /* GOERRPROF_BPF_ERRORS_ABI_H_ */
