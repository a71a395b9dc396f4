// Rebuilds an error's Error() text and its type chain from what the probe
// captured (events/captured_error.h), for the Go standard library's error
// types; other types get a best-effort rendering from their string fields.
//
// The text can differ from Go's when the capture is partial:
//  - a string longer than the probe copied ends in "..." (kTruncatedMark);
//  - a string or wrapped error that was not read renders as "<?>"
//    (kMissingMark), a wrapped error that is genuinely nil as "<nil>";
//  - a *net.OpError address (Source, Addr) of a type the probe does not
//    decode (not *net.TCPAddr, UDPAddr, IPAddr or UnixAddr) renders as "<?>",
//    and both as one " <?>" when the capture has no address records at all.
#ifndef GOERRPROF_AGGREGATE_ERROR_RENDER_H_
#define GOERRPROF_AGGREGATE_ERROR_RENDER_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/strings/string_view.h"
#include "goabi/go_version.h"
#include "events/captured_error.h"

namespace goerrprof::profiler {

inline constexpr absl::string_view kTruncatedMark = "...";
inline constexpr absl::string_view kMissingMark = "<?>";

struct RenderOptions {
  // The target's Go release: syscall.Errno texts changed in Go 1.25 (ESTALE).
  // Unset means the newest.
  std::optional<goabi::GoVersion> go_version;
};

// Error() of links[index] of `e`, using its children for wrapped errors.
// Empty when `e` has no links.
std::string RenderMessage(const CapturedError& e, size_t index = 0,
                          const RenderOptions& options = {});

// The link types depth-first, the created error first:
// "*fs.PathError > syscall.Errno".
std::string RenderChain(const CapturedError& e);

// The name a link is shown under: its type name, else "<unknown type>" (the
// itab was unreadable) or "<type 0x…>" (a type without a layout).
std::string LinkTypeName(const CapturedLink& link);

// The address's String() as Go prints it (nil pointer: "<nil>"); "<?>"
// when it was not decoded. A nil interface has no String(): "<nil>" too.
std::string AddrString(const CapturedAddr& addr);

// net.IP(ip).String() for an IP of true length `length` of which `ip` holds
// the first bytes (the rest marked as truncated); "" for an empty IP, as
// the address types print it.
std::string IPString(absl::string_view ip, uint64_t length);

// syscall.Errno(value).Error() as Go prints it on linux/amd64.
std::string ErrnoText(uint64_t value, const RenderOptions& options = {});

// strconv.Quote (fmt's %q for strings). Go decides which non-ASCII runes are
// printable from Unicode tables; this escapes only C1 controls, non-ASCII
// spaces, the common format characters (U+00AD, U+200B-U+200F, U+2028-U+202E,
// U+2060-U+206F, U+FEFF) and private-use/noncharacter runes, and takes every
// other well-formed rune (unassigned ones included) as printable.
std::string GoQuote(absl::string_view s);

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_AGGREGATE_ERROR_RENDER_H_
