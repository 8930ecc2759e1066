#include "daemon/model/config.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <tuple>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "daemon/common/duration.h"
#include "daemon/common/yaml_reader.h"
#include "daemon/model/kpi.h"

namespace kpid::model {
namespace {

// Ids become Prometheus label values and Kafka-side strings; keep them plain.
bool IsValidId(absl::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.';
  });
}

// Dimension names become Prometheus label names.
bool IsValidLabelName(absl::string_view name) {
  if (name.empty() || absl::StartsWith(name, "__")) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

// How a duration reads in a message: as the user wrote it when there is a
// node, else in whole days when it is whole days ("15d", not "2w1d").
std::string DurationText(const YAML::Node& node, absl::Duration d) {
  if (node.IsDefined() && node.IsScalar()) return node.Scalar();
  if (d >= absl::Hours(24) && d % absl::Hours(24) == absl::ZeroDuration()) {
    return absl::StrCat(d / absl::Hours(24), "d");
  }
  return FormatPromDuration(d);
}

// Labels kpid itself puts on its series; a dimension may not shadow them.
constexpr absl::string_view kReservedLabels[] = {"process", "stage",  "window",   "outcome",
                                                 "from",    "to",     "quantile", "node",
                                                 "parent",  "reason", "le"};

std::string HostName() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0 || name[0] == '\0') return "kpid";
  return name;
}

class ConfigParser {
 public:
  explicit ConfigParser(absl::string_view filename) : diag_(std::string(filename)) {}

  absl::StatusOr<Config> Parse(absl::string_view yaml) {
    std::optional<YAML::Node> root = LoadYaml(yaml, &diag_);
    if (!root) return diag_.ToStatus();
    if (!root->IsDefined() || root->IsNull()) {
      diag_.Error("empty configuration");
      return diag_.ToStatus();
    }
    Config config;
    {
      MapReader top(*root, "", &diag_);
      if (!top.present()) return diag_.ToStatus();
      ParseKafka(top.Child("kafka"), &config.kafka);
      {
        MapReader http(top.Child("http"), "http", &diag_);
        config.http_listen = ParseListen(http, "http", config.http_listen);
        config.reload_token_file = http.String("reload_token_file");
        if (YAML::Node n = http.Child("reload_token_file");
            n.IsDefined() && config.reload_token_file.empty()) {
          diag_.Error(n.Mark(), "http.reload_token_file: must not be empty");
        }
        ParseTls(http.Child("tls"), "http.tls", &config.http_tls);
      }
      {
        MapReader grpc(top.Child("grpc"), "grpc", &diag_);
        config.grpc_listen = ParseListen(grpc, "grpc", config.grpc_listen);
        ParseGrpcApi(grpc, &config.grpc_api);
        ParseTls(grpc.Child("tls"), "grpc.tls", &config.grpc_tls);
      }
      ParseClock(top.Child("clock"), &config.clock);
      config.retention = top.Duration("retention", config.retention);
      config.case_ttl = top.Duration("case_ttl", config.case_ttl);
      config.dedup_horizon = top.Duration("dedup_horizon", config.dedup_horizon);
      config.max_future_skew = top.Duration("max_future_skew", config.max_future_skew);
      config.max_past_age = top.Duration("max_past_age", config.max_past_age);
      config.max_abs_value = top.Double("max_abs_value", config.max_abs_value, 1, 1e300);
      // Below 1000 a bound evicts live cases in normal operation (a typo
      // such as "10" for ten million); above 1e9 it bounds nothing (150 GB).
      config.max_open_cases =
          top.Int("max_open_cases", config.max_open_cases, 1000, int64_t{1000} * 1000 * 1000);
      config.state_dir = top.String("state_dir");
      if (YAML::Node n = top.Child("state_dir"); n.IsDefined() && config.state_dir.empty()) {
        diag_.Error(n.Mark(), "state_dir: must not be empty (omit it for no durable state)");
      }
      config.checkpoint_interval = top.Duration("checkpoint_interval", config.checkpoint_interval);
      if (YAML::Node n = top.Child("checkpoint_interval");
          n.IsDefined() && config.checkpoint_interval < absl::Seconds(1)) {
        diag_.Error(n.Mark(), "checkpoint_interval: must be at least 1s");
      }
      // Same range, same reasons: below 1000 duplicates slip through in
      // normal operation; above 1e9 (tens of GB) it bounds nothing.
      config.max_dedup_ids =
          top.Int("max_dedup_ids", config.max_dedup_ids, 1000, int64_t{1000} * 1000 * 1000);
      config.max_closed_cases =
          top.Int("max_closed_cases", config.max_closed_cases, 1000, int64_t{1000} * 1000 * 1000);
      ParseWindows(top.Child("windows"), top.Child("retention"), config.retention, &config.windows);
      ParseDimensions(top.Child("dimensions"), &config.dimensions);
      ParseProcesses(top.Required("processes"), config.dimensions, &config.processes);
      config.rules = top.StringList("rules");
      config.alertmanagers = ParseAlertmanagers(top.Child("alertmanagers"));
      ParseAlerting(top.Child("alerting"), &config.alerting);
      config.replica_id = top.String("replica_id", HostName());
      if (YAML::Node n = top.Child("replica_id"); n.IsDefined() && config.replica_id.empty()) {
        diag_.Error(n.Mark(), "replica_id: must not be empty (omit it for the host name)");
      }
      ParsePeers(top.Child("peers"), config.grpc_tls, &config.peers);
      CheckPositive(top.Child("case_ttl"), "case_ttl", config.case_ttl);
      CheckPositive(top.Child("dedup_horizon"), "dedup_horizon", config.dedup_horizon);
      CheckPositive(top.Child("retention"), "retention", config.retention);
      CheckPositive(top.Child("max_past_age"), "max_past_age", config.max_past_age);
    }
    if (!diag_.ok()) return diag_.ToStatus();
    return config;
  }

 private:
  void CheckPositive(const YAML::Node& node, absl::string_view what, absl::Duration d) {
    if (node.IsDefined() && d <= absl::ZeroDuration()) {
      diag_.Error(node.Mark(), absl::StrCat(what, ": must be greater than 0"));
    }
  }

  void ParseAlerting(const YAML::Node& node, AlertingConfig* alerting) {
    MapReader r(node, "alerting", &diag_);
    alerting->resend_interval = r.Duration("resend_interval", alerting->resend_interval);
    alerting->timeout = r.Duration("timeout", alerting->timeout);
    alerting->queue_capacity =
        r.Int("queue_capacity", alerting->queue_capacity, 1, int64_t{10} * 1000 * 1000);
    for (const char* key : {"resend_interval", "timeout"}) {
      const absl::Duration d =
          absl::string_view(key) == "timeout" ? alerting->timeout : alerting->resend_interval;
      if (YAML::Node n = r.Child(key); n.IsDefined() && d < absl::Seconds(1)) {
        diag_.Error(n.Mark(), absl::StrCat("alerting.", key, ": must be at least 1s"));
      }
    }
  }

  void ParseGrpcApi(MapReader& r, GrpcApiConfig* api) {
    api->snapshot_cache_ttl = r.Duration("snapshot_cache_ttl", api->snapshot_cache_ttl);
    // Older than a minute, a cached snapshot no longer shows "now" on a 5m
    // window. (Durations are never negative: the parser has no sign.)
    if (YAML::Node n = r.Child("snapshot_cache_ttl");
        n.IsDefined() && api->snapshot_cache_ttl > absl::Minutes(1)) {
      diag_.Error(n.Mark(), absl::StrCat("grpc.snapshot_cache_ttl: ",
                                         DurationText(n, api->snapshot_cache_ttl),
                                         " is out of range [0, 1m]"));
    }
    api->max_concurrent_snapshot_reads = static_cast<int>(
        r.Int("max_concurrent_snapshot_reads", api->max_concurrent_snapshot_reads, 1, 256));
    api->snapshot_calls_per_second = static_cast<int>(
        r.Int("snapshot_calls_per_second", api->snapshot_calls_per_second, 0, 1000 * 1000));
    api->max_queued_snapshot_calls = static_cast<int>(
        r.Int("max_queued_snapshot_calls", api->max_queued_snapshot_calls, 0, 100 * 1000));
    api->max_watch_streams =
        static_cast<int>(r.Int("max_watch_streams", api->max_watch_streams, 1, 100 * 1000));
  }

  void ParseKafka(const YAML::Node& node, KafkaConfig* kafka) {
    MapReader r(node, "kafka", &diag_);
    kafka->brokers = r.String("brokers", kafka->brokers);
    kafka->topic = r.String("topic", kafka->topic);
    kafka->group_id = r.String("group_id", kafka->group_id);
    kafka->partitions = static_cast<int>(r.Int("partitions", kafka->partitions, 1, 1024));
    kafka->bootstrap_file = r.String("bootstrap_file");
    kafka->dead_letter_topic = r.String("dead_letter_topic");
    kafka->state_topic = r.String("state_topic");
    kafka->workers = static_cast<int>(r.Int("workers", kafka->workers, 0, 256));
    kafka->max_message_bytes =
        r.Int("max_message_bytes", kafka->max_message_bytes, 64, int64_t{64} << 20);
    if (r.present()) {
      if (kafka->brokers.empty()) {
        diag_.Error(r.Child("brokers").Mark(), "kafka.brokers: must not be empty");
      }
      if (!IsValidTopic(kafka->topic)) {
        diag_.Error(r.Child("topic").Mark(),
                    absl::StrCat("kafka.topic: \"", kafka->topic, "\" is not a valid topic name"));
      }
      if (!kafka->dead_letter_topic.empty() && !IsValidTopic(kafka->dead_letter_topic)) {
        diag_.Error(r.Child("dead_letter_topic").Mark(),
                    absl::StrCat("kafka.dead_letter_topic: \"", kafka->dead_letter_topic,
                                 "\" is not a valid topic name"));
      }
      if (!kafka->dead_letter_topic.empty() && kafka->dead_letter_topic == kafka->topic) {
        diag_.Error(r.Child("dead_letter_topic").Mark(),
                    "kafka.dead_letter_topic: must differ from kafka.topic");
      }
      if (!kafka->state_topic.empty() && !IsValidTopic(kafka->state_topic)) {
        diag_.Error(r.Child("state_topic").Mark(),
                    absl::StrCat("kafka.state_topic: \"", kafka->state_topic,
                                 "\" is not a valid topic name"));
      }
      if (!kafka->state_topic.empty() &&
          (kafka->state_topic == kafka->topic || kafka->state_topic == kafka->dead_letter_topic)) {
        diag_.Error(r.Child("state_topic").Mark(),
                    "kafka.state_topic: must differ from kafka.topic and kafka.dead_letter_topic");
      }
      if (kafka->group_id.empty()) {
        diag_.Error(r.Child("group_id").Mark(), "kafka.group_id: must not be empty");
      }
      if (!kafka->embedded()) {
        for (absl::string_view key : {"partitions", "bootstrap_file"}) {
          if (YAML::Node n = r.Child(key); n.IsDefined()) {
            diag_.Error(n.Mark(),
                        absl::StrCat("kafka.", key, ": only meaningful with brokers: embedded"));
          }
        }
      }
      MapReader props(r.Child("properties"), "kafka.properties", &diag_);
      if (props.present()) {
        for (auto it = props.node().begin(); it != props.node().end(); ++it) {
          if (!it->first.IsScalar()) continue;  // reported by Finish()
          const std::string key = it->first.Scalar();
          if (auto value =
                  ReadString(props.Child(key), absl::StrCat("kafka.properties.", key), &diag_)) {
            kafka->properties[key] = *value;
          }
        }
      }
    }
  }

  static bool IsValidTopic(absl::string_view topic) {
    if (topic.empty() || topic.size() > 249 || topic == "." || topic == "..") return false;
    return std::all_of(topic.begin(), topic.end(), [](char c) {
      return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '_' || c == '-' || c == '.';
    });
  }

  std::string ParseListen(MapReader& r, absl::string_view what, std::string fallback) {
    std::string listen = r.String("listen", fallback);
    if (r.present() && !IsValidListenAddress(listen)) {
      diag_.Error(r.Child("listen").Mark(),
                  absl::StrCat(what, ".listen: \"", listen, "\" is not host:port"));
    }
    return listen;
  }

  // `tls: {cert_file, key_file, client_ca_file}`; present means TLS on, so
  // the certificate and key are both required.
  void ParseTls(const YAML::Node& node, absl::string_view what, TlsConfig* tls) {
    MapReader r(node, std::string(what), &diag_);
    if (!r.present()) return;
    for (auto [key, file, required] : {std::tuple{"cert_file", &tls->cert_file, true},
                                       std::tuple{"key_file", &tls->key_file, true},
                                       std::tuple{"client_ca_file", &tls->client_ca_file, false}}) {
      YAML::Node n = required ? r.Required(key) : r.Child(key);
      if (!n.IsDefined()) continue;
      std::optional<std::string> value = ReadString(n, absl::StrCat(what, ".", key), &diag_);
      if (!value) continue;
      if (value->empty()) {
        diag_.Error(n.Mark(), absl::StrCat(what, ".", key, ": must not be empty"));
      }
      *file = *std::move(value);
    }
    tls->refresh_interval = r.Duration("refresh_interval", tls->refresh_interval);
    if (YAML::Node n = r.Child("refresh_interval");
        n.IsDefined() && tls->refresh_interval < absl::Seconds(1)) {
      diag_.Error(n.Mark(), absl::StrCat(what, ".refresh_interval: must be at least 1s"));
    }
  }

  void ParsePeers(const YAML::Node& node, const TlsConfig& grpc_tls, PeersConfig* peers) {
    MapReader r(node, "peers", &diag_);
    if (!r.present()) return;
    peers->addresses = r.StringList("addresses");
    if (YAML::Node list = r.Child("addresses"); list.IsSequence()) {
      for (size_t i = 0; i < list.size() && i < peers->addresses.size(); ++i) {
        if (!IsValidListenAddress(peers->addresses[i])) {
          diag_.Error(list[i].Mark(), absl::StrCat("peers.addresses[", i, "]: \"",
                                                   peers->addresses[i], "\" is not host:port"));
        }
      }
    }
    peers->dns = r.String("dns");
    if (YAML::Node n = r.Child("dns"); n.IsDefined() && !IsValidListenAddress(peers->dns)) {
      diag_.Error(n.Mark(), absl::StrCat("peers.dns: \"", peers->dns,
                                         "\" is not name:port (a headless Service and the gRPC "
                                         "port)"));
    }
    peers->timeout = r.Duration("timeout", peers->timeout);
    if (YAML::Node n = r.Child("timeout");
        n.IsDefined() && peers->timeout < absl::Milliseconds(10)) {
      diag_.Error(n.Mark(), "peers.timeout: must be at least 10ms");
    }
    peers->refresh_interval = r.Duration("refresh_interval", peers->refresh_interval);
    if (YAML::Node n = r.Child("refresh_interval");
        n.IsDefined() && peers->refresh_interval < absl::Seconds(1)) {
      diag_.Error(n.Mark(), "peers.refresh_interval: must be at least 1s");
    }
    MapReader tls(r.Child("tls"), "peers.tls", &diag_);
    if (tls.present()) {
      for (auto [key, file] : {std::pair{"ca_file", &peers->tls.ca_file},
                               std::pair{"cert_file", &peers->tls.cert_file},
                               std::pair{"key_file", &peers->tls.key_file}}) {
        *file = tls.String(key);
        if (YAML::Node n = tls.Child(key); n.IsDefined() && file->empty()) {
          diag_.Error(n.Mark(), absl::StrCat("peers.tls.", key, ": must not be empty"));
        }
      }
      peers->tls.server_name = tls.String("server_name");
      if (peers->tls.cert_file.empty() != peers->tls.key_file.empty()) {
        diag_.Error(tls.mark(), "peers.tls: cert_file and key_file go together");
      }
      if (!grpc_tls.enabled()) {
        diag_.Error(tls.mark(),
                    "peers.tls: the peers speak TLS only when grpc.tls is set (it is not)");
      }
    }
    // Peers are replicas of this one: they require what it requires.
    if (grpc_tls.enabled() && !grpc_tls.client_ca_file.empty() && peers->enabled() &&
        peers->tls.cert_file.empty()) {
      diag_.Error(r.mark(),
                  "peers: grpc.tls.client_ca_file makes the peers require a client certificate; "
                  "set peers.tls.cert_file and key_file");
    }
  }

  void ParseClock(const YAML::Node& node, ClockMode* clock) {
    if (!node.IsDefined()) return;
    std::optional<std::string> value = ReadString(node, "clock", &diag_);
    if (!value) return;
    if (*value == "wall") {
      *clock = ClockMode::kWall;
    } else if (*value == "event") {
      *clock = ClockMode::kEvent;
    } else {
      diag_.Error(node.Mark(), absl::StrCat("clock: \"", *value, "\" is not wall or event"));
    }
  }

  void ParseWindows(const YAML::Node& node, const YAML::Node& retention_node,
                    absl::Duration retention, std::vector<absl::Duration>* windows) {
    // A retention <= 0 is reported by CheckPositive; don't pile window errors on it.
    const bool check_retention = retention > absl::ZeroDuration();
    // Spelled as written, unless it was invalid (then `retention` is the default).
    const std::string retention_text =
        DurationText(retention_node.IsDefined() && retention_node.IsScalar() &&
                             ParsePromDuration(retention_node.Scalar()).ok()
                         ? retention_node
                         : YAML::Node(),
                     retention);
    if (!node.IsDefined()) {
      *windows = {absl::Minutes(5), absl::Hours(1), absl::Hours(24), absl::Hours(24 * 7)};
      if (check_retention && windows->back() > retention) {
        diag_.Error(retention_node.Mark(),
                    absl::StrCat("retention: ", retention_text,
                                 " is shorter than the longest default window (",
                                 DurationText(YAML::Node(), windows->back()),
                                 "); list windows explicitly"));
      }
      return;
    }
    if (!node.IsSequence() || node.size() == 0) {
      diag_.Error(node.Mark(), "windows: expected a non-empty list of durations");
      return;
    }
    for (size_t i = 0; i < node.size(); ++i) {
      std::optional<absl::Duration> w =
          ReadDuration(node[i], absl::StrCat("windows[", i, "]"), &diag_);
      if (!w) continue;
      // A window is cut into 60 buckets of whole seconds.
      if (*w < absl::Minutes(1) || *w % absl::Minutes(1) != absl::ZeroDuration()) {
        diag_.Error(node[i].Mark(), absl::StrCat("windows[", i, "]: ", DurationText(node[i], *w),
                                                 " must be a whole number of minutes, >= 1m"));
        continue;
      }
      if (check_retention && *w > retention) {
        diag_.Error(node[i].Mark(),
                    absl::StrCat("windows[", i, "]: ", DurationText(node[i], *w),
                                 " is longer than retention (", retention_text, ")"));
        continue;
      }
      if (std::find(windows->begin(), windows->end(), *w) != windows->end()) {
        diag_.Error(node[i].Mark(),
                    absl::StrCat("windows[", i, "]: duplicate window ", DurationText(node[i], *w)));
        continue;
      }
      windows->push_back(*w);
    }
    std::sort(windows->begin(), windows->end());
  }

  void ParseDimensions(const YAML::Node& node, DimensionsConfig* dims) {
    MapReader r(node, "dimensions", &diag_);
    dims->max_series_per_process =
        r.Int("max_series_per_process", dims->max_series_per_process, 1, 1000000);
    YAML::Node names = r.Child("names");
    if (!names.IsDefined()) return;
    if (!names.IsSequence()) {
      diag_.Error(names.Mark(), "dimensions.names: expected a list");
      return;
    }
    absl::flat_hash_set<std::string> seen;
    for (size_t i = 0; i < names.size(); ++i) {
      std::optional<std::string> read =
          ReadString(names[i], absl::StrCat("dimensions.names[", i, "]"), &diag_);
      if (!read) continue;
      const std::string& name = dims->names.emplace_back(*std::move(read));
      const YAML::Mark mark = names[i].Mark();
      if (absl::StartsWith(name, "__")) {
        diag_.Error(mark, absl::StrCat("dimensions.names[", i, "]: \"", name,
                                       "\" starts with __, which Prometheus reserves"));
      } else if (!IsValidLabelName(name)) {
        diag_.Error(mark, absl::StrCat("dimensions.names[", i, "]: \"", name,
                                       "\" is not a valid label name ([a-zA-Z_][a-zA-Z0-9_]*)"));
      } else if (std::find(std::begin(kReservedLabels), std::end(kReservedLabels), name) !=
                 std::end(kReservedLabels)) {
        diag_.Error(mark, absl::StrCat("dimensions.names[", i, "]: \"", name,
                                       "\" is a label kpid uses itself"));
      } else if (!seen.insert(name).second) {
        diag_.Error(mark, absl::StrCat("dimensions.names[", i, "]: duplicate \"", name, "\""));
      }
    }
  }

  void ParseProcesses(const YAML::Node& node, const DimensionsConfig& dims,
                      std::vector<ProcessConfig>* processes) {
    if (!node.IsDefined()) return;
    if (!node.IsSequence() || node.size() == 0) {
      diag_.Error(node.Mark(), "processes: expected a non-empty list");
      return;
    }
    absl::flat_hash_set<std::string> ids;
    for (size_t i = 0; i < node.size(); ++i) {
      const std::string what = absl::StrCat("processes[", i, "]");
      MapReader r(node[i], what, &diag_);
      if (!r.present()) {
        if (node[i].IsNull()) diag_.Error(node[i].Mark(), absl::StrCat(what, ": empty process"));
        continue;
      }
      ProcessConfig process;
      YAML::Node id_node = r.Required("id");
      if (id_node.IsDefined()) {
        std::optional<std::string> id = ReadString(id_node, absl::StrCat(what, ".id"), &diag_);
        process.id = id.value_or("");
        if (!id) {
          // reported by ReadString
        } else if (!IsValidId(process.id)) {
          diag_.Error(id_node.Mark(), absl::StrCat(what, ".id: \"", process.id,
                                                   "\" must be 1-128 of [A-Za-z0-9_.-]"));
        } else if (!ids.insert(process.id).second) {
          diag_.Error(id_node.Mark(),
                      absl::StrCat(what, ".id: duplicate process \"", process.id, "\""));
        }
      }
      const std::string named = process.id.empty() ? what : absl::StrCat("process ", process.id);
      ParseStages(r.Required("stages"), named, &process.stages);
      ParseKpiTree(r.Child("kpi_tree"), named, process, &process.kpi_tree);
      ParseSimulation(r.Child("simulate"), named, process, dims, &process.simulate);
      processes->push_back(std::move(process));
    }
  }

  void ParseStages(const YAML::Node& node, const std::string& what,
                   std::vector<StageConfig>* stages) {
    if (!node.IsDefined()) return;
    if (!node.IsSequence() || node.size() == 0) {
      diag_.Error(node.Mark(), absl::StrCat(what, ": stages must be a non-empty list"));
      return;
    }
    if (node.size() > kMaxStages) {
      diag_.Error(node.Mark(),
                  absl::StrCat(what, ": at most ", kMaxStages, " stages, got ", node.size()));
      return;
    }
    absl::flat_hash_set<std::string> ids;
    for (size_t i = 0; i < node.size(); ++i) {
      const std::string stage_what = absl::StrCat(what, ": stages[", i, "]");
      MapReader r(node[i], stage_what, &diag_);
      if (!r.present()) {
        if (node[i].IsNull()) diag_.Error(node[i].Mark(), absl::StrCat(stage_what, ": empty"));
        continue;
      }
      StageConfig stage;
      YAML::Node id_node = r.Required("id");
      if (id_node.IsDefined()) {
        std::optional<std::string> id =
            ReadString(id_node, absl::StrCat(stage_what, ".id"), &diag_);
        stage.id = id.value_or("");
        if (!id) {
          // reported by ReadString
        } else if (!IsValidId(stage.id)) {
          diag_.Error(id_node.Mark(), absl::StrCat(stage_what, ".id: \"", stage.id,
                                                   "\" must be 1-128 of [A-Za-z0-9_.-]"));
        } else if (!ids.insert(stage.id).second) {
          diag_.Error(id_node.Mark(), absl::StrCat(what, ": duplicate stage \"", stage.id, "\""));
        }
      }
      YAML::Node sla_node = r.Required("sla");
      if (sla_node.IsDefined()) {
        std::optional<absl::Duration> sla =
            ReadDuration(sla_node, absl::StrCat(stage_what, ".sla"), &diag_);
        if (sla && *sla <= absl::ZeroDuration()) {
          diag_.Error(sla_node.Mark(), absl::StrCat(stage_what, ".sla: must be greater than 0"));
        } else if (sla) {
          stage.sla = *sla;
        }
      }
      MapReader sim(r.Child("simulate"), absl::StrCat(stage_what, ".simulate"), &diag_);
      if (YAML::Node m = sim.Child("median"); m.IsDefined()) {
        stage.simulate.median =
            ReadDuration(m, absl::StrCat(stage_what, ".simulate.median"), &diag_);
        if (stage.simulate.median && *stage.simulate.median <= absl::ZeroDuration()) {
          diag_.Error(m.Mark(),
                      absl::StrCat(stage_what, ".simulate.median: must be greater than 0"));
          stage.simulate.median.reset();
        }
      }
      stage.simulate.sigma = sim.Double("sigma", stage.simulate.sigma, 0, 5);
      stage.simulate.fallout = sim.Double("fallout", stage.simulate.fallout, 0, 1);
      stage.simulate.rework = sim.Double("rework", stage.simulate.rework, 0, 1);
      stages->push_back(std::move(stage));
    }
  }

  // A `kpi:` leaf names a window KPI of its scope: a process KPI without
  // `stage:`, a stage KPI with a stage of the process.
  void CheckTreeKpi(MapReader& r, const std::string& node_what, const ProcessConfig& process,
                    const KpiTreeNode& n) {
    const KpiScope scope = n.stage.empty() ? KpiScope::kProcess : KpiScope::kStage;
    const KpiScope other = n.stage.empty() ? KpiScope::kStage : KpiScope::kProcess;
    if (FindKpi(n.kpi, scope) == nullptr && FindKpi(n.kpi, other) != nullptr) {
      if (n.stage.empty()) {
        diag_.Error(r.Child("kpi").Mark(),
                    absl::StrCat(node_what, ": \"", n.kpi, "\" is a stage KPI; it needs a stage"));
      } else {
        diag_.Error(
            r.Child("stage").Mark(),
            absl::StrCat(node_what, ": \"", n.kpi, "\" is a process KPI; it takes no stage"));
      }
      return;
    }
    if (FindKpi(n.kpi, scope) == nullptr) {
      std::vector<std::string> names;
      for (const KpiInfo& k : AllKpis()) {
        if (k.scope == scope) names.emplace_back(k.name);
      }
      std::string message =
          absl::StrCat(node_what, ": unknown ", scope == KpiScope::kStage ? "stage" : "process",
                       " KPI \"", n.kpi, "\"");
      if (std::string hint = DidYouMean(n.kpi, names); !hint.empty()) {
        absl::StrAppend(&message, "; did you mean \"", hint, "\"?");
      }
      diag_.Error(r.Child("kpi").Mark(), message);
    } else if (n.kpi == "backlog" || n.kpi == "backlog_over_sla") {
      // The tree is evaluated per window; these are values of now.
      diag_.Error(r.Child("kpi").Mark(),
                  absl::StrCat(node_what, ": \"", n.kpi, "\" is not a window KPI"));
    }
    if (!n.stage.empty() && process.StageIndex(n.stage) < 0) {
      diag_.Error(r.Child("stage").Mark(),
                  absl::StrCat(node_what, ": unknown stage \"", n.stage, "\""));
    }
  }

  void ParseKpiTree(const YAML::Node& node, const std::string& what, const ProcessConfig& process,
                    std::vector<KpiTreeNode>* tree) {
    if (!node.IsDefined()) return;
    if (!node.IsSequence()) {
      diag_.Error(node.Mark(), absl::StrCat(what, ": kpi_tree must be a list of nodes"));
      return;
    }
    absl::flat_hash_map<std::string, size_t> index;
    std::vector<YAML::Mark> marks;
    std::vector<std::vector<YAML::Mark>> ref_marks;
    const size_t errors_before = diag_.errors().size();
    for (size_t i = 0; i < node.size(); ++i) {
      const std::string node_what = absl::StrCat(what, ": kpi_tree[", i, "]");
      MapReader r(node[i], node_what, &diag_);
      if (!r.present()) {
        if (node[i].IsNull()) diag_.Error(node[i].Mark(), absl::StrCat(node_what, ": empty node"));
        continue;
      }
      KpiTreeNode n;
      n.id = r.String("id");
      n.kpi = r.String("kpi");
      n.stage = r.String("stage");
      n.product = r.StringList("product");
      n.sum = r.StringList("sum");
      n.ratio = r.StringList("ratio");
      const int kinds = !n.kpi.empty() + !n.product.empty() + !n.sum.empty() + !n.ratio.empty();
      if (!IsValidId(n.id)) {
        diag_.Error(r.mark(), absl::StrCat(node_what, ": needs an id of [A-Za-z0-9_.-]"));
      } else if (!index.emplace(n.id, tree->size()).second) {
        diag_.Error(r.Child("id").Mark(),
                    absl::StrCat(what, ": duplicate kpi_tree node \"", n.id, "\""));
      }
      if (kinds != 1) {
        diag_.Error(r.mark(),
                    absl::StrCat(node_what, ": needs exactly one of kpi, product, sum, ratio"));
      }
      if (!n.kpi.empty()) {
        CheckTreeKpi(r, node_what, process, n);
      } else if (!n.stage.empty()) {
        diag_.Error(r.Child("stage").Mark(), absl::StrCat(node_what, ": stage only goes with kpi"));
      }
      if (!n.ratio.empty() && n.ratio.size() != 2) {
        diag_.Error(r.Child("ratio").Mark(),
                    absl::StrCat(node_what, ": ratio needs [numerator, denominator]"));
      }
      marks.push_back(r.mark());
      // Where each reference of product, sum, ratio (in that order) is written.
      std::vector<YAML::Mark> at;
      for (const char* key : {"product", "sum", "ratio"}) {
        const YAML::Node refs = r.Child(key);
        if (!refs.IsSequence()) continue;
        for (const YAML::Node& ref : refs) {
          if (ref.IsScalar()) at.push_back(ref.Mark());
        }
      }
      ref_marks.push_back(std::move(at));
      tree->push_back(std::move(n));
    }
    // Calls fn(ref, where it is written) for each reference of node i.
    const auto for_each_ref = [&](size_t i, const auto& fn) {
      const KpiTreeNode& n = (*tree)[i];
      size_t k = 0;
      for (const auto* refs : {&n.product, &n.sum, &n.ratio}) {
        for (const std::string& ref : *refs) {
          fn(ref, k < ref_marks[i].size() ? ref_marks[i][k] : marks[i]);
          ++k;
        }
      }
    };
    // References resolve.
    for (size_t i = 0; i < tree->size(); ++i) {
      for_each_ref(i, [&](const std::string& ref, const YAML::Mark& mark) {
        if (!index.contains(ref)) {
          diag_.Error(mark, absl::StrCat(what, ": kpi_tree node \"", (*tree)[i].id,
                                         "\" refers to unknown node \"", ref, "\""));
        }
      });
    }
    // Unknown references (reported above) are skipped; `on_cycle` is the node
    // found still on the DFS stack, so it is on the cycle itself.
    enum class Mark { kNew, kActive, kDone };
    std::vector<Mark> state(tree->size(), Mark::kNew);
    size_t on_cycle = 0;
    std::function<bool(size_t)> visit = [&](size_t i) {
      if (state[i] == Mark::kActive) {
        on_cycle = i;
        return false;
      }
      if (state[i] == Mark::kDone) return true;
      state[i] = Mark::kActive;
      const KpiTreeNode& n = (*tree)[i];
      for (const auto* refs : {&n.product, &n.sum, &n.ratio}) {
        for (const std::string& ref : *refs) {
          auto it = index.find(ref);
          if (it != index.end() && !visit(it->second)) return false;
        }
      }
      state[i] = Mark::kDone;
      return true;
    };
    for (size_t i = 0; i < tree->size(); ++i) {
      if (!visit(i)) {
        diag_.Error(marks[on_cycle], absl::StrCat(what, ": kpi_tree has a cycle through node \"",
                                                  (*tree)[on_cycle].id, "\""));
        return;
      }
    }
    // Each node has at most one parent and exactly one (the root) has none:
    // the evaluator and kpid_kpi_tree_value's `parent` label need a tree, not
    // a graph. Checked once the nodes themselves are right, so that one
    // mistake does not echo here.
    if (diag_.errors().size() != errors_before) return;
    std::vector<int> parent(tree->size(), -1);
    for (size_t i = 0; i < tree->size(); ++i) {
      for_each_ref(i, [&](const std::string& ref, const YAML::Mark& mark) {
        const size_t child = index.at(ref);
        if (parent[child] >= 0) {
          diag_.Error(mark, absl::StrCat(what, ": kpi_tree node \"", ref, "\" is used by both \"",
                                         (*tree)[static_cast<size_t>(parent[child])].id,
                                         "\" and \"", (*tree)[i].id, "\"; a node has one parent"));
        } else {
          parent[child] = static_cast<int>(i);
        }
      });
    }
    std::vector<std::string> roots;
    size_t second_root = 0;
    for (size_t i = 0; i < tree->size(); ++i) {
      if (parent[i] >= 0) continue;
      if (roots.size() == 1) second_root = i;
      roots.push_back(absl::StrCat("\"", (*tree)[i].id, "\""));
    }
    if (roots.size() > 1) {
      diag_.Error(
          marks[second_root],
          absl::StrCat(what, ": kpi_tree has more than one root (", absl::StrJoin(roots, ", "),
                       "); every node but the root must be used by another"));
    }
  }

  void ParseSimulation(const YAML::Node& node, const std::string& what,
                       const ProcessConfig& process, const DimensionsConfig& dims,
                       ProcessSimulation* sim) {
    (void)process;
    const std::string sim_what = absl::StrCat(what, ": simulate");
    MapReader r(node, sim_what, &diag_);
    sim->arrivals_per_hour = r.Double("arrivals_per_hour", sim->arrivals_per_hour, 1e-6, 1e9);
    sim->deal_median = r.Double("deal_median", sim->deal_median, 0, 1e12);
    sim->deal_sigma = r.Double("deal_sigma", sim->deal_sigma, 0, 5);
    sim->cost_per_case = r.Double("cost_per_case", sim->cost_per_case, 0, 1e12);
    sim->feedback_odds = r.Double("feedback_odds", sim->feedback_odds, 0, 1);
    MapReader attrs(r.Child("attributes"), absl::StrCat(sim_what, ".attributes"), &diag_);
    if (!attrs.present()) return;
    for (auto it = attrs.node().begin(); it != attrs.node().end(); ++it) {
      if (!it->first.IsScalar()) continue;  // reported by Finish()
      const std::string name = it->first.Scalar();
      YAML::Node values = attrs.Child(name);
      if (std::find(dims.names.begin(), dims.names.end(), name) == dims.names.end()) {
        diag_.Error(it->first.Mark(), absl::StrCat(sim_what, ".attributes: \"", name,
                                                   "\" is not in dimensions.names"));
        continue;
      }
      std::vector<std::string> list =
          ReadStringList(values, absl::StrCat(sim_what, ".attributes.", name), &diag_);
      if (values.IsSequence() && values.size() == 0) {
        diag_.Error(values.Mark(),
                    absl::StrCat(sim_what, ".attributes.", name, ": needs at least one value"));
      }
      sim->attributes[name] = std::move(list);
    }
  }

  std::vector<std::string> ParseAlertmanagers(const YAML::Node& node) {
    std::vector<std::string> urls;
    if (!node.IsDefined()) return urls;
    if (!node.IsSequence()) {
      diag_.Error(node.Mark(), "alertmanagers: expected a list");
      return urls;
    }
    for (size_t i = 0; i < node.size(); ++i) {
      const std::string what = absl::StrCat("alertmanagers[", i, "]");
      std::optional<std::string> url = ReadString(node[i], what, &diag_);
      if (!url) continue;
      absl::string_view rest = *url;
      if (!absl::ConsumePrefix(&rest, "http://") && !absl::ConsumePrefix(&rest, "https://")) {
        rest = "";
      }
      if (rest.empty() || absl::StartsWith(rest, "/")) {
        diag_.Error(node[i].Mark(),
                    absl::StrCat(what, ": \"", *url, "\" is not an http:// or https:// URL"));
        continue;
      }
      urls.push_back(*std::move(url));
    }
    return urls;
  }

  Diagnostics diag_;
};

}  // namespace

int ProcessConfig::StageIndex(absl::string_view stage_id) const {
  for (size_t i = 0; i < stages.size(); ++i) {
    if (stages[i].id == stage_id) return static_cast<int>(i);
  }
  return -1;
}

const ProcessConfig* Config::FindProcess(absl::string_view id) const {
  for (const ProcessConfig& p : processes) {
    if (p.id == id) return &p;
  }
  return nullptr;
}

namespace {

// One of `parts` even shares of `total`, rounded down so the shares never
// add up to more (at least 1).
size_t EvenShare(int64_t total, int parts) {
  return static_cast<size_t>(std::max<int64_t>(1, total / std::max(1, parts)));
}

}  // namespace

size_t Config::MaxOpenCasesPerPartition(int partitions) const {
  return EvenShare(max_open_cases, partitions);
}

size_t Config::MaxDedupIdsPerPartition(int partitions) const {
  return EvenShare(max_dedup_ids, partitions);
}

size_t Config::MaxClosedCasesPerPartition(int partitions) const {
  return EvenShare(max_closed_cases, partitions);
}

std::string Config::StatePath(absl::string_view file) const {
  if (state_dir.empty()) return "";
  return absl::StrCat(PathNextToConfig(*this, state_dir), "/", file);
}

absl::StatusOr<Config> ParseConfig(absl::string_view yaml, absl::string_view filename) {
  return ConfigParser(filename).Parse(yaml);
}

absl::StatusOr<Config> LoadConfigFile(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": is a directory, not a file"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open file"));
  std::ostringstream text;
  text << in.rdbuf();
  absl::StatusOr<Config> config = ParseConfig(text.str(), path);
  if (config.ok()) config->source_path = path;
  return config;
}

std::string PathNextToConfig(const Config& config, const std::string& path) {
  if (path.empty() || path.front() == '/') return path;
  const size_t slash = config.source_path.rfind('/');
  return slash == std::string::npos ? path : config.source_path.substr(0, slash + 1) + path;
}

bool IsValidListenAddress(absl::string_view address) {
  const size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos) return false;
  absl::string_view host = address.substr(0, colon);
  absl::string_view port = address.substr(colon + 1);
  int port_number = 0;
  const bool digits =
      !port.empty() && port.size() <= 5 && std::all_of(port.begin(), port.end(), [](char c) {
        return absl::ascii_isdigit(static_cast<unsigned char>(c));
      });
  if (!digits || !absl::SimpleAtoi(port, &port_number) || port_number > 65535) {
    return false;
  }
  if (absl::StartsWith(host, "[")) return absl::EndsWith(host, "]") && host.size() > 2;
  return host.find(':') == absl::string_view::npos;
}

}  // namespace kpid::model
