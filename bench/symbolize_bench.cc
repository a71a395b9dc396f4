// bench/symbolize: open + index a Go binary, then resolve 1M PCs (random and
// sorted) with goerrprof's symbolizer and, in the same run, with Go's own
// debug/gosym (the oracle's bench mode) on the very same PCs. Prints both
// and their ratio. Usage: symbolize_bench BINARY ORACLE [N]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/ascii.h"
#include "symbolizer/go_binary.h"

namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Best of `reps` runs, in seconds: the least disturbed measurement.
template <typename Fn>
double Best(int reps, Fn fn) {
  double best = 1e30;
  for (int i = 0; i < reps; ++i) {
    auto t0 = Clock::now();
    fn();
    best = std::min(best, Seconds(t0, Clock::now()));
  }
  return best;
}

struct Times {
  double open = 0, random = 0, sorted = 0;
};

Times RunOurs(const std::string& path, const std::vector<uint64_t>& random,
              const std::vector<uint64_t>& sorted, size_t* frames_out) {
  Times t;
  t.open = Best(5, [&] {
    auto bin = goerrprof::symbolizer::GoBinary::Open(path);
    if (!bin.ok()) std::abort();
  });
  auto bin = goerrprof::symbolizer::GoBinary::Open(path);
  size_t frames = 0;
  auto resolve = [&](const std::vector<uint64_t>& pcs) {
    frames = 0;
    for (uint64_t pc : pcs) {
      auto f = (*bin)->Symbolize(pc);
      if (f.ok()) frames += f->size();
    }
  };
  t.random = Best(3, [&] { resolve(random); });
  t.sorted = Best(3, [&] { resolve(sorted); });
  *frames_out = frames;
  return t;
}

// The oracle prints "open_s random_s sorted_s" for the PCs in `pc_file`.
bool RunOracle(const std::string& oracle, const std::string& path, const std::string& pc_file,
               Times* t) {
  std::string cmd = oracle + " bench " + path + " " + pc_file;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return false;
  char buf[256] = {};
  bool ok = fgets(buf, sizeof(buf), p) != nullptr;
  ok = (pclose(p) == 0) && ok;
  std::vector<std::string> f = absl::StrSplit(absl::StripAsciiWhitespace(buf), ' ');
  return ok && f.size() == 3 && absl::SimpleAtod(f[0], &t->open) &&
         absl::SimpleAtod(f[1], &t->random) && absl::SimpleAtod(f[2], &t->sorted);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s BINARY ORACLE [N]\n", argv[0]);
    return 2;
  }
  std::string path = argv[1], oracle = argv[2];
  size_t n = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 1000000;
  auto bin = goerrprof::symbolizer::GoBinary::Open(path);
  if (!bin.ok()) {
    std::fprintf(stderr, "symbolize_bench: %s\n", std::string(bin.status().message()).c_str());
    return 1;
  }
  const auto& tab = (*bin)->pclntab();
  std::mt19937_64 rng(42);
  std::vector<uint64_t> random(n);
  for (uint64_t& pc : random) pc = tab.text_start() + rng() % (tab.text_end() - tab.text_start());
  std::vector<uint64_t> sorted = random;
  std::sort(sorted.begin(), sorted.end());

  std::string pc_file = "/tmp/goerrprof_bench_pcs.txt";
  {
    std::ofstream out(pc_file);
    for (uint64_t pc : random) out << pc << '\n';
  }
  size_t frames = 0;
  Times ours = RunOurs(path, random, sorted, &frames);
  Times go;
  if (!RunOracle(oracle, path, pc_file, &go)) {
    std::fprintf(stderr, "symbolize_bench: oracle bench failed\n");
    return 1;
  }
  std::remove(pc_file.c_str());
  std::printf("binary: %s (%s, %zu functions, %.1f MiB text)\n", path.c_str(),
              (*bin)->build_info().go_version.c_str(), tab.num_functions(),
              (tab.text_end() - tab.text_start()) / 1048576.0);
  std::printf("%-28s %14s %14s %10s\n", "", "goerrprof", "debug/gosym", "go/ours");
  auto row = [](const char* what, double a, double b, double scale, const char* unit) {
    std::printf("%-28s %11.3f %-2s %11.3f %-2s %9.2fx\n", what, a * scale, unit, b * scale, unit,
                b / a);
  };
  row("open + index", ours.open, go.open, 1e3, "ms");
  row("resolve random PCs (per PC)", ours.random / n, go.random / n, 1e9, "ns");
  row("resolve sorted PCs (per PC)", ours.sorted / n, go.sorted / n, 1e9, "ns");
  std::printf("%zu PCs; goerrprof expanded %zu frames (inlined included); gosym gives one "
              "function and the innermost file:line per PC\n", n, frames);
  return 0;
}
