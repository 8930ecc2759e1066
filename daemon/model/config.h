// kpid's configuration (DESIGN §5): typed, validated, immutable once loaded.
//
//   absl::StatusOr<kpid::model::Config> config = kpid::model::LoadConfigFile("kpid.yaml");
//   if (!config.ok()) { /* message: one "file:line:col: message" per line */ }
//
// Everything that can be checked without running is checked here, so a config
// that loads is one the daemon can run: unknown keys (with a did-you-mean),
// bad durations, duplicate ids, windows longer than retention, KPI-tree
// references. Values are plain data; share a loaded Config as
// std::shared_ptr<const Config> across threads.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace kpid::model {

enum class ClockMode { kWall, kEvent };

// Knobs for kpi-loadgen's simulation of a stage; the daemon ignores them.
struct StageSimulation {
  // Median time a case spends in the stage; default: half the stage's SLA.
  std::optional<absl::Duration> median;
  // Log-normal shape of the time in stage.
  double sigma = 0.6;
  // Odds that a case falls out in this stage instead of advancing.
  double fallout = 0.1;
  // Odds that a case, on leaving this stage, goes back to the previous stage.
  double rework = 0.0;

  bool operator==(const StageSimulation&) const = default;
};

// A case remembers the stages it visited in a 64-bit set.
inline constexpr size_t kMaxStages = 64;

struct StageConfig {
  std::string id;
  absl::Duration sla;
  StageSimulation simulate;

  bool operator==(const StageConfig&) const = default;
};

// Knobs for kpi-loadgen's simulation of a process; the daemon ignores them.
struct ProcessSimulation {
  double arrivals_per_hour = 60;  // Poisson arrival rate of new cases
  double deal_median = 20000;     // log-normal deal size (CASE_COMPLETED amount)
  double deal_sigma = 0.8;
  double cost_per_case = 0;    // COST event per completed case when > 0
  double feedback_odds = 0.0;  // odds of a FEEDBACK event after completion
  // Values to draw case attributes from, per dimension name.
  std::map<std::string, std::vector<std::string>> attributes;

  bool operator==(const ProcessSimulation&) const = default;
};

// A node of the revenue driver tree: exactly one of kpi, product, sum, ratio.
struct KpiTreeNode {
  std::string id;
  std::string kpi;                   // a window KPI of DESIGN §3
  std::string stage;                 // with kpi: a stage-level KPI of that stage
  std::vector<std::string> product;  // ids of other nodes
  std::vector<std::string> sum;
  std::vector<std::string> ratio;  // [numerator, denominator]

  bool operator==(const KpiTreeNode&) const = default;
};

struct ProcessConfig {
  std::string id;
  std::vector<StageConfig> stages;
  std::vector<KpiTreeNode> kpi_tree;
  ProcessSimulation simulate;

  // Index of the stage `id` in `stages`, or -1.
  int StageIndex(absl::string_view stage_id) const;

  bool operator==(const ProcessConfig&) const = default;
};

struct KafkaConfig {
  std::string brokers = "embedded";  // "embedded" or "host:port,host:port"
  std::string topic = "process-events";
  std::string group_id = "kpid";
  int partitions = 4;             // embedded broker only
  std::string bootstrap_file;     // embedded broker only
  std::string dead_letter_topic;  // empty: no dead-letter topic
  // Compacted changelog of partition states (issue 8); empty: none.
  std::string state_topic;
  int workers = 0;  // 0: one per core, at most one per partition
  int64_t max_message_bytes = 1 << 20;
  // Passed to librdkafka as they are (TLS, SASL, tuning).
  std::map<std::string, std::string> properties;

  bool embedded() const { return brokers == "embedded"; }
  bool operator==(const KafkaConfig&) const = default;
};

struct DimensionsConfig {
  std::vector<std::string> names;
  int64_t max_series_per_process = 1000;

  bool operator==(const DimensionsConfig&) const = default;
};

// How alerts are delivered (the `alerting:` section).
struct AlertingConfig {
  // Firing alerts are re-sent this often (with endsAt 4 intervals ahead).
  absl::Duration resend_interval = absl::Minutes(1);
  // Alerts queued per Alertmanager while it is unreachable; beyond, the
  // oldest are dropped and counted.
  int64_t queue_capacity = 10000;
  absl::Duration timeout = absl::Seconds(10);  // per request

  bool operator==(const AlertingConfig&) const = default;
};

// How the gRPC API bounds what its clients may cost (the `grpc:` section
// besides `listen`): a client calling GetSnapshot back to back must not take
// the cores the ingest workers need (issue 6).
struct GrpcApiConfig {
  // Identical snapshot requests within this long share one read (and
  // concurrent identical ones wait for the same read); zero: every call
  // reads. A snapshot is then up to this old; its `as_of` says when it was
  // read.
  absl::Duration snapshot_cache_ttl = absl::Seconds(1);
  // Snapshot reads (cache misses) running at once; more wait their turn.
  int max_concurrent_snapshot_reads = 1;
  // GetSnapshot calls started per second, cached or not, first come first
  // served; 0: no limit. A cached answer still costs about 1 ms of CPU
  // (HTTP/2, copies, serialization): unpaced, one looping client takes a
  // core.
  int snapshot_calls_per_second = 20;
  // GetSnapshot calls waiting for their turn; beyond, RESOURCE_EXHAUSTED.
  int max_queued_snapshot_calls = 32;
  // WatchSnapshots streams open at once (each holds a server thread);
  // beyond, RESOURCE_EXHAUSTED.
  int max_watch_streams = 16;

  bool operator==(const GrpcApiConfig&) const = default;
};

// A listener's `tls:` section. The files are PEM, relative to the config's
// folder; they are read and checked (a key that matches the certificate, CA
// certificates that parse) by tls::LoadServerTls, not by the parser, and
// watched while kpid runs.
struct TlsConfig {
  std::string cert_file;  // the server's certificate, then any intermediates
  std::string key_file;   // its private key (unencrypted)
  // Set: clients must present a certificate signed by one of these CAs
  // (mutual TLS). Empty: any client may connect.
  std::string client_ca_file;
  // How often the files are checked for a rotated certificate, which new
  // connections then get without a restart.
  absl::Duration refresh_interval = absl::Minutes(1);

  // No `tls:` section: the listener speaks plaintext.
  bool enabled() const { return !cert_file.empty(); }
  bool operator==(const TlsConfig&) const = default;
};

// `peers.tls`: how this replica connects to its peers when they serve TLS
// (grpc.tls is set). PEM files, relative to the config's folder.
struct PeerTlsConfig {
  std::string ca_file;  // verifies the peers' certificates; empty: system roots
  // This replica's client certificate and key, for peers that require one
  // (grpc.tls.client_ca_file): both or neither.
  std::string cert_file;
  std::string key_file;
  // The name the peers' certificates must carry. Empty: the host of
  // `peers.dns` when set (its records are addresses, which certificates
  // rarely name; every replica's certificate names the headless Service),
  // else each address's own host.
  std::string server_name;

  bool operator==(const PeerTlsConfig&) const = default;
};

// `peers:` the other replicas of the consumer group that a SCOPE_GLOBAL
// snapshot asks (issue 8): a static list, the A/AAAA records of a headless
// Service, or both. An address that turns out to be this replica (its
// answer names this replica_id) is skipped.
struct PeersConfig {
  std::vector<std::string> addresses;  // host:port
  std::string dns;                     // name:port; every A/AAAA record is a peer
  // Per peer call (and never past the client's own deadline).
  absl::Duration timeout = absl::Seconds(2);
  // How often `dns` is resolved again, off the request path.
  absl::Duration refresh_interval = absl::Seconds(30);
  PeerTlsConfig tls;

  bool enabled() const { return !addresses.empty() || !dns.empty(); }
  bool operator==(const PeersConfig&) const = default;
};

struct Config {
  std::string source_path;  // the file it was read from
  KafkaConfig kafka;
  std::string http_listen = "0.0.0.0:9464";
  // `http.reload_token_file`: when set, POST /-/reload needs
  // "Authorization: Bearer <the file's content, surrounding whitespace
  // trimmed>". A file, so the secret stays out of the config. Relative to
  // the config's folder.
  std::string reload_token_file;
  TlsConfig http_tls;  // `http.tls`
  std::string grpc_listen = "0.0.0.0:50051";
  GrpcApiConfig grpc_api;
  TlsConfig grpc_tls;  // `grpc.tls`
  ClockMode clock = ClockMode::kWall;
  std::vector<absl::Duration> windows;  // ascending
  absl::Duration retention = absl::Hours(24 * 15);
  absl::Duration case_ttl = absl::Hours(24 * 30);
  absl::Duration dedup_horizon = absl::Hours(1);
  // Events stamped further ahead of the wall clock are rejected
  // (future_timestamp): one bad producer clock would otherwise move every
  // window's head into the future.
  absl::Duration max_future_skew = absl::Hours(1);
  // Events stamped further back than this behind the wall clock are rejected
  // (past_timestamp): a zeroed or garbled producer clock (1970), not a
  // backfill. Older than `retention` but within this, an event is accepted
  // and counts in the totals only (late). The default only catches garbage:
  // backfills and replays of recorded streams (tests too) stay valid for
  // years; tighten it where producers are known to be live.
  absl::Duration max_past_age = absl::Hours(24 * 3650);
  // Amounts and scores whose magnitude exceeds this are rejected
  // (absurd_value): one 1e300 deal would make every revenue sum meaningless.
  double max_abs_value = 1e12;
  // Open cases kept for the whole topic, split evenly across its Kafka
  // partitions (MaxOpenCasesPerPartition): a new case beyond its
  // partition's share first evicts that partition's longest-waiting open
  // case (counted). A topic-wide number because that is how operators size
  // memory (about 150 bytes per open case); a per-partition bound because
  // each partition's engine owns its cases and takes no lock, so the share
  // cannot move between partitions (and follows the partition to whichever
  // replica owns it).
  int64_t max_open_cases = 10'000'000;
  // Where checkpoints of the engine state (open cases, windows, dedup ids,
  // alert states, with the Kafka offsets they cover) are kept; empty: no
  // durable state (a restart starts empty from the group's committed
  // offsets). Relative to the config's folder.
  std::string state_dir;
  absl::Duration checkpoint_interval = absl::Seconds(10);
  // What dedup_horizon remembers, bounded by count too: within the horizon
  // a flood of unique event ids (or of new cases evicted or closed) would
  // otherwise grow memory without bound. Topic-wide, split evenly across
  // the partitions like max_open_cases; beyond a partition's share its
  // oldest are forgotten early (counted). 32 to 64 bytes per event id, 40 to 80 per
  // closed case (docs/configuration.md).
  int64_t max_dedup_ids = 10'000'000;
  int64_t max_closed_cases = 10'000'000;
  DimensionsConfig dimensions;
  std::vector<ProcessConfig> processes;
  std::vector<std::string> rules;          // glob patterns, relative to the config's folder
  std::vector<std::string> alertmanagers;  // base URLs
  AlertingConfig alerting;
  // This replica's name in global snapshots (Snapshot.replicas); default:
  // the host name (a pod's name in Kubernetes).
  std::string replica_id;
  PeersConfig peers;

  // The process `id`, or nullptr.
  const ProcessConfig* FindProcess(absl::string_view id) const;
  // Each of `partitions` partitions' share of max_open_cases, rounded down
  // so the shares never add up to more (at least 1).
  size_t MaxOpenCasesPerPartition(int partitions) const;
  // Likewise for max_dedup_ids and max_closed_cases.
  size_t MaxDedupIdsPerPartition(int partitions) const;
  size_t MaxClosedCasesPerPartition(int partitions) const;
  // `file` in state_dir (resolved against the config's folder); empty
  // without a state_dir.
  std::string StatePath(absl::string_view file) const;

  bool operator==(const Config&) const = default;
};

// Parses and validates YAML text; `filename` prefixes every error.
absl::StatusOr<Config> ParseConfig(absl::string_view yaml, absl::string_view filename);

// Reads and parses a file.
absl::StatusOr<Config> LoadConfigFile(const std::string& path);

// `path` as the daemon opens it: relative paths are relative to the folder of
// the config file (config.source_path), like the rule globs.
std::string PathNextToConfig(const Config& config, const std::string& path);

// "host:port" with a port in [0, 65535]; host may be empty, a name, an IPv4
// address or a bracketed IPv6 address.
bool IsValidListenAddress(absl::string_view address);

}  // namespace kpid::model
