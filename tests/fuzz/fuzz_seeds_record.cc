#include "tests/fuzz/fuzz_seeds_record.h"

#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bpf/errors_abi.h"
#include "tests/fuzz/fuzz_support.h"

namespace goerrprof::fuzz {
namespace {

// One record being written: the header is filled in at the end.
class RecordWriter {
 public:
  template <typename T>
  void Put(const T& v) {
    out_.append(reinterpret_cast<const char*>(&v), sizeof(v));
  }
  void Str(uint8_t field, const std::string& value, uint64_t true_len, uint8_t flags = 0) {
    gep_str s{};
    s.len = true_len;
    s.copied = static_cast<uint16_t>(value.size());
    s.field = field;
    s.flags = flags;
    Put(s);
    out_ += value;
    out_.append((8 - value.size() % 8) % 8, '\0');
  }
  std::string Finish(gep_event h) {
    h.version = GEP_EVENT_VERSION;
    h.size = static_cast<uint32_t>(sizeof(h) + out_.size());
    std::string rec(reinterpret_cast<const char*>(&h), sizeof(h));
    return rec + out_;
  }

 private:
  std::string out_;
};

struct Link {
  const KnownType* type;
  int16_t parent;
  uint64_t value = 0;
  bool with_addrs = false;
};

const KnownType* Find(const char* name) {
  for (const KnownType& k : KnownErrorTypes()) {
    if (std::strcmp(k.name, name) == 0) return &k;
  }
  return nullptr;
}

std::string Record(const std::vector<Link>& links, int n_labels, uint32_t flags) {
  RecordWriter w;
  gep_event h{};
  h.ts_ns = 123456789;
  h.ip = 0x401234;
  h.cookie = 7;
  h.goid = 42;
  h.pid = 1000;
  h.tid = 1001;
  h.flags = flags;
  h.gopc = 0x401000;
  h.n_stack = 3;
  for (uint64_t pc : {0x401234, 0x402345, 0x403456}) w.Put<uint64_t>(pc);
  h.n_labels = static_cast<uint16_t>(n_labels);
  for (int i = 0; i < n_labels; ++i) {
    w.Str(static_cast<uint8_t>(i), absl::StrCat("key", i), 4);
    w.Str(static_cast<uint8_t>(i), absl::StrCat("value", i), 6);
  }
  h.n_links = static_cast<uint16_t>(links.size());
  for (const Link& l : links) {
    gep_link gl{};
    gl.type = l.type->addr;
    gl.data = 0xc000010000;
    gl.value = l.value;
    gl.parent = l.parent;
    gl.depth = static_cast<uint8_t>(l.parent + 1);
    gl.n_str = static_cast<uint8_t>(l.type->strings.size());
    gl.n_addr = static_cast<uint8_t>(l.with_addrs ? l.type->addrs.size() : 0);
    w.Put(gl);
    for (size_t k = 0; k < l.type->strings.size(); ++k) {
      std::string v = absl::StrCat(l.type->strings[k], " value");
      w.Str(static_cast<uint8_t>(k), v, k == 1 ? 300 : v.size());  // one truncated
    }
    for (uint8_t k = 0; k < gl.n_addr; ++k) {
      const KnownType& at = KnownAddrTypes()[k % KnownAddrTypes().size()];
      gep_addr a{};
      a.type = at.addr;
      a.data = 0xc000020000;
      a.port = 8080;
      a.ip_len = k == 0 ? 4 : 16;
      const uint8_t ip[16] = {127, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1};
      std::memcpy(a.ip, ip, sizeof(ip));
      a.field = k;
      a.kind = static_cast<uint8_t>(k == 0 ? GEP_ADDR_TCP : GEP_ADDR_UNIX);
      a.n_str = static_cast<uint8_t>(at.strings.size());
      w.Put(a);
      for (size_t m = 0; m < at.strings.size(); ++m) w.Str(static_cast<uint8_t>(m), "eth0", 4);
    }
  }
  return w.Finish(h);
}

}  // namespace

int RecordSeeds(const std::string& dir) {
  std::vector<std::string> records;
  // Every known type alone, as the created error.
  for (const KnownType& k : KnownErrorTypes()) records.push_back(Record({{&k, -1, 2}}, 0, 0));
  // Chains as the standard library builds them.
  const std::vector<std::vector<std::pair<const char*, int16_t>>> chains = {
      {{"*fs.PathError", -1}, {"syscall.Errno", 0}},
      {{"*fmt.wrapError", -1}, {"*fmt.wrapError", 0}, {"*errors.errorString", 1}},
      {{"*errors.joinError", -1}, {"*errors.errorString", 0}, {"*strconv.NumError", 0},
       {"*errors.errorString", 2}},
      {{"*url.Error", -1}, {"*net.OpError", 0}, {"*os.SyscallError", 1}, {"syscall.Errno", 2}},
      {{"*fmt.wrapErrors", -1}, {"*net.DNSError", 0}, {"*main.QueryError", 0}},
  };
  for (const auto& chain : chains) {
    std::vector<Link> links;
    for (const auto& [name, parent] : chain) {
      Link l{Find(name), parent, 111};
      l.with_addrs = std::strcmp(name, "*net.OpError") == 0;
      links.push_back(l);
    }
    records.push_back(Record(links, 2, 0));
    records.push_back(Record(links, 0, GEP_EV_TRUNCATED | GEP_EV_LABELS_CUT));
  }
  for (size_t i = 0; i < records.size(); ++i) {
    std::ofstream(absl::StrCat(dir, "/record", i), std::ios::binary) << records[i];
  }
  return static_cast<int>(records.size());
}

}  // namespace goerrprof::fuzz
