// Hot reload (SIGHUP, POST /-/reload): re-reads the config file and the rule
// files it names, validates them fully, and applies what can change live.
//
//   Reloader reloader({.config_path = path, .running = *loaded,
//                      .replace_rules = [&](alert::RuleSet r) {
//                        return engine.ReplaceRules(std::move(r), absl::Now()); }});
//   absl::Status s = reloader.Reload("SIGHUP");   // OK, or why it was refused
//   http_options.reload = [&](absl::string_view auth) { return reloader.HandleHttp(auth); };
//
// A reload is all or nothing. It is refused, with nothing applied, when the
// config or a rule file does not load (the errors, as file:line:col, are
// logged and returned) or when it changes a key that needs a restart (see
// config_diff.h), or when the new alert delivery cannot start. Otherwise
// the alert delivery is rebuilt if `alertmanagers` or `alerting` changed,
// the engines are reshaped if `processes` or `dimensions` changed (state
// kept by id; what is removed is dropped and counted in
// kpid_reload_dropped_total), the new rules replace the old ones with the state of unchanged rules
// kept (RuleEngine::ReplaceRules), and the token is read again (so it can be rotated without a
// restart). TLS files are read and checked too (the listeners watch them themselves: see
// tls::IdentityWatcher).
//
// Metrics (Collect): kpid_config_last_reload_successful (1/0),
// kpid_config_last_reload_success_timestamp_seconds (the start counts as
// the first successful load), kpid_config_reloads_total{result=success|failure}.
//
// Thread-safe: Reload and HandleHttp may be called from any thread; reloads
// run one at a time. Collect never waits for a reload in progress.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "daemon/alert/rule.h"
#include "daemon/alert/rule_engine.h"
#include "daemon/http/http_server.h"
#include "daemon/model/config.h"
#include "daemon/tls/server_tls.h"
#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"

namespace kpid::reload {

// A config with everything it names, loaded and validated.
struct LoadedConfig {
  model::Config config;
  alert::RuleSet rules;
  std::string reload_token;  // empty: POST /-/reload needs no token
  // The listeners' certificates and keys, checked; unset: plaintext.
  std::optional<tls::ServerTls> http_tls;
  std::optional<tls::ServerTls> grpc_tls;
};

// Reads `path`, the rule files its `rules:` globs match (checked against it),
// its http.reload_token_file and the TLS files of http.tls and grpc.tls:
// what `kpid check-config`, the start and every reload run. Errors: one "file:line:col: message"
// per line.
absl::StatusOr<LoadedConfig> LoadConfigAndRules(const std::string& path);

class Reloader : public prometheus::Collectable {
 public:
  struct Options {
    std::string config_path;
    LoadedConfig running;  // what kpid started with
    // Puts a validated rule set in force (RuleEngine::ReplaceRules).
    std::function<alert::RuleReplacement(alert::RuleSet)> replace_rules;
    // Called, before the rules are replaced, when `alertmanagers` or
    // `alerting` changed; an error refuses the reload with nothing applied.
    std::function<absl::Status(const model::Config&)> replace_alerting;
    // Called, after replace_alerting and before the rules are replaced,
    // when `processes` or `dimensions` changed (EngineReshapeChanges): puts
    // engines of the new shape in place of the running ones, their state
    // carried over (ingest::KafkaIngest::SwapHandlers with
    // engine::EngineRegistry::Reshape). Null: such a change is refused as
    // needing a restart. An error refuses the reload (alert delivery
    // already rebuilt, if it changed).
    std::function<absl::Status(std::shared_ptr<const model::Config>)> reshape_engines = nullptr;
    std::function<absl::Time()> now = [] { return absl::Now(); };
  };

  explicit Reloader(Options options);

  // Loads, validates and applies; `trigger` ("SIGHUP", "http") is logged.
  // OK when applied; else the reason, and nothing changed.
  absl::Status Reload(absl::string_view trigger);

  // POST /-/reload with the request's Authorization header: 401 without the
  // configured bearer token, 200 "ok" when applied, 400 with the reason
  // when refused.
  http::HttpReply HandleHttp(absl::string_view authorization);

  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  absl::Status Apply(LoadedConfig loaded, absl::string_view trigger)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(reload_mu_);
  void Record(bool success);

  const std::string config_path_;
  const std::function<alert::RuleReplacement(alert::RuleSet)> replace_rules_;
  const std::function<absl::Status(const model::Config&)> replace_alerting_;
  const std::function<absl::Status(std::shared_ptr<const model::Config>)> reshape_engines_;
  const std::function<absl::Time()> now_;

  absl::Mutex reload_mu_;  // one reload at a time
  model::Config running_ ABSL_GUARDED_BY(reload_mu_);

  mutable absl::Mutex token_mu_;
  std::string token_ ABSL_GUARDED_BY(token_mu_);

  mutable absl::Mutex metrics_mu_;
  bool last_successful_ ABSL_GUARDED_BY(metrics_mu_) = true;
  absl::Time last_success_ ABSL_GUARDED_BY(metrics_mu_);
  uint64_t successes_ ABSL_GUARDED_BY(metrics_mu_) = 0;
  uint64_t failures_ ABSL_GUARDED_BY(metrics_mu_) = 0;
};

}  // namespace kpid::reload
