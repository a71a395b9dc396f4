#include "tests/fuzz/fuzz_support.h"

#include <dirent.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "goroutines/goroutine_locate.h"
#include "symbolizer/creation_site.h"
#include "symbolizer/error_types.h"
#include "symbolizer/type_refs.h"

namespace goerrprof::fuzz {
namespace {

[[noreturn]] void Die(const std::string& why) {
  std::fprintf(stderr, "fuzz: %s\n", why.c_str());
  std::exit(2);
}

std::string CorpusDir() {
  const char* env = std::getenv("GOERRPROF_CORPUS");
  if (env != nullptr && *env != '\0') return env;
  return std::string(GOERRPROF_SOURCE_DIR) + "/.cache/corpus";
}

// Entries of dir whose names start with prefix, sorted.
std::vector<std::string> Entries(const std::string& dir, const std::string& prefix) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    if (absl::StartsWith(e->d_name, prefix)) out.push_back(e->d_name);
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

std::vector<std::string> CorpusBinaries(
    const std::vector<std::pair<std::string, std::string>>& picks, const char* env) {
  std::vector<std::string> out;
  if (const char* paths = std::getenv(env); paths != nullptr && *paths != '\0') {
    for (absl::string_view p : absl::StrSplit(paths, ':', absl::SkipEmpty())) {
      out.emplace_back(p);
    }
    return out;
  }
  std::string corpus = CorpusDir();
  for (const auto& [release, file] : picks) {
    // go1.19 matches go1.19.8, not go1.190: the dot after the prefix.
    for (const std::string& dir : Entries(corpus, release + ".")) {
      std::string path = corpus + "/" + dir + "/" + file;
      if (std::ifstream(path).good()) out.push_back(path);
    }
  }
  if (out.empty()) {
    Die("no corpus binaries under " + corpus +
        " (run scripts/build_go_corpus.sh, or set " + env + ")");
  }
  return out;
}

std::vector<std::string> PatchBinaries() {
  // Formats 1.18 and 1.20, PIE, stripped, the 1.26 (no text start) and
  // 1.27 (no itablinks) layouts, an external (cgo) link.
  return CorpusBinaries({{"go1.19", "errgen-default"},
                         {"go1.20", "errgen-pie"},
                         {"go1.22", "errgen-stripped"},
                         {"go1.26", "errgen-default"},
                         {"go1.27", "errgen-cgo"}},
                        "GOERRPROF_FUZZ_BINARIES");
}

std::string ReadFileOrDie(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) Die("cannot read " + path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void Exercise(const symbolizer::GoBinary& bin, size_t max_functions,
              const std::vector<uint64_t>* candidates) {
  const symbolizer::Pclntab& tab = bin.pclntab();
  size_t n = tab.num_functions();
  size_t step = n > max_functions ? n / max_functions : 1;
  for (size_t i = 0; i < n; i += step) {
    (void)tab.FuncName(i);
    uint64_t entry = tab.FuncEntry(i), end = tab.FuncEnd(i);
    (void)bin.Symbolize(entry);
    // Past the entry the line tables advance and inline trees apply.
    if (end > entry + 1) (void)bin.Symbolize(entry + (end - entry) / 2);
    (void)tab.FindFunc(entry);
  }
  if (n > 0) (void)symbolizer::CreatedBy(bin, tab.FuncEntry(n / 2) + 1);
  if (auto types = bin.types(); types.ok()) {
    std::vector<uint64_t> refs;
    if (candidates != nullptr) {
      refs = *candidates;
    } else if (auto scanned = symbolizer::TypeDescriptorRefs(bin); scanned.ok()) {
      refs = std::move(*scanned);
    }
    (void)symbolizer::FindErrorTypes(**types, refs);
  }
  (void)profiler::FindAllgs(bin);
}

const std::vector<KnownType>& KnownErrorTypes() {
  static const auto* types = new std::vector<KnownType>{
      {0x1000, "*errors.errorString", {"s"}, {}},
      {0x1010, "*fmt.wrapError", {"msg"}, {}},
      {0x1020, "*fmt.wrapErrors", {"msg"}, {}},
      {0x1030, "*errors.joinError", {}, {}},
      {0x1040, "*fs.PathError", {"Op", "Path"}, {}},
      {0x1050, "*os.SyscallError", {"Syscall"}, {}},
      {0x1060, "*net.OpError", {"Op", "Net"}, {"Source", "Addr"}},
      {0x1070, "*url.Error", {"Op", "URL"}, {}},
      {0x1080, "*strconv.NumError", {"Func", "Num"}, {}},
      {0x1090, "syscall.Errno", {}, {}},
      {0x10a0, "*json.SyntaxError", {"msg"}, {}},
      {0x10b0, "string", {""}, {}},
      {0x10c0, "runtime.errorString", {""}, {}},
      {0x10d0, "runtime.plainError", {""}, {}},
      {0x10e0, "int32", {}, {}},
      {0x10f0, "uint8", {}, {}},
      {0x1100, "context.deadlineExceededError", {}, {}},
      {0x1110, "*main.QueryError", {"Query", "Detail"}, {}},
      {0x1120, "*net.DNSError", {"Err", "Name", "Server"}, {}},
  };
  return *types;
}

const std::vector<KnownType>& KnownAddrTypes() {
  static const auto* types = new std::vector<KnownType>{
      {0x2000, "*net.TCPAddr", {"Zone"}, {}},
      {0x2010, "*net.UDPAddr", {"Zone"}, {}},
      {0x2020, "*net.IPAddr", {"Zone"}, {}},
      {0x2030, "*net.UnixAddr", {"Name", "Net"}, {}},
  };
  return *types;
}

profiler::RecordNames MakeRecordNames() {
  profiler::RecordNames names;
  auto add = [](const KnownType& k, absl::flat_hash_map<uint64_t, profiler::TypeNames>& into) {
    profiler::TypeNames& t = into[k.addr];
    t.name = k.name;
    for (size_t i = 0; i < k.strings.size(); ++i) {
      t.strings.emplace_back(k.strings[i], static_cast<uint32_t>(16 * i));
    }
    t.addrs = k.addrs;
  };
  for (const KnownType& k : KnownErrorTypes()) add(k, names.types);
  for (const KnownType& k : KnownAddrTypes()) add(k, names.addr_types);
  return names;
}

}  // namespace goerrprof::fuzz
