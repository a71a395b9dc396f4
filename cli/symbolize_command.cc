// `goerrprof symbolize`: addresses to frames, inlined ones expanded, like
// addr2line -f -i.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "cli/flags.h"
#include "cli/json_writer.h"
#include "symbolizer/go_binary.h"

namespace goerrprof::profiler {

using symbolizer::GoBinary;

int RunSymbolize(const std::vector<std::string>& args) {
  auto path = TargetPath(args);
  if (!path.ok()) return Fail(path.status());
  std::vector<std::string> addrs(args.begin() + (absl::GetFlag(FLAGS_pid).empty() ? 1 : 0), args.end());
  if (addrs.empty()) return Fail(absl::InvalidArgumentError("no addresses given"));
  std::vector<uint64_t> pcs;
  for (const std::string& a : addrs) {
    uint64_t pc;
    if (!absl::StartsWith(a, "0x") || !absl::SimpleHexAtoi(a.substr(2), &pc)) {
      return Fail(absl::InvalidArgumentError(
          absl::StrCat("bad address \"", a, "\" (want hex with 0x prefix)")));
    }
    pcs.push_back(pc);
  }
  auto bin = GoBinary::Open(*path);
  if (!bin.ok()) return Fail(bin.status());
  bool json = absl::GetFlag(FLAGS_json);
  JsonWriter j;
  j.BeginArray();
  for (size_t i = 0; i < pcs.size(); ++i) {
    auto frames = (*bin)->Symbolize(pcs[i]);
    if (json) {
      j.BeginObject().Key("address").String(addrs[i]).Key("frames").BeginArray();
      if (frames.ok()) {
        for (const auto& f : *frames) {
          j.BeginObject().Key("function").String(f.function).Key("file").String(f.file);
          j.Key("line").Int(f.line).EndObject();
        }
      }
      j.EndArray().EndObject();
      continue;
    }
    std::printf("%s\n", addrs[i].c_str());
    if (!frames.ok()) {
      std::printf("??\n??:0\n");
      continue;
    }
    for (const auto& f : *frames) {
      std::printf("%.*s\n%.*s:%d\n", static_cast<int>(f.function.size()), f.function.data(),
                  static_cast<int>(f.file.size()), f.file.data(), f.line);
    }
  }
  j.EndArray();
  if (json) std::printf("%s\n", j.str().c_str());
  return 0;
}

}  // namespace goerrprof::profiler
