#include "agent/http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace goerrprof::profiler {

const char* HttpReason(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
  }
  return "Unknown";
}

namespace {

std::string Respond(const HttpResponse& r, bool head) {
  return absl::StrCat("HTTP/1.1 ", r.status, " ", HttpReason(r.status),
                      "\r\nContent-Type: ", r.content_type,
                      "\r\nContent-Length: ", r.body.size(), "\r\nConnection: close\r\n\r\n",
                      head ? "" : r.body);
}

HttpResponse Plain(int status, absl::string_view text) {
  HttpResponse r;
  r.status = status;
  r.body = absl::StrCat(text, "\n");
  return r;
}

}  // namespace

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Listen(const std::string& address) {
  size_t colon = address.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat("--listen wants host:port, not \"", address, "\""));
  }
  std::string host = address.substr(0, colon), port = address.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  int port_number = 0;
  if (!absl::SimpleAtoi(port, &port_number) || port_number < 0 || port_number > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("--listen: bad port \"", port, "\""));
  }
  addrinfo hints = {};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* res = nullptr;
  if (int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints, &res);
      rc != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--listen ", address, ": ", gai_strerror(rc)));
  }
  std::unique_ptr<HttpServer> s(new HttpServer());
  std::string why = "no address";
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 64) == 0) {
      s->listen_fd_ = fd;
      break;
    }
    why = strerror(errno);
    close(fd);
  }
  freeaddrinfo(res);
  if (s->listen_fd_ < 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", address, ": ", why));
  }
  sockaddr_storage bound = {};
  socklen_t len = sizeof(bound);
  getsockname(s->listen_fd_, reinterpret_cast<sockaddr*>(&bound), &len);
  char text[INET6_ADDRSTRLEN] = "";
  int bound_port = 0;
  if (bound.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&bound);
    inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof(text));
    bound_port = ntohs(a->sin6_port);
    s->address_ = absl::StrCat("[", text, "]:", bound_port);
  } else {
    auto* a = reinterpret_cast<sockaddr_in*>(&bound);
    inet_ntop(AF_INET, &a->sin_addr, text, sizeof(text));
    bound_port = ntohs(a->sin_port);
    s->address_ = absl::StrCat(text, ":", bound_port);
  }
  return s;
}

HttpServer::~HttpServer() {
  for (Conn& c : conns_) close(c.fd);
  if (listen_fd_ >= 0) close(listen_fd_);
}

void HttpServer::Accept() {
  for (;;) {
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;  // EAGAIN: none left (or a transient error)
    if (conns_.size() >= kMaxConnections) {
      std::string busy = Respond(Plain(503, "too many connections"), false);
      (void)!write(fd, busy.data(), busy.size());
      close(fd);
      continue;
    }
    Conn c;
    c.fd = fd;
    c.id = next_id_++;
    c.deadline = absl::Now() + kTimeout;
    conns_.push_back(std::move(c));
  }
}

bool HttpServer::Read(Conn& c, const HttpHandler& handler) {
  char buf[4096];
  for (;;) {
    ssize_t n = read(c.fd, buf, sizeof(buf));
    if (n > 0) {
      c.in.append(buf, static_cast<size_t>(n));
      if (c.in.size() > kMaxRequestBytes) break;
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
    return false;  // closed (or failed) before a whole request
  }
  size_t end = c.in.find("\r\n\r\n");
  if (end == std::string::npos) {
    if (c.in.size() <= kMaxRequestBytes) return true;  // more to come
    c.out = Respond(Plain(431, "request too large"), false);
    c.responding = true;
    return true;
  }
  // The request line: METHOD TARGET VERSION. A body, if any, is ignored.
  std::vector<std::string> parts =
      absl::StrSplit(c.in.substr(0, c.in.find("\r\n")), ' ', absl::SkipEmpty());
  HttpResponse r;
  bool head = false;
  if (parts.size() != 3 || parts[1].empty() || parts[1][0] != '/' ||
      parts[2].rfind("HTTP/1.", 0) != 0) {
    r = Plain(400, "bad request");
  } else if (parts[0] != "GET" && parts[0] != "HEAD") {
    r = Plain(405, "only GET");
  } else {
    head = parts[0] == "HEAD";
    r = handler("GET", parts[1], c.id);
    if (r.deferred) {
      c.waiting = true;
      c.deadline = absl::InfiniteFuture();  // the caller completes it
      return true;
    }
  }
  c.out = Respond(r, head);
  c.responding = true;
  return true;
}

bool HttpServer::Write(Conn& c) {
  while (c.sent < c.out.size()) {
    ssize_t n = send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
    if (n > 0) {
      c.sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return true;
    return false;
  }
  shutdown(c.fd, SHUT_WR);  // all sent: the client reads to EOF
  return false;
}

void HttpServer::Complete(uint64_t id, const HttpResponse& response) {
  for (Conn& c : conns_) {
    if (c.id != id || !c.waiting) continue;
    c.waiting = false;
    c.out = Respond(response, false);
    c.responding = true;
    c.deadline = absl::Now() + kTimeout;
  }
}

void HttpServer::Poll(int timeout_ms, const HttpHandler& handler) {
  std::vector<pollfd> fds;
  fds.push_back({listen_fd_, POLLIN, 0});
  for (const Conn& c : conns_) {
    // A waiting connection is only watched for its client going away.
    const short events = c.waiting ? POLLRDHUP : c.responding ? POLLOUT : POLLIN;
    fds.push_back({c.fd, events, 0});
  }
  if (poll(fds.data(), fds.size(), timeout_ms) < 0) return;  // EINTR: a signal
  // Only the connections polled; those accepted now wait for the next poll.
  const size_t polled = conns_.size();
  if (fds[0].revents & POLLIN) Accept();
  const absl::Time now = absl::Now();
  std::vector<Conn> kept;
  for (size_t i = 0; i < polled; ++i) {
    Conn& c = conns_[i];
    const short ev = fds[i + 1].revents;
    bool open = true;
    if (ev & (POLLERR | POLLNVAL)) {
      open = false;
    } else if (c.waiting) {
      open = !(ev & (POLLRDHUP | POLLHUP));
    } else if (!c.responding && (ev & (POLLIN | POLLHUP))) {
      open = Read(c, handler);
    }
    if (open && c.responding) open = Write(c);
    if (open && now > c.deadline) open = false;  // a client that stalls
    if (open) {
      kept.push_back(std::move(c));
    } else {
      close(c.fd);
    }
  }
  for (size_t i = polled; i < conns_.size(); ++i) kept.push_back(std::move(conns_[i]));
  conns_ = std::move(kept);
}

}  // namespace goerrprof::profiler
