// kpid: the KPI monitoring daemon.
//
//   kpid --config FILE              run the daemon
//   kpid check-config FILE...       validate configs; errors as file:line:col: message
//   kpid dev-broker --config FILE   run only the embedded Kafka broker of FILE
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "daemon/aggregate/aggregate_shard.h"
#include "daemon/alert/rule.h"
#include "daemon/alert/rule_engine.h"
#include "daemon/api/api_server.h"
#include "daemon/api/call_metrics.h"
#include "daemon/api/peers.h"
#include "daemon/api/snapshot_reader.h"
#include "daemon/cases/clock.h"
#include "daemon/common/file_util.h"
#include "daemon/common/flag_args.h"
#include "daemon/common/log.h"
#include "daemon/engine/engine_registry.h"
#include "daemon/export/engine_metrics.h"
#include "daemon/export/ingest_metrics.h"
#include "daemon/export/kpi_tree_metrics.h"
#include "daemon/export/open_cases_metrics.h"
#include "daemon/http/http_server.h"
#include "daemon/ingest/dead_letter.h"
#include "daemon/ingest/embedded_broker.h"
#include "daemon/ingest/kafka_ingest.h"
#include "daemon/model/config.h"
#include "daemon/reload/alert_delivery.h"
#include "daemon/reload/reloader.h"
#include "grpcpp/security/credentials.h"

ABSL_FLAG(std::string, config, "", "Configuration file (YAML, see docs/configuration.md).");
ABSL_FLAG(std::string, log_level, "info", "Least severe log level: debug, info, warn, error.");
ABSL_FLAG(int, partitions, 0,
          "dev-broker: partitions of the event topic (default: kafka.partitions of --config).");
ABSL_FLAG(std::string, bootstrap_file, "",
          "dev-broker: where to write the broker address (default: kafka.bootstrap_file).");

namespace kpid {
namespace {

constexpr const char kUsage[] = R"(kpid: KPI monitoring daemon for business processes.

Usage:
  kpid --config FILE               run the daemon
  kpid check-config FILE...        validate config files (and the rules they name); exit 1 on errors
  kpid check-rules [--config FILE] RULES...
                                   validate alert rule files; with --config also their
                                   processes, stages, windows and dimensions
  kpid dev-broker --config FILE    run only an embedded Kafka broker with FILE's topics
  kpid --version | --help

SIGHUP (or POST /-/reload) reloads the config and rules; SIGTERM/SIGINT drain and exit 0.)";

// Blocks the signals kpid handles so every thread inherits the mask; the
// main thread then takes them synchronously with sigwait.
sigset_t BlockHandledSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  // OpenSSL writes to its sockets with write(), not send(MSG_NOSIGNAL): an
  // HTTPS client that hangs up mid-response (or during the handshake, as a
  // client without the certificate mutual TLS wants does) would otherwise
  // kill kpid with SIGPIPE. The write fails with EPIPE instead.
  signal(SIGPIPE, SIG_IGN);
  return set;
}

// Waits for SIGINT/SIGTERM. SIGHUP calls `on_hangup` (a reload), or is
// ignored without one, so it never kills the process.
void WaitForTermination(const sigset_t& set, const std::function<void()>& on_hangup = nullptr) {
  while (true) {
    int signal = 0;
    if (sigwait(&set, &signal) != 0) continue;
    if (signal == SIGHUP) {
      if (on_hangup) on_hangup();
      continue;
    }
    log::Info("shutting down", {{"signal", signal == SIGTERM ? "SIGTERM" : "SIGINT"}});
    return;
  }
}

absl::StatusOr<std::unique_ptr<ingest::EmbeddedBroker>> StartEmbeddedBroker(
    const model::Config& config, int partitions, const std::string& bootstrap_file) {
  std::vector<ingest::TopicSpec> topics = {{config.kafka.topic, partitions}};
  if (!config.kafka.dead_letter_topic.empty()) {
    topics.push_back({config.kafka.dead_letter_topic, 1});
  }
  // The mock cluster neither compacts nor answers CreateTopics reliably:
  // made here, one partition per event-topic partition.
  if (!config.kafka.state_topic.empty()) {
    topics.push_back({config.kafka.state_topic, partitions});
  }
  auto broker = ingest::EmbeddedBroker::Start(topics);
  if (!broker.ok()) return broker.status();
  if (!bootstrap_file.empty()) {
    if (absl::Status s = WriteFileAtomically(bootstrap_file, (*broker)->bootstrap() + "\n");
        !s.ok()) {
      return s;
    }
  }
  log::Info("embedded kafka broker started", {{"bootstrap", (*broker)->bootstrap()},
                                              {"topic", config.kafka.topic},
                                              {"partitions", absl::StrCat(partitions)},
                                              {"bootstrap_file", bootstrap_file}});
  return broker;
}

int Fail(const absl::Status& status) {
  std::cerr << status.message() << "\n";
  return 1;
}

int CheckConfig(const std::vector<char*>& files) {
  if (files.empty()) {
    std::cerr << "usage: kpid check-config FILE...\n";
    return 2;
  }
  int rc = 0;
  for (const char* file : files) {
    // The same loading and checks as the start and every reload.
    absl::StatusOr<reload::LoadedConfig> loaded = reload::LoadConfigAndRules(file);
    if (!loaded.ok()) {
      std::cerr << loaded.status().message() << "\n";
      rc = 1;
      continue;
    }
    std::cout << file << ": ok (" << loaded->config.processes.size() << " processes, "
              << loaded->rules.rule_count() << " alert rules)\n";
  }
  return rc;
}

int CheckRules(const std::vector<char*>& files) {
  if (files.empty()) {
    std::cerr << "usage: kpid check-rules [--config FILE] RULES...\n";
    return 2;
  }
  std::optional<model::Config> config;
  if (!absl::GetFlag(FLAGS_config).empty()) {
    absl::StatusOr<model::Config> loaded = model::LoadConfigFile(absl::GetFlag(FLAGS_config));
    if (!loaded.ok()) return Fail(loaded.status());
    config = *std::move(loaded);
  }
  absl::StatusOr<alert::RuleSet> rules = alert::LoadRuleFiles(
      std::vector<std::string>(files.begin(), files.end()), config ? &*config : nullptr);
  if (!rules.ok()) return Fail(rules.status());
  std::cout << rules->rule_count() << " alert rules in " << files.size() << " files: ok"
            << (config ? "" : " (without --config: processes, stages and windows not checked)")
            << "\n";
  return 0;
}

int RunDevBroker(const model::Config& config, const sigset_t& signals) {
  const int partitions = absl::GetFlag(FLAGS_partitions) > 0 ? absl::GetFlag(FLAGS_partitions)
                                                             : config.kafka.partitions;
  const std::string file = absl::GetFlag(FLAGS_bootstrap_file).empty()
                               ? config.kafka.bootstrap_file
                               : absl::GetFlag(FLAGS_bootstrap_file);
  auto broker = StartEmbeddedBroker(config, partitions, file);
  if (!broker.ok()) return Fail(broker.status());
  std::cout << (*broker)->bootstrap() << std::endl;
  WaitForTermination(signals);
  return 0;
}

// `loaded` stays in force for the life of the daemon, apart from what a
// reload replaces: the rules (the rule engine then owns them), the alert
// delivery, and the processes and dimensions (the engine registry then
// holds the config the engines are shaped by; readers take it with the
// shards, aggregate::ShardSet::config).
// Where /metrics is served, as alerts' generatorURL and the start log say.
std::string MetricsUrl(const model::Config& config) {
  return absl::StrCat(config.http_tls.enabled() ? "https://" : "http://", config.http_listen,
                      "/metrics");
}

// How this replica connects to its peers: TLS when they serve it (grpc.tls),
// verified against peers.tls.ca_file (else the system roots), with
// peers.tls' client certificate when set. Read once at start.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> PeerCredentials(
    const model::Config& config) {
  if (!config.grpc_tls.enabled()) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions ssl;
  for (auto [file, pem] : {std::pair{&config.peers.tls.ca_file, &ssl.pem_root_certs},
                           std::pair{&config.peers.tls.cert_file, &ssl.pem_cert_chain},
                           std::pair{&config.peers.tls.key_file, &ssl.pem_private_key}}) {
    if (file->empty()) continue;
    absl::StatusOr<std::string> read = ReadFile(model::PathNextToConfig(config, *file));
    if (!read.ok()) return read.status();
    *pem = *std::move(read);
  }
  return grpc::SslCredentials(ssl);
}

// What the peers' certificates must name (config.h, PeerTlsConfig).
std::string PeerServerName(const model::Config& config) {
  if (!config.grpc_tls.enabled()) return "";
  if (!config.peers.tls.server_name.empty()) return config.peers.tls.server_name;
  if (config.peers.dns.empty()) return "";
  std::string host = config.peers.dns.substr(0, config.peers.dns.rfind(':'));
  return host;
}

int RunDaemon(const reload::LoadedConfig& loaded, const sigset_t& signals) {
  const model::Config& config = loaded.config;
  log::Info("alert rules loaded", {{"rules", absl::StrCat(loaded.rules.rule_count())}});

  std::unique_ptr<ingest::EmbeddedBroker> broker;
  std::string brokers = config.kafka.brokers;
  if (config.kafka.embedded()) {
    auto started =
        StartEmbeddedBroker(config, config.kafka.partitions, config.kafka.bootstrap_file);
    if (!started.ok()) return Fail(started.status());
    broker = *std::move(started);
    brokers = broker->bootstrap();
  }

  std::unique_ptr<ingest::DeadLetterProducer> dead_letter;
  if (!config.kafka.dead_letter_topic.empty()) {
    auto created = ingest::DeadLetterProducer::Create(brokers, config.kafka.dead_letter_topic,
                                                      config.kafka.properties);
    if (!created.ok()) return Fail(created.status());
    dead_letter = *std::move(created);
  }

  // Partition states follow partitions between replicas through the state
  // topic (made here when missing).
  std::unique_ptr<engine::StateTopic> state_topic;
  if (!config.kafka.state_topic.empty()) {
    auto started = engine::StateTopic::Start({
        .brokers = brokers,
        .topic = config.kafka.state_topic,
        .input_topic = config.kafka.topic,
        .partitions_fallback = config.kafka.partitions,
        .properties = config.kafka.properties,
    });
    if (!started.ok()) return Fail(started.status());
    state_topic = *std::move(started);
  }

  // One engine per assigned partition, made, restored and checkpointed as
  // Kafka assigns and revokes them; readers take the current set per read.
  cases::WatermarkBoard watermarks;
  engine::EngineRegistry engines({
      .config = &config,
      .board = &watermarks,
      .state_dir = model::PathNextToConfig(config, config.state_dir),
      .state_topic = state_topic.get(),
  });
  // Windows end now: the wall clock, or the latest event time seen.
  std::unique_ptr<cases::Clock> reader_clock;
  if (config.clock == model::ClockMode::kEvent) {
    reader_clock = std::make_unique<cases::LatestEventClock>(&watermarks);
  } else {
    reader_clock = std::make_unique<cases::WallClock>();
  }

  ingest::KafkaIngest::Options ingest_options;
  ingest_options.config = &config;
  ingest_options.brokers = brokers;
  ingest_options.workers = ingest::KafkaIngest::WorkerCount(config, 0);
  ingest_options.dead_letter = dead_letter.get();
  ingest_options.partitions = &engines;
  auto ingest = ingest::KafkaIngest::Start(std::move(ingest_options));
  if (!ingest.ok()) return Fail(ingest.status());

  // The Alertmanager notifier, rebuilt by reloads that change it.
  auto delivery = reload::AlertDelivery::Start(config);
  if (!delivery.ok()) {
    (*ingest)->Stop();
    return Fail(delivery.status());
  }
  alert::RuleEngine rule_engine({
      .config = &config,
      .rules = &loaded.rules,
      .shard_source = engines.Source(),
      .window_clock = reader_clock.get(),
      .sink = delivery->get(),
      .resend_interval = config.alerting.resend_interval,
      .generator_url = MetricsUrl(config),
      .state_path = config.StatePath("alerts.state"),
      .checkpoint_interval = config.checkpoint_interval,
  });
  rule_engine.Start();  // restores alerts.state before its first evaluation

  reload::Reloader reloader({
      .config_path = config.source_path,
      .running = loaded,
      // The rules were loaded against a config of the engines' shape (a
      // reshape, if any, ran first): they are evaluated over those engines.
      .replace_rules =
          [&rule_engine, &engines](alert::RuleSet rules) {
            return rule_engine.ReplaceRules(std::move(rules), engines.config(), absl::Now());
          },
      .replace_alerting =
          [&rule_engine, delivery = delivery->get()](const model::Config& next) {
            // The old notifier gets a few seconds to deliver what it holds.
            absl::Status s = delivery->Rebuild(next, absl::Seconds(5));
            if (s.ok()) rule_engine.RedeliverFiring(next.alerting.resend_interval, absl::Now());
            return s;
          },
      // Processes or dimensions changed: every partition's engine is moved
      // into one for `next` while the workers pause, at the offset each
      // worker reached, and readers switch with the engines.
      .reshape_engines =
          [&engines, ingest = ingest->get()](std::shared_ptr<const model::Config> next) {
            return ingest->SwapHandlers(next, [&engines, next](const auto& next_offsets) {
              return engines.Reshape(next, next_offsets);
            });
          },
  });

  // Counted by the gRPC service, served by the HTTP server (started first).
  api::SnapshotCallMetrics snapshot_calls;
  // KPI trees of the config the engines are shaped by (a reload may change it).
  const kpitree::KpiTreeEvaluatorCache kpi_trees;
  const api::WindowKpiTree tree_of_window = [&kpi_trees](
                                                const model::Config& shape, int process,
                                                const kpitree::KpiTreeEvaluator::WindowValues& w) {
    return kpi_trees.For(shape)->Evaluate(process, w);
  };
  // The global view: peers asked by a SCOPE_GLOBAL snapshot.
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> peer_credentials =
      PeerCredentials(config);
  if (!peer_credentials.ok()) {
    (*ingest)->Stop();
    rule_engine.Stop();
    return Fail(peer_credentials.status());
  }
  api::PeerDirectory peers({.config = config.peers, .self_listen = config.grpc_listen});
  api::GlobalSnapshots global({
      .config = [&engines] { return engines.config(); },
      .peers = &peers,
      .credentials = *peer_credentials,
      .tls_server_name = PeerServerName(config),
      .kpi_tree = tree_of_window,
  });

  // gRPC API, listening before HTTP: an answer on the HTTP port (probes,
  // scrapes, tests waiting for /healthz) means both listeners are bound.
  api::SnapshotReader::Options snapshot_options;
  snapshot_options.config = &config;
  snapshot_options.shard_source = engines.Source();
  snapshot_options.clock = reader_clock.get();
  snapshot_options.watermark = [&engines]() -> absl::optional<absl::Time> {
    int64_t watermark_ms = std::numeric_limits<int64_t>::min();
    for (const auto& stats : engines.Stats()) {
      watermark_ms = std::max(watermark_ms, stats->watermark_ms.Get());
    }
    if (watermark_ms == std::numeric_limits<int64_t>::min()) return absl::nullopt;
    return absl::FromUnixMillis(watermark_ms);
  };
  snapshot_options.kpi_tree = tree_of_window;
  snapshot_options.replica = config.replica_id;
  const api::SnapshotReader snapshots(std::move(snapshot_options));
  const api::PublishedBreachingCases breaching(engines.Source());
  api::ApiServer::Options api_options;
  api_options.listen = config.grpc_listen;
  api_options.tls = loaded.grpc_tls;
  api_options.service.snapshots = &snapshots;
  api_options.service.alerts = [&rule_engine] { return rule_engine.Alerts(); };
  api_options.service.breaching = &breaching;
  api_options.service.limits = config.grpc_api;
  if (config.peers.enabled()) api_options.service.global = &global;
  api_options.service.metrics = &snapshot_calls;
  api_options.ready = [ingest = ingest->get(), &engines] {
    return ingest->ready() && engines.restoring() == 0;
  };
  auto api = api::ApiServer::Start(std::move(api_options));
  if (!api.ok()) {
    (*ingest)->Stop();
    rule_engine.Stop();
    return Fail(api.status());
  }
  http::HttpServer::Options http_options;
  http_options.listen = config.http_listen;
  http_options.tls = loaded.http_tls;
  http_options.not_ready_reason = [ingest = ingest->get(), &engines]() -> std::string {
    if (!ingest->connected()) return "kafka cluster unreachable";
    if (const int restoring = engines.restoring(); restoring > 0) {
      return absl::StrCat("restoring the state of ", restoring, " partitions");
    }
    return ingest->ready() ? "" : "no partitions assigned yet";
  };
  http_options.collectables = {
      std::make_shared<exporter::BuildInfo>(),
      std::make_shared<exporter::IngestMetrics>(ingest->get(), dead_letter.get(),
                                                [&engines] { return engines.Stats(); }),
      std::make_shared<exporter::EngineMetrics>(&config, engines.Source(), reader_clock.get()),
      std::make_shared<exporter::KpiTreeMetrics>(&config, engines.Source(), reader_clock.get()),
      std::make_shared<exporter::OpenCasesMetrics>(&config, engines.Source(), reader_clock.get()),
      // Owned by this frame, which outlives the server: an aliasing pointer.
      std::shared_ptr<prometheus::Collectable>(std::shared_ptr<void>(), &engines),
      std::shared_ptr<prometheus::Collectable>(std::shared_ptr<void>(), &rule_engine),
      std::shared_ptr<prometheus::Collectable>(std::shared_ptr<void>(), &reloader),
      std::shared_ptr<prometheus::Collectable>(std::shared_ptr<void>(), delivery->get()),
      std::shared_ptr<prometheus::Collectable>(std::shared_ptr<void>(), &global),
      std::shared_ptr<prometheus::Collectable>(std::shared_ptr<void>(), &snapshot_calls),
  };
  http_options.reload = [&reloader](const std::string& authorization) {
    return reloader.HandleHttp(authorization);
  };
  auto http = http::HttpServer::Start(std::move(http_options));
  if (!http.ok()) {
    (*api)->Stop();
    (*ingest)->Stop();
    rule_engine.Stop();
    return Fail(http.status());
  }
  log::Info("kpid running", {{"version", KPID_VERSION},
                             {"config", config.source_path},
                             {"metrics", MetricsUrl(config)},
                             {"grpc", config.grpc_listen}});

  WaitForTermination(signals, [&reloader] { (void)reloader.Reload("SIGHUP"); });
  (*api)->Stop();
  // Every partition is checkpointed as ingest stops; the files are complete
  // before kpid exits.
  (*ingest)->Stop();
  engines.Flush();
  rule_engine.Stop();  // its last checkpoint of alerts.state
  // Resolves and pages still queued get a few seconds to reach Alertmanager.
  (*delivery)->Stop(absl::Seconds(5));
  (*http)->Stop();
  if (dead_letter != nullptr) dead_letter->Flush(absl::Seconds(5));
  log::Info("kpid stopped");
  return 0;
}

int Main(int argc, char** argv) {
  const sigset_t signals = BlockHandledSignals();
  // --help prints "kpid: " before the message itself.
  absl::SetProgramUsageMessage(absl::StripPrefix(kUsage, "kpid: "));
  absl::FlagsUsageConfig usage_config;
  usage_config.version_string = [] { return std::string("kpid " KPID_VERSION "\n"); };
  usage_config.contains_help_flags = [](absl::string_view file) {
    return absl::StrContains(file, "daemon/main.cc");
  };
  absl::SetFlagsUsageConfig(usage_config);
  std::vector<std::string> arg_storage;
  std::vector<char*> normalized = NormalizeFlagArgs(argc, argv, &arg_storage);
  std::vector<char*> args =
      absl::ParseCommandLine(static_cast<int>(normalized.size()), normalized.data());

  absl::StatusOr<log::Level> level = log::ParseLevel(absl::GetFlag(FLAGS_log_level));
  if (!level.ok()) return Fail(level.status());
  log::SetMinLevel(*level);

  const std::string command = args.size() > 1 ? args[1] : "";
  if (command == "check-config") {
    return CheckConfig(std::vector<char*>(args.begin() + 2, args.end()));
  }
  if (command == "check-rules") {
    return CheckRules(std::vector<char*>(args.begin() + 2, args.end()));
  }
  if (!command.empty() && command != "dev-broker") {
    std::cerr << "kpid: unknown command \"" << command << "\"\n\n" << kUsage << "\n";
    return 2;
  }
  if (absl::GetFlag(FLAGS_config).empty()) {
    std::cerr << "kpid: --config FILE is required\n\n" << kUsage << "\n";
    return 2;
  }
  if (command == "dev-broker") {
    absl::StatusOr<model::Config> config = model::LoadConfigFile(absl::GetFlag(FLAGS_config));
    if (!config.ok()) return Fail(config.status());
    return RunDevBroker(*config, signals);
  }
  // A rule file that does not load stops the start: better no daemon than
  // one that silently pages nobody.
  absl::StatusOr<reload::LoadedConfig> loaded =
      reload::LoadConfigAndRules(absl::GetFlag(FLAGS_config));
  if (!loaded.ok()) return Fail(loaded.status());
  return RunDaemon(*loaded, signals);
}

}  // namespace
}  // namespace kpid

int main(int argc, char** argv) { return kpid::Main(argc, argv); }
