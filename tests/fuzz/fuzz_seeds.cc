// Writes the fuzzers' seed corpora, generated at run time from the Go
// corpus (no binary is committed): `fuzz_seeds OUT` fills OUT/<harness>/.
//   elf         synthetic Go binaries of every release in the corpus, with
//               its function names, with and without section headers
//   patch       each corpus binary unpatched, and one patch per region
//   profile     error profiles of real functions, raw and gzipped
//   record      ring-buffer records of every known error type and chain
//   goroutines  memory of the corpus's `parked` read by a real snapshot
#include <sys/stat.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "pprof/labels.h"
#include "pprof/profile_file.h"
#include "symbolizer/go_binary.h"
#include "tests/fuzz/fuzz_support.h"
#include "tests/fuzz/fuzz_seeds_live.h"
#include "tests/fuzz/fuzz_seeds_record.h"
#include "tests/synthetic_go_binary.h"

namespace goerrprof::fuzz {
namespace {

namespace pp = perftools::profiles;

int written = 0;

void Write(const std::string& dir, const std::string& name, const std::string& bytes) {
  std::ofstream(dir + "/" + name, std::ios::binary) << bytes;
  ++written;
}

std::string Dir(const std::string& out, const std::string& harness) {
  std::string d = out + "/" + harness;
  mkdir(d.c_str(), 0755);
  return d;
}

// Function names of a corpus binary: main's, then the first others.
std::vector<std::string> SomeFunctions(const symbolizer::GoBinary& bin, size_t n) {
  std::vector<std::string> out;
  const symbolizer::Pclntab& tab = bin.pclntab();
  for (int pass = 0; pass < 2; ++pass) {
    for (size_t i = 0; i < tab.num_functions() && out.size() < n; ++i) {
      std::string name(tab.FuncName(i));
      bool main = name.rfind("main.", 0) == 0;
      if ((pass == 0) == main) out.push_back(name);
    }
  }
  return out;
}

void ElfSeeds(const std::string& dir) {
  for (const std::string& path :
       CorpusBinaries({{"go1", "errgen-default"}}, "GOERRPROF_FUZZ_ELF")) {
    auto bin = symbolizer::GoBinary::Open(path);
    if (!bin.ok()) continue;
    testing::SyntheticGoOptions o;
    o.go_version = (*bin)->build_info().go_version;
    o.functions = SomeFunctions(**bin, 6);
    for (bool sections : {true, false}) {
      o.section_headers = sections;
      o.self_fields = sections ? 0 : 3;
      Write(dir, absl::StrCat(o.go_version, sections ? "" : "-nosections"),
            testing::BuildSyntheticGoBinary(o));
    }
  }
}

void PatchSeeds(const std::string& dir) {
  size_t n = PatchBinaries().size();
  for (size_t b = 0; b < n; ++b) {
    std::string plain(1, static_cast<char>(b));
    Write(dir, absl::StrCat("bin", b), plain);
    // One patch in each region kind: four 0xff bytes 8 bytes in.
    for (uint8_t region = 0; region < 12; ++region) {
      std::string p = plain;
      p.push_back(static_cast<char>(region));
      uint32_t off = 8;
      p.append(reinterpret_cast<const char*>(&off), 4);
      p.push_back(3);
      p.append(4, '\xff');
      Write(dir, absl::StrCat("bin", b, "-region", int{region}), p);
    }
  }
}

// An error profile as `record` writes one, over real functions of `bin`.
pp::Profile ErrorProfileOf(const symbolizer::GoBinary& bin) {
  pp::Profile p;
  std::map<std::string, int64_t> index;
  auto str = [&](const std::string& s) {
    auto [it, fresh] = index.try_emplace(s, p.string_table_size());
    if (fresh) p.add_string_table(s);
    return it->second;
  };
  str("");
  for (const char* t : {"errors", "panics"}) {
    pp::ValueType* vt = p.add_sample_type();
    vt->set_type(str(t));
    vt->set_unit(str("count"));
  }
  const symbolizer::Pclntab& tab = bin.pclntab();
  std::vector<std::string> names = SomeFunctions(bin, 8);
  for (size_t i = 0; i < names.size(); ++i) {
    pp::Function* f = p.add_function();
    f->set_id(i + 1);
    f->set_name(str(names[i]));
    f->set_system_name(str(names[i]));
    f->set_filename(str("main.go"));
    pp::Location* l = p.add_location();
    l->set_id(i + 1);
    l->set_address(tab.FuncEntry(i));
    pp::Line* line = l->add_line();
    line->set_function_id(i + 1);
    line->set_line(10 + static_cast<int64_t>(i));
    if (i + 1 < names.size()) l->add_line()->set_function_id(i + 2);  // an inlined frame
  }
  const char* types[] = {"*errors.errorString", "*fs.PathError", "*fmt.wrapError"};
  for (size_t i = 0; i + 1 < names.size(); ++i) {
    pp::Sample* s = p.add_sample();
    s->add_location_id(i + 1);
    s->add_location_id(i + 2);
    s->add_value(static_cast<int64_t>(i + 1));
    s->add_value(i == 3 ? 1 : 0);
    auto label = [&](const char* k, const std::string& v) {
      pp::Label* l = s->add_label();
      l->set_key(str(k));
      l->set_str(str(v));
    };
    label(profiler::kLabelType, types[i % 3]);
    label(profiler::kLabelMessage, absl::StrCat("open /tmp/", i, ": no such file"));
    label(profiler::kLabelChain, absl::StrCat(types[i % 3], " > syscall.Errno"));
    label(profiler::kLabelBinary, "errgen");
    pp::Label* g = s->add_label();
    g->set_key(str(profiler::kLabelGoroutine));
    g->set_num(static_cast<int64_t>(i));
  }
  return p;
}

void ProfileSeeds(const std::string& dir) {
  std::vector<std::string> paths = PatchBinaries();
  for (size_t b = 0; b < paths.size(); ++b) {
    auto bin = symbolizer::GoBinary::Open(paths[b]);
    if (!bin.ok()) continue;
    pp::Profile p = ErrorProfileOf(**bin);
    Write(dir, absl::StrCat("raw", b), p.SerializeAsString());
    std::string gz = absl::StrCat(dir, "/gz", b);
    if (profiler::WriteProfileFile(p, gz).ok()) ++written;
  }
}

}  // namespace
}  // namespace goerrprof::fuzz

int main(int argc, char** argv) {
  namespace gf = goerrprof::fuzz;
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
    return 2;
  }
  std::string out = argv[1];
  mkdir(out.c_str(), 0755);
  gf::ElfSeeds(gf::Dir(out, "elf"));
  gf::PatchSeeds(gf::Dir(out, "patch"));
  gf::ProfileSeeds(gf::Dir(out, "profile"));
  gf::written += gf::RecordSeeds(gf::Dir(out, "record"));
  auto live = gf::GoroutineSeeds(gf::Dir(out, "goroutines"));
  if (!live.ok()) {
    std::fprintf(stderr, "fuzz_seeds: goroutines: %s\n",
                 std::string(live.status().message()).c_str());
    return 1;
  }
  gf::written += *live;
  std::printf("fuzz_seeds: %d seeds in %s\n", gf::written, out.c_str());
  return 0;
}
