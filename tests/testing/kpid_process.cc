#include "tests/testing/kpid_process.h"

#include <signal.h>

#include <cstdio>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"

namespace kpid::testing {

KpidProcess::KpidProcess(std::string binary, std::string dir, std::string config_template,
                         std::vector<std::pair<std::string, std::string>> substitutions)
    : binary_(std::move(binary)),
      dir_(std::move(dir)),
      config_template_(std::move(config_template)),
      substitutions_(std::move(substitutions)) {}

KpidProcess::~KpidProcess() = default;

bool KpidProcess::Start(absl::Duration timeout) {
  // A stale address would let a test produce before the new broker is up.
  std::remove((dir_ + "/bootstrap").c_str());
  for (int attempt = 0; attempt < 3; ++attempt) {
    http_port_ = FreePort();
    std::vector<std::pair<std::string, std::string>> replacements = substitutions_;
    replacements.emplace_back("$DIR", dir_);
    replacements.emplace_back("$PORT", absl::StrCat(http_port_));
    WriteFileOrDie(config_path(), absl::StrReplaceAll(config_template_, replacements));
    ++starts_;
    process_ = std::make_unique<Subprocess>(
        std::vector<std::string>{binary_, "--config", config_path()}, log_path());
    const bool ready = WaitFor(
        [&] { return !process_->running() || HttpGet(http_port_, "/readyz").status == 200; },
        timeout);
    if (ready && process_->running()) return true;
    if (!absl::StrContains(Log(), "http: cannot listen")) return false;
  }
  return false;
}

bool KpidProcess::Stop(absl::Duration timeout) {
  if (process_ == nullptr || !process_->running()) return false;
  process_->Signal(SIGTERM);
  return process_->Wait(timeout) == 0;
}

void KpidProcess::Kill() {
  if (process_ == nullptr) return;
  process_->Signal(SIGKILL);
  process_->Wait(absl::Seconds(10));
}

bool KpidProcess::running() { return process_ != nullptr && process_->running(); }

std::string KpidProcess::EmbeddedBrokers() const {
  return std::string(absl::StripSuffix(ReadFileOrEmpty(dir_ + "/bootstrap"), "\n"));
}

std::string KpidProcess::log_path() const { return absl::StrCat(dir_, "/kpid-", starts_, ".log"); }

std::string KpidProcess::Log() const { return ReadFileOrEmpty(log_path()); }

MetricSamples KpidProcess::Metrics() const {
  return ParseMetrics(HttpGet(http_port_, "/metrics").body);
}

}  // namespace kpid::testing
