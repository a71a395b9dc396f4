// The error renderer against Go's own Error() texts: hand-built captures of
// the common error types, and the errno table and string quoting checked
// against the Go toolchains on this machine.
#include <glob.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <regex>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "aggregate/error_render.h"
#include "goabi/go_version.h"
#include "tests/pprof/pprof_test_util.h"
#include "tests/test_support.h"

namespace goerrprof::testing {
namespace {

using profiler::CapturedAddr;
using profiler::RenderChain;
using profiler::RenderMessage;

TEST(Render, ErrorString) {
  Tree t;
  t.Add(-1, "*errors.errorString", {{"s", "errgen: errors.New inlined"}});
  EXPECT_EQ(t.Message(), "errgen: errors.New inlined");
  EXPECT_EQ(RenderChain(t.error()), "*errors.errorString");
}

// Panic values: strings and integers as panic prints them, and the
// runtime's string-typed errors.
TEST(Render, PanicValues) {
  auto message = [](std::string type, std::vector<std::pair<std::string, std::string>> strings,
                    uint64_t value) {
    Tree t;
    t.Add(-1, std::move(type), std::move(strings), value);
    return t.Message();
  };
  EXPECT_EQ(message("string", {{"", "errgen: panic with a string"}}, 0),
            "errgen: panic with a string");
  EXPECT_EQ(message("runtime.plainError", {{"", "assignment to entry in nil map"}}, 0),
            "assignment to entry in nil map");
  EXPECT_EQ(message("runtime.errorString", {{"", "integer divide by zero"}}, 0),
            "runtime error: integer divide by zero");
  EXPECT_EQ(message("int", {}, 41), "41");
  EXPECT_EQ(message("int", {}, ~uint64_t{0}), "-1");
  EXPECT_EQ(message("int8", {}, 0xff), "-1");
  EXPECT_EQ(message("int32", {}, 0x7fffffff), "2147483647");
  EXPECT_EQ(message("uint8", {}, 0x1ff), "255");
  EXPECT_EQ(message("uint64", {}, ~uint64_t{0}), "18446744073709551615");
  // A type without a known rendering and no strings: its name.
  EXPECT_EQ(message("runtime.boundsError", {}, 5), "runtime.boundsError");
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

}  // namespace
}  // namespace goerrprof::testing
