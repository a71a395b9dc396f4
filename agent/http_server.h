// A small HTTP/1.1 server for the agent's /metrics: plain sockets, driven
// by the caller's loop (one thread, poll()), one request per connection
// (Connection: close), requests bounded in size and time. Enough for a
// Prometheus scrape; not a general web server.
#ifndef GOERRPROF_AGENT_HTTP_SERVER_H_
#define GOERRPROF_AGENT_HTTP_SERVER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace goerrprof::profiler {

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  // Answered later, by HttpServer::Complete with the request's id (a
  // profile of the next N seconds); the connection waits meanwhile.
  bool deferred = false;
};
// Called with the request's method, target ("/metrics?x=1") and id.
using HttpHandler = std::function<HttpResponse(const std::string& method,
                                               const std::string& target, uint64_t id)>;

class HttpServer {
 public:
  static constexpr size_t kMaxRequestBytes = 8 << 10;
  static constexpr size_t kMaxConnections = 64;
  static constexpr absl::Duration kTimeout = absl::Seconds(10);

  // "host:port" ("[::1]:port" for IPv6); port 0 picks a free one.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Listen(const std::string& address);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // The bound address, with the port chosen.
  const std::string& address() const { return address_; }
  // Waits up to timeout_ms for socket activity, then serves what is ready.
  void Poll(int timeout_ms, const HttpHandler& handler);
  // The answer to deferred request `id`, sent by the next Polls; nothing
  // when its client has gone.
  void Complete(uint64_t id, const HttpResponse& response);

 private:
  struct Conn {
    int fd = -1;
    std::string in, out;
    size_t sent = 0;
    bool responding = false;
    bool waiting = false;  // deferred: until Complete
    uint64_t id = 0;
    absl::Time deadline;
  };
  HttpServer() = default;
  void Accept();
  // false: the connection is done (closed by the caller).
  bool Read(Conn& c, const HttpHandler& handler);
  bool Write(Conn& c);

  int listen_fd_ = -1;
  std::string address_;
  std::vector<Conn> conns_;
  uint64_t next_id_ = 1;
};

// The status line's reason phrase for the codes the server uses.
const char* HttpReason(int status);

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_AGENT_HTTP_SERVER_H_
