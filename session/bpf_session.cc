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
            bpf_map__set_max_entries(skel->maps.targets, std::max<size_t>(1, load.n_targets)) == 0 &&
            bpf_map__set_max_entries(skel->maps.scratch, ncpus * GEP_SCRATCH_SLOTS) == 0 &&
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
  Leave();  // first: nothing new is recorded for this process
  ReleaseRing();
  // Its own program: links off before the ring goes. A shared one goes
  // with its last member.
  if (program_ && !program_->shared()) program_->RemoveLinks();
  ring_.Close();
  program_.reset();
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

  ErrorProgram::Member me;
  me.who = this;
  me.bias = target_.load_bias();
  // The target as its threads' BPF sees it (inside a container: its PID namespace).
  ASSIGN_OR_RETURN(me.ns, PidNamespaceOf(target_.pid()));
  if (config.shared_maps) {
    shared_ = config.shared_maps;
    session_id_ = shared_->NewId();
    me.session = session_id_;
    // Registered before any probe can record for it.
    shared_->Register(session_id_, this);
  }
  auto t0 = std::chrono::steady_clock::now();
  bool joined = false;
  // One shared program per file uprobes attach to (file_key: containers
  // of one image may share the file): its unfiltered links trap every
  // process running it, so a second one would run for all of them too,
  // and its budget's detaches would not stop the other's traps. A PIE
  // file's processes each run it at their own bias, which the program
  // takes from their entry. Members are known by their pid in goerrprof's
  // namespace, which the program can read when that is the initial one
  // (BPF's plain tgid) or the member's own.
  if (config.shared_maps && config.share_program && !target_.file_key().empty()) {
    absl::StatusOr<PidNamespaceId> own = OwnPidNamespace();
    if (own.ok() && (own->ino == 0 || (me.ns.dev == own->dev && me.ns.ino == own->ino))) {
      ErrorProgram::Member member = me;
      member.ns = *own;
      member.ns.pid = static_cast<uint32_t>(target_.pid());
      ASSIGN_OR_RETURN(program_, JoinShared(config, *elf, target_.file_key(), member, &joined));
    }
  }
  if (!program_) {
    ASSIGN_OR_RETURN(program_, ErrorProgram::Create(config, target_, *elf, false, me));
  }
  if (!config.shared_maps) {
    RETURN_IF_ERROR(ring_.Open(program_->events_map(), &BpfSession::OnSample, this));
  }
  const auto took = std::chrono::duration_cast<std::chrono::nanoseconds>(
      std::chrono::steady_clock::now() - t0);
  stats_.load = joined ? std::chrono::nanoseconds(0) : program_->load_time();
  stats_.attach = took - stats_.load;
  stats_.probes = config.probes.size();
  stats_.multi = program_->multi();
  stats_.fields_dropped = program_->fields_dropped();
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<ErrorProgram>> BpfSession::JoinShared(
    const SessionConfig& config, const symbolizer::ElfFile& elf, const std::string& key,
    const ErrorProgram::Member& me, bool* joined) {
  if (std::shared_ptr<ErrorProgram> p = shared_->FindProgram(key)) {
    absl::Status added = p->AddMember(me);
    if (added.ok()) {
      *joined = true;
      return p;
    }
    if (!absl::IsResourceExhausted(added)) return added;
    return nullptr;  // full: one of its own
  }
  ASSIGN_OR_RETURN(std::shared_ptr<ErrorProgram> p,
                   ErrorProgram::Create(config, target_, elf, true, me));
  shared_->KeepProgram(key, p);
  return p;
}

void BpfSession::Leave() {
  if (left_ || !program_) return;
  left_ = true;
  left_counters_ = program_->RemoveMember(this);
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
  if (!DecodeErrorRecord(data, size, program_->names(), target_.load_bias(), ev)) {
    ++decode_errors_;
    return false;
  }
  if (auto it = program_->probe_info().find(ev->ip); it != program_->probe_info().end()) {
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
  if (left_) {
    c.bpf = left_counters_;
  } else if (program_) {
    c.bpf = program_->Counters(this);
  }
  return c;
}

absl::Status BpfSession::SetSiteProbed(uint64_t site, bool probed) {
  if (!program_) return absl::FailedPreconditionError("no program loaded");
  return program_->SetSiteProbed(site, probed);
}

std::pair<uint64_t, uint64_t> BpfSession::ProgramRunTime() const {
  return program_ ? program_->ProgramRunTime() : std::pair<uint64_t, uint64_t>{0, 0};
}

std::vector<uint32_t> BpfSession::prog_ids() const {
  return program_ ? program_->prog_ids() : std::vector<uint32_t>{};
}

absl::StatusOr<double> BpfSession::MeasureTrapNs(int calls) {
  if (!program_) return absl::FailedPreconditionError("no program loaded");
  return program_->MeasureTrapNs(calls);
}

}  // namespace goerrprof::profiler
