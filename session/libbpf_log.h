// libbpf reports through one process-wide print callback; a load failure's
// reason (the verifier log) only ever reaches it. ScopedLibbpfLog keeps what
// libbpf prints on the calling thread while it lives, so the code that
// loaded an object can say why it failed. Nothing reaches stderr unless
// GOERRPROF_LIBBPF_DEBUG is set.
#ifndef GOERRPROF_SESSION_LIBBPF_LOG_H_
#define GOERRPROF_SESSION_LIBBPF_LOG_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace goerrprof::profiler {

class ScopedLibbpfLog {
 public:
  ScopedLibbpfLog();
  ~ScopedLibbpfLog();
  ScopedLibbpfLog(const ScopedLibbpfLog&) = delete;
  ScopedLibbpfLog& operator=(const ScopedLibbpfLog&) = delete;

  // The last `lines` meaningful lines, joined into one line with " | ".
  std::string Tail(size_t lines) const;
  // The verifier's instruction count from the log ("processed N insns" or
  // "Processed N insn" of a program that was too large); nullopt if absent.
  std::optional<uint64_t> ProcessedInsns() const;
  // The program libbpf names in its last load failure ("prog 'x': ..."),
  // or "".
  std::string FailedProgram() const;
  // Forgets what was kept (between loads in one scope).
  void Clear() { log_.clear(); }

 private:
  std::string log_;  // at most the last ~1 MiB: the tail is what explains
  std::string* previous_ = nullptr;
};

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_SESSION_LIBBPF_LOG_H_
