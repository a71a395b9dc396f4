#include "record/wait_sampler.h"

#include <errno.h>
#include <limits.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <utility>

#include "base/clock.h"
#include "absl/strings/str_cat.h"
#include "goroutines/goroutine_locate.h"
#include "goroutines/goroutine_snapshot.h"
#include "pprof/profile_file.h"
#include "symbolizer/load_bias.h"

namespace goerrprof::profiler {
namespace {

// Gone, or a zombie: /proc/PID/exe no longer resolves.
bool ProcessGone(pid_t pid) {
  char buf[PATH_MAX];
  return readlink(absl::StrCat("/proc/", pid, "/exe").c_str(), buf, sizeof(buf)) < 0 &&
         (errno == ENOENT || errno == ESRCH);
}

// runtime.allgs still all zeros: a process stopped at its exec (record --
// COMMAND) before the runtime made its first goroutine. Nothing waits yet.
bool NotStarted(pid_t pid, uint64_t allgs) {
  uint64_t hdr[3] = {1, 1, 1};
  iovec local = {hdr, sizeof(hdr)};
  iovec remote = {reinterpret_cast<void*>(allgs), sizeof(hdr)};
  return process_vm_readv(pid, &local, 1, &remote, 1, 0) == sizeof(hdr) && hdr[0] == 0 &&
         hdr[1] == 0 && hdr[2] == 0;
}

}  // namespace

WaitSampler::WaitSampler(pid_t pid, const symbolizer::GoBinary& binary,
                         const WaitSamplerOptions& options)
    : pid_(pid),
      binary_(binary),
      options_(options),
      agg_(WaitSampleAggregator::Options{1000000000 / options.hz, options.max_keys}) {}

absl::StatusOr<std::unique_ptr<WaitSampler>> WaitSampler::Start(
    pid_t pid, const symbolizer::GoBinary& binary, const WaitSamplerOptions& options) {
  if (options.hz < 1 || options.hz > 1000) {
    return absl::InvalidArgumentError(
        absl::StrCat("--hz must be between 1 and 1000, not ", options.hz));
  }
  std::unique_ptr<WaitSampler> s(new WaitSampler(pid, binary, options));
  // Found once: each tick only reads the target.
  auto layout = goabi::GLayoutFor(binary.version());
  if (!layout.ok()) return layout.status();
  auto allgs = FindAllgs(binary);
  if (!allgs.ok()) return allgs.status();
  auto bias = symbolizer::LoadBias(pid, binary.elf());
  if (!bias.ok()) return bias.status();
  s->layout_ = *layout;
  s->allgs_ = *allgs + *bias;
  s->bias_ = *bias;
  s->start_wall_ns_ = WallNs();
  s->start_ = std::chrono::steady_clock::now();
  // The first snapshot before returning, not left to the thread: a target
  // resumed just after (record -- COMMAND) may exit before the thread ever
  // runs, and the profile must still hold the moment sampling began.
  SnapshotOptions first;
  first.threads = options.reader_threads;
  if (!s->TakeOne(first)) {
    std::lock_guard<std::mutex> lock(s->mu_);
    s->ended_ = true;
    s->stop_time_ = std::chrono::steady_clock::now();
    return s;
  }
  s->thread_ = std::thread([p = s.get()] { p->Run(); });
  return s;
}

WaitSampler::~WaitSampler() { Stop(); }

bool WaitSampler::TakeOne(const SnapshotOptions& snap_options) {
  auto snap = ReadSnapshot(pid_, nullptr, binary_, layout_, allgs_, bias_, snap_options);
  if (!snap.ok() && NotStarted(pid_, allgs_)) snap = Snapshot{};
  bool gone = !snap.ok() && ProcessGone(pid_);
  std::lock_guard<std::mutex> lock(mu_);
  if (snap.ok()) {
    agg_.Add(*snap);
  } else if (!gone) {
    agg_.AddFailure();  // a process that exited meanwhile is no failure
  }
  if (gone) gone_ = true;
  return !gone;
}

void WaitSampler::Run() {
  const auto period = std::chrono::nanoseconds(1000000000 / options_.hz);
  SnapshotOptions snap_options;
  snap_options.threads = options_.reader_threads;
  uint64_t tick = 1;  // tick 0 was Start's
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_until(lock, start_ + tick * period, [&] { return stop_; });
      if (stop_) break;
    }
    if (!TakeOne(snap_options)) break;
    // The next tick on the schedule after now: late ticks are skipped.
    auto elapsed = std::chrono::steady_clock::now() - start_;
    tick = static_cast<uint64_t>(elapsed / period) + 1;
  }
  std::lock_guard<std::mutex> lock(mu_);
  ended_ = true;
  stop_time_ = std::chrono::steady_clock::now();
}

void WaitSampler::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool WaitSampler::target_gone() const {
  std::lock_guard<std::mutex> lock(mu_);
  return gone_;
}

WaitSampleTotals WaitSampler::totals() const {
  std::lock_guard<std::mutex> lock(mu_);
  return agg_.totals();
}

absl::StatusOr<perftools::profiles::Profile> WaitSampler::BuildProfile(
    SampledWaitInfo info) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (info.pid == 0) info.pid = pid_;
  info.hz = options_.hz;
  if (info.time_nanos == 0) info.time_nanos = start_wall_ns_;
  if (info.duration_nanos == 0) {
    auto end = ended_ ? stop_time_ : std::chrono::steady_clock::now();
    info.duration_nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(end - start_).count();
  }
  return BuildSampledWaitProfile(agg_, binary_, info);
}

absl::Status WaitSampler::WriteProfile(const std::string& path, SampledWaitInfo info) const {
  auto profile = BuildProfile(std::move(info));
  if (!profile.ok()) return profile.status();
  return WriteProfileFile(*profile, path);
}

}  // namespace goerrprof::profiler
