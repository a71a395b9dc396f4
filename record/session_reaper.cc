#include "record/session_reaper.h"

#include <utility>

namespace goerrprof::profiler {

void SessionReaper::Add(std::unique_ptr<BpfSession> session) {
  if (!session) return;
  std::lock_guard<std::mutex> lock(mu_);
  queue_.push_back(std::move(session));
  if (!thread_.joinable()) {
    stopping_ = false;
    thread_ = std::thread([this] { Run(); });
  }
  wake_.notify_all();
}

void SessionReaper::Drain() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!thread_.joinable()) return;
    stopping_ = true;  // the thread ends once the queue is empty
  }
  wake_.notify_all();
  thread_.join();
}

size_t SessionReaper::pending() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queue_.size() + busy_;
}

void SessionReaper::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) return;
    std::unique_ptr<BpfSession> s = std::move(queue_.front());
    queue_.pop_front();
    ++busy_;
    lock.unlock();
    s.reset();  // detaches its probes, frees its maps
    lock.lock();
    --busy_;
  }
}

}  // namespace goerrprof::profiler
