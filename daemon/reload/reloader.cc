#include "daemon/reload/reloader.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "daemon/common/log.h"
#include "daemon/export/metric_builder.h"
#include "daemon/reload/bearer_token.h"
#include "daemon/reload/config_diff.h"

namespace kpid::reload {
absl::StatusOr<LoadedConfig> LoadConfigAndRules(const std::string& path) {
  absl::StatusOr<model::Config> config = model::LoadConfigFile(path);
  if (!config.ok()) return config.status();
  absl::StatusOr<std::vector<std::string>> rule_paths = alert::ExpandRuleGlobs(*config);
  if (!rule_paths.ok()) return rule_paths.status();
  absl::StatusOr<alert::RuleSet> rules = alert::LoadRuleFiles(*rule_paths, &*config);
  if (!rules.ok()) return rules.status();
  std::string token;
  if (!config->reload_token_file.empty()) {
    absl::StatusOr<std::string> read =
        ReadTokenFile(model::PathNextToConfig(*config, config->reload_token_file));
    if (!read.ok()) return read.status();
    token = *std::move(read);
  }
  absl::StatusOr<std::optional<tls::ServerTls>> http_tls =
      tls::LoadServerTls(*config, config->http_tls, "http.tls");
  if (!http_tls.ok()) return http_tls.status();
  absl::StatusOr<std::optional<tls::ServerTls>> grpc_tls =
      tls::LoadServerTls(*config, config->grpc_tls, "grpc.tls");
  if (!grpc_tls.ok()) return grpc_tls.status();
  return LoadedConfig{*std::move(config), *std::move(rules), std::move(token), *std::move(http_tls),
                      *std::move(grpc_tls)};
}

Reloader::Reloader(Options options)
    : config_path_(std::move(options.config_path)),
      replace_rules_(std::move(options.replace_rules)),
      replace_alerting_(std::move(options.replace_alerting)),
      reshape_engines_(std::move(options.reshape_engines)),
      now_(std::move(options.now)),
      running_(std::move(options.running.config)),
      token_(std::move(options.running.reload_token)),
      last_success_(now_()) {}

absl::Status Reloader::Reload(absl::string_view trigger) {
  absl::MutexLock lock(&reload_mu_);
  log::Info("reloading configuration", {{"trigger", trigger}, {"config", config_path_}});
  absl::StatusOr<LoadedConfig> loaded = LoadConfigAndRules(config_path_);
  absl::Status status = loaded.ok() ? Apply(*std::move(loaded), trigger) : loaded.status();
  if (!status.ok()) {
    log::Error("configuration reload refused; the running configuration stays",
               {{"trigger", trigger}, {"error", status.message()}});
  }
  Record(status.ok());
  return status;
}

absl::Status Reloader::Apply(LoadedConfig loaded, absl::string_view trigger) {
  std::vector<std::string> changed = RestartRequiredChanges(running_, loaded.config);
  const std::vector<std::string> reshaped = EngineReshapeChanges(running_, loaded.config);
  if (!reshape_engines_) changed.insert(changed.end(), reshaped.begin(), reshaped.end());
  if (!changed.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        config_path_, ": ", absl::StrJoin(changed, ", "), " changed: restart kpid to apply"));
  }
  // First, as the one step that can still fail: nothing is applied before.
  const bool delivery_changed = running_.alertmanagers != loaded.config.alertmanagers ||
                                running_.alerting != loaded.config.alerting;
  if (delivery_changed && replace_alerting_) {
    if (absl::Status s = replace_alerting_(loaded.config); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("alert delivery: ", s.message()));
    }
  }
  if (!reshaped.empty() && reshape_engines_) {
    if (absl::Status s = reshape_engines_(std::make_shared<const model::Config>(loaded.config));
        !s.ok()) {
      return absl::Status(s.code(), absl::StrCat("reshaping the engines for ",
                                                 absl::StrJoin(reshaped, ", "), ": ", s.message()));
    }
  }
  const size_t rule_count = loaded.rules.rule_count();
  const alert::RuleReplacement r = replace_rules_(std::move(loaded.rules));
  {
    absl::MutexLock lock(&token_mu_);
    token_ = std::move(loaded.reload_token);
  }
  running_ = std::move(loaded.config);
  log::Info("configuration reloaded", {{"trigger", trigger},
                                       {"rules", absl::StrCat(rule_count)},
                                       {"alert_delivery", delivery_changed ? "rebuilt" : "kept"},
                                       {"engines", reshaped.empty() ? "kept" : "reshaped"},
                                       {"rules_added", absl::StrCat(r.added)},
                                       {"rules_removed", absl::StrCat(r.removed)},
                                       {"rules_kept", absl::StrCat(r.kept)},
                                       {"alerts_resolved", absl::StrCat(r.resolved)}});
  return absl::OkStatus();
}

void Reloader::Record(bool success) {
  absl::MutexLock lock(&metrics_mu_);
  last_successful_ = success;
  if (success) {
    last_success_ = now_();
    ++successes_;
  } else {
    ++failures_;
  }
}

http::HttpReply Reloader::HandleHttp(absl::string_view authorization) {
  {
    absl::MutexLock lock(&token_mu_);
    if (!token_.empty() && !BearerTokenMatches(authorization, token_)) {
      return {401, "unauthorized: POST /-/reload needs \"Authorization: Bearer <token>\"\n"};
    }
  }
  absl::Status status = Reload("http");
  if (!status.ok()) return {400, absl::StrCat(status.message(), "\n")};
  return {200, "ok\n"};
}

std::vector<prometheus::MetricFamily> Reloader::Collect() const {
  absl::MutexLock lock(&metrics_mu_);
  using prometheus::MetricType;
  std::vector<prometheus::MetricFamily> families;
  families.push_back(exporter::Family("kpid_config_last_reload_successful",
                                      "1 if the last configuration reload (or the start) applied, "
                                      "0 if it was refused.",
                                      MetricType::Gauge));
  exporter::AddGauge(&families.back(), {}, last_successful_ ? 1 : 0);
  families.push_back(exporter::Family("kpid_config_last_reload_success_timestamp_seconds",
                                      "When the configuration was last loaded successfully.",
                                      MetricType::Gauge));
  exporter::AddGauge(&families.back(), {},
                     absl::ToDoubleSeconds(last_success_ - absl::UnixEpoch()));
  families.push_back(exporter::Family("kpid_config_reloads_total",
                                      "Configuration reloads, by result.", MetricType::Counter));
  exporter::AddCounter(&families.back(), {{"result", "success"}}, static_cast<double>(successes_));
  exporter::AddCounter(&families.back(), {{"result", "failure"}}, static_cast<double>(failures_));
  return families;
}

}  // namespace kpid::reload
