// bench/overhead's error storm: errgen -storm N (one site creating errors as
// fast as it can on one core), alone and under `goerrprof record -- errgen`
// with a given --max-overhead; errgen times its own loop.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "bench/overhead_runs.h"

namespace goerrprof::bench {
namespace {

// errgen's "elapsed_ns" from its JSON line.
double ElapsedSeconds(const std::string& json) {
  const char* p = strstr(json.c_str(), "\"elapsed_ns\":");
  if (p == nullptr) Die("no elapsed_ns in errgen's line '%s'", json.c_str());
  return static_cast<double>(strtoll(p + 13, nullptr, 10)) / 1e9;
}

}  // namespace

StormRun Storm(const std::string& errgen, long n, const std::string& budget,
               const std::string& goerrprof, const std::string& out_file, long work) {
  std::vector<std::string> argv = {errgen, "-storm", std::to_string(n), "-calm", "0",
                                   "-storm_work", std::to_string(work)};
  const bool recorded = !budget.empty();
  if (recorded) {
    argv.insert(argv.begin(), {goerrprof, "record", "--max-overhead=" + budget, "-o", out_file,
                               "--plan_cache=off", "--"});
  }
  Child c = Spawn(argv, false, true, recorded);
  LineReader out(c.out);
  std::string line;
  if (!out.Next(&line, In(900), "errgen's JSON") || line.rfind("{", 0) != 0)
    Die("errgen -storm: unexpected output '%s'", line.c_str());
  StormRun run;
  run.seconds = ElapsedSeconds(line);
  if (recorded) {
    LineReader err(c.err);
    auto deadline = In(300);
    while (err.Next(&line, deadline, "goerrprof's summary")) {
      unsigned long long v = 0;
      if (strstr(line.c_str(), "goerrprof: overhead budget: ") == line.c_str()) {
        const char* q = strrchr(line.c_str(), ';');
        if (q && sscanf(q, "; %llu creations estimated", &v) == 1) run.estimated = v;
        if (const char* c = strstr(line.c_str(), "; hits charged ")) {
          run.charged_ms = strtod(c + 15, nullptr);
        }
        run.budget_line = line;
      }
      if (const char* p = strstr(line.c_str(), "command exited with 0: ")) {
        if (sscanf(p, "command exited with 0: %llu errors", &v) == 1) run.observed = v;
      }
    }
  }
  if (Wait(c, 120, "errgen -storm") != 0) Die("errgen -storm failed");
  if (recorded) unlink(out_file.c_str());
  return run;
}

}  // namespace goerrprof::bench
