#include "session/shared_maps.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/clock.h"
#include "base/errno.h"
#include "base/status_macros.h"
#include "bpf/errors.skel.h"
#include "bpf/errors_abi.h"
#include "session/bpf_session.h"
#include "session/uprobe_attach.h"

namespace goerrprof::profiler {

absl::StatusOr<std::unique_ptr<SharedEventMaps>> SharedEventMaps::Create(uint32_t bytes) {
  std::unique_ptr<SharedEventMaps> r(new SharedEventMaps());
  r->bytes_ = RoundUpPow2(bytes, static_cast<uint64_t>(sysconf(_SC_PAGESIZE)));
  r->map_fd_ = bpf_map_create(BPF_MAP_TYPE_RINGBUF, "gep_events", 0, 0, r->bytes_, nullptr);
  if (r->map_fd_ < 0) {
    return absl::InternalError(
        absl::StrCat("cannot create the event ring (", r->bytes_, " bytes): ", Errno(errno)));
  }
  RETURN_IF_ERROR(r->ring_.OpenFd(r->map_fd_, &SharedEventMaps::OnSample, r.get()));
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  void* cons = mmap(nullptr, page, PROT_READ, MAP_SHARED, r->map_fd_, 0);
  void* prod = mmap(nullptr, page, PROT_READ, MAP_SHARED, r->map_fd_, static_cast<off_t>(page));
  if (cons == MAP_FAILED || prod == MAP_FAILED) {
    if (cons != MAP_FAILED) munmap(cons, page);
    if (prod != MAP_FAILED) munmap(prod, page);
    return absl::InternalError(absl::StrCat("cannot map the event ring's positions: ", Errno(errno)));
  }
  r->consumer_pos_ = static_cast<const volatile uint64_t*>(cons);
  r->producer_pos_ = static_cast<const volatile uint64_t*>(prod);
  // The scratch's shape is the program's own: read from the object.
  errors_bpf* skel = errors_bpf__open();
  if (!skel) return absl::InternalError(absl::StrCat("cannot open the BPF object: ", Errno(errno)));
  const uint32_t value = bpf_map__value_size(skel->maps.scratch);
  errors_bpf__destroy(skel);
  const int ncpus = libbpf_num_possible_cpus();
  if (ncpus <= 0) return absl::InternalError("cannot count possible CPUs");
  r->scratch_fd_ = bpf_map_create(BPF_MAP_TYPE_ARRAY, "gep_scratch", sizeof(uint32_t), value,
                                  static_cast<uint32_t>(ncpus) * GEP_SCRATCH_SLOTS, nullptr);
  if (r->scratch_fd_ < 0) {
    return absl::InternalError(absl::StrCat("cannot create the scratch map: ", Errno(errno)));
  }
  return r;
}

SharedEventMaps::~SharedEventMaps() {
  ring_.Close();
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  if (consumer_pos_) munmap(const_cast<uint64_t*>(consumer_pos_), page);
  if (producer_pos_) munmap(const_cast<uint64_t*>(producer_pos_), page);
  if (map_fd_ >= 0) close(map_fd_);
  if (scratch_fd_ >= 0) close(scratch_fd_);
}

absl::StatusOr<int> SharedEventMaps::Poll(int timeout_ms, int also_fd, size_t sessions,
                                           Deliver deliver) {
  deliver_ = &deliver;
  limit_ = kBatch * std::max<size_t>(1, sessions);
  consumed_ = delivered_ = 0;
  timed_ = true;
  absl::Status s = ring_.Wait(timeout_ms, also_fd).status();
  timed_ = false;
  deliver_ = nullptr;
  RETURN_IF_ERROR(s);
  return static_cast<int>(delivered_);
}

absl::StatusOr<int> SharedEventMaps::Drain(Deliver deliver) {
  // The most records the ring can hold: every one there now is among them.
  const uint64_t most = bytes_ / (sizeof(gep_event) + 8) + 1;
  // Every record reserved before now ends at or below this position.
  const uint64_t reserved = __atomic_load_n(producer_pos_, __ATOMIC_ACQUIRE);
  deliver_ = &deliver;
  limit_ = most;
  consumed_ = delivered_ = 0;
  absl::Status s = ring_.Drain();
  // Stopped short of them: one not yet committed (its writer, a sleepable
  // probe, may be preempted). Waited for briefly, polling the position.
  for (int waited_us = 0; s.ok() && consumed_ < limit_ && waited_us < kCommitWaitMs * 1000 &&
                          __atomic_load_n(consumer_pos_, __ATOMIC_ACQUIRE) < reserved;
       waited_us += 200) {
    usleep(200);
    s = ring_.Drain();
  }
  deliver_ = nullptr;
  RETURN_IF_ERROR(s);
  return static_cast<int>(delivered_);
}

int SharedEventMaps::OnSample(void* ctx, void* data, size_t size) {
  auto* self = static_cast<SharedEventMaps*>(ctx);
  uint32_t id = 0;
  if (size >= sizeof(gep_event)) {
    std::memcpy(&id, static_cast<const uint8_t*>(data) + offsetof(gep_event, session), sizeof(id));
  }
  auto it = self->sessions_.find(id);
  CapturedError ev;
  if (size < sizeof(gep_event)) {
    ++self->malformed_;
  } else if (it == self->sessions_.end()) {
    ++self->orphans_;
  } else if (it->second->Decode(static_cast<const uint8_t*>(data), size, &ev)) {
    ++self->delivered_;
    if (self->deliver_) (*self->deliver_)(*it->second, ev);
  }
  // Every record counts towards the limit, delivered or not. A poll (not
  // a drain) also ends after kBatchNs of reading, so the caller's loop
  // (the overhead budget's tick) runs on time when records are slow.
  if (self->consumed_ == 0 && self->timed_) self->batch_end_ns_ = MonotonicNs() + kBatchNs;
  ++self->consumed_;
  if (self->consumed_ >= self->limit_) return kPauseDrain;
  if (self->timed_ && self->consumed_ % 64 == 0 && MonotonicNs() >= self->batch_end_ns_) {
    return kPauseDrain;
  }
  return 0;
}

std::shared_ptr<ErrorProgram> SharedEventMaps::FindProgram(const std::string& key) {
  auto it = programs_.find(key);
  if (it == programs_.end()) return nullptr;
  std::shared_ptr<ErrorProgram> p = it->second.lock();
  if (!p) programs_.erase(it);  // its last session is gone
  return p;
}

void SharedEventMaps::KeepProgram(const std::string& key,
                                  const std::shared_ptr<ErrorProgram>& program) {
  // Forget those no session holds any more (a churn of executables).
  absl::erase_if(programs_, [](const auto& kv) { return kv.second.expired(); });
  programs_[key] = program;
}

}  // namespace goerrprof::profiler
