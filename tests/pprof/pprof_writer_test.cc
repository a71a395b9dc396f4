// The error renderer against Go's own Error() texts, the aggregation, and
// the pprof writer checked by reading its output with the real
// `go tool pprof` and with ReadProfile.
#include <glob.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "aggregate/error_profile.h"
#include "aggregate/error_render.h"
#include "pprof/pprof_writer.h"
#include "symbolizer/go_binary.h"
#include "tests/test_support.h"
#include "pprof/profile_file.h"

namespace goerrprof::testing {
namespace {

using profiler::CapturedAddr;
using profiler::CapturedError;
using profiler::CapturedLink;
using profiler::CapturedString;
using profiler::ErrorProfile;
using profiler::RenderChain;
using profiler::RenderMessage;
using ::testing::HasSubstr;
namespace pp = perftools::profiles;

constexpr char kGo[] = "/usr/local/go/bin/go";

// Builds an Unwrap tree link by link, in depth-first pre-order.
class Tree {
 public:
  // Adds a link under `parent` (-1: the root) and returns its index.
  int Add(int parent, std::string type,
          std::vector<std::pair<std::string, std::string>> strings = {}, uint64_t value = 0) {
    CapturedLink l;
    l.type = 0x500000 + 0x40 * e_.links.size();
    l.type_name = std::move(type);
    l.parent = parent;
    l.depth = parent < 0 ? 0 : e_.links[parent].depth + 1;
    l.value = value;
    for (auto& [name, v] : strings) {
      CapturedString s;
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
  CapturedAddr& AddAddr(int i, std::string field, gep_addr_kind kind, std::string ip = "",
                        int64_t port = 0,
                        std::vector<std::pair<std::string, std::string>> strings = {}) {
    CapturedAddr a;
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
      CapturedString s;
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
    CapturedAddr a;
    a.field = e_.links[i].addrs.size();
    a.name = std::move(field);
    a.flags = GEP_ADDR_F_NIL;
    e_.links[i].addrs.push_back(std::move(a));
  }
  CapturedLink& link(int i) { return e_.links[i]; }
  CapturedError& error() { return e_; }
  std::string Message() const { return RenderMessage(e_); }

 private:
  CapturedError e_;
};

// ---------------------------------------------------------------- rendering

TEST(Render, ErrorString) {
  Tree t;
  t.Add(-1, "*errors.errorString", {{"s", "errgen: errors.New inlined"}});
  EXPECT_EQ(t.Message(), "errgen: errors.New inlined");
  EXPECT_EQ(RenderChain(t.error()), "*errors.errorString");
}

TEST(Render, WrapErrorChain) {
  // fmt.Errorf("outer 0: %w", fmt.Errorf("middle: %w", fmt.Errorf("inner: %w", errors.New(…))))
  Tree t;
  int outer = t.Add(-1, "*fmt.wrapError", {{"msg", "outer 0: middle: inner: root cause"}});
  int middle = t.Add(outer, "*fmt.wrapError", {{"msg", "middle: inner: root cause"}});
  int inner = t.Add(middle, "*fmt.wrapError", {{"msg", "inner: root cause"}});
  t.Add(inner, "*errors.errorString", {{"s", "root cause"}});
  EXPECT_EQ(t.Message(), "outer 0: middle: inner: root cause");
  EXPECT_EQ(RenderMessage(t.error(), 2), "inner: root cause");
  EXPECT_EQ(RenderChain(t.error()),
            "*fmt.wrapError > *fmt.wrapError > *fmt.wrapError > *errors.errorString");
}

TEST(Render, WrapErrors) {
  Tree t;
  int root = t.Add(-1, "*fmt.wrapErrors", {{"msg", "two causes 0: no rows; EOF"}});
  t.Add(root, "*errors.errorString", {{"s", "no rows"}});
  t.Add(root, "*errors.errorString", {{"s", "EOF"}});
  EXPECT_EQ(t.Message(), "two causes 0: no rows; EOF");
  EXPECT_EQ(RenderChain(t.error()),
            "*fmt.wrapErrors > *errors.errorString > *errors.errorString");
}

TEST(Render, JoinError) {
  Tree t;
  int root = t.Add(-1, "*errors.joinError");
  t.Add(root, "*errors.errorString", {{"s", "first 0"}});
  int w = t.Add(root, "*fmt.wrapError", {{"msg", "ctx: no rows"}});
  t.Add(w, "*errors.errorString", {{"s", "no rows"}});
  EXPECT_EQ(t.Message(), "first 0\nctx: no rows");
  EXPECT_EQ(RenderChain(t.error()),
            "*errors.joinError > *errors.errorString > *fmt.wrapError > *errors.errorString");
}

TEST(Render, JoinErrorWithElementsLeftOut) {
  Tree t;
  int root = t.Add(-1, "*errors.joinError");
  t.Add(root, "*errors.errorString", {{"s", "a"}});
  t.link(root).flags |= GEP_LINK_WIDTH_CUT;
  EXPECT_EQ(t.Message(), "a\n<?>");
}

TEST(Render, PathError) {
  // os.Open("/nonexistent/goerrprof/missing-0.txt"), as errgen prints it.
  for (const char* type : {"*fs.PathError", "*os.PathError"}) {
    Tree t;
    int root = t.Add(-1, type, {{"Op", "open"}, {"Path", "/nonexistent/goerrprof/missing-0.txt"}});
    t.Add(root, "syscall.Errno", {}, 2);
    EXPECT_EQ(t.Message(), "open /nonexistent/goerrprof/missing-0.txt: no such file or directory");
    EXPECT_EQ(RenderChain(t.error()), absl::StrCat(type, " > syscall.Errno"));
  }
}

TEST(Render, SyscallError) {
  Tree t;
  int root = t.Add(-1, "*os.SyscallError", {{"Syscall", "connect"}});
  t.Add(root, "syscall.Errno", {}, 111);
  EXPECT_EQ(t.Message(), "connect: connection refused");
}

// IP bytes: 4-byte and 16-byte (IPv4-mapped) forms of an IPv4 address, and IPv6.
const std::string kLoopback4("\x7f\x00\x00\x01", 4);
const std::string kLoopback16("\0\0\0\0\0\0\0\0\0\0\xff\xff\x7f\x00\x00\x01", 16);
std::string V6(std::initializer_list<uint16_t> groups) {
  std::string b;
  for (uint16_t g : groups) {
    b.push_back(static_cast<char>(g >> 8));
    b.push_back(static_cast<char>(g & 0xff));
  }
  return b;
}

// The expected texts are what Go 1.19 and 1.26 print for the same values
// (net.OpError{...}.Error()).
TEST(Render, NetOpErrorTcp4) {
  for (const std::string& ip : {kLoopback4, kLoopback16}) {
    Tree t;
    int root = t.Add(-1, "*net.OpError", {{"Op", "dial"}, {"Net", "tcp"}});
    t.AddNilAddr(root, "Source");
    t.AddAddr(root, "Addr", GEP_ADDR_TCP, ip, 42445, {{"Zone", ""}});
    int sys = t.Add(root, "*os.SyscallError", {{"Syscall", "connect"}});
    t.Add(sys, "syscall.Errno", {}, 111);
    EXPECT_EQ(t.Message(), "dial tcp 127.0.0.1:42445: connect: connection refused");
    EXPECT_EQ(RenderChain(t.error()), "*net.OpError > *os.SyscallError > syscall.Errno");
    EXPECT_TRUE(t.error().complete());
  }
}

TEST(Render, NetOpErrorTcp6WithZone) {
  Tree t;
  int root = t.Add(-1, "*net.OpError", {{"Op", "dial"}, {"Net", "tcp"}});
  t.AddNilAddr(root, "Source");
  t.AddAddr(root, "Addr", GEP_ADDR_TCP, V6({0xfe80, 0, 0, 0, 0, 0, 0, 1}), 8080,
            {{"Zone", "eth0"}});
  int sys = t.Add(root, "*os.SyscallError", {{"Syscall", "connect"}});
  t.Add(sys, "syscall.Errno", {}, 111);
  EXPECT_EQ(t.Message(), "dial tcp [fe80::1%eth0]:8080: connect: connection refused");
}

TEST(Render, NetOpErrorSourceAndAddr) {
  Tree t;
  int root = t.Add(-1, "*net.OpError", {{"Op", "read"}, {"Net", "tcp"}});
  t.AddAddr(root, "Source", GEP_ADDR_TCP, kLoopback4, 1234, {{"Zone", ""}});
  t.AddAddr(root, "Addr", GEP_ADDR_TCP, kLoopback16, 5678, {{"Zone", ""}});
  t.Add(root, "*errors.errorString", {{"s", "EOF"}});
  EXPECT_EQ(t.Message(), "read tcp 127.0.0.1:1234->127.0.0.1:5678: EOF");

  Tree u;  // UDP over IPv6, "::" for the longest run of zero groups
  root = u.Add(-1, "*net.OpError", {{"Op", "write"}, {"Net", "udp"}});
  u.AddAddr(root, "Source", GEP_ADDR_UDP, V6({0x2001, 0xdb8, 0, 0, 0, 0, 0, 1}), 53,
            {{"Zone", ""}});
  u.AddAddr(root, "Addr", GEP_ADDR_UDP, V6({0x2001, 0xdb8, 0, 0, 1, 0, 0, 1}), 5353,
            {{"Zone", ""}});
  u.Add(root, "*errors.errorString", {{"s", "EOF"}});
  EXPECT_EQ(u.Message(), "write udp [2001:db8::1]:53->[2001:db8::1:0:0:1]:5353: EOF");
}

TEST(Render, NetOpErrorNilAddr) {
  Tree t;
  int root = t.Add(-1, "*net.OpError", {{"Op", "dial"}, {"Net", "tcp"}});
  t.AddNilAddr(root, "Source");
  t.AddNilAddr(root, "Addr");
  int sys = t.Add(root, "*os.SyscallError", {{"Syscall", "connect"}});
  t.Add(sys, "syscall.Errno", {}, 111);
  EXPECT_EQ(t.Message(), "dial tcp: connect: connection refused");

  // An empty Net is left out, as Go does.
  Tree u;
  root = u.Add(-1, "*net.OpError", {{"Op", "read"}, {"Net", ""}});
  u.AddNilAddr(root, "Source");
  u.AddNilAddr(root, "Addr");
  u.Add(root, "*errors.errorString", {{"s", "EOF"}});
  EXPECT_EQ(u.Message(), "read: EOF");

  // A non-nil interface holding a nil *TCPAddr prints "<nil>".
  Tree v;
  root = v.Add(-1, "*net.OpError", {{"Op", "dial"}, {"Net", "tcp"}});
  v.AddNilAddr(root, "Source");
  v.AddAddr(root, "Addr", GEP_ADDR_TCP).data = 0;
  v.Add(root, "*errors.errorString", {{"s", "EOF"}});
  EXPECT_EQ(v.Message(), "dial tcp <nil>: EOF");
}

TEST(Render, NetOpErrorOtherAddressTypes) {
  auto op = [](auto add) {
    Tree t;
    int root = t.Add(-1, "*net.OpError", {{"Op", "dial"}, {"Net", "x"}});
    t.AddNilAddr(root, "Source");
    add(t, root);
    t.Add(root, "*errors.errorString", {{"s", "EOF"}});
    return t.Message();
  };
  EXPECT_EQ(op([](Tree& t, int r) {
              t.AddAddr(r, "Addr", GEP_ADDR_IP, V6({0xfe80, 0, 0, 0, 0, 0, 0, 0xabcd}), 0,
                        {{"Zone", "lo"}});
            }),
            "dial x fe80::abcd%lo: EOF");
  EXPECT_EQ(op([](Tree& t, int r) {
              t.AddAddr(r, "Addr", GEP_ADDR_UNIX, "", 0,
                        {{"Name", "/run/app.sock"}, {"Net", "unix"}});
            }),
            "dial x /run/app.sock: EOF");
  // Cases Go prints without brackets, with "?" and hex, or as IPv4.
  const std::vector<std::pair<std::string, std::string>> ips = {
      {"", ":80"},
      {std::string("\x01\x02\x03", 3), "?010203:80"},
      {V6({0, 0, 0, 0, 0, 0, 0, 0}), "[::]:80"},
      {V6({1, 0, 0, 1, 0, 0, 1, 1}), "[1::1:0:0:1:1]:80"},
      {V6({1, 0, 1, 0, 1, 0, 1, 0}), "[1:0:1:0:1:0:1:0]:80"},
      {V6({0, 0, 0, 0, 0, 0xffff, 0, 1}), "0.0.0.1:80"},
      {V6({0, 0, 0, 0, 0, 0, 0x102, 0x304}), "[::102:304]:80"},
      {V6({1, 0, 0, 0, 0, 0, 0, 0}), "[1::]:80"},
      {V6({0xabcd, 0xef01, 0x2345, 0x6789, 0xabcd, 0xef01, 0x2345, 0x6789}),
       "[abcd:ef01:2345:6789:abcd:ef01:2345:6789]:80"},
  };
  for (const auto& [ip, want] : ips) {
    EXPECT_EQ(op([&](Tree& t, int r) { t.AddAddr(r, "Addr", GEP_ADDR_TCP, ip, 80, {{"Zone", ""}}); }),
              absl::StrCat("dial x ", want, ": EOF"));
  }
  EXPECT_EQ(op([](Tree& t, int r) {
              t.AddAddr(r, "Addr", GEP_ADDR_TCP, std::string("\x0a\0\0\x01", 4), -1,
                        {{"Zone", "eth0"}});
            }),
            "dial x 10.0.0.1%eth0:-1: EOF");
}

TEST(Render, NetOpErrorAddressesNotCaptured) {
  // No address records (a layout without the fields): marked, not guessed.
  Tree t;
  int root = t.Add(-1, "*net.OpError", {{"Op", "dial"}, {"Net", "tcp"}});
  t.Add(root, "*errors.errorString", {{"s", "EOF"}});
  EXPECT_EQ(t.Message(), "dial tcp <?>: EOF");

  // A type the probe does not decode, and an unreadable one.
  Tree u;
  root = u.Add(-1, "*net.OpError", {{"Op", "dial"}, {"Net", "tcp"}});
  u.AddNilAddr(root, "Source");
  CapturedAddr& a = u.AddAddr(root, "Addr", GEP_ADDR_NONE);
  a.flags = GEP_ADDR_F_UNKNOWN_TYPE;
  u.Add(root, "*errors.errorString", {{"s", "EOF"}});
  EXPECT_EQ(u.Message(), "dial tcp <?>: EOF");
  EXPECT_TRUE(u.error().complete());
  u.link(root).addrs[1].flags = GEP_ADDR_F_READ_FAILED;
  u.link(root).addrs[1].kind = GEP_ADDR_TCP;
  EXPECT_EQ(u.Message(), "dial tcp <?>: EOF");
  EXPECT_FALSE(u.error().complete());

  // An IP longer than the probe copies.
  Tree v;
  root = v.Add(-1, "*net.OpError", {{"Op", "dial"}, {"Net", "tcp"}});
  v.AddNilAddr(root, "Source");
  v.AddAddr(root, "Addr", GEP_ADDR_TCP, std::string(20, '\x01'), 1, {{"Zone", ""}});
  v.Add(root, "*errors.errorString", {{"s", "EOF"}});
  EXPECT_EQ(v.Message(), "dial tcp ?01010101010101010101010101010101...:1: EOF");
  EXPECT_FALSE(v.error().complete());
}

TEST(Render, UrlError) {
  Tree t;
  int root = t.Add(-1, "*url.Error", {{"Op", "Get"}, {"URL", "http://example.com/a \"b\"\n"}});
  int op = t.Add(root, "*net.OpError", {{"Op", "dial"}, {"Net", "tcp"}});
  t.AddNilAddr(op, "Source");
  t.AddAddr(op, "Addr", GEP_ADDR_TCP, std::string("\x5d\xb8\xd7\x0e", 4), 80, {{"Zone", ""}});
  int sys = t.Add(op, "*os.SyscallError", {{"Syscall", "connect"}});
  t.Add(sys, "syscall.Errno", {}, 111);
  EXPECT_EQ(t.Message(),
            "Get \"http://example.com/a \\\"b\\\"\\n\": dial tcp 93.184.215.14:80: connect: "
            "connection refused");
}

TEST(Render, NumError) {
  Tree t;
  int root = t.Add(-1, "*strconv.NumError", {{"Func", "Atoi"}, {"Num", "x"}});
  t.Add(root, "*errors.errorString", {{"s", "invalid syntax"}});
  EXPECT_EQ(t.Message(), "strconv.Atoi: parsing \"x\": invalid syntax");
}

TEST(Render, JsonSyntaxError) {
  Tree t;
  t.Add(-1, "*json.SyntaxError",
        {{"msg", "invalid character 'b' looking for beginning of object key string"}});
  EXPECT_EQ(t.Message(), "invalid character 'b' looking for beginning of object key string");
}

TEST(Render, Errno) {
  Tree t;
  t.Add(-1, "syscall.Errno", {}, 13);
  EXPECT_EQ(t.Message(), "permission denied");
  t.link(0).flags |= GEP_LINK_VALUE_FAILED;
  EXPECT_EQ(t.Message(), "<?>");
}

TEST(Render, UnknownTypes) {
  Tree t;
  int root = t.Add(-1, "*main.QueryError", {{"Query", "q0"}});
  t.Add(root, "*errors.errorString", {{"s", "no rows"}});
  EXPECT_EQ(t.Message(), "q0: no rows");

  Tree fieldless;
  fieldless.Add(-1, "main.sentinel");
  EXPECT_EQ(fieldless.Message(), "main.sentinel");

  Tree no_type;
  no_type.Add(-1, "");
  no_type.link(0).type = 0x4a1b20;
  no_type.link(0).flags = GEP_LINK_UNKNOWN_TYPE;
  EXPECT_EQ(no_type.Message(), "<type 0x4a1b20>");
  no_type.link(0).type = 0;
  EXPECT_EQ(RenderChain(no_type.error()), "<unknown type>");
}

TEST(Render, PartialCapture) {
  Tree t;
  int root = t.Add(-1, "*fs.PathError", {{"Op", "open"}, {"Path", "/very/long"}});
  t.link(root).strings[1].length = 4000;  // only a prefix was copied
  t.link(root).flags |= GEP_LINK_DEPTH_CUT;
  EXPECT_EQ(t.Message(), "open /very/long...: <?>");

  Tree nil_err;
  nil_err.Add(-1, "*os.SyscallError", {{"Syscall", "read"}});
  EXPECT_EQ(nil_err.Message(), "read: <nil>");

  Tree unread;
  unread.Add(-1, "*errors.errorString", {{"s", ""}});
  unread.link(0).strings[0].read_failed = true;
  EXPECT_EQ(unread.Message(), "<?>");
}

TEST(Errno, CommonValues) {
  using profiler::ErrnoText;
  EXPECT_EQ(ErrnoText(2), "no such file or directory");    // ENOENT
  EXPECT_EQ(ErrnoText(111), "connection refused");         // ECONNREFUSED
  EXPECT_EQ(ErrnoText(13), "permission denied");           // EACCES
  EXPECT_EQ(ErrnoText(11), "resource temporarily unavailable");  // EAGAIN
  EXPECT_EQ(ErrnoText(73), "RFS specific error");
  EXPECT_EQ(ErrnoText(0), "errno 0");
  EXPECT_EQ(ErrnoText(41), "errno 41");
  EXPECT_EQ(ErrnoText(133), "errno 133");  // EHWPOISON: not in Go's table
  EXPECT_EQ(ErrnoText(~uint64_t{0}), "errno -1");
  profiler::RenderOptions go124{goabi::GoVersion{1, 24, 0}};
  EXPECT_EQ(ErrnoText(116), "stale file handle");
  EXPECT_EQ(ErrnoText(116, go124), "stale NFS file handle");
}

// Every entry of Go's own table, parsed from the sources of each Go
// toolchain on this machine (GOROOT and the module cache's toolchains).
void CheckGoErrnoTable(const std::string& goroot) {
  std::ifstream version_file(goroot + "/VERSION");
  std::string version_line;
  std::getline(version_file, version_line);
  profiler::RenderOptions options{goabi::GoVersion::Parse(version_line)};
  ASSERT_TRUE(options.go_version) << goroot << ": VERSION " << version_line;
  std::ifstream in(goroot + "/src/syscall/zerrors_linux_amd64.go");
  ASSERT_TRUE(in) << goroot;
  std::regex entry(R"re(^\s*(\d+):\s*"(.*)",\s*$)re");
  std::map<int, std::string> table;
  bool in_table = false;
  for (std::string line; std::getline(in, line);) {
    if (absl::StartsWith(line, "var errors = [...]string{")) {
      in_table = true;
      continue;
    }
    if (!in_table) continue;
    if (line == "}") break;
    std::smatch m;
    if (std::regex_match(line, m, entry)) table[std::stoi(m[1])] = m[2].str();
  }
  ASSERT_GT(table.size(), 100u) << goroot;
  // Values outside the table, or with an empty entry, print as "errno N".
  for (int n = 0; n <= 160; ++n) {
    auto it = table.find(n);
    std::string want = it != table.end() ? it->second : absl::StrCat("errno ", n);
    EXPECT_EQ(profiler::ErrnoText(n, options), want) << version_line << " errno " << n;
  }
}

TEST(Errno, MatchesGoTables) {
  if (access(kGo, X_OK) != 0) GTEST_SKIP() << "no " << kGo;
  std::vector<std::string> goroots = {"/usr/local/go"};
  CommandResult r = RunCommand({kGo, "env", "GOMODCACHE"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string pattern = absl::StrCat(absl::StripAsciiWhitespace(r.out),
                                     "/golang.org/toolchain@v0.0.1-go*.linux-amd64");
  glob_t g{};
  if (glob(pattern.c_str(), 0, nullptr, &g) == 0) {
    for (size_t i = 0; i < g.gl_pathc; ++i) goroots.push_back(g.gl_pathv[i]);
  }
  globfree(&g);
  for (const std::string& goroot : goroots) CheckGoErrnoTable(goroot);
  std::cout << "checked the errno tables of " << goroots.size() << " Go toolchains\n";
}

// GoQuote against strconv.Quote itself.
TEST(Quote, MatchesStrconv) {
  if (access(kGo, X_OK) != 0) GTEST_SKIP() << "no " << kGo;
  const std::vector<std::string> inputs = {
      "plain",       "a \"q\" \\ b", "\a\b\f\n\r\t\v", std::string("nul\0x", 5),
      "\x7f\x1b",    "héllo, 世界",  "\xff\xfe bad",   "\xc0\xaf overlong",
      "\xed\xa0\x80 surrogate",      "\xc2\x85 nel",   "\xc2\xa0 nbsp",
      "\xc2\xad shy", "\xe2\x80\x8b zwsp", "\xe2\x80\xa8 ls", "\xef\xbb\xbf bom",
      "\xee\x80\x80 pua", "\xf0\x9f\x98\x80 emoji", "\xe3\x80\x80 ideographic space",
      "trailing \xe4\xb8"};
  char dir_template[] = "/tmp/gep_quote_XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const std::string dir = dir_template;
  {
    std::ofstream go(dir + "/main.go");
    go << "package main\n"
          "import (\"encoding/hex\"; \"fmt\"; \"os\"; \"strconv\")\n"
          "func main() {\n"
          "  for _, a := range os.Args[1:] {\n"
          "    b, _ := hex.DecodeString(a)\n"
          "    fmt.Println(strconv.Quote(string(b)))\n"
          "  }\n"
          "}\n";
  }
  std::vector<std::string> argv = {kGo, "run", dir + "/main.go"};
  for (const std::string& s : inputs) {
    std::string hex;
    for (unsigned char c : s) absl::StrAppend(&hex, absl::Hex(c, absl::kZeroPad2));
    argv.push_back(hex);
  }
  setenv("GOTOOLCHAIN", "local", 1);
  CommandResult r = RunCommand(argv, 300);
  std::remove((dir + "/main.go").c_str());
  rmdir(dir.c_str());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<std::string> want = absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(want.size(), inputs.size()) << r.out;
  for (size_t i = 0; i < inputs.size(); ++i) {
    EXPECT_EQ(profiler::GoQuote(inputs[i]), want[i]) << "input " << i;
  }
}

// ---------------------------------------------------------------- aggregation

CapturedError Event(std::vector<uint64_t> stack, const std::string& msg, uint64_t goid) {
  Tree t;
  t.Add(-1, "*errors.errorString", {{"s", msg}});
  CapturedError e = t.error();
  e.ip = stack.empty() ? 0 : stack[0];
  e.stack = std::move(stack);
  e.goid = goid;
  return e;
}

TEST(ErrorProfile, AggregatesByStackLabelsAndGoroutine) {
  ErrorProfile p;
  for (int i = 0; i < 3; ++i) p.Add(Event({0x401000, 0x402000}, "a", 1));
  p.Add(Event({0x401000, 0x402000}, "a", 2));  // other goroutine
  p.Add(Event({0x401000, 0x402100}, "a", 1));  // other caller
  p.Add(Event({0x401000, 0x402000}, "b", 1));  // other message
  CapturedError no_stack = Event({}, "c", 0);
  no_stack.ip = 0x403000;
  no_stack.flags = GEP_EV_STACK_FAILED;
  p.Add(no_stack);

  EXPECT_EQ(p.counters().events, 7u);
  EXPECT_EQ(p.num_samples(), 5u);
  EXPECT_THAT(std::vector<uint64_t>(p.sites().begin(), p.sites().end()),
              ::testing::ElementsAre(0x401000, 0x403000));
  std::vector<ErrorProfile::Sample> samples = p.Samples();
  ASSERT_EQ(samples.size(), 5u);
  EXPECT_EQ(samples[0].count, 3u);
  EXPECT_EQ(samples[0].key->message, "a");
  EXPECT_EQ(samples[0].key->goroutine, 1u);
  EXPECT_EQ(samples[0].key->type, "*errors.errorString");
  EXPECT_EQ(samples[0].key->chain, "*errors.errorString");
  EXPECT_EQ(samples[4].key->stack, std::vector<uint64_t>{0x403000});
}

TEST(ErrorProfile, CapsMessagesPerSite) {
  ErrorProfile::Options options;
  options.max_messages_per_site = 2;
  ErrorProfile p(options);
  for (int i = 0; i < 5; ++i) p.Add(Event({0x401000}, absl::StrCat("id ", i), 1));
  p.Add(Event({0x401000}, "id 1", 1));  // seen before: kept
  p.Add(Event({0x405000}, "id 4", 1));  // another site has its own budget
  EXPECT_EQ(p.counters().events, 7u);
  EXPECT_EQ(p.counters().other_messages, 3u);
  std::map<std::string, uint64_t> by_message;
  for (const auto& s : p.Samples()) by_message[absl::StrCat(s.key->stack[0], " ", s.key->message)] += s.count;
  EXPECT_EQ(by_message, (std::map<std::string, uint64_t>{{"4198400 id 0", 1},
                                                         {"4198400 id 1", 2},
                                                         {"4198400 <other>", 3},
                                                         {"4214784 id 4", 1}}));
}

TEST(ErrorProfile, Drops) {
  ErrorProfile p;
  p.SetDrops("ringbuf_full", 3);
  p.SetDrops("decode", 1);
  p.SetDrops("ringbuf_full", 5);
  p.SetDrops("unused", 0);
  EXPECT_EQ(p.counters().drops,
            (std::map<std::string, uint64_t>{{"decode", 1}, {"ringbuf_full", 5}}));
  EXPECT_EQ(p.counters().dropped(), 6u);
}

// ---------------------------------------------------------------- pprof

std::optional<CorpusBinary> NewestCorpusBinary(const std::string& program,
                                               const std::string& flavour) {
  auto corpus = LoadCorpus(false);
  if (!corpus.ok()) return std::nullopt;
  std::optional<CorpusBinary> best;
  std::optional<goabi::GoVersion> best_version;
  for (const CorpusBinary& b : *corpus) {
    if (b.program != program || b.flavour != flavour) continue;
    auto v = goabi::GoVersion::Parse(b.go_version);
    if (v && (!best_version || *best_version < *v)) {
      best = b;
      best_version = v;
    }
  }
  return best;
}

// Symbolized frames as "function file:line", innermost first.
std::vector<std::string> FrameStrings(const symbolizer::GoBinary& bin, uint64_t pc) {
  std::vector<std::string> out;
  auto frames = bin.Symbolize(pc);
  if (!frames.ok()) return out;
  for (const auto& f : *frames) out.push_back(absl::StrCat(f.function, " ", f.file, ":", f.line));
  return out;
}

std::optional<size_t> FindFunction(const symbolizer::GoBinary& bin, absl::string_view name) {
  const symbolizer::Pclntab& t = bin.pclntab();
  for (size_t i = 0; i < t.num_functions(); ++i) {
    if (t.FuncName(i) == name) return i;
  }
  return std::nullopt;
}

// First PC of `function` whose innermost frame is in `inlined`.
uint64_t FindInlinedPc(const symbolizer::GoBinary& bin, absl::string_view function,
                       absl::string_view inlined) {
  auto f = FindFunction(bin, function);
  if (!f) return 0;
  for (uint64_t pc = bin.pclntab().FuncEntry(*f); pc < bin.pclntab().FuncEnd(*f); ++pc) {
    auto frames = bin.Symbolize(pc);
    if (frames.ok() && frames->size() >= 2 && (*frames)[0].function == inlined) return pc;
  }
  return 0;
}

// A PC of `function` with a source line (not alignment padding), past its
// entry.
uint64_t FindPc(const symbolizer::GoBinary& bin, absl::string_view function) {
  auto f = FindFunction(bin, function);
  if (!f) return 0;
  for (uint64_t pc = bin.pclntab().FuncEntry(*f) + 1; pc < bin.pclntab().FuncEnd(*f); ++pc) {
    auto at = bin.Symbolize(pc);
    if (at.ok() && at->size() == 1 && at->back().line > 0) return pc;
  }
  return 0;
}

// A return-address-like PC in `function`: one where the line of pc-1
// differs from that of pc (both real lines), so symbolizing pc-1 is
// observable.
uint64_t FindLineBoundary(const symbolizer::GoBinary& bin, absl::string_view function) {
  auto f = FindFunction(bin, function);
  if (!f) return 0;
  for (uint64_t pc = bin.pclntab().FuncEntry(*f) + 1; pc < bin.pclntab().FuncEnd(*f); ++pc) {
    auto before = bin.Symbolize(pc - 1);
    auto at = bin.Symbolize(pc);
    if (before.ok() && at.ok() && before->back().line > 0 && at->back().line > 0 &&
        before->back().line != at->back().line) {
      return pc;
    }
  }
  return 0;
}

// Over build flavours: PIE, and cgo's text segment that is not the first.
class PprofTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    auto b = NewestCorpusBinary("errgen", GetParam());
    ASSERT_TRUE(b) << "no errgen-" << GetParam() << " in the corpus at " << CorpusDir()
                   << " (build it with scripts/build_corpus.sh)";
    corpus_ = *b;
    auto bin = symbolizer::GoBinary::Open(corpus_.path);
    ASSERT_TRUE(bin.ok()) << bin.status();
    bin_ = std::move(*bin);
    setenv("GOTOOLCHAIN", "local", 1);  // never fetch a toolchain for `go tool`

    inl_pc_ = FindInlinedPc(*bin_, "main.siteNewInline", "errors.New");
    ASSERT_NE(inl_pc_, 0u) << "no inlined errors.New in main.siteNewInline";
    wrap_pc_ = FindPc(*bin_, "main.siteWrapChain");
    open_pc_ = FindPc(*bin_, "main.siteOpenMissing");
    ret_pc_ = FindLineBoundary(*bin_, "main.main");
    ASSERT_NE(wrap_pc_, 0u);
    ASSERT_NE(open_pc_, 0u);
    ASSERT_NE(ret_pc_, 0u);

    char dir[] = "/tmp/gep_pprof_XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    dir_ = dir;
    path_ = dir_ + "/errors.pb.gz";
  }
  void TearDown() override {
    if (dir_.empty()) return;
    unlink(path_.c_str());
    rmdir(dir_.c_str());
  }

  // Ten events: errors.New inlined ×3 (goroutine 1) and ×2 (goroutine 2),
  // a four-link wrap chain ×4 (goroutine 7), one os.Open error (goroutine
  // unknown), each called from main.main.
  ErrorProfile SampleProfile() {
    ErrorProfile p;
    auto event = [&](std::vector<uint64_t> stack, uint64_t goid, Tree& t) {
      CapturedError e = t.error();
      e.ip = stack[0];
      e.stack = std::move(stack);
      e.goid = goid;
      p.Add(e);
    };
    Tree inl;
    inl.Add(-1, "*errors.errorString", {{"s", "errgen: errors.New inlined"}});
    for (int i = 0; i < 3; ++i) event({inl_pc_, ret_pc_}, 1, inl);
    for (int i = 0; i < 2; ++i) event({inl_pc_, ret_pc_}, 2, inl);
    Tree wrap;
    int outer = wrap.Add(-1, "*fmt.wrapError", {{"msg", "outer 0: middle: inner: root cause"}});
    int middle = wrap.Add(outer, "*fmt.wrapError", {{"msg", "middle: inner: root cause"}});
    int inner = wrap.Add(middle, "*fmt.wrapError", {{"msg", "inner: root cause"}});
    wrap.Add(inner, "*errors.errorString", {{"s", "root cause"}});
    for (int i = 0; i < 4; ++i) event({wrap_pc_, ret_pc_}, 7, wrap);
    Tree open;
    int pe = open.Add(-1, "*fs.PathError",
                      {{"Op", "open"}, {"Path", "/nonexistent/goerrprof/missing-0.txt"}});
    open.Add(pe, "syscall.Errno", {}, 2);
    event({open_pc_, ret_pc_}, 0, open);
    p.SetDrops("ringbuf_full", 2);
    p.SetDrops("decode_errors", 1);
    return p;
  }

  profiler::PprofInfo Info() const {
    profiler::PprofInfo info;
    info.time_nanos = 1700000000000000000;
    info.duration_nanos = 2500000000;
    info.probes_attached = 42;
    return info;
  }

  CommandResult Pprof(std::vector<std::string> args) {
    std::vector<std::string> argv = {kGo, "tool", "pprof"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.push_back(path_);
    return RunCommand(argv, 300);
  }

  CorpusBinary corpus_;
  std::unique_ptr<symbolizer::GoBinary> bin_;
  uint64_t inl_pc_ = 0, wrap_pc_ = 0, open_pc_ = 0, ret_pc_ = 0;
  std::string dir_, path_;
};

std::string Str(const pp::Profile& p, int64_t i) { return p.string_table(i); }

struct ReadSample {
  int64_t count = 0;
  std::vector<uint64_t> addresses;
  std::map<std::string, std::string> str_labels;
  std::map<std::string, int64_t> num_labels;
};

std::vector<ReadSample> Samples(const pp::Profile& p) {
  std::map<uint64_t, uint64_t> address;
  for (const pp::Location& l : p.location()) address[l.id()] = l.address();
  std::vector<ReadSample> out;
  for (const pp::Sample& s : p.sample()) {
    ReadSample r;
    r.count = s.value(0);
    for (uint64_t id : s.location_id()) r.addresses.push_back(address.at(id));
    for (const pp::Label& l : s.label()) {
      // goroutine is the one numeric label.
      if (Str(p, l.key()) == "goroutine") {
        EXPECT_EQ(l.str(), 0);
        r.num_labels[Str(p, l.key())] = l.num();
      } else {
        EXPECT_EQ(l.num(), 0);
        r.str_labels[Str(p, l.key())] = Str(p, l.str());
      }
    }
    out.push_back(std::move(r));
  }
  return out;
}

TEST_P(PprofTest, ReadBack) {
  ErrorProfile profile = SampleProfile();
  ASSERT_TRUE(profiler::WritePprof(profile, *bin_, Info(), path_).ok());
  auto read = profiler::ReadProfile(path_);
  ASSERT_TRUE(read.ok()) << read.status();
  const pp::Profile& p = *read;

  ASSERT_EQ(p.sample_type_size(), 1);
  EXPECT_EQ(Str(p, p.sample_type(0).type()), "errors");
  EXPECT_EQ(Str(p, p.sample_type(0).unit()), "count");
  EXPECT_EQ(Str(p, p.period_type().type()), "errors");
  EXPECT_EQ(Str(p, p.period_type().unit()), "count");
  EXPECT_EQ(p.period(), 1);
  EXPECT_EQ(p.time_nanos(), 1700000000000000000);
  EXPECT_EQ(p.duration_nanos(), 2500000000);

  // Samples: exact counts, stacks and labels, most frequent first.
  std::vector<ReadSample> samples = Samples(p);
  ASSERT_EQ(samples.size(), 4u);
  EXPECT_EQ(samples[0].count, 4);
  EXPECT_EQ(samples[0].addresses, (std::vector<uint64_t>{wrap_pc_, ret_pc_ - 1}));
  EXPECT_EQ(samples[0].str_labels,
            (std::map<std::string, std::string>{
                {"error.type", "*fmt.wrapError"},
                {"error.message", "outer 0: middle: inner: root cause"},
                {"error.chain",
                 "*fmt.wrapError > *fmt.wrapError > *fmt.wrapError > *errors.errorString"}}));
  EXPECT_EQ(samples[0].num_labels, (std::map<std::string, int64_t>{{"goroutine", 7}}));
  EXPECT_EQ(samples[1].count, 3);
  EXPECT_EQ(samples[1].num_labels.at("goroutine"), 1);
  EXPECT_EQ(samples[1].str_labels.at("error.message"), "errgen: errors.New inlined");
  EXPECT_EQ(samples[2].count, 2);
  EXPECT_EQ(samples[2].num_labels.at("goroutine"), 2);
  EXPECT_EQ(samples[2].addresses, (std::vector<uint64_t>{inl_pc_, ret_pc_ - 1}));
  EXPECT_EQ(samples[3].count, 1);
  EXPECT_EQ(samples[3].num_labels.at("goroutine"), 0);
  EXPECT_EQ(samples[3].str_labels.at("error.message"),
            "open /nonexistent/goerrprof/missing-0.txt: no such file or directory");
  EXPECT_EQ(samples[3].str_labels.at("error.chain"), "*fs.PathError > syscall.Errno");
  for (const pp::Sample& s : p.sample()) {
    std::vector<std::string> keys;
    for (const pp::Label& l : s.label()) keys.push_back(Str(p, l.key()));
    EXPECT_THAT(keys, ::testing::UnorderedElementsAre("error.type", "error.message",
                                                      "error.chain", "goroutine"));
  }

  // Locations: one per PC, lines are the inlined frames innermost first;
  // return addresses keep their address but describe the call (pc-1).
  ASSERT_EQ(p.location_size(), 4);
  std::map<uint64_t, uint64_t> fn_index;
  for (int i = 0; i < p.function_size(); ++i) fn_index[p.function(i).id()] = i;
  for (const pp::Location& l : p.location()) {
    const bool ret = l.address() == ret_pc_;
    std::vector<std::string> lines;
    for (const pp::Line& line : l.line()) {
      const pp::Function& f = p.function(fn_index.at(line.function_id()));
      EXPECT_EQ(Str(p, f.name()), Str(p, f.system_name()));
      lines.push_back(absl::StrCat(Str(p, f.name()), " ", Str(p, f.filename()), ":", line.line()));
    }
    EXPECT_EQ(lines, FrameStrings(*bin_, ret ? l.address() - 1 : l.address()))
        << std::hex << l.address();
    ASSERT_FALSE(lines.empty());
    EXPECT_THAT(lines.back(), ::testing::Not(::testing::EndsWith(":0")));
    EXPECT_EQ(l.mapping_id(), 1u);
    if (l.address() == inl_pc_) {
      ASSERT_GE(lines.size(), 2u);
      EXPECT_THAT(lines[0], ::testing::StartsWith("errors.New "));
      EXPECT_THAT(lines.back(), ::testing::StartsWith("main.siteNewInline "));
    }
  }
  EXPECT_NE(FrameStrings(*bin_, ret_pc_ - 1), FrameStrings(*bin_, ret_pc_));

  // One mapping over the executable segment, naming the binary.
  ASSERT_EQ(p.mapping_size(), 1);
  const pp::Mapping& m = p.mapping(0);
  EXPECT_EQ(m.id(), 1u);
  bool covered = false;
  for (const symbolizer::ElfSegment& seg : bin_->elf().loads()) {
    if (seg.flags & 1 /* PF_X */) {
      EXPECT_EQ(m.memory_start(), seg.vaddr);
      EXPECT_EQ(m.memory_limit(), seg.vaddr + seg.memsz);
      EXPECT_EQ(m.file_offset(), seg.offset);
      covered = true;
    }
  }
  EXPECT_TRUE(covered);
  EXPECT_LE(m.memory_start(), inl_pc_);
  EXPECT_GT(m.memory_limit(), inl_pc_);
  EXPECT_EQ(Str(p, m.filename()), corpus_.path);
  const std::string& want_id = bin_->elf().gnu_build_id().empty() ? bin_->elf().go_build_id()
                                                                   : bin_->elf().gnu_build_id();
  EXPECT_FALSE(want_id.empty());
  EXPECT_EQ(Str(p, m.build_id()), want_id);
  EXPECT_TRUE(m.has_functions() && m.has_filenames() && m.has_line_numbers() &&
              m.has_inline_frames());

  std::vector<std::string> comments;
  for (int64_t c : p.comment()) comments.push_back(Str(p, c));
  EXPECT_EQ(comments, (std::vector<std::string>{
                          absl::StrCat("goerrprof: error creations in ", corpus_.path),
                          absl::StrCat("go version: ", corpus_.go_version),
                          "duration: 2.5s",
                          "probes attached: 42",
                          "drops: decode_errors=1 ringbuf_full=2 (total 3)",
                          "counts: events=10 samples=4 sites=3 partial=0 other_messages=0 "
                          "dropped=3",
                      }));
}

TEST_P(PprofTest, GoToolPprof) {
  if (access(kGo, X_OK) != 0) GTEST_SKIP() << "no " << kGo;
  ASSERT_TRUE(profiler::WritePprof(SampleProfile(), *bin_, Info(), path_).ok());

  CommandResult top = Pprof({"-top"});
  ASSERT_EQ(top.exit_code, 0) << top.err;
  EXPECT_THAT(top.out, HasSubstr("Type: errors"));
  EXPECT_THAT(top.out, HasSubstr("of 10 total"));
  // Flat counts belong to the innermost (inlined) frames.
  EXPECT_TRUE(std::regex_search(top.out, std::regex(R"(\n\s+5\s+50\.00%.*errors\.New \(inline\))")))
      << top.out;
  EXPECT_TRUE(std::regex_search(top.out, std::regex(R"(\n\s+4\s+40\.00%.*main\.siteWrapChain\n)")))
      << top.out;
  EXPECT_TRUE(std::regex_search(top.out, std::regex(R"(\n\s+0\s+0%\s+100%\s+10\s+100%\s+main\.main\n)")))
      << top.out;

  CommandResult traces = Pprof({"-traces"});
  ASSERT_EQ(traces.exit_code, 0) << traces.err;
  // Each trace lists its labels, then the count and the frames.
  EXPECT_THAT(traces.out,
              HasSubstr("error.chain:  *fmt.wrapError > *fmt.wrapError > *fmt.wrapError > "
                        "*errors.errorString\n"
                        "error.message:  outer 0: middle: inner: root cause\n"
                        "error.type:  *fmt.wrapError\n"
                        " goroutine:  7\n"
                        "         4   main.siteWrapChain\n"
                        "             main.main\n"));
  EXPECT_THAT(traces.out, HasSubstr(" goroutine:  2\n"
                                    "         2   errors.New (inline)\n"
                                    "             main.siteNewInline\n"
                                    "             main.main\n"));
  // pprof drops a numeric label of 0 when decoding: no goroutine is shown
  // for the event whose goroutine id is unknown.
  EXPECT_THAT(traces.out, HasSubstr("error.type:  *fs.PathError\n"
                                    "         1   main.siteOpenMissing\n"));
  EXPECT_THAT(traces.out, HasSubstr("errors.New"));

  CommandResult raw = Pprof({"-raw"});
  ASSERT_EQ(raw.exit_code, 0) << raw.err;
  EXPECT_THAT(raw.out, HasSubstr("PeriodType: errors count"));
  EXPECT_THAT(raw.out, HasSubstr("probes attached: 42"));
  EXPECT_THAT(raw.out, HasSubstr(absl::StrCat(absl::Hex(inl_pc_))));
  EXPECT_THAT(raw.out, HasSubstr(corpus_.path));

  // -tagfocus takes a regexp: anchored, it keeps exactly one type.
  CommandResult focus = Pprof({"-top", R"(-tagfocus=error.type=^\*errors\.errorString$)"});
  ASSERT_EQ(focus.exit_code, 0) << focus.err;
  EXPECT_THAT(focus.out, HasSubstr("Showing nodes accounting for 5, 50.00% of 10 total"));
  EXPECT_THAT(focus.out, HasSubstr("errors.New"));
  EXPECT_THAT(focus.out, ::testing::Not(HasSubstr("siteWrapChain")));
  EXPECT_THAT(focus.out, ::testing::Not(HasSubstr("siteOpenMissing")));
  CommandResult by_goroutine = Pprof({"-top", "-tagfocus=goroutine=7"});
  ASSERT_EQ(by_goroutine.exit_code, 0) << by_goroutine.err;
  EXPECT_THAT(by_goroutine.out, HasSubstr("Showing nodes accounting for 4, 40.00% of 10 total"));
  EXPECT_THAT(by_goroutine.out, HasSubstr("main.siteWrapChain"));
  EXPECT_THAT(by_goroutine.out, ::testing::Not(HasSubstr("errors.New")));

  CommandResult tags = Pprof({"-tags"});
  ASSERT_EQ(tags.exit_code, 0) << tags.err;
  EXPECT_THAT(tags.out, HasSubstr("error.type: Total 10"));
  EXPECT_TRUE(std::regex_search(tags.out, std::regex(R"(\n\s+5 \(50\.00%\): \*errors\.errorString\n)")))
      << tags.out;
  EXPECT_THAT(tags.out, HasSubstr("goroutine: Total 9 of 10"));  // 0 (unknown) not shown
  EXPECT_TRUE(std::regex_search(tags.out, std::regex(R"(\n\s+4 \(40\.00%\): 7\n)")))
      << tags.out;
  EXPECT_THAT(tags.out, HasSubstr("error.chain: Total 10"));
  EXPECT_THAT(tags.out, HasSubstr("error.message: Total 10"));

  // pprof accepts the mapping (build ID, address range) for symbolizing
  // from the binary itself; the creating sites resolve to the same
  // functions. (How it expands inlining depends on the tools it finds.)
  CommandResult force = Pprof({"-symbolize=force", "-raw"});
  ASSERT_EQ(force.exit_code, 0) << force.err;
  EXPECT_THAT(force.err, ::testing::Not(HasSubstr("mismatch")));
  EXPECT_THAT(force.err, ::testing::Not(HasSubstr("failed")));
  for (uint64_t pc : {wrap_pc_, open_pc_, inl_pc_}) {
    std::string loc = absl::StrCat(": 0x", absl::Hex(pc), " M=1 ");
    size_t at = force.out.find(loc);
    ASSERT_NE(at, std::string::npos) << loc << "\n" << force.out;
    std::string rest = force.out.substr(at + loc.size());
    std::string want = FrameStrings(*bin_, pc).back();
    want = want.substr(0, want.find(' '));
    // This location's lines run to the next location or the mappings.
    std::smatch next;
    if (std::regex_search(rest, next, std::regex(R"(\n\s*\d+: 0x|\nMappings)"))) {
      rest = rest.substr(0, next.position(0));
    }
    EXPECT_THAT(rest, ::testing::HasSubstr(want)) << force.out;
  }
}

TEST_P(PprofTest, WriteIsAtomicAndReportsErrors) {
  ASSERT_TRUE(profiler::WritePprof(SampleProfile(), *bin_, Info(), path_).ok());
  ErrorProfile empty;
  ASSERT_TRUE(profiler::WritePprof(empty, *bin_, Info(), path_).ok());  // replaces
  auto read = profiler::ReadProfile(path_);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->sample_size(), 0);
  // Nothing but the profile is left in the directory.
  CommandResult ls = RunCommand({"ls", "-A", dir_});
  EXPECT_EQ(ls.out, "errors.pb.gz\n");

  absl::Status bad = profiler::WritePprof(empty, *bin_, Info(), "/nonexistent-dir/x.pb.gz");
  EXPECT_FALSE(bad.ok());
  EXPECT_THAT(std::string(bad.message()), HasSubstr("/nonexistent-dir/x.pb.gz"));
  EXPECT_FALSE(profiler::ReadProfile("/nonexistent-dir/x.pb.gz").ok());
}

INSTANTIATE_TEST_SUITE_P(Flavours, PprofTest, ::testing::Values("default", "pie", "cgo"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace goerrprof::testing
