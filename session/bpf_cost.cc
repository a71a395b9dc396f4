#include "session/bpf_cost.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "bpf/errors.skel.h"
#include "bpf/exec_follow.skel.h"
#include "bpf/goroutines.skel.h"
#include "bpf/park_abi.h"
#include "bpf/errors_abi.h"
#include "goabi/g_layout.h"
#include "goabi/go_version.h"
#include "session/bpf_session.h"
#include "session/kernel_features.h"
#include "session/libbpf_log.h"
#include "session/park_session.h"
#include "session/uprobe_attach.h"
#include "base/errno.h"

namespace goerrprof::profiler {
namespace {

// The newest Go release goabi has tables for (testdata/go_binaries/
// versions.txt); later ones reuse its layout, so they add no settings.
constexpr int kNewestGoMinor = 27;
constexpr uint64_t kRingBytes = 1u << 16;  // small: verification ignores the size


// One runtime.g layout as a program sees it, and the releases that have it.
struct GoSettings {
  std::string releases;  // "go1.17-1.23"
  goabi::GLayout layout;
};

// The distinct layouts by `key` (what changes verification) over every
// supported release, oldest first.
std::vector<GoSettings> DistinctLayouts(
    const std::function<std::string(const goabi::GLayout&)>& key) {
  std::vector<GoSettings> out;
  std::vector<std::string> keys;
  std::vector<std::pair<int, int>> minors;
  for (int minor = 16; minor <= kNewestGoMinor; ++minor) {
    auto g = goabi::GLayoutFor(goabi::GoVersion{1, minor, 0});
    if (!g.ok()) continue;
    std::string k = key(*g);
    if (k.empty()) continue;  // a layout the loader refuses
    auto it = std::find(keys.begin(), keys.end(), k);
    if (it == keys.end()) {
      keys.push_back(k);
      minors.emplace_back(minor, minor);
      out.push_back({"", *g});
    } else {
      minors[it - keys.begin()].second = minor;
    }
  }
  for (size_t i = 0; i < out.size(); ++i) {
    auto [lo, hi] = minors[i];
    out[i].releases = lo == hi ? absl::StrCat("go1.", lo) : absl::StrCat("go1.", lo, "-1.", hi);
  }
  return out;
}

// Load-time choices besides the Go layout.
struct Knobs {
  bool multi = false;      // expected attach type uprobe_multi
  bool sleepable = false;  // BPF_F_SLEEPABLE kept
  bool batched = false;    // wakeup_bytes > 0
  bool pidns = false;      // pidns_dev/ino set (goerrprof in a container)
  std::string Describe(bool with_sleepable) const {
    std::vector<std::string> parts = {multi ? "uprobe_multi" : "perf uprobe"};
    if (with_sleepable) parts.push_back(sleepable ? "sleepable" : "non-sleepable");
    parts.push_back(batched ? "wakeup batched" : "wakeup every record");
    if (pidns) parts.push_back("pid namespace filter");
    return absl::StrJoin(parts, ", ");
  }
};

// Every combination the kernel would be asked for: uprobe_multi only where
// it has them (goerrprof falls back otherwise), `sleepable` as given.
std::vector<Knobs> AllKnobs(const std::vector<bool>& sleepable) {
  std::vector<bool> multi = {false};
  if (UprobeMultiSupported()) multi.push_back(true);
  std::vector<Knobs> out;
  for (bool m : multi) {
    for (bool s : sleepable) {
      for (bool b : {false, true}) {
        for (bool p : {false, true}) out.push_back({m, s, b, p});
      }
    }
  }
  return out;
}

// The error probe loads sleepable where the kernel has sleepable uprobes,
// else plain. libbpf itself makes an SEC("uprobe.s") program sleepable
// whatever user space asks, so that one is measured only as it will load.
std::vector<bool> ErrorSleepableSettings() {
  bool forced = true;
  if (errors_bpf* skel = errors_bpf__open()) {
    const char* sec = bpf_program__section_name(skel->progs.gep_on_error);
    forced = sec != nullptr && absl::EndsWith(sec, ".s");
    errors_bpf__destroy(skel);
  }
  if (forced) return {true};
  std::vector<bool> out = {false};
  if (KernelSupports(KernelFeature::kSleepableUprobe)) out.push_back(true);
  return out;
}

struct PidNs {
  uint64_t dev = 0, ino = 0;
};

PidNs SelfPidNamespace() {
  struct stat st;
  if (stat("/proc/self/ns/pid", &st) != 0) return {1, 1};  // any nonzero pair verifies alike
  return {static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino)};
}

// What one load of an object gave.
struct LoadOutcome {
  bool ok = false;
  std::string error;
  std::string failed_program;  // as libbpf named it; "" if it did not
  uint64_t log_insns = 0;
  std::vector<std::pair<std::string, uint64_t>> insns;  // per program, when ok
};

LoadOutcome LoadAndMeasure(bpf_object* obj, const std::function<int()>& load) {
  ScopedLibbpfLog log;
  LoadOutcome out;
  if (int err = load(); err != 0) {
    out.error = absl::StrCat(Errno(-err), ": ", log.Tail(4));
    out.failed_program = log.FailedProgram();
    out.log_insns = log.ProcessedInsns().value_or(0);
    return out;
  }
  out.ok = true;
  bpf_program* prog;
  bpf_object__for_each_program(prog, obj) {
    bpf_prog_info info;
    std::memset(&info, 0, sizeof(info));  // the kernel wants unknown tail bytes zero
    uint32_t len = sizeof(info);
    uint64_t n = 0;
    if (bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &len) == 0) n = info.verified_insns;
    out.insns.emplace_back(bpf_program__name(prog), n);
  }
  return out;
}

// Per program of one object: the maximum over loads, or the first failure.
class CostTable {
 public:
  CostTable(std::string object, bpf_object* obj) : object_(std::move(object)) {
    bpf_program* prog;
    bpf_object__for_each_program(prog, obj) {
      ProgramCost c;
      c.object = object_;
      c.program = bpf_program__name(prog);
      c.loaded = true;
      costs_.push_back(std::move(c));
    }
  }
  // False when the load failed: measuring this object stops there.
  bool Add(const LoadOutcome& o, const std::string& settings) {
    for (ProgramCost& c : costs_) ++c.loads;
    if (!o.ok) {
      for (ProgramCost& c : costs_) {
        c.loaded = false;
        c.settings = settings;
        if (o.failed_program.empty() || c.program == o.failed_program) {
          c.error = o.error;
          c.verified_insns = o.log_insns;
        } else {
          c.error = absl::StrCat("not measured: ", object_, "/", o.failed_program,
                                 " failed to load first");
          c.verified_insns = 0;
        }
      }
      return false;
    }
    for (const auto& [name, n] : o.insns) {
      for (ProgramCost& c : costs_) {
        if (c.program == name && (n > c.verified_insns || c.settings.empty())) {
          c.verified_insns = n;
          c.settings = settings;
        }
      }
    }
    return true;
  }
  void AppendTo(std::vector<ProgramCost>* out) {
    for (ProgramCost& c : costs_) out->push_back(std::move(c));
  }

 private:
  std::string object_;
  std::vector<ProgramCost> costs_;
};

struct Env {
  int ncpus = 1;
  uint32_t ring_bytes = kRingBytes;
  PidNs pidns;
};

// The target as doctor measures it: this process, in its own namespace
// when the setting asks for the namespace filter.
PidNamespaceId MeasuredTarget(const Env& env, const Knobs& k) {
  PidNamespaceId t;
  t.pid = static_cast<uint32_t>(getpid());
  if (k.pidns) {
    t.dev = env.pidns.dev;
    t.ino = env.pidns.ino;
  }
  return t;
}

// Configured through BpfSession's own function, as record loads it.
absl::Status ConfigureErrors(errors_bpf* skel, const Env& env, const goabi::GLayout& g,
                             const Knobs& k) {
  SessionConfig config;
  ApplyGLayout(g, &config);
  config.max_chain = 8;
  config.capture_stack = true;
  config.ringbuf_bytes = env.ring_bytes;
  config.wakeup_fraction = k.batched ? 0.25 : 0;
  ErrorProbeLoad load;
  load.target = MeasuredTarget(env, k);
  load.n_layouts = 64;
  load.n_addr_types = 8;
  load.n_sites = 64;
  load.multi = k.multi;
  load.sleepable = k.sleepable;
  return ConfigureErrorProbe(skel, config, load);
}

// Configured through ParkTracer's own function, likewise.
absl::Status ConfigureGoroutines(goroutines_bpf* skel, const Env& env, const goabi::GLayout& g,
                                 const Knobs& k) {
  ParkOptions options;
  options.ringbuf_bytes = env.ring_bytes;
  options.wakeup_fraction = k.batched ? 0.25 : 0;
  options.max_parked = 1024;
  return ConfigureParkProbe(skel, g, options, MeasuredTarget(env, k), k.multi);
}

std::string GDescription(const goabi::GLayout& g) {
  std::string out = g.g_in_r14 ? "g in R14" : "g in TLS";
  if (g.labels >= 0) {
    absl::StrAppend(&out, ", labels ",
                    g.label_storage == goabi::LabelStorage::kMapPointer ? "map" : "slice");
  }
  return out;
}

std::string Describe(const GoSettings& go, const Knobs& k, bool errors) {
  std::string g = errors ? GDescription(go.layout)
                  : go.layout.g_in_r14 ? "g in R14"
                                       : "g in TLS, ready's argument on the stack";
  return absl::StrCat(go.releases, " layout (", g, "), ", k.Describe(errors));
}

// Opens, configures, loads and destroys one skeleton per setting.
template <typename Skel>
absl::Status MeasureObject(const char* object, Skel* (*open)(), int (*load)(Skel*),
                           void (*destroy)(Skel*), const std::vector<GoSettings>& layouts,
                           const std::vector<Knobs>& knobs,
                           const std::function<absl::Status(Skel*, const goabi::GLayout&,
                                                            const Knobs&)>& configure,
                           const std::function<std::string(const GoSettings&, const Knobs&)>&
                               describe,
                           std::vector<ProgramCost>* out) {
  std::optional<CostTable> table;
  for (const GoSettings& go : layouts) {
    for (const Knobs& k : knobs) {
      Skel* skel = open();
      if (skel == nullptr) {
        return absl::InternalError(absl::StrCat("cannot open ", object, ".bpf.o: ", Errno(errno)));
      }
      if (!table) table.emplace(object, skel->obj);
      absl::Status configured = configure(skel, go.layout, k);
      if (!configured.ok()) {
        destroy(skel);
        return configured;
      }
      bool ok = table->Add(LoadAndMeasure(skel->obj, [&] { return load(skel); }), describe(go, k));
      destroy(skel);
      if (!ok) {
        table->AppendTo(out);
        return absl::OkStatus();
      }
    }
  }
  if (table) table->AppendTo(out);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<ProgramCost>> MeasureBpfCost() {
  Env env;
  env.ncpus = libbpf_num_possible_cpus();
  if (env.ncpus <= 0) return absl::InternalError("cannot count possible CPUs");
  env.ring_bytes = RoundUpPow2(kRingBytes, static_cast<uint64_t>(sysconf(_SC_PAGESIZE)));
  env.pidns = SelfPidNamespace();
  std::vector<ProgramCost> out;

  // errors.bpf.c: what changes verification is whether g, gopc and labels
  // are read, where g is, and how labels are stored.
  std::vector<GoSettings> error_layouts = DistinctLayouts([](const goabi::GLayout& g) {
    return absl::StrCat(g.g_in_r14, "/", g.goid >= 0, "/", g.gopc >= 0, "/", g.labels >= 0, "/",
                        static_cast<int>(g.label_storage));
  });
  absl::Status s = MeasureObject<errors_bpf>(
      "errors", errors_bpf__open, errors_bpf__load, errors_bpf__destroy, error_layouts,
      AllKnobs(ErrorSleepableSettings()),
      [&](errors_bpf* skel, const goabi::GLayout& g, const Knobs& k) {
        return ConfigureErrors(skel, env, g, k);
      },
      [](const GoSettings& go, const Knobs& k) { return Describe(go, k, true); }, &out);
  if (!s.ok()) return s;

  // goroutines.bpf.c: where g is (R14 with the register ABI, else TLS and
  // ready's argument on the stack); releases ParkTracer refuses are left out.
  std::vector<GoSettings> park_layouts = DistinctLayouts([](const goabi::GLayout& g) {
    bool usable = g.goid >= 0 && g.waitreason >= 0 && g.m_curg >= 0 && g.sched_bp >= 0;
    return usable ? absl::StrCat(g.g_in_r14) : std::string();
  });
  s = MeasureObject<goroutines_bpf>(
      "goroutines", goroutines_bpf__open, goroutines_bpf__load, goroutines_bpf__destroy,
      park_layouts, AllKnobs({false}),
      [&](goroutines_bpf* skel, const goabi::GLayout& g, const Knobs& k) {
        return ConfigureGoroutines(skel, env, g, k);
      },
      [](const GoSettings& go, const Knobs& k) { return Describe(go, k, false); }, &out);
  if (!s.ok()) return s;

  // exec_follow.bpf.c: tracepoint programs, loaded as ProcessFollower does;
  // in a PID namespace they walk the process's pid levels.
  Knobs initial_ns, own_ns;
  own_ns.pidns = true;
  s = MeasureObject<exec_follow_bpf>(
      "exec_follow", exec_follow_bpf__open, exec_follow_bpf__load, exec_follow_bpf__destroy,
      {GoSettings{"", goabi::GLayout{}}}, {initial_ns, own_ns},
      [&](exec_follow_bpf* skel, const goabi::GLayout&, const Knobs& k) {
        skel->rodata->stop_on_exec = 1;
        skel->rodata->pidns_ino = k.pidns ? static_cast<uint32_t>(env.pidns.ino) : 0;
        return absl::OkStatus();
      },
      [](const GoSettings&, const Knobs& k) {
        return std::string(k.pidns ? "in a PID namespace" : "in the initial PID namespace");
      },
      &out);
  if (!s.ok()) return s;
  return out;
}

}  // namespace goerrprof::profiler
