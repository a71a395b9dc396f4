// What an error profile exports of the text goerrprof reads from the
// target's memory: error messages (panic values included) and the values of
// the goroutine's own pprof labels. They are user data: file paths, user
// names, e-mail addresses, tokens, SQL. `record --messages=` picks one of:
//
//   full    every text as the target held it (the default: a developer at a
//           terminal profiling their own program);
//   redact  each text through RedactText: its shape stays, the parts that
//           usually identify someone or something are replaced (below), and
//           it is cut to kRedactedMaxBytes; goroutine label keys are kept
//           (names chosen in code, like type names);
//   off     no text at all: no error.message label and no goroutine labels.
//
// Under every setting the profile keeps what comes from the binary, not
// from memory: error types and chains (type names), stacks, sites,
// goroutine ids and creators, the panic flags, process names and pids.
// The policy is applied where a sample key is made (aggregate/
// error_profile.h), so texts that redact alike count as one sample.
#ifndef GOERRPROF_AGGREGATE_MESSAGE_POLICY_H_
#define GOERRPROF_AGGREGATE_MESSAGE_POLICY_H_

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace goerrprof::profiler {

enum class MessagePolicy { kFull, kRedact, kOff };

// "full", "redact" or "off"; InvalidArgument naming the choices otherwise.
absl::StatusOr<MessagePolicy> ParseMessagePolicy(absl::string_view name);
absl::string_view MessagePolicyName(MessagePolicy policy);
// One line for the profile's comments: what the setting exported.
std::string MessagePolicyComment(MessagePolicy policy);

// A redacted text is at most this many bytes, its cut mark included.
inline constexpr size_t kRedactedMaxBytes = 200;
// Redaction reads at most this much of a text (it is cut there): bounded
// work for any input, and more than a cut result can show.
inline constexpr size_t kRedactedMaxInput = 1024;
// Ends a text that was cut, and stands for what was taken out of a quoted
// string, a URL or a path.
inline constexpr absl::string_view kElided = "\u2026";  // …

// The redaction rules, tried at each position in this order (a "word" is a
// run of letters, digits and '_'; most rules start only where a word does):
//  - quoted text, "…", `…` and '…' (a ' opens only where no word precedes
//    it, so "can't" stays): "x" -> "…"; an empty pair stays; a " or ` never
//    closed elides the rest of the text;
//  - URLs, scheme://anything -> scheme://…;
//  - e-mail addresses, local@domain.tld -> <email>;
//  - IPv6 addresses (zone included) and IPv4 dotted quads -> <ip> (a port
//    after them is a number: 10.0.0.1:80 -> <ip>:<num>);
//  - paths, after their first element: /home/alice/x.txt -> /home/…,
//    ./conf/a.yaml, ../x and ~/x -> ./…, ../…, ~/…, and a relative path
//    with two or more slashes, data/users/a.json -> data/…; a path ends at
//    white space, a quote, one of ,;:()[]{}<> (Go's "op path: error"
//    shape); its first element is itself redacted (/tmp42/x -> /tmp<num>/…);
//    one slash is no path (i/o, application/json, 3/4 stay);
//  - hex: 0x1f -> <hex>; a whole word of hex digits holding both a decimal
//    digit and a letter a-f (a hash, a UUID's group) -> <hex>;
//  - every other run of decimal digits, inside words too -> <num>
//    (user42 -> user<num>, int64 -> int<num>);
//  - anything else is kept, byte for byte (UTF-8 sequences whole).
// The result is cut at a rule's or a character's boundary so that it is at
// most kRedactedMaxBytes long with kElided at its end when anything was cut
// (input past kRedactedMaxInput included). Placeholders and marks match no
// rule: redacting a redacted text leaves it as it is.
std::string RedactText(absl::string_view text);

}  // namespace goerrprof::profiler

#endif  // GOERRPROF_AGGREGATE_MESSAGE_POLICY_H_
