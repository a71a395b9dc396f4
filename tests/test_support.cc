#include "tests/test_support.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "absl/strings/numbers.h"
#include "absl/strings/strip.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"

namespace goerrprof::testing {

std::string RepoDir() {
  const char* env = std::getenv("GOERRPROF_REPO");
  return env ? env : GOERRPROF_SOURCE_DIR;
}

namespace {

absl::Status ReadManifest(const std::string& path, bool esbuild,
                          std::vector<CorpusBinary>* out) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat(
        "missing ", path, ": build the corpus with scripts/build_go_corpus.sh and "
        "scripts/fetch_esbuild.sh (scripts/test.sh does)"));
  }
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> f = absl::StrSplit(line, '\t');
    if (f.size() < 3 || f[0] == "go_version") continue;
    if (esbuild) {
      out->push_back({f[0], "esbuild", f[1], f[2]});
    } else if (f.size() >= 4) {
      out->push_back({f[0], f[1], f[2], f[3]});
    }
  }
  return absl::OkStatus();
}

}  // namespace

std::string CorpusBinary::Label() const {
  return absl::StrReplaceAll(absl::StrCat(go_version, "_", program, "_", flavour),
                             {{".", "_"}, {"-", "_"}});
}

std::string CorpusDir() {
  const char* env = std::getenv("GOERRPROF_CORPUS");
  return env ? env : RepoDir() + "/.cache/corpus";
}

absl::StatusOr<std::vector<CorpusBinary>> LoadCorpus(bool esbuild) {
  std::vector<CorpusBinary> out;
  if (esbuild) {
    const char* env = std::getenv("GOERRPROF_ESBUILD");
    std::string dir = env ? env : RepoDir() + "/.cache/esbuild";
    if (auto s = ReadManifest(dir + "/manifest.tsv", true, &out); !s.ok()) return s;
  } else {
    if (auto s = ReadManifest(CorpusDir() + "/manifest.tsv", false, &out); !s.ok()) return s;
  }
  return out;
}

std::string OraclePath() { return CorpusDir() + "/tools/gosym-oracle"; }

std::string GoerrprofPath() {
  const char* env = std::getenv("GOERRPROF_BIN");
  return env ? env : GOERRPROF_BINARY;
}

CommandResult RunCommand(const std::vector<std::string>& argv, int timeout_seconds) {
  CommandResult r;
  auto child = Child::Spawn(argv);
  if (!child.ok()) return r;
  auto done = (*child)->Finish(timeout_seconds);  // stdin closed: reads see EOF
  if (!done.ok()) {
    r.err = "[test harness: " + std::string(done.status().message()) + "]";
    return r;  // the Child's destructor kills it
  }
  return *done;
}

namespace {

class CorpusTest : public ::testing::Test {
 public:
  CorpusTest(CorpusBinary b, std::function<void(const CorpusBinary&)> body, absl::Status missing)
      : b_(std::move(b)), body_(std::move(body)), missing_(std::move(missing)) {}
  void TestBody() override {
    ASSERT_TRUE(missing_.ok()) << missing_;
    body_(b_);
  }

 private:
  CorpusBinary b_;
  std::function<void(const CorpusBinary&)> body_;
  absl::Status missing_;
};

}  // namespace

void RegisterCorpusTests(const char* suite, const std::string& program, bool with_esbuild,
                         std::function<void(const CorpusBinary&)> body) {
  for (bool esbuild : {false, true}) {
    if (esbuild && !with_esbuild) continue;
    auto corpus = LoadCorpus(esbuild);
    if (!corpus.ok()) {
      ::testing::RegisterTest(suite, esbuild ? "EsbuildCorpus" : "GoCorpus", nullptr, nullptr,
                              __FILE__, __LINE__, [s = corpus.status(), body]() -> ::testing::Test* {
                                return new CorpusTest({}, body, s);
                              });
      continue;
    }
    for (const CorpusBinary& b : *corpus) {
      bool wanted = esbuild || (program == "*" ? b.program != "demo"
                                               : (program == b.program ||
                                                  program == b.program + "-" + b.flavour));
      if (!wanted) continue;
      ::testing::RegisterTest(suite, b.Label().c_str(), nullptr, nullptr, __FILE__, __LINE__,
                              [b, body]() -> ::testing::Test* {
                                return new CorpusTest(b, body, absl::OkStatus());
                              });
    }
  }
}

absl::StatusOr<std::unique_ptr<Child>> Child::Spawn(const std::vector<std::string>& argv) {
  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
    return absl::InternalError("pipe failed");
  }
  auto child = std::unique_ptr<Child>(new Child());
  child->pid_ = fork();
  if (child->pid_ == 0) {
    // A process group of its own, so the destructor also stops what it
    // started (`go tool pprof` runs the pprof binary as its child).
    setpgid(0, 0);
    dup2(in[0], 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  if (child->pid_ > 0) setpgid(child->pid_, child->pid_);  // before either side relies on it
  close(in[0]);
  close(out[1]);
  close(err[1]);
  child->in_ = in[1];
  child->out_ = out[0];
  child->err_ = err[0];
  return child;
}

Child::~Child() {
  if (pid_ > 0) {
    kill(-pid_, SIGKILL);
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  for (int fd : {in_, out_, err_}) {
    if (fd >= 0) close(fd);
  }
}

absl::StatusOr<std::string> Child::ReadLine(bool from_stderr, int timeout_seconds) {
  int fd = from_stderr ? err_ : out_;
  std::string& buf = from_stderr ? err_buf_ : out_buf_;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_seconds);
  for (;;) {
    if (size_t nl = buf.find('\n'); nl != std::string::npos) {
      std::string line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      return line;
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return absl::DeadlineExceededError("no line in time: " + buf);
    pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char chunk[4096];
    ssize_t n = read(fd, chunk, sizeof(chunk));
    if (n <= 0) return absl::OutOfRangeError("stream closed: " + buf);
    buf.append(chunk, n);
  }
}

absl::Status Child::Write(const std::string& bytes) {
  if (write(in_, bytes.data(), bytes.size()) != static_cast<ssize_t>(bytes.size())) {
    return absl::InternalError("write to child failed");
  }
  return absl::OkStatus();
}

void Child::CloseStdin() {
  if (in_ >= 0) close(in_);
  in_ = -1;
}

absl::StatusOr<CommandResult> Child::Finish(int timeout_seconds) {
  CloseStdin();
  CommandResult r;
  r.out = out_buf_;
  r.err = err_buf_;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_seconds);
  pollfd fds[2] = {{out_, POLLIN, 0}, {err_, POLLIN, 0}};
  std::string* sinks[2] = {&r.out, &r.err};
  int open_fds = 2;
  char buf[65536];
  while (open_fds > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return absl::DeadlineExceededError("child did not exit in time");
    if (poll(fds, 2, static_cast<int>(left.count())) < 0) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP))) continue;
      ssize_t n = read(fds[i].fd, buf, sizeof(buf));
      if (n > 0) {
        sinks[i]->append(buf, n);
      } else {
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

absl::StatusOr<google::protobuf::Value> ParseJson(const std::string& text) {
  google::protobuf::Value v;
  auto s = google::protobuf::util::JsonStringToMessage(text, &v);
  if (!s.ok()) return absl::InvalidArgumentError(absl::StrCat("bad JSON: ", s.ToString()));
  return v;
}

const google::protobuf::Value& Get(const google::protobuf::Value& obj, const std::string& key) {
  const auto& fields = obj.struct_value().fields();
  auto it = fields.find(key);
  if (it == fields.end()) throw std::runtime_error("JSON has no key " + key);
  return it->second;
}

std::string GetString(const google::protobuf::Value& obj, const std::string& key) {
  return Get(obj, key).string_value();
}

int64_t GetInt(const google::protobuf::Value& obj, const std::string& key) {
  return static_cast<int64_t>(Get(obj, key).number_value());
}

std::vector<ProfileSample> ProfileSamples(const perftools::profiles::Profile& p) {
  auto str = [&](int64_t i) { return p.string_table(static_cast<int>(i)); };
  std::map<uint64_t, const perftools::profiles::Location*> locs;
  for (const auto& l : p.location()) locs[l.id()] = &l;
  std::map<uint64_t, std::string> funcs;
  for (const auto& f : p.function()) funcs[f.id()] = str(f.name());
  std::vector<ProfileSample> out;
  for (const auto& s : p.sample()) {
    ProfileSample x;
    x.value = s.value_size() > 0 ? s.value(0) : 0;
    x.values.assign(s.value().begin(), s.value().end());
    for (uint64_t id : s.location_id()) {
      auto loc = locs.find(id);
      if (loc == locs.end()) continue;
      for (const auto& line : loc->second->line()) x.functions.push_back(funcs[line.function_id()]);
    }
    for (const auto& l : s.label()) {
      if (l.str() != 0) {
        x.labels[str(l.key())] = str(l.str());
      } else {
        x.num_labels[str(l.key())] = l.num();
      }
      ++x.label_count;
    }
    out.push_back(std::move(x));
  }
  return out;
}

std::vector<int> VersionKey(const std::string& v) {
  std::vector<int> key;
  for (absl::string_view part : absl::StrSplit(absl::StripPrefix(v, "go"), '.')) {
    int n = 0;
    (void)absl::SimpleAtoi(part, &n);
    key.push_back(n);
  }
  return key;
}

uint64_t FindPcWhere(
    const symbolizer::GoBinary& bin, absl::string_view function,
    absl::FunctionRef<bool(uint64_t pc, const std::vector<symbolizer::SourceFrame>& frames)> want) {
  const symbolizer::Pclntab& t = bin.pclntab();
  for (size_t i = 0; i < t.num_functions(); ++i) {
    if (t.FuncName(i) != function) continue;
    for (uint64_t pc = t.FuncEntry(i) + 1; pc < t.FuncEnd(i); ++pc) {
      auto frames = bin.Symbolize(pc);
      if (frames.ok() && want(pc, *frames)) return pc;
    }
    return 0;
  }
  return 0;
}

std::unique_ptr<Child> StartErrgen(const std::string& path, int n, std::string* ready_line,
                                   int timeout_seconds) {
  auto errgen = Child::Spawn({path, "-wait", "-n", absl::StrCat(n)});
  if (!errgen.ok()) {
    ADD_FAILURE() << errgen.status();
    return nullptr;
  }
  auto ready = (*errgen)->ReadLine(false, timeout_seconds);
  if (!ready.ok() || *ready != absl::StrCat("ready ", (*errgen)->pid())) {
    ADD_FAILURE() << "errgen not ready: " << (ready.ok() ? *ready : ready.status().ToString());
    return nullptr;
  }
  if (ready_line) *ready_line = *ready;
  return std::move(*errgen);
}

std::string CorpusBinaryPath(const CorpusBinary& b) {
  if (access(b.path.c_str(), X_OK) == 0) return b.path;
  return absl::StrCat(CorpusDir(), "/", b.go_version, "/", b.program, "-", b.flavour);
}

std::optional<CorpusBinary> NewestCorpusBinary(bool esbuild, const std::string& program,
                                               const std::string& flavour) {
  auto corpus = LoadCorpus(esbuild);
  if (!corpus.ok()) return std::nullopt;
  std::optional<CorpusBinary> best;
  for (const CorpusBinary& b : *corpus) {
    if (!esbuild && (b.program != program || b.flavour != flavour)) continue;
    if (!best || VersionKey(b.go_version) > VersionKey(best->go_version)) best = b;
  }
  return best;
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int FreeLoopbackPort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a = {};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  int port = -1;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  close(fd);
  return port;
}

}  // namespace goerrprof::testing
