#include "tests/testing/alertmanager.h"

#include <httplib.h>
#include <signal.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "google/protobuf/util/json_util.h"

namespace kpid::testing {
namespace {

constexpr char kConfigTemplate[] = R"(
route:
  receiver: hook
  group_by: [alertname, process, stage]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: http://127.0.0.1:$HOOK_PORT/hook
        send_resolved: true
)";

}  // namespace

std::map<std::string, std::string> StringMap(const google::protobuf::Value& value) {
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : value.struct_value().fields()) out[k] = v.string_value();
  return out;
}

Webhook::Webhook() : server_(std::make_unique<httplib::Server>()) {
  server_->Post("/hook", [this](const httplib::Request& req, httplib::Response& res) {
    google::protobuf::Struct payload;
    if (!google::protobuf::util::JsonStringToMessage(req.body, &payload).ok()) {
      res.status = 400;
      return;
    }
    absl::MutexLock lock(&mu_);
    payloads_.push_back(std::move(payload));
  });
  port_ = server_->bind_to_any_port("127.0.0.1");
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  WaitFor([&] { return server_->is_running(); }, absl::Seconds(10));
}

Webhook::~Webhook() {
  server_->stop();
  thread_.join();
}

std::unique_ptr<google::protobuf::Struct> Webhook::Find(
    const std::string& status, const std::map<std::string, std::string>& labels) {
  absl::MutexLock lock(&mu_);
  for (const auto& payload : payloads_) {
    if (payload.fields().at("status").string_value() != status) continue;
    for (const auto& a : payload.fields().at("alerts").list_value().values()) {
      if (StringMap(a.struct_value().fields().at("labels")) == labels) {
        return std::make_unique<google::protobuf::Struct>(a.struct_value());
      }
    }
  }
  return nullptr;
}

int Webhook::Count(const std::string& status, const std::map<std::string, std::string>& labels) {
  absl::MutexLock lock(&mu_);
  int n = 0;
  for (const auto& payload : payloads_) {
    if (payload.fields().at("status").string_value() != status) continue;
    for (const auto& a : payload.fields().at("alerts").list_value().values()) {
      n += StringMap(a.struct_value().fields().at("labels")) == labels;
    }
  }
  return n;
}

AlertmanagerProcess::AlertmanagerProcess(std::string dir, int webhook_port)
    : dir_(std::move(dir)), port_(FreePort()) {
  WriteFileOrDie(
      dir_ + "/alertmanager.yml",
      absl::StrReplaceAll(kConfigTemplate, {{"$HOOK_PORT", absl::StrCat(webhook_port)}}));
}

AlertmanagerProcess::~AlertmanagerProcess() {
  if (process_) Stop();
}

bool AlertmanagerProcess::Start(std::string* why) {
  if (::access(ALERTMANAGER_BINARY, X_OK) != 0) {
    *why = "prometheus-alertmanager not found (" ALERTMANAGER_BINARY "); run scripts/deps";
    return false;
  }
  process_ = std::make_unique<Subprocess>(
      std::vector<std::string>{ALERTMANAGER_BINARY, "--config.file=" + dir_ + "/alertmanager.yml",
                               "--storage.path=" + dir_ + "/data",
                               absl::StrCat("--web.listen-address=127.0.0.1:", port_),
                               "--cluster.listen-address=",  // no HA gossip: nothing else listens
                               "--log.level=warn"},
      dir_ + "/alertmanager.log");
  if (!WaitFor([&] { return HttpGet(port_, "/-/ready").status == 200; }, absl::Seconds(30))) {
    *why = Log();
    return false;
  }
  return true;
}

bool AlertmanagerProcess::Stop() {
  process_->Signal(SIGTERM);
  const bool clean = process_->Wait(absl::Seconds(10)) == 0;
  process_.reset();
  return clean;
}

std::string AlertmanagerProcess::url() const { return absl::StrCat("http://127.0.0.1:", port_); }

std::string AlertmanagerProcess::Log() const { return ReadFileOrEmpty(dir_ + "/alertmanager.log"); }

}  // namespace kpid::testing
