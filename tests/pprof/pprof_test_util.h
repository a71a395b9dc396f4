// Shared by the pprof writer's suites: captured errors built by hand, as the
// probe would decode them, for the renderer, the aggregation and the writer.
#ifndef GOERRPROF_TESTS_PPROF_PPROF_TEST_UTIL_H_
#define GOERRPROF_TESTS_PPROF_PPROF_TEST_UTIL_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "aggregate/error_render.h"
#include "events/captured_error.h"

namespace goerrprof::testing {

inline constexpr char kGo[] = "/usr/local/go/bin/go";

// Builds an Unwrap tree link by link, in depth-first pre-order.
class Tree {
 public:
  // Adds a link under `parent` (-1: the root) and returns its index.
  int Add(int parent, std::string type,
          std::vector<std::pair<std::string, std::string>> strings = {}, uint64_t value = 0) {
    profiler::CapturedLink l;
    l.type = 0x500000 + 0x40 * e_.links.size();
    l.type_name = std::move(type);
    l.parent = parent;
    l.depth = parent < 0 ? 0 : e_.links[parent].depth + 1;
    l.value = value;
    for (auto& [name, v] : strings) {
      profiler::CapturedString s;
      s.field = l.strings.size();
      s.offset = 16 * l.strings.size();
      s.name = name;
      s.value = v;
      s.length = v.size();
      l.strings.push_back(std::move(s));
    }
    e_.links.push_back(std::move(l));
    return static_cast<int>(e_.links.size()) - 1;
  }
  // Adds an address field record (as the probe decodes *net.TCPAddr & co.)
  // to link i. `ip` is the IP's bytes; strings are Zone, or Name and Net.
  profiler::CapturedAddr& AddAddr(int i, std::string field, gep_addr_kind kind,
                                  std::string ip = "", int64_t port = 0,
                                  std::vector<std::pair<std::string, std::string>> strings = {}) {
    profiler::CapturedAddr a;
    a.field = e_.links[i].addrs.size();
    a.name = std::move(field);
    a.kind = kind;
    a.type = 0x600000 + 0x40 * kind;
    a.type_name = kind == GEP_ADDR_TCP   ? "*net.TCPAddr"
                  : kind == GEP_ADDR_UDP ? "*net.UDPAddr"
                  : kind == GEP_ADDR_IP  ? "*net.IPAddr"
                                         : "*net.UnixAddr";
    a.data = 0xc000010000;
    a.ip_length = ip.size();
    a.ip = ip.substr(0, GEP_MAX_IP);
    a.port = port;
    for (auto& [name, v] : strings) {
      profiler::CapturedString s;
      s.field = a.strings.size();
      s.name = name;
      s.value = v;
      s.length = v.size();
      a.strings.push_back(std::move(s));
    }
    e_.links[i].addrs.push_back(std::move(a));
    return e_.links[i].addrs.back();
  }
  // A nil net.Addr interface.
  void AddNilAddr(int i, std::string field) {
    profiler::CapturedAddr a;
    a.field = e_.links[i].addrs.size();
    a.name = std::move(field);
    a.flags = GEP_ADDR_F_NIL;
    e_.links[i].addrs.push_back(std::move(a));
  }
  profiler::CapturedLink& link(int i) { return e_.links[i]; }
  profiler::CapturedError& error() { return e_; }
  std::string Message() const { return profiler::RenderMessage(e_); }

 private:
  profiler::CapturedError e_;
};

}  // namespace goerrprof::testing

#endif  // GOERRPROF_TESTS_PPROF_PPROF_TEST_UTIL_H_
