#include "agent/otlp_exporter.h"

#include <netdb.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

namespace goerrprof::profiler {

std::string OtlpEndpoint::url() const {
  const bool v6 = host.find(':') != std::string::npos;
  return absl::StrCat("http://", v6 ? "[" : "", host, v6 ? "]" : "", ":", port, path);
}

absl::StatusOr<OtlpEndpoint> ParseOtlpEndpoint(const std::string& url) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("OTLP endpoint \"", url, "\": ", why, " (want http://host:port[/path])"));
  };
  absl::string_view rest = url;
  if (!absl::ConsumePrefix(&rest, "http://")) {
    return bad(absl::StartsWith(url, "https://") ? "https is not supported yet" : "not http://");
  }
  OtlpEndpoint e;
  size_t slash = rest.find('/');
  absl::string_view authority = rest.substr(0, slash);
  e.path = slash == absl::string_view::npos ? "" : std::string(rest.substr(slash));
  if (e.path.empty() || e.path == "/") e.path = kOtlpProfilesPath;
  if (e.path.find_first_of(" \r\n") != std::string::npos) return bad("a space in the path");
  absl::string_view port = "4318";
  if (absl::ConsumePrefix(&authority, "[")) {  // [v6]:port
    size_t close = authority.find(']');
    if (close == absl::string_view::npos) return bad("no ]");
    e.host = std::string(authority.substr(0, close));
    authority.remove_prefix(close + 1);
    if (!authority.empty() && !absl::ConsumePrefix(&authority, ":")) return bad("junk after ]");
    if (!authority.empty()) port = authority;
  } else {
    size_t colon = authority.rfind(':');
    e.host = std::string(authority.substr(0, colon));
    if (colon != absl::string_view::npos) port = authority.substr(colon + 1);
  }
  int n = 0;
  if (e.host.empty()) return bad("no host");
  if (!absl::SimpleAtoi(port, &n) || n < 1 || n > 65535) return bad("bad port");
  e.port = std::string(port);
  return e;
}

namespace {

// The socket closed on every way out.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

void SetTimeouts(int fd, absl::Duration left) {
  if (left < absl::Milliseconds(1)) left = absl::Milliseconds(1);
  timeval tv = absl::ToTimeval(left);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));  // connect's too, on Linux
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

}  // namespace

absl::Status PostOtlp(const OtlpEndpoint& to, const std::string& body, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  addrinfo hints = {};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(to.host.c_str(), to.port.c_str(), &hints, &found); rc != 0) {
    return absl::UnavailableError(absl::StrCat("resolving ", to.host, ": ", gai_strerror(rc)));
  }
  Fd sock;
  std::string why = "no address";
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    Fd s;
    s.fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (s.fd < 0) continue;
    SetTimeouts(s.fd, deadline - absl::Now());
    if (connect(s.fd, a->ai_addr, a->ai_addrlen) == 0) {
      std::swap(sock.fd, s.fd);
      break;
    }
    why = strerror(errno);
  }
  freeaddrinfo(found);
  if (sock.fd < 0) return absl::UnavailableError(absl::StrCat("connecting to ", to.url(), ": ", why));

  const bool v6 = to.host.find(':') != std::string::npos;
  std::string request = absl::StrCat(
      "POST ", to.path, " HTTP/1.1\r\nHost: ", v6 ? "[" : "", to.host, v6 ? "]" : "", ":", to.port,
      "\r\nContent-Type: application/x-protobuf\r\nContent-Length: ", body.size(),
      "\r\nConnection: close\r\nUser-Agent: goerrprof\r\n\r\n");
  request += body;
  for (size_t sent = 0; sent < request.size();) {
    SetTimeouts(sock.fd, deadline - absl::Now());
    ssize_t n = send(sock.fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      return absl::UnavailableError(absl::StrCat("sending to ", to.url(), ": ",
                                                 n < 0 ? strerror(errno) : "closed"));
    }
    sent += static_cast<size_t>(n);
  }
  // The reply, to its end (Connection: close) or its first 64 KiB.
  std::string reply;
  char buf[4096];
  while (reply.size() < (64 << 10)) {
    if (absl::Now() >= deadline) break;
    SetTimeouts(sock.fd, deadline - absl::Now());
    ssize_t n = recv(sock.fd, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return absl::DeadlineExceededError(
          absl::StrCat("reading the reply of ", to.url(), ": ", strerror(errno)));
    }
    if (n == 0) break;
    reply.append(buf, static_cast<size_t>(n));
  }
  absl::string_view status_line = absl::string_view(reply).substr(0, reply.find("\r\n"));
  int code = 0;
  absl::string_view rest = status_line;
  if (!absl::ConsumePrefix(&rest, "HTTP/1.") || rest.size() < 5 ||
      !absl::SimpleAtoi(rest.substr(2, 3), &code)) {
    return absl::UnavailableError(absl::StrCat(to.url(), " gave no HTTP reply"));
  }
  if (code >= 200 && code < 300) return absl::OkStatus();
  size_t body_at = reply.find("\r\n\r\n");
  std::string start = body_at == std::string::npos ? "" : reply.substr(body_at + 4, 200);
  for (char& c : start) {
    if (c < 0x20 || c > 0x7e) c = '.';
  }
  return absl::UnavailableError(absl::StrCat(to.url(), ": ", status_line, ": ", start));
}

OtlpExporter::OtlpExporter(OtlpEndpoint to) : to_(std::move(to)), thread_([this] { Run(); }) {}

void OtlpExporter::Finish() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void OtlpExporter::Push(std::string request) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (queue_.size() >= kMaxQueued || stopping_) {
      ++counts_.dropped;
      return;
    }
    queue_.push_back(std::move(request));
  }
  wake_.notify_all();
}

OtlpExporter::Counts OtlpExporter::counts() const {
  std::lock_guard<std::mutex> lock(mu_);
  return counts_;
}

void OtlpExporter::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  absl::Duration backoff = absl::ZeroDuration();
  absl::Time retry_at = absl::InfinitePast();
  for (;;) {
    // The next request when its retry is due; at once when stopping.
    while (!stopping_ && (queue_.empty() || absl::Now() < retry_at)) {
      if (queue_.empty()) {
        wake_.wait(lock);
      } else {
        wake_.wait_for(lock, absl::ToChronoNanoseconds(retry_at - absl::Now()));
      }
    }
    if (queue_.empty()) return;  // stopping, and all sent
    // Kept at the front until sent: a collector that restarts loses nothing.
    std::string request = queue_.front();
    lock.unlock();
    absl::Status s = PostOtlp(to_, request, kTimeout);
    lock.lock();
    if (s.ok()) {
      queue_.pop_front();
      ++counts_.sent;
      backoff = absl::ZeroDuration();
      retry_at = absl::InfinitePast();
      if (failing_) std::fprintf(stderr, "goerrprof: agent: OTLP pushes succeed again\n");
      failing_ = false;
      continue;
    }
    ++counts_.failed;
    counts_.last_error = std::string(s.message());
    if (!failing_) {
      std::fprintf(stderr, "goerrprof: agent: OTLP push failed (retried, said once until one "
                   "succeeds): %s\n", counts_.last_error.c_str());
    }
    failing_ = true;
    if (stopping_) {  // one try each at the end, then given up
      queue_.pop_front();
      ++counts_.dropped;
      continue;
    }
    backoff = std::min(kMaxBackoff, std::max(absl::Seconds(1), backoff * 2));
    retry_at = absl::Now() + backoff;
  }
}

}  // namespace goerrprof::profiler
