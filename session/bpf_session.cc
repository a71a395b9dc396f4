#include "session/bpf_session.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "bpf/errors.skel.h"
#include "session/kernel_features.h"
#include "session/libbpf_log.h"
#include "session/pid_namespace.h"
#include "session/shared_maps.h"
#include "session/uprobe_attach.h"
#include "symbolizer/go_binary.h"
#include "base/clock.h"
#include "base/status_macros.h"
#include "symbolizer/load_bias.h"
#include "base/errno.h"
#include "base/read_file.h"

namespace goerrprof::profiler {
namespace {

// The plan's probe kinds are the events' kinds.
static_assert(static_cast<int>(ProbeKind::kCreation) == static_cast<int>(EventKind::kCreation) &&
              static_cast<int>(ProbeKind::kPanic) == static_cast<int>(EventKind::kPanic) &&
              static_cast<int>(ProbeKind::kFatalPanic) ==
                  static_cast<int>(EventKind::kFatalPanic));

constexpr char kBtfPath[] = "/sys/kernel/btf/vmlinux";

}  // namespace

void ApplyGLayout(const goabi::GLayout& g, SessionConfig* c) {
  c->g_source = g.g_in_r14 ? GSource::kR14 : GSource::kTls;
  c->tls_g_offset = g.tls_g_offset;
  c->goid_offset = g.goid;
  c->gopc_offset = g.gopc;
  c->labels_offset = g.labels;
  c->label_storage = g.label_storage;
}

absl::Status ConfigureErrorProbe(errors_bpf* skel, const SessionConfig& config,
                                 const ErrorProbeLoad& load) {
  skel->rodata->target_tgid = load.target.pid;
  skel->rodata->session_id = load.session_id;
  skel->rodata->pidns_dev = load.target.dev;
  skel->rodata->pidns_ino = load.target.ino;
  skel->rodata->max_chain = std::clamp<uint32_t>(config.max_chain, 1, GEP_MAX_CHAIN);
  skel->rodata->goid_offset = config.goid_offset;
  skel->rodata->tls_g_offset = config.tls_g_offset;
  skel->rodata->g_source = config.goid_offset < 0             ? GEP_G_NONE
                           : config.g_source == GSource::kR14 ? GEP_G_R14
                           : config.g_source == GSource::kTls ? GEP_G_TLS
                                                              : GEP_G_NONE;
  skel->rodata->capture_stack = config.capture_stack ? 1 : 0;
  skel->rodata->gopc_offset = config.gopc_offset;
  skel->rodata->labels_offset = config.labels_offset;
  skel->rodata->label_storage = config.labels_offset < 0 ? GEP_LABELS_NONE
                                : config.label_storage == goabi::LabelStorage::kMapPointer
                                    ? GEP_LABELS_MAP
                                    : GEP_LABELS_SLICE;
  int ncpus = libbpf_num_possible_cpus();
  if (ncpus <= 0) return absl::InternalError("cannot count possible CPUs");
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  const uint32_t ring_bytes = RoundUpPow2(config.ringbuf_bytes, page);
  skel->rodata->wakeup_bytes =
      static_cast<uint32_t>(std::clamp(config.wakeup_fraction, 0.0, 1.0) * ring_bytes);
  bool ok = bpf_map__set_max_entries(skel->maps.layouts,
                                     std::max<size_t>(1, load.n_layouts)) == 0 &&
            bpf_map__set_max_entries(skel->maps.addr_types,
                                     std::max<size_t>(1, load.n_addr_types)) == 0 &&
            bpf_map__set_max_entries(skel->maps.sites, std::max<size_t>(1, load.n_sites)) == 0 &&
            bpf_map__set_max_entries(skel->maps.link_gen, std::max<size_t>(1, load.n_probes)) == 0 &&
            bpf_map__set_max_entries(skel->maps.scratch, ncpus) == 0 &&
            bpf_map__set_max_entries(skel->maps.events, ring_bytes) == 0;
  if (!ok) return absl::InternalError(absl::StrCat("cannot size BPF maps: ", Errno(errno)));
  // Set either way: libbpf (1.1 too) adds BPF_F_SLEEPABLE itself to an
  // SEC("uprobe.s") program whatever its flags say, so only a plain
  // SEC("uprobe") program can be both.
  const bool sleepable = load.sleepable;
  skel->rodata->sleepable = sleepable ? 1 : 0;
  const uint32_t flags = bpf_program__flags(skel->progs.gep_on_error);
  if (bpf_program__set_flags(skel->progs.gep_on_error,
                             sleepable ? flags | BPF_F_SLEEPABLE
                                       : flags & ~static_cast<uint32_t>(BPF_F_SLEEPABLE)) != 0) {
    return absl::InternalError(absl::StrCat("cannot set the probe's flags: ", Errno(errno)));
  }
  if (load.multi &&
      bpf_program__set_expected_attach_type(skel->progs.gep_on_error,
                                            static_cast<bpf_attach_type>(kTraceUprobeMulti)) != 0) {
    return absl::InternalError(absl::StrCat("cannot set attach type: ", Errno(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<BpfSession>> BpfSession::Start(const SessionConfig& config) {
  std::unique_ptr<BpfSession> s(new BpfSession());
  // On failure `s` is destroyed here: the destructor is the one cleanup path.
  RETURN_IF_ERROR(s->Init(config));
  return s;
}

BpfSession::~BpfSession() {
  links_.Remove();  // first: nothing new arrives
  ReleaseRing();
  ring_.Close();
  if (skel_) errors_bpf__destroy(skel_);
}

absl::Status BpfSession::Init(const SessionConfig& config) {
  if (config.pid <= 0) return absl::InvalidArgumentError(absl::StrCat("bad pid ", config.pid));
  if (access(kBtfPath, R_OK) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "kernel BTF not available (", kBtfPath, ": ", Errno(errno),
        "); goerrprof needs a kernel built with CONFIG_DEBUG_INFO_BTF"));
  }
  ASSIGN_OR_RETURN(target_, ProbeTarget::Open(config.pid, config.executable));
  ASSIGN_OR_RETURN(std::unique_ptr<symbolizer::ElfFile> elf,
                   symbolizer::ElfFile::Open(config.executable.empty() ? target_.attach_path()
                                                                       : config.executable));
  RETURN_IF_ERROR(target_.FindLoadBias(*elf));
  const uint64_t bias = target_.load_bias();

  // Probe file offsets before loading anything, so bad input fails cheaply.
  std::vector<uint64_t> offsets;
  size_t n_sites = 0;
  for (const ProbeSpec& p : config.probes) {
    auto off = elf->FileOffsetOf(p.vaddr);
    if (!off.ok()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "probe address 0x%x is not in an executable segment of %s", p.vaddr, target_.exe_link()));
    }
    offsets.push_back(*off);
    // Probe addresses are unique in a plan; a clash would leave the leaf
    // ambiguous, so it falls back to the probe's own pc.
    ProbeInfo info{p.site, static_cast<EventKind>(p.kind)};
    site_probes_[p.site != 0 ? p.site : p.vaddr].push_back(offsets.size() - 1);
    if (!probe_info_.try_emplace(p.vaddr, info).second) probe_info_[p.vaddr].site = 0;
    if (GEP_LOC_KIND(GEP_COOKIE_TAB(p.cookie)) == GEP_LOC_CONST ||
        GEP_LOC_KIND(GEP_COOKIE_DATA(p.cookie)) == GEP_LOC_CONST ||
        (GEP_COOKIE_TAB(p.cookie) & GEP_LOC_F_CHECK)) {
      ++n_sites;
    }
  }

  if (config.shared_maps) session_id_ = config.shared_maps->NewId();
  auto t0 = std::chrono::steady_clock::now();
  // Chosen by probing: a uprobe_multi kernel whose pid filter is per thread
  // would load and attach fine, then miss every other thread's errors.
  absl::Status loaded = Load(config, n_sites, config.uprobe_multi && UprobeMultiSupported());
  if (!loaded.ok() && config.uprobe_multi && absl::IsUnimplemented(loaded)) {
    loaded = Load(config, n_sites, false);  // kernel before 6.6
  }
  RETURN_IF_ERROR(loaded);
  stats_.load = std::chrono::steady_clock::now() - t0;

  // Layouts, keyed by runtime type address.
  int layouts_fd = bpf_map__fd(skel_->maps.layouts);
  int addr_types_fd = bpf_map__fd(skel_->maps.addr_types);
  for (LayoutMapEntry& e : MapEntriesFor(config.layouts)) {
    uint64_t key = e.type_addr + bias;
    stats_.fields_dropped += e.fields_dropped;
    const void* value = e.is_addr ? static_cast<const void*>(&e.addr) : &e.type;
    if (bpf_map_update_elem(e.is_addr ? addr_types_fd : layouts_fd, &key, value, BPF_ANY) != 0) {
      return absl::InternalError(absl::StrCat("filling the ", e.is_addr ? "address" : "layout",
                                              " map: ", Errno(errno)));
    }
    TypeNames names{std::move(e.name), std::move(e.strings), std::move(e.addrs)};
    (e.is_addr ? names_.addr_types : names_.types)[key] = std::move(names);
  }
  int sites_fd = bpf_map__fd(skel_->maps.sites);
  for (const ProbeSpec& p : config.probes) {
    bool tconst = GEP_LOC_KIND(GEP_COOKIE_TAB(p.cookie)) == GEP_LOC_CONST;
    bool dconst = GEP_LOC_KIND(GEP_COOKIE_DATA(p.cookie)) == GEP_LOC_CONST;
    bool check = (GEP_COOKIE_TAB(p.cookie) & GEP_LOC_F_CHECK) != 0;
    if (!tconst && !dconst && !check) continue;
    uint64_t key = p.vaddr + bias;
    gep_site v = {tconst ? p.const_type + bias : 0, dconst ? p.const_data + bias : 0,
                  check ? p.check_tab + bias : 0};
    if (bpf_map_update_elem(sites_fd, &key, &v, BPF_ANY) != 0) {
      return absl::InternalError(absl::StrCat("filling the site map: ", Errno(errno)));
    }
  }

  if (config.shared_maps) {
    shared_ = config.shared_maps;
    shared_->Register(session_id_, this);
  } else {
    RETURN_IF_ERROR(ring_.Open(skel_->maps.events, &BpfSession::OnSample, this));
  }

  auto t1 = std::chrono::steady_clock::now();
  if (!config.probes.empty()) {
    std::vector<uint64_t> cookies;
    cookies.reserve(config.probes.size());
    for (const ProbeSpec& p : config.probes) cookies.push_back(p.cookie);
    std::vector<uint64_t> ips;
    ips.reserve(config.probes.size());
    for (const ProbeSpec& p : config.probes) ips.push_back(p.vaddr + bias);
    RETURN_IF_ERROR(links_.Attach(skel_->progs.gep_on_error, target_, offsets, cookies, ips,
                                  stats_.multi, bpf_map__fd(skel_->maps.link_gen)));
  }
  stats_.attach = std::chrono::steady_clock::now() - t1;
  stats_.probes = config.probes.size();
  return absl::OkStatus();
}

// Opens and loads the skeleton. Unimplemented when the kernel does not know
// uprobe_multi programs (the caller then retries without).
absl::Status BpfSession::Load(const SessionConfig& config, size_t n_sites, bool multi) {
  if (skel_) {
    errors_bpf__destroy(skel_);
    skel_ = nullptr;
  }
  ScopedLibbpfLog log;
  skel_ = errors_bpf__open();
  if (!skel_) {
    return absl::InternalError(absl::StrCat("cannot open the BPF object: ", Errno(errno), " ",
                                            log.Tail(2)));
  }
  ErrorProbeLoad load;
  // The target as its threads' BPF sees it (inside a container: its PID namespace).
  ASSIGN_OR_RETURN(load.target, PidNamespaceOf(target_.pid()));
  load.n_layouts = config.layouts.size();
  load.n_addr_types = 0;
  for (const ErrorLayout& l : config.layouts) load.n_addr_types += l.addr_type.has_value();
  load.n_sites = n_sites;
  load.n_probes = config.probes.size();
  load.multi = multi;
  load.session_id = session_id_;
  // Without sleepable uprobes (before 6.0) the same program loads plain.
  load.sleepable = config.sleepable && KernelSupports(KernelFeature::kSleepableUprobe);
  RETURN_IF_ERROR(ConfigureErrorProbe(skel_, config, load));
  if (config.shared_maps) {
    if (bpf_map__set_max_entries(skel_->maps.events, config.shared_maps->bytes()) != 0 ||
        bpf_map__reuse_fd(skel_->maps.events, config.shared_maps->map_fd()) != 0 ||
        bpf_map__reuse_fd(skel_->maps.scratch, config.shared_maps->scratch_fd()) != 0) {
      return absl::InternalError(absl::StrCat("cannot share the event maps: ", Errno(errno)));
    }
  }

  if (int err = errors_bpf__load(skel_); err != 0) {
    if (multi && -err == EINVAL && !UprobeMultiSupported()) {
      return absl::UnimplementedError("kernel without uprobe_multi");
    }
    return LoadFailure(err, "BPF program failed to load", log.Tail(8));
  }
  stats_.multi = multi;
  return absl::OkStatus();
}

bool BpfSession::target_exited() {
  if (!exited_ && target_.gone()) exited_ = true;
  return exited_;
}

absl::StatusOr<int> BpfSession::Poll(int timeout_ms,
                                     absl::FunctionRef<void(const CapturedError&)> callback) {
  callback_ = &callback;
  uint64_t before = delivered_;
  batch_ = 0;
  paused_ = false;
  // Once the target is gone only its last events are left: no waiting.
  absl::StatusOr<bool> gone =
      exited_ ? ring_.Wait(0) : ring_.Wait(timeout_ms, target_.pidfd());
  if (gone.ok() && *gone) exited_ = true;
  absl::Status drained = gone.status();
  // Gone: nothing more comes, so all of it now.
  while (drained.ok() && exited_ && paused_) {
    batch_ = 0;
    paused_ = false;
    drained = ring_.Drain();
  }
  callback_ = nullptr;
  RETURN_IF_ERROR(drained);
  return static_cast<int>(delivered_ - before);
}

absl::StatusOr<int> BpfSession::Flush(absl::FunctionRef<void(const CapturedError&)> callback) {
  callback_ = &callback;
  uint64_t before = delivered_;
  bounded_ = false;
  absl::Status drained = ring_.Drain();
  bounded_ = true;
  callback_ = nullptr;
  RETURN_IF_ERROR(drained);
  return static_cast<int>(delivered_ - before);
}

bool BpfSession::Decode(const uint8_t* data, size_t size, CapturedError* ev) {
  if (!DecodeErrorRecord(data, size, names_, target_.load_bias(), ev)) {
    ++decode_errors_;
    return false;
  }
  if (auto it = probe_info_.find(ev->ip); it != probe_info_.end()) {
    ev->site = it->second.site;
    ev->kind = it->second.kind;
  }
  ++delivered_;
  return true;
}

void BpfSession::ReleaseRing() {
  if (shared_) shared_->Unregister(session_id_);
  shared_ = nullptr;
}

int BpfSession::OnSample(void* ctx, void* data, size_t size) {
  auto* self = static_cast<BpfSession*>(ctx);
  CapturedError ev;
  if (!self->Decode(static_cast<const uint8_t*>(data), size, &ev)) return 0;
  if (self->callback_) (*self->callback_)(ev);
  if (!self->bounded_) return 0;
  // A batch ends at kPollBatch records or kPollBatchNs of reading, so the
  // caller's loop (the overhead budget's tick) runs on time even when each
  // record is slow to handle.
  if (self->batch_ == 0) self->batch_end_ns_ = MonotonicNs() + kPollBatchNs;
  ++self->batch_;
  if (self->batch_ >= kPollBatch || (self->batch_ % 64 == 0 && MonotonicNs() >= self->batch_end_ns_)) {
    self->paused_ = true;
    return kPauseDrain;
  }
  return 0;
}

SessionCounters BpfSession::Counters() const {
  SessionCounters c;
  c.decode_errors = decode_errors_;
  c.delivered = delivered_;
  if (!skel_) return c;
  for (uint32_t k = 0; k < GEP_CTR__COUNT; ++k) c.bpf[k] = SumPerCpu(skel_->maps.counters, k);
  c.bpf[GEP_CTR_HITS] -= std::min(c.bpf[GEP_CTR_HITS], calibration_hits_);
  c.bpf[GEP_CTR_FOREIGN] -= std::min(c.bpf[GEP_CTR_FOREIGN], calibration_hits_);
  return c;
}

absl::Status BpfSession::SetSiteProbed(uint64_t site, bool probed) {
  auto it = site_probes_.find(site);
  if (it == site_probes_.end()) {
    return absl::NotFoundError(absl::StrFormat("no probe serves site 0x%x", site));
  }
  return probed ? links_.Reattach(it->second) : links_.Detach(it->second);
}

std::pair<uint64_t, uint64_t> BpfSession::ProgramRunTime() const {
  if (!skel_) return {0, 0};
  bpf_prog_info info;
  std::memset(&info, 0, sizeof(info));
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(bpf_program__fd(skel_->progs.gep_on_error), &info, &len) != 0) {
    return {0, 0};
  }
  return {info.run_time_ns, info.run_cnt};
}

std::vector<uint32_t> BpfSession::prog_ids() const {
  std::vector<uint32_t> ids;
  if (uint32_t id = skel_ ? ProgramId(skel_->progs.gep_on_error) : 0) ids.push_back(id);
  return ids;
}

}  // namespace goerrprof::profiler
