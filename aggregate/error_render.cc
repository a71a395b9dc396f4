#include "aggregate/error_render.h"

#include <string.h>

#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace goerrprof::profiler {
namespace {

// Go's syscall errors table on linux/amd64 ends at ERFKILL (132); it has
// no EHWPOISON and no entries for 41 and 58, which glibc also leaves unnamed.
constexpr int64_t kGoErrnoMax = 132;

// A string as Go would print it, marked when the capture lost part of it.
std::string StringText(const CapturedString* s) {
  if (s == nullptr || s->read_failed) return std::string(kMissingMark);
  if (s->truncated()) return absl::StrCat(s->value, kTruncatedMark);
  return s->value;
}

std::string Field(const CapturedLink& link, const std::string& name) {
  return StringText(link.String(name));
}

// net.JoinHostPort.
std::string JoinHostPort(const std::string& host, const std::string& port) {
  if (host.find(':') != std::string::npos) return absl::StrCat("[", host, "]:", port);
  return absl::StrCat(host, ":", port);
}

bool ChildrenCut(const CapturedError& e, const CapturedLink& link) {
  constexpr uint32_t kLinkCut =
      GEP_LINK_DEPTH_CUT | GEP_LINK_LINKS_CUT | GEP_LINK_FIELD_FAILED | GEP_LINK_UNKNOWN_TYPE;
  return (link.flags & kLinkCut) || (e.flags & (GEP_EV_TRUNCATED | GEP_EV_LINKS_CUT));
}

class Renderer {
 public:
  Renderer(const CapturedError& e, const RenderOptions& options) : e_(e), options_(options) {}

  std::string Render(size_t i) const {
    const CapturedLink& l = e_.links[i];
    const std::string& t = l.type_name;
    if (t == "*errors.errorString") return Field(l, "s");
    if (t == "*fmt.wrapError" || t == "*fmt.wrapErrors" || t == "*json.SyntaxError") {
      return Field(l, "msg");
    }
    if (t == "*errors.joinError") return Joined(i);
    if (t == "*fs.PathError" || t == "*os.PathError") {
      return absl::StrCat(Field(l, "Op"), " ", Field(l, "Path"), ": ", Wrapped(i));
    }
    if (t == "*os.SyscallError") return absl::StrCat(Field(l, "Syscall"), ": ", Wrapped(i));
    if (t == "*net.OpError") {
      std::string s = Field(l, "Op");
      const CapturedString* net = l.String("Net");
      if (net == nullptr || net->read_failed || !net->value.empty()) {
        absl::StrAppend(&s, " ", Field(l, "Net"));
      }
      const CapturedAddr* src = l.Addr("Source");
      const CapturedAddr* dst = l.Addr("Addr");
      if (src == nullptr || dst == nullptr) {
        absl::StrAppend(&s, " ", kMissingMark);  // not captured: unknown even whether nil
      } else {
        if (!src->nil()) absl::StrAppend(&s, " ", AddrString(*src));
        if (!dst->nil()) absl::StrAppend(&s, src->nil() ? " " : "->", AddrString(*dst));
      }
      return absl::StrCat(s, ": ", Wrapped(i));
    }
    if (t == "*net.DNSError") {
      std::string s = absl::StrCat("lookup ", Field(l, "Name"));
      const CapturedString* server = l.String("Server");
      if (server == nullptr || server->read_failed || !server->value.empty()) {
        absl::StrAppend(&s, " on ", Field(l, "Server"));
      }
      return absl::StrCat(s, ": ", Field(l, "Err"));
    }
    if (t == "*url.Error") {
      return absl::StrCat(Field(l, "Op"), " ", Quoted(l, "URL"), ": ", Wrapped(i));
    }
    if (t == "*strconv.NumError") {
      return absl::StrCat("strconv.", Field(l, "Func"), ": parsing ", Quoted(l, "Num"), ": ",
                          Wrapped(i));
    }
    if (t == "syscall.Errno") {
      if (l.flags & GEP_LINK_VALUE_FAILED) return std::string(kMissingMark);
      return ErrnoText(l.value, options_);
    }
    // Panic values: strings and integers as panic prints them, and the
    // runtime's string-typed errors.
    if (t == "string" || t == "runtime.plainError") return Field(l, "");
    if (t == "runtime.errorString") return absl::StrCat("runtime error: ", Field(l, ""));
    if (std::optional<std::string> n = Integer(l)) return *n;
    // Fieldless types with a constant message.
    if (t == "context.deadlineExceededError") return "context deadline exceeded";
    if (t == "*poll.DeadlineExceededError") return "i/o timeout";
    return Unknown(i);
  }

 private:
  // An unnamed integer type's value, as fmt prints it.
  static std::optional<std::string> Integer(const CapturedLink& l) {
    static const std::pair<absl::string_view, int> kSigned[] = {
        {"int", 64}, {"int64", 64}, {"int32", 32}, {"int16", 16}, {"int8", 8}};
    static const std::pair<absl::string_view, int> kUnsigned[] = {
        {"uint", 64},   {"uint64", 64}, {"uintptr", 64}, {"uint32", 32},
        {"uint16", 16}, {"uint8", 8}};
    const std::string& t = l.type_name;
    for (const auto& [name, bits] : kSigned) {
      if (t != name) continue;
      if (l.flags & GEP_LINK_VALUE_FAILED) return std::string(kMissingMark);
      uint64_t v = bits == 64 ? l.value : l.value & ((uint64_t{1} << bits) - 1);
      if (bits < 64 && (v >> (bits - 1)) != 0) v |= ~uint64_t{0} << bits;  // sign-extend
      return absl::StrCat(static_cast<int64_t>(v));
    }
    for (const auto& [name, bits] : kUnsigned) {
      if (t != name) continue;
      if (l.flags & GEP_LINK_VALUE_FAILED) return std::string(kMissingMark);
      return absl::StrCat(bits == 64 ? l.value : l.value & ((uint64_t{1} << bits) - 1));
    }
    return std::nullopt;
  }

  std::string Quoted(const CapturedLink& l, const std::string& name) const {
    const CapturedString* s = l.String(name);
    if (s == nullptr || s->read_failed) return std::string(kMissingMark);
    std::string q = GoQuote(s->value);
    if (s->truncated()) absl::StrAppend(&q, kTruncatedMark);
    return q;
  }

  // The single wrapped error of a one-field wrapper.
  std::string Wrapped(size_t i) const {
    std::vector<size_t> children = e_.Children(i);
    if (!children.empty()) return Render(children[0]);
    return std::string(ChildrenCut(e_, e_.links[i]) ? kMissingMark : "<nil>");
  }

  std::string Joined(size_t i) const {
    std::vector<std::string> parts;
    for (size_t c : e_.Children(i)) parts.push_back(Render(c));
    const CapturedLink& l = e_.links[i];
    if (parts.empty() || (l.flags & GEP_LINK_WIDTH_CUT) || ChildrenCut(e_, l)) {
      parts.emplace_back(kMissingMark);
    }
    return absl::StrJoin(parts, "\n");
  }

  // Types without a known Error(): the usual "context: wrapped" shape.
  std::string Unknown(size_t i) const {
    const CapturedLink& l = e_.links[i];
    std::vector<std::string> parts;
    for (const CapturedString& s : l.strings) {
      if (s.read_failed) {
        parts.emplace_back(kMissingMark);
      } else if (!s.value.empty()) {
        parts.push_back(s.truncated() ? absl::StrCat(s.value, kTruncatedMark) : s.value);
      }
    }
    std::vector<std::string> wrapped;
    for (size_t c : e_.Children(i)) wrapped.push_back(Render(c));
    if (!wrapped.empty()) parts.push_back(absl::StrJoin(wrapped, "\n"));
    if (parts.empty()) return LinkTypeName(l);
    return absl::StrJoin(parts, ": ");
  }

  const CapturedError& e_;
  const RenderOptions& options_;
};

void AppendUtf8(std::string* out, uint32_t r) {
  if (r < 0x80) {
    out->push_back(static_cast<char>(r));
  } else if (r < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (r >> 6)));
    out->push_back(static_cast<char>(0x80 | (r & 0x3F)));
  } else if (r < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (r >> 12)));
    out->push_back(static_cast<char>(0x80 | ((r >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (r & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (r >> 18)));
    out->push_back(static_cast<char>(0x80 | ((r >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((r >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (r & 0x3F)));
  }
}

// Decodes one rune like utf8.DecodeRuneInString; width 0 means invalid (Go
// then consumes one byte). Rejects overlong forms, surrogates, > U+10FFFF.
uint32_t DecodeRune(absl::string_view s, size_t* width) {
  auto b = [&](size_t k) { return static_cast<uint8_t>(s[k]); };
  auto cont = [&](size_t k) { return k < s.size() && (b(k) & 0xC0) == 0x80; };
  *width = 0;
  uint8_t c = b(0);
  if (c < 0x80) {
    *width = 1;
    return c;
  }
  if (c >= 0xC2 && c <= 0xDF && cont(1)) {
    *width = 2;
    return ((c & 0x1Fu) << 6) | (b(1) & 0x3Fu);
  }
  if (c >= 0xE0 && c <= 0xEF && cont(1) && cont(2)) {
    uint32_t r = ((c & 0x0Fu) << 12) | ((b(1) & 0x3Fu) << 6) | (b(2) & 0x3Fu);
    if (r < 0x800 || (r >= 0xD800 && r <= 0xDFFF)) return 0;
    *width = 3;
    return r;
  }
  if (c >= 0xF0 && c <= 0xF4 && cont(1) && cont(2) && cont(3)) {
    uint32_t r = ((c & 0x07u) << 18) | ((b(1) & 0x3Fu) << 12) | ((b(2) & 0x3Fu) << 6) |
                 (b(3) & 0x3Fu);
    if (r < 0x10000 || r > 0x10FFFF) return 0;
    *width = 4;
    return r;
  }
  return 0;
}

bool NonAsciiPrintable(uint32_t r) {
  if (r <= 0xA0 || r == 0xAD || r == 0x1680 || r == 0x3000 || r == 0xFEFF) return false;
  if (r >= 0x2000 && r <= 0x200F) return false;
  if (r >= 0x2028 && r <= 0x202F) return false;
  if (r >= 0x205F && r <= 0x206F) return false;
  if (r >= 0xE000 && r <= 0xF8FF) return false;   // private use
  if (r >= 0xFFF9 && r <= 0xFFFB) return false;   // interlinear annotation
  if ((r & 0xFFFE) == 0xFFFE) return false;       // noncharacters
  if (r >= 0xF0000) return false;                 // private use planes
  return true;
}

}  // namespace

std::string RenderMessage(const CapturedError& e, size_t index, const RenderOptions& options) {
  if (index >= e.links.size()) return "";
  return Renderer(e, options).Render(index);
}

std::string RenderChain(const CapturedError& e) {
  std::vector<std::string> names;
  names.reserve(e.links.size());
  for (const CapturedLink& l : e.links) names.push_back(LinkTypeName(l));
  return absl::StrJoin(names, " > ");
}

std::string LinkTypeName(const CapturedLink& link) {
  if (!link.type_name.empty()) return link.type_name;
  if (link.type == 0) return "<unknown type>";
  return absl::StrFormat("<type %#x>", link.type);
}

std::string IPString(absl::string_view ip, uint64_t length) {
  if (length == 0) return "";  // ipEmptyString
  auto b = [&](size_t k) { return static_cast<uint8_t>(ip[k]); };
  const bool whole = ip.size() == length;
  // IPv4, or IPv4-mapped IPv6 (To4): dotted decimal.
  size_t v4 = std::string::npos;
  if (whole && length == 4) {
    v4 = 0;
  } else if (whole && length == 16 && b(10) == 0xff && b(11) == 0xff &&
             ip.find_first_not_of('\0') == 10) {
    v4 = 12;
  }
  if (v4 != std::string::npos) {
    return absl::StrCat(b(v4), ".", b(v4 + 1), ".", b(v4 + 2), ".", b(v4 + 3));
  }
  if (!whole || length != 16) {  // neither 4 nor 16 bytes: "?" and hex
    std::string s = "?";
    for (size_t k = 0; k < ip.size(); ++k) absl::StrAppend(&s, absl::Hex(b(k), absl::kZeroPad2));
    if (!whole) absl::StrAppend(&s, kTruncatedMark);
    return s;
  }
  // IPv6: the first longest run of two or more zero groups becomes "::".
  uint16_t g[8];
  for (int k = 0; k < 8; ++k) g[k] = static_cast<uint16_t>((b(2 * k) << 8) | b(2 * k + 1));
  int zs = -1, ze = -1;
  for (int k = 0; k < 8; ++k) {
    int j = k;
    while (j < 8 && g[j] == 0) ++j;
    if (j - k >= 2 && j - k > ze - zs) {
      zs = k;
      ze = j;
    }
  }
  std::string s;
  for (int k = 0; k < 8; ++k) {
    if (k == zs) {
      s += "::";
      k = ze;
      if (k >= 8) break;
    } else if (k > 0) {
      s += ':';
    }
    absl::StrAppend(&s, absl::Hex(g[k]));
  }
  return s;
}

std::string AddrString(const CapturedAddr& a) {
  if (a.nil()) return "<nil>";
  if (!a.decoded()) return std::string(kMissingMark);
  if (a.data == 0) return "<nil>";  // a nil pointer's String()
  if (a.kind == GEP_ADDR_UNIX) return StringText(a.String("Name"));
  std::string host = IPString(a.ip, a.ip_length);
  const CapturedString* zone = a.String("Zone");
  if (zone == nullptr || zone->read_failed || !zone->value.empty()) {
    absl::StrAppend(&host, "%", StringText(zone));
  }
  if (a.kind == GEP_ADDR_IP) return host;
  return JoinHostPort(host, absl::StrCat(a.port));
}

std::string ErrnoText(uint64_t value, const RenderOptions& options) {
  // Go converts the uintptr to int before the range check.
  const int64_t n = static_cast<int64_t>(value);
  if (n < 1 || n > kGoErrnoMax) return absl::StrCat("errno ", n);
  // Where Go's generated table is not glibc's text with a lowercased initial.
  if (n == 73) return "RFS specific error";
  if (n == 116 && options.go_version && !options.go_version->AtLeast(1, 25)) {
    return "stale NFS file handle";  // Go 1.24 and earlier
  }
  // strerrordesc_np, unlike strerror, is never translated by the locale.
  const char* desc = strerrordesc_np(static_cast<int>(n));
  if (desc == nullptr || *desc == '\0') return absl::StrCat("errno ", n);
  std::string s(desc);
  s[0] = absl::ascii_tolower(static_cast<unsigned char>(s[0]));
  return s;
}

std::string GoQuote(absl::string_view s) {
  std::string out = "\"";
  out.reserve(s.size() + 2);
  while (!s.empty()) {
    size_t width;
    uint32_t r = DecodeRune(s, &width);
    if (width == 0) {  // invalid byte
      absl::StrAppend(&out, absl::StrFormat("\\x%02x", static_cast<uint8_t>(s[0])));
      s.remove_prefix(1);
      continue;
    }
    s.remove_prefix(width);
    if (r == '"' || r == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(r));
      continue;
    }
    if ((r >= 0x20 && r < 0x7F) || (r >= 0x80 && NonAsciiPrintable(r))) {
      AppendUtf8(&out, r);
      continue;
    }
    switch (r) {
      case '\a': out += "\\a"; continue;
      case '\b': out += "\\b"; continue;
      case '\f': out += "\\f"; continue;
      case '\n': out += "\\n"; continue;
      case '\r': out += "\\r"; continue;
      case '\t': out += "\\t"; continue;
      case '\v': out += "\\v"; continue;
      default: break;
    }
    if (r < 0x80) {
      absl::StrAppend(&out, absl::StrFormat("\\x%02x", r));
    } else if (r < 0x10000) {
      absl::StrAppend(&out, absl::StrFormat("\\u%04x", r));
    } else {
      absl::StrAppend(&out, absl::StrFormat("\\U%08x", r));
    }
  }
  out.push_back('"');
  return out;
}

}  // namespace goerrprof::profiler
