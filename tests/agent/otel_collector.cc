#include "tests/agent/otel_collector.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "gtest/gtest.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace goerrprof::testing {
namespace {

constexpr int kWaitSeconds = 60;

bool Accepts(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in a = {};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  close(fd);
  return ok;
}

}  // namespace

std::string FindOtelCollector() {
  std::string p = RepoDir() + "/.cache/otelcol/otelcol";
  return access(p.c_str(), X_OK) == 0 ? p : "";
}

absl::StatusOr<std::unique_ptr<OtelCollector>> OtelCollector::Start(int wanted_port) {
  std::string bin = FindOtelCollector();
  if (bin.empty()) return absl::NotFoundError("no collector: run scripts/build_otelcol.sh");
  std::unique_ptr<OtelCollector> c(new OtelCollector());
  static int started = 0;
  c->dir_ = absl::StrCat(::testing::TempDir(), "otelcol-", getpid(), "-", ++started);
  std::filesystem::create_directories(c->dir_);
  const int port = wanted_port > 0 ? wanted_port : FreeLoopbackPort();
  if (port <= 0) return absl::InternalError("no free port");
  c->endpoint_ = absl::StrCat("http://127.0.0.1:", port);
  {
    std::ofstream config(c->dir_ + "/config.yaml");
    config << "receivers:\n  otlp:\n    protocols:\n      http:\n        endpoint: 127.0.0.1:"
           << port << "\nexporters:\n  profilesfile:\n    path: " << c->dir_
           << "/received.txt\n    format: text\nservice:\n  telemetry:\n    logs:\n"
           << "      level: warn\n  pipelines:\n    profiles:\n      receivers: [otlp]\n"
           << "      exporters: [profilesfile]\n";
  }
  auto child = Child::Spawn({bin, "--config", "file:" + c->dir_ + "/config.yaml",
                             "--feature-gates=service.profilesSupport"});
  if (!child.ok()) return child.status();
  c->child_ = std::move(*child);
  // Ready when its receiver accepts (polled, bounded).
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(kWaitSeconds);
  while (!Accepts(port)) {
    if (std::chrono::steady_clock::now() > deadline) {
      return absl::DeadlineExceededError("the collector never listened");
    }
    if (kill(c->child_->pid(), 0) != 0) return absl::InternalError("the collector exited");
    usleep(20 * 1000);
  }
  return c;
}

OtelCollector::~OtelCollector() {
  child_.reset();
  std::error_code ec;
  if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
}

absl::Status OtelCollector::Stop() {
  if (!child_) return absl::OkStatus();
  kill(child_->pid(), SIGTERM);
  auto done = child_->Finish(kWaitSeconds);
  if (!done.ok()) return done.status();
  if (done->exit_code != 0) {
    return absl::InternalError(absl::StrCat("collector exit ", done->exit_code, ": ", done->err));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> OtelCollector::Received() const {
  std::ifstream in(dir_ + "/received.txt");
  if (!in) return std::string();  // nothing received yet
  std::stringstream s;
  s << in.rdbuf();
  std::string text = s.str();
  // Whole batches only: up to the last "end" line.
  size_t end = text.rfind("end\n");
  if (end == std::string::npos) return std::string();
  return text.substr(0, end + 4);
}

absl::StatusOr<std::vector<OtlpSample>> ParseOtlpSamples(const std::string& text,
                                                         std::vector<std::string>* batches) {
  std::vector<OtlpSample> out;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::vector<std::string> f = absl::StrSplit(line, '\t');
    if (f[0] == "end") continue;
    if (f[0] == "batch") {
      if (batches) batches->emplace_back(line);
      continue;
    }
    if (f[0] != "sample" || f.size() < 4) {
      return absl::InvalidArgumentError(absl::StrCat("bad line: ", line));
    }
    OtlpSample& s = out.emplace_back();
    s.kind = f[1];
    if (!absl::SimpleAtoi(f[2], &s.value)) return absl::InvalidArgumentError(std::string(line));
    s.frames = absl::StrSplit(f[3], ';', absl::SkipEmpty());
    for (size_t i = 4; i < f.size(); ++i) {
      std::pair<std::string, std::string> kv = absl::StrSplit(f[i], absl::MaxSplits('=', 1));
      s.attributes[kv.first] = kv.second;
    }
  }
  return out;
}

}  // namespace goerrprof::testing
