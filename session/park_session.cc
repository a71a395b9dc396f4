#include "session/uprobe_attach.h"
#include "base/clock.h"
#include "session/park_session.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "bpf/goroutines.skel.h"
#include "session/kernel_features.h"
#include "session/libbpf_log.h"
#include "session/pid_namespace.h"
#include "base/status_macros.h"
#include "symbolizer/load_bias.h"
#include "base/errno.h"

namespace goerrprof::profiler {
namespace {



constexpr absl::string_view kCounterNames[GPK_CTR__COUNT] = {
    "park_hits",    "resume_hits",   "ready_hits", "bpf_records", "foreign",
    "drop_ringbuf", "drop_busy",     "g_read",     "stack_read",  "stack_cut",
    "parked_map_full", "untracked_resumes",
};

}  // namespace

absl::string_view ParkCounterName(gpk_counter c) {
  return c < GPK_CTR__COUNT ? kCounterNames[c] : "unknown";
}

uint64_t ParkCounters::dropped() const {
  return bpf[GPK_CTR_DROP_RINGBUF] + bpf[GPK_CTR_DROP_BUSY] + decode_errors;
}

std::vector<std::pair<std::string, uint64_t>> ParkCounters::Named() const {
  std::vector<std::pair<std::string, uint64_t>> out;
  for (int i = 0; i < GPK_CTR__COUNT; ++i) {
    if (bpf[i]) out.emplace_back(std::string(kCounterNames[i]), bpf[i]);
  }
  auto add = [&](const char* name, uint64_t v) {
    if (v) out.emplace_back(name, v);
  };
  add("records", records);
  add("decode_errors", decode_errors);
  add("lost_parks", totals.lost_parks);
  add("lost_resumes", totals.lost_resumes);
  add("orphan_wakeups", totals.orphan_wakeups);
  add("unknown_goid", totals.unknown_goid);
  return out;
}

absl::StatusOr<std::unique_ptr<ParkTracer>> ParkTracer::Start(pid_t pid,
                                                              const symbolizer::GoBinary& binary,
                                                              const ParkOptions& options) {
  std::unique_ptr<ParkTracer> t(new ParkTracer(binary));
  // On failure `t` is destroyed here, removing whatever was attached.
  RETURN_IF_ERROR(t->Init(pid, options));
  return t;
}

ParkTracer::~ParkTracer() { Detach(); }

void ParkTracer::Detach() {
  links_.Remove();  // first: nothing new arrives
  ring_.Close();
  if (skel_) goroutines_bpf__destroy(skel_);
  skel_ = nullptr;
}

absl::Status ParkTracer::Init(pid_t pid, const ParkOptions& options) {
  if (pid <= 0) return absl::InvalidArgumentError(absl::StrCat("bad pid ", pid));
  ASSIGN_OR_RETURN(goabi::GLayout layout, goabi::GLayoutFor(binary_.version()));
  if (layout.goid < 0 || layout.waitreason < 0 || layout.m_curg < 0 || layout.sched_bp < 0) {
    return absl::UnimplementedError(
        absl::StrCat("no runtime.g layout for ", binary_.version().ToString()));
  }
  ASSIGN_OR_RETURN(probes_, FindParkProbes(binary_));

  // The executable must be the binary planned: probe addresses are its own.
  ASSIGN_OR_RETURN(target_, ProbeTarget::Open(pid, binary_.elf().path()));
  RETURN_IF_ERROR(target_.FindLoadBias(binary_.elf()));
  std::vector<uint64_t> offsets;
  for (uint64_t vaddr : {probes_.park_call, probes_.resume, probes_.ready}) {
    ASSIGN_OR_RETURN(uint64_t off, binary_.elf().FileOffsetOf(vaddr));
    offsets.push_back(off);
  }

  auto load_and_attach = [&](bool multi) {
    absl::Status st = Load(options, layout, multi);
    if (!st.ok()) return st;
    start_mono_ns_ = MonotonicNs();
    const uint64_t cookies[3] = {GPK_ROLE_PARK, GPK_ROLE_RESUME, GPK_ROLE_READY};
    return links_.Attach(skel_->progs.gpk_on_event, target_, offsets, cookies, multi_);
  };
  // Probed: a per-thread pid filter (first uprobe_multi kernels) would lose parks.
  absl::Status loaded = load_and_attach(options.uprobe_multi && UprobeMultiSupported());
  if (!loaded.ok() && options.uprobe_multi && absl::IsUnimplemented(loaded)) {
    Detach();  // kernel without uprobe_multi: one perf uprobe each
    loaded = load_and_attach(false);
  }
  RETURN_IF_ERROR(loaded);
  start_wall_ns_ = WallNs();
  agg_ = std::make_unique<ParkAggregator>(binary_, layout, start_mono_ns_);
  return absl::OkStatus();
}

absl::Status ConfigureParkProbe(goroutines_bpf* skel, const goabi::GLayout& layout,
                                const ParkOptions& options, const PidNamespaceId& target,
                                bool multi) {
  auto* ro = skel->rodata;
  ro->target_tgid = target.pid;
  ro->pidns_dev = target.dev;
  ro->pidns_ino = target.ino;
  ro->g_source = layout.g_in_r14 ? GPK_G_R14 : GPK_G_TLS;
  ro->tls_g_offset = layout.tls_g_offset;
  ro->goid_off = static_cast<uint32_t>(layout.goid);
  ro->waitreason_off = static_cast<uint32_t>(layout.waitreason);
  ro->g_m_off = static_cast<uint32_t>(layout.m);
  ro->m_curg_off = static_cast<uint32_t>(layout.m_curg);
  ro->sched_bp_off = static_cast<uint32_t>(layout.sched_bp);
  ro->ready_arg_on_stack = layout.g_in_r14 ? 0 : 1;  // register ABI came with R14
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  const uint32_t ring_bytes = RoundUpPow2(options.ringbuf_bytes, page);
  ro->wakeup_bytes =
      static_cast<uint32_t>(std::clamp(options.wakeup_fraction, 0.0, 1.0) * ring_bytes);
  if (bpf_map__set_max_entries(skel->maps.events, ring_bytes) != 0 ||
      bpf_map__set_max_entries(skel->maps.parked, std::max<uint32_t>(options.max_parked, 1)) !=
          0) {
    return absl::InternalError(absl::StrCat("cannot size BPF maps: ", Errno(errno)));
  }
  if (multi && bpf_program__set_expected_attach_type(
                   skel->progs.gpk_on_event, static_cast<bpf_attach_type>(kTraceUprobeMulti)) !=
                   0) {
    return absl::InternalError(absl::StrCat("cannot set attach type: ", Errno(errno)));
  }
  return absl::OkStatus();
}

absl::Status ParkTracer::Load(const ParkOptions& options, const goabi::GLayout& layout,
                              bool multi) {
  ScopedLibbpfLog log;  // the verifier's reason, should the load fail
  skel_ = goroutines_bpf__open();
  if (!skel_) return absl::InternalError(absl::StrCat("cannot open the BPF object: ", Errno(errno)));
  // The target as its threads' BPF sees it (inside a container: its PID namespace).
  ASSIGN_OR_RETURN(PidNamespaceId ns, PidNamespaceOf(target_.pid()));
  RETURN_IF_ERROR(ConfigureParkProbe(skel_, layout, options, ns, multi));
  if (int err = goroutines_bpf__load(skel_); err != 0) {
    if (multi && -err == EINVAL) return absl::UnimplementedError("no uprobe_multi programs");
    return LoadFailure(err, "park probes failed to load", log.Tail(8));
  }
  multi_ = multi;
  return ring_.Open(skel_->maps.events, &ParkTracer::OnSample, this);
}

int ParkTracer::fd() const { return ring_.fd(); }

absl::StatusOr<int> ParkTracer::Poll(int timeout_ms) {
  uint64_t before = records_;
  RETURN_IF_ERROR(ring_.Wait(timeout_ms).status());
  return static_cast<int>(records_ - before);
}

int ParkTracer::OnSample(void* ctx, void* data, size_t size) {
  auto* self = static_cast<ParkTracer*>(ctx);
  gpk_event h;
  if (size < sizeof(h)) {
    ++self->decode_errors_;
    return 0;
  }
  std::memcpy(&h, data, sizeof(h));
  if (h.version != GPK_EVENT_VERSION || h.n_stack > GPK_MAX_STACK ||
      sizeof(h) + h.n_stack * 8ull > size || h.kind < GPK_EV_PARK || h.kind > GPK_EV_READY) {
    ++self->decode_errors_;
    return 0;
  }
  ParkRecord r;
  r.kind = h.kind == GPK_EV_PARK     ? ParkRecord::kPark
           : h.kind == GPK_EV_RESUME ? ParkRecord::kResume
                                     : ParkRecord::kReady;
  r.ts_ns = h.ts_ns;
  r.goid = h.goid;
  r.other = h.other;
  r.wait_reason = h.wait_reason;
  r.untracked = (h.flags & GPK_F_UNTRACKED) != 0;
  r.all_returns =
      r.kind == ParkRecord::kReady && !(h.flags & (GPK_F_WAKER_SELF | GPK_F_WAKER_SCHED));
  r.stack.resize(h.n_stack);
  const uint8_t* p = static_cast<const uint8_t*>(data) + sizeof(h);
  for (uint16_t i = 0; i < h.n_stack; ++i) {
    uint64_t pc;
    std::memcpy(&pc, p + 8 * i, 8);
    r.stack[i] = pc - self->target_.load_bias();
  }
  ++self->records_;
  self->agg_->Add(r);
  return 0;
}

void ParkTracer::Stop() {
  if (stopped_) return;
  stopped_ = true;
  stop_mono_ns_ = MonotonicNs();
  // Detach first so nothing new arrives, then drain what is in the ring.
  links_.Remove();
  (void)ring_.Drain();  // a failed read shows in the counters, not here
  final_bpf_ = counters().bpf;
  agg_->Close(stop_mono_ns_);
  Detach();
}

ParkCounters ParkTracer::counters() const {
  ParkCounters c;
  c.records = records_;
  c.decode_errors = decode_errors_;
  if (agg_) c.totals = agg_->totals();
  if (!skel_) {
    c.bpf = final_bpf_;
    return c;
  }
  for (uint32_t k = 0; k < GPK_CTR__COUNT; ++k) c.bpf[k] = SumPerCpu(skel_->maps.counters, k);
  return c;
}

std::string ParkTracer::Summary() const {
  ParkCounters c = counters();
  uint64_t blocked = 0;
  if (agg_) {
    for (const auto& [key, v] : agg_->parks()) blocked += v.blocked_ns;
  }
  std::string out = absl::StrCat(
      "parks=", c.totals.parks, " blocked=",
      absl::FormatDuration(absl::Nanoseconds(static_cast<int64_t>(blocked))),
      " still_parked=", c.totals.still_parked, " wakeups=", c.totals.wakeups,
      " drops=", c.dropped());
  uint64_t unpaired = c.totals.lost_parks + c.totals.lost_resumes + c.totals.unknown_goid;
  if (unpaired) absl::StrAppend(&out, " unpaired=", unpaired);
  return out;
}

std::vector<uint32_t> ParkTracer::prog_ids() const {
  std::vector<uint32_t> ids;
  if (uint32_t id = skel_ ? ProgramId(skel_->progs.gpk_on_event) : 0) ids.push_back(id);
  return ids;
}

absl::StatusOr<perftools::profiles::Profile> ParkTracer::BuildProfile(ParkProfileInfo info) const {
  if (!stopped_) return absl::FailedPreconditionError("BuildProfile before Stop");
  if (info.counters.empty()) info.counters = counters().Named();
  if (info.time_nanos == 0) info.time_nanos = start_wall_ns_;
  if (info.duration_nanos == 0) {
    info.duration_nanos = static_cast<int64_t>(stop_mono_ns_ - start_mono_ns_);
  }
  return BuildParkProfile(*agg_, binary_, info);
}

absl::Status ParkTracer::WriteProfile(const std::string& path, ParkProfileInfo info) const {
  ASSIGN_OR_RETURN(perftools::profiles::Profile p, BuildProfile(std::move(info)));
  return WriteParkProfile(p, path);
}

std::string ParkTracer::OverheadWarning(double per_park_us) {
  std::string cost = per_park_us > 0 ? absl::StrFormat("about %.1f us", per_park_us)
                                     : std::string("a few microseconds");
  return absl::StrCat(
      "goerrprof: warning: --goroutines traces every goroutine park, wakeup and resume "
      "with uprobes (three traps per blocking operation): measured ",
      cost,
      " per park (bench/park); a program that blocks 10000 times a second loses about ",
      absl::StrFormat("%.0f%%", per_park_us > 0 ? per_park_us * 1e4 / 1e6 * 100 : 5.0),
      " of a CPU to it, and channel ping-pong style code slows down many times");
}

}  // namespace goerrprof::profiler
