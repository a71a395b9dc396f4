// The kernel memory error sessions of many processes (the agent, a
// `record -- COMMAND`) can share: the ring buffer (8 MiB by default) and
// the per-CPU scratch space (two 34 KiB entries per CPU), and the error
// programs replicas of one executable share (FindProgram). One epoll fd
// serves all. Each record carries its session's id; the ring hands a
// record to its session to decode, then to the caller.
// Sharing the scratch is safe: a program takes a free entry of its CPU's
// with a busy flag, and drops (counted, DROP_BUSY) what finds both taken.
// With sleepable probes (6.0+) a probe waiting on a page fault, or
// preempted (7.x kernels preempt lazily), holds its entry meanwhile.
//
// Not thread-safe: Register, Unregister, Poll and Drain run on one thread.
// A session is unregistered before it may be destroyed elsewhere.
#ifndef GOERRPROF_SESSION_SHARED_MAPS_H_
#define GOERRPROF_SESSION_SHARED_MAPS_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "events/captured_error.h"
#include "session/lifecycle.h"

namespace goerrprof::profiler {

class BpfSession;
class ErrorProgram;

class SharedEventMaps {
 public:
  // A ring of `bytes` (rounded up to a power of two pages), and a scratch
  // entry per possible CPU.
  static absl::StatusOr<std::unique_ptr<SharedEventMaps>> Create(uint32_t bytes);
  ~SharedEventMaps();
  SharedEventMaps(const SharedEventMaps&) = delete;
  SharedEventMaps& operator=(const SharedEventMaps&) = delete;

  int map_fd() const { return map_fd_; }
  uint32_t bytes() const { return bytes_; }
  int scratch_fd() const { return scratch_fd_; }

  // The id a new session stamps on its records (never 0, never reused).
  uint32_t NewId() { return ++last_id_; }
  void Register(uint32_t id, BpfSession* session) { sessions_[id] = session; }
  void Unregister(uint32_t id) { sessions_.erase(id); }

  // Error programs shared by replicas (BpfSession's share key): the one
  // under `key` while any session holds it, else null.
  std::shared_ptr<ErrorProgram> FindProgram(const std::string& key);
  void KeepProgram(const std::string& key, const std::shared_ptr<ErrorProgram>& program);

  using Deliver = absl::FunctionRef<void(BpfSession&, const CapturedError&)>;
  // Waits up to timeout_ms (0: not at all) for records, or for `also_fd`
  // (>= 0) to become readable, then delivers the records ready: at most
  // kBatch per live session (`sessions`) and kBatchNs of reading, so a
  // caller's loop goes on while events come faster than it reads them,
  // and N processes are read as fast as N rings were. Returns how many.
  absl::StatusOr<int> Poll(int timeout_ms, int also_fd, size_t sessions, Deliver deliver);
  // Delivers every record that was in the ring when called (for a session
  // about to close): bounded by what the ring can hold, so producers that
  // keep writing cannot keep it here. A record another process has
  // reserved but not yet committed stops the reading; it is waited for a
  // little (up to kCommitWaitMs), then what is behind it is left (and
  // counted as an orphan if its session has gone).
  absl::StatusOr<int> Drain(Deliver deliver);
  static constexpr int kCommitWaitMs = 20;
  static constexpr uint32_t kBatch = 4096;
  static constexpr int64_t kBatchNs = 4000000;  // a poll reads at most this long

  // The ring position every record reserved so far ends at or before.
  uint64_t reserved() const { return __atomic_load_n(producer_pos_, __ATOMIC_ACQUIRE); }
  // Whether every record up to `pos` has been read.
  bool ReadPast(uint64_t pos) const { return __atomic_load_n(consumer_pos_, __ATOMIC_ACQUIRE) >= pos; }

  // Records of sessions no longer registered (their probes were still
  // attached after the last drain): lost, and counted.
  uint64_t orphans() const { return orphans_; }
  // Records too short to name a session (counted as decode errors).
  uint64_t malformed() const { return malformed_; }

 private:
  SharedEventMaps() = default;
  static int OnSample(void* ctx, void* data, size_t size);

  int map_fd_ = -1;
  uint32_t bytes_ = 0;
  int scratch_fd_ = -1;
  // The ring's position pages, mapped read-only: how far records were
  // reserved (producer) and read (consumer).
  const volatile uint64_t* consumer_pos_ = nullptr;
  const volatile uint64_t* producer_pos_ = nullptr;
  EventRing ring_;
  uint32_t last_id_ = 0;
  absl::flat_hash_map<uint32_t, BpfSession*> sessions_;
  absl::flat_hash_map<std::string, std::weak_ptr<ErrorProgram>> programs_;
  // Set for the span of one Consume.
  Deliver* deliver_ = nullptr;
  uint64_t limit_ = 0, consumed_ = 0, delivered_ = 0;
  bool timed_ = false;        // in Poll: bounded by kBatchNs too
  int64_t batch_end_ns_ = 0;
  uint64_t orphans_ = 0, malformed_ = 0;
};

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_SESSION_SHARED_MAPS_H_
