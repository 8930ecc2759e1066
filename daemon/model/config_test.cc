#include "daemon/model/config.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kpid::model {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Pair;

// Each YAML text below is written one line per string literal, with the line
// number in a comment, so the expected "line:col" can be checked by eye.
// Columns are 1-based: in "  - id: p", the "p" is at column 9.

// The errors of a config that must not load, one per line.
std::vector<std::string> Errors(absl::string_view yaml) {
  absl::StatusOr<Config> config = ParseConfig(yaml, "t.yaml");
  if (config.ok()) {
    ADD_FAILURE() << "config loaded:\n" << yaml;
    return {};
  }
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  return absl::StrSplit(config.status().message(), '\n');
}

Config Parse(absl::string_view yaml) {
  absl::StatusOr<Config> config = ParseConfig(yaml, "t.yaml");
  EXPECT_TRUE(config.ok()) << config.status();
  return config.ok() ? *std::move(config) : Config{};
}

std::string ExamplesDir() { return std::string(KPID_SOURCE_DIR) + "/examples"; }

// The smallest config that loads.
constexpr char kMinimal[] =
    "processes:\n"                       // 1
    "  - id: p\n"                        // 2
    "    stages: [{id: a, sla: 1h}]\n";  // 3

// ---------------------------------------------------------------------------
// Good configs

TEST(ConfigTest, LeadToCashExample) {
  const std::string path = ExamplesDir() + "/lead_to_cash.yaml";
  absl::StatusOr<Config> config = LoadConfigFile(path);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->source_path, path);

  EXPECT_TRUE(config->kafka.embedded());
  EXPECT_EQ(config->kafka.topic, "process-events");
  EXPECT_EQ(config->kafka.group_id, "kpid");
  EXPECT_EQ(config->kafka.partitions, 4);
  EXPECT_EQ(config->kafka.bootstrap_file, "/tmp/kpid.bootstrap");
  EXPECT_EQ(config->kafka.dead_letter_topic, "kpid-dead-letter");
  EXPECT_EQ(config->http_listen, "127.0.0.1:9464");
  EXPECT_EQ(config->grpc_listen, "127.0.0.1:50051");
  EXPECT_EQ(config->clock, ClockMode::kWall);
  EXPECT_THAT(config->windows,
              ElementsAre(absl::Minutes(5), absl::Hours(1), absl::Hours(24), absl::Hours(24 * 7)));
  EXPECT_EQ(config->retention, absl::Hours(24 * 15));
  EXPECT_EQ(config->case_ttl, absl::Hours(24 * 30));
  EXPECT_EQ(config->dedup_horizon, absl::Hours(1));
  EXPECT_THAT(config->dimensions.names, ElementsAre("region", "channel"));
  EXPECT_EQ(config->dimensions.max_series_per_process, 1000);
  EXPECT_THAT(config->rules, ElementsAre("../rules/*.yaml"));
  EXPECT_THAT(config->alertmanagers, ElementsAre("http://127.0.0.1:9093"));

  ASSERT_EQ(config->processes.size(), 1u);
  const ProcessConfig* p = config->FindProcess("lead_to_cash");
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(config->FindProcess("nope"), nullptr);
  ASSERT_EQ(p->stages.size(), 5u);
  EXPECT_EQ(p->stages[0].id, "lead");
  EXPECT_EQ(p->stages[0].sla, absl::Hours(1));
  EXPECT_EQ(p->stages[0].simulate.median, absl::Minutes(20));
  EXPECT_DOUBLE_EQ(p->stages[0].simulate.fallout, 0.30);
  EXPECT_DOUBLE_EQ(p->stages[0].simulate.sigma, 0.6);
  EXPECT_EQ(p->stages[4].id, "quote");
  EXPECT_EQ(p->stages[4].sla, absl::Hours(48));
  EXPECT_DOUBLE_EQ(p->stages[4].simulate.rework, 0.10);
  EXPECT_EQ(p->StageIndex("demo"), 3);
  EXPECT_EQ(p->StageIndex("nope"), -1);

  ASSERT_EQ(p->kpi_tree.size(), 9u);
  EXPECT_EQ(p->kpi_tree[0].id, "revenue");
  EXPECT_THAT(p->kpi_tree[0].product, ElementsAre("leads", "funnel_conversion", "avg_deal"));
  EXPECT_EQ(p->kpi_tree[1].kpi, "started");
  EXPECT_THAT(p->kpi_tree[2].product,
              ElementsAre("lead_conversion", "mql_conversion", "sql_conversion", "demo_conversion",
                          "quote_conversion"));
  EXPECT_EQ(p->kpi_tree[3].kpi, "conversion");
  EXPECT_EQ(p->kpi_tree[3].stage, "lead");
  EXPECT_EQ(p->kpi_tree[8].kpi, "avg_deal");

  EXPECT_DOUBLE_EQ(p->simulate.arrivals_per_hour, 3600);
  EXPECT_DOUBLE_EQ(p->simulate.deal_median, 24000);
  EXPECT_DOUBLE_EQ(p->simulate.deal_sigma, 0.7);
  EXPECT_DOUBLE_EQ(p->simulate.cost_per_case, 350);
  EXPECT_DOUBLE_EQ(p->simulate.feedback_odds, 0.3);
  EXPECT_THAT(p->simulate.attributes,
              ElementsAre(Pair("channel", ElementsAre("web", "partner", "outbound")),
                          Pair("region", ElementsAre("emea", "amer", "apac"))));
}

TEST(ConfigTest, EveryExampleLoads) {
  std::vector<std::string> paths;
  for (const auto& entry : std::filesystem::directory_iterator(ExamplesDir())) {
    if (entry.path().extension() == ".yaml") paths.push_back(entry.path().string());
  }
  std::sort(paths.begin(), paths.end());
  EXPECT_GE(paths.size(), 3u);
  // The examples run side by side: no two share a port or a bootstrap file.
  std::set<std::string> listens, bootstrap_files;
  for (const std::string& path : paths) {
    SCOPED_TRACE(path);
    absl::StatusOr<Config> config = LoadConfigFile(path);
    ASSERT_TRUE(config.ok()) << config.status();
    EXPECT_FALSE(config->processes.empty());
    EXPECT_TRUE(listens.insert(config->http_listen).second) << config->http_listen;
    EXPECT_TRUE(listens.insert(config->grpc_listen).second) << config->grpc_listen;
    if (config->kafka.embedded()) {
      EXPECT_TRUE(bootstrap_files.insert(config->kafka.bootstrap_file).second);
    }
    for (const ProcessConfig& p : config->processes) {
      EXPECT_FALSE(p.kpi_tree.empty()) << p.id;
      for (const auto& [name, values] : p.simulate.attributes) {
        EXPECT_NE(std::find(config->dimensions.names.begin(), config->dimensions.names.end(), name),
                  config->dimensions.names.end());
      }
    }
  }
}

TEST(ConfigTest, AlertingSection) {
  Config config = Parse(std::string(kMinimal) +
                        "alerting: {resend_interval: 30s, timeout: 5s, queue_capacity: 50}\n");
  EXPECT_EQ(config.alerting.resend_interval, absl::Seconds(30));
  EXPECT_EQ(config.alerting.timeout, absl::Seconds(5));
  EXPECT_EQ(config.alerting.queue_capacity, 50);
  // Line 4 of kMinimal + this line; "500ms" starts at column 29.
  EXPECT_THAT(Errors(std::string(kMinimal) + "alerting: {resend_interval: 500ms}\n"),
              ElementsAre("t.yaml:4:29: alerting.resend_interval: must be at least 1s"));
}

TEST(ConfigTest, ReloadTokenFile) {
  Config config =
      Parse(std::string(kMinimal) + "http: {listen: \":9464\", reload_token_file: token}\n");
  EXPECT_EQ(config.reload_token_file, "token");
  EXPECT_EQ(config.http_listen, ":9464");
  EXPECT_EQ(Parse(kMinimal).reload_token_file, "");
  // Line 4; the empty string starts at column 27.
  EXPECT_THAT(Errors(std::string(kMinimal) + "http: {reload_token_file: \"\"}\n"),
              ElementsAre("t.yaml:4:27: http.reload_token_file: must not be empty"));
  // Unknown keys of http: still reported.
  EXPECT_THAT(Errors(std::string(kMinimal) + "http: {reload_token: t}\n")[0],
              ::testing::StartsWith("t.yaml:4:8: "));
}

TEST(ConfigTest, GrpcApiBounds) {
  Config config = Parse(absl::StrCat("grpc:\n",                               // 1
                                     "  listen: \"127.0.0.1:0\"\n",           // 2
                                     "  snapshot_cache_ttl: 250ms\n",         // 3
                                     "  max_concurrent_snapshot_reads: 3\n",  // 4
                                     "  snapshot_calls_per_second: 0\n",      // 5
                                     "  max_queued_snapshot_calls: 0\n",      // 6
                                     "  max_watch_streams: 2\n", kMinimal));  // 7
  EXPECT_EQ(config.grpc_listen, "127.0.0.1:0");
  EXPECT_EQ(config.grpc_api.snapshot_cache_ttl, absl::Milliseconds(250));
  EXPECT_EQ(config.grpc_api.max_concurrent_snapshot_reads, 3);
  EXPECT_EQ(config.grpc_api.snapshot_calls_per_second, 0);
  EXPECT_EQ(config.grpc_api.max_queued_snapshot_calls, 0);
  EXPECT_EQ(config.grpc_api.max_watch_streams, 2);
  // 0 switches the cache off; 1m is the longest allowed.
  EXPECT_EQ(
      Parse(absl::StrCat("grpc: {snapshot_cache_ttl: 0}\n", kMinimal)).grpc_api.snapshot_cache_ttl,
      absl::ZeroDuration());
  EXPECT_EQ(
      Parse(absl::StrCat("grpc: {snapshot_cache_ttl: 1m}\n", kMinimal)).grpc_api.snapshot_cache_ttl,
      absl::Minutes(1));
}

TEST(ConfigTest, TlsSections) {
  Config config = Parse(std::string(kMinimal) +
                        "http: {tls: {cert_file: h.crt, key_file: h.key}}\n"
                        "grpc:\n"
                        "  listen: \":50051\"\n"
                        "  tls: {cert_file: /g.crt, key_file: g.key, client_ca_file: ca.crt,\n"
                        "        refresh_interval: 10s}\n");
  EXPECT_EQ(config.http_tls, (TlsConfig{.cert_file = "h.crt",
                                        .key_file = "h.key",
                                        .client_ca_file = "",
                                        .refresh_interval = absl::Minutes(1)}));
  EXPECT_TRUE(config.http_tls.enabled());
  EXPECT_EQ(config.grpc_tls, (TlsConfig{.cert_file = "/g.crt",
                                        .key_file = "g.key",
                                        .client_ca_file = "ca.crt",
                                        .refresh_interval = absl::Seconds(10)}));
  // No section, or an empty one: plaintext.
  EXPECT_FALSE(Parse(kMinimal).http_tls.enabled());
  EXPECT_FALSE(Parse(kMinimal).grpc_tls.enabled());
  EXPECT_FALSE(Parse(std::string(kMinimal) + "grpc: {tls: null}\n").grpc_tls.enabled());
}

TEST(ConfigErrorsTest, TlsSections) {
  // Line 4: the tls mapping opens at column 13.
  EXPECT_THAT(Errors(std::string(kMinimal) + "http: {tls: {cert_file: s.pem}}\n"),
              ElementsAre("t.yaml:4:13: missing required key \"http.tls.key_file\""));
  EXPECT_THAT(Errors(std::string(kMinimal) + "grpc: {tls: {}}\n"),
              ElementsAre("t.yaml:4:13: missing required key \"grpc.tls.cert_file\"",
                          "t.yaml:4:13: missing required key \"grpc.tls.key_file\""));
  // The empty string starts at column 25.
  EXPECT_THAT(Errors(std::string(kMinimal) + "grpc: {tls: {cert_file: \"\", key_file: k}}\n"),
              ElementsAre("t.yaml:4:25: grpc.tls.cert_file: must not be empty"));
  EXPECT_THAT(Errors(std::string(kMinimal) + "http: {tls: [a.pem]}\n"),
              ElementsAre("t.yaml:4:13: http.tls: expected a mapping"));
  // "500ms" starts at column 59.
  EXPECT_THAT(Errors(std::string(kMinimal) +
                     "http: {tls: {cert_file: c, key_file: k, refresh_interval: 500ms}}\n"),
              ElementsAre("t.yaml:4:59: http.tls.refresh_interval: must be at least 1s"));
  // A typo: column 41, with a hint.
  EXPECT_THAT(Errors(std::string(kMinimal) +
                     "grpc: {tls: {cert_file: c, key_file: k, client_ca_fil: c}}\n"),
              ElementsAre("t.yaml:4:41: unknown key \"grpc.tls.client_ca_fil\"; did you mean "
                          "\"client_ca_file\"?"));
}

TEST(ConfigTest, ReplicaIdAndPeers) {
  const Config defaults = Parse(kMinimal);
  EXPECT_FALSE(defaults.replica_id.empty());  // the host name
  EXPECT_FALSE(defaults.peers.enabled());
  EXPECT_EQ(defaults.peers.timeout, absl::Seconds(2));
  EXPECT_EQ(defaults.peers.refresh_interval, absl::Seconds(30));
  const Config config = Parse(std::string(kMinimal) +
                              "replica_id: kpid-0\n"
                              "grpc: {tls: {cert_file: c, key_file: k}}\n"
                              "peers:\n"
                              "  addresses: [\"10.0.0.2:50051\", \"[::1]:50051\"]\n"
                              "  dns: \"kpid-peers.kpi.svc:50051\"\n"
                              "  timeout: 500ms\n"
                              "  refresh_interval: 10s\n"
                              "  tls: {ca_file: ca.pem, server_name: kpid.kpi.svc}\n");
  EXPECT_EQ(config.replica_id, "kpid-0");
  EXPECT_EQ(config.peers, (PeersConfig{.addresses = {"10.0.0.2:50051", "[::1]:50051"},
                                       .dns = "kpid-peers.kpi.svc:50051",
                                       .timeout = absl::Milliseconds(500),
                                       .refresh_interval = absl::Seconds(10),
                                       .tls = {.ca_file = "ca.pem",
                                               .cert_file = "",
                                               .key_file = "",
                                               .server_name = "kpid.kpi.svc"}}));
  EXPECT_TRUE(config.peers.enabled());
}

TEST(ConfigErrorsTest, ReplicaIdAndPeers) {
  // Line 4 onwards; the values' columns as marked.
  EXPECT_THAT(
      Errors(std::string(kMinimal) + "replica_id: \"\"\n"),
      ElementsAre("t.yaml:4:13: replica_id: must not be empty (omit it for the host name)"));
  EXPECT_THAT(
      Errors(std::string(kMinimal) + "peers: {addresses: [a, \"b:1\"], dns: svc, timeout: 1ms}\n"),
      ElementsAre("t.yaml:4:21: peers.addresses[0]: \"a\" is not host:port",
                  "t.yaml:4:37: peers.dns: \"svc\" is not name:port (a headless Service and the "
                  "gRPC port)",
                  "t.yaml:4:51: peers.timeout: must be at least 10ms"));
  EXPECT_THAT(Errors(std::string(kMinimal) + "peers: {dns: \"s:1\", tls: {cert_file: c}}\n"),
              ElementsAre("t.yaml:4:26: peers.tls: cert_file and key_file go together",
                          "t.yaml:4:26: peers.tls: the peers speak TLS only when grpc.tls is set "
                          "(it is not)"));
  EXPECT_THAT(Errors(std::string(kMinimal) +
                     "grpc: {tls: {cert_file: c, key_file: k, client_ca_file: ca}}\n"
                     "peers: {dns: \"s:1\"}\n"),
              ElementsAre("t.yaml:5:8: peers: grpc.tls.client_ca_file makes the peers require a "
                          "client certificate; set peers.tls.cert_file and key_file"));
  EXPECT_THAT(
      Errors(std::string(kMinimal) + "peers: {adresses: []}\n"),
      ElementsAre("t.yaml:4:9: unknown key \"peers.adresses\"; did you mean \"addresses\"?"));
}

TEST(ConfigTest, PathNextToConfig) {
  Config config;
  config.source_path = "/etc/kpid/kpid.yaml";
  EXPECT_EQ(PathNextToConfig(config, "tls/server.crt"), "/etc/kpid/tls/server.crt");
  EXPECT_EQ(PathNextToConfig(config, "/run/secrets/server.crt"), "/run/secrets/server.crt");
  config.source_path = "kpid.yaml";
  EXPECT_EQ(PathNextToConfig(config, "tls/server.crt"), "tls/server.crt");
}

TEST(ConfigTest, InputBounds) {
  Config config = Parse(std::string(kMinimal) + "max_past_age: 30d\nmax_abs_value: 1e6\n");
  EXPECT_EQ(config.max_past_age, absl::Hours(24 * 30));
  EXPECT_DOUBLE_EQ(config.max_abs_value, 1e6);
  // Lines 4 and 5 after kMinimal; values start at columns 15 and 16.
  EXPECT_THAT(Errors(std::string(kMinimal) + "max_past_age: 0s\nmax_abs_value: -5\n"),
              ElementsAre("t.yaml:5:16: max_abs_value: -5 is out of range [1, 1e+300]",
                          "t.yaml:4:15: max_past_age: must be greater than 0"));
}

TEST(ConfigTest, MaxOpenCasesIsATopicWideBoundSplitAcrossPartitions) {
  Config config = Parse(std::string(kMinimal) + "max_open_cases: 1000\n");
  EXPECT_EQ(config.max_open_cases, 1000);
  // 1000 / 3 = 333.33: rounded down, so 3 x 333 = 999 <= 1000.
  EXPECT_EQ(config.MaxOpenCasesPerPartition(3), 333u);
  EXPECT_EQ(config.MaxOpenCasesPerPartition(1), 1000u);
  // Default 10,000,000 over 4 partitions: 2,500,000 each.
  EXPECT_EQ(Parse(kMinimal).MaxOpenCasesPerPartition(4), 2'500'000u);
  // Line 4 after kMinimal; values start at column 17.
  EXPECT_THAT(Errors(std::string(kMinimal) + "max_open_cases: 999\n"),
              ElementsAre("t.yaml:4:17: max_open_cases: 999 is out of range [1000, 1000000000]"));
  EXPECT_THAT(Errors(std::string(kMinimal) + "max_open_cases: 1e6\n"),
              ElementsAre("t.yaml:4:17: max_open_cases: expected an integer, got \"1e6\""));
}

TEST(ConfigTest, DurableState) {
  Config config =
      Parse(std::string(kMinimal) + "state_dir: /var/lib/kpid\ncheckpoint_interval: 30s\n");
  EXPECT_EQ(config.state_dir, "/var/lib/kpid");
  EXPECT_EQ(config.checkpoint_interval, absl::Seconds(30));
  // Absent: no durable state, checkpoints every 10s once a folder is set.
  EXPECT_EQ(Parse(kMinimal).state_dir, "");
  EXPECT_EQ(Parse(kMinimal).checkpoint_interval, absl::Seconds(10));
  // Lines 4 and 5 after kMinimal; values start at columns 12 and 22.
  EXPECT_THAT(
      Errors(std::string(kMinimal) + "state_dir: \"\"\ncheckpoint_interval: 500ms\n"),
      ElementsAre("t.yaml:4:12: state_dir: must not be empty (omit it for no durable state)",
                  "t.yaml:5:22: checkpoint_interval: must be at least 1s"));
}

TEST(ConfigTest, DedupBoundsAreDaemonWideSplitAcrossWorkers) {
  Config config = Parse(std::string(kMinimal) + "max_dedup_ids: 1000\nmax_closed_cases: 5000\n");
  EXPECT_EQ(config.max_dedup_ids, 1000);
  EXPECT_EQ(config.max_closed_cases, 5000);
  // 1000 / 3 = 333.33 and 5000 / 3 = 1666.67: rounded down.
  EXPECT_EQ(config.MaxDedupIdsPerPartition(3), 333u);
  EXPECT_EQ(config.MaxClosedCasesPerPartition(3), 1666u);
  // Defaults 10,000,000 over 4 workers: 2,500,000 each.
  EXPECT_EQ(Parse(kMinimal).MaxDedupIdsPerPartition(4), 2'500'000u);
  EXPECT_EQ(Parse(kMinimal).MaxClosedCasesPerPartition(4), 2'500'000u);
  // Lines 4 and 5 after kMinimal; values start at columns 16 and 19.
  EXPECT_THAT(
      Errors(std::string(kMinimal) + "max_dedup_ids: 999\nmax_closed_cases: 2000000000\n"),
      ElementsAre("t.yaml:4:16: max_dedup_ids: 999 is out of range [1000, 1000000000]",
                  "t.yaml:5:19: max_closed_cases: 2000000000 is out of range [1000, 1000000000]"));
  EXPECT_THAT(Errors(std::string(kMinimal) + "max_closed_cases: many\n"),
              ElementsAre("t.yaml:4:19: max_closed_cases: expected an integer, got \"many\""));
}

TEST(ConfigTest, StatePathIsRelativeToTheConfigsFolder) {
  Config config = Parse(std::string(kMinimal) + "state_dir: state\n");
  config.source_path = "/etc/kpid/kpid.yaml";
  EXPECT_EQ(config.StatePath("alerts.state"), "/etc/kpid/state/alerts.state");
  config.state_dir = "/var/lib/kpid";
  EXPECT_EQ(config.StatePath("alerts.state"), "/var/lib/kpid/alerts.state");
  EXPECT_EQ(Parse(kMinimal).StatePath("alerts.state"), "");
}

TEST(ConfigTest, DefaultsWhenKeysAreAbsent) {
  Config config = Parse(kMinimal);
  EXPECT_EQ(config.source_path, "");
  EXPECT_EQ(config.kafka.brokers, "embedded");
  EXPECT_TRUE(config.kafka.embedded());
  EXPECT_EQ(config.kafka.topic, "process-events");
  EXPECT_EQ(config.kafka.group_id, "kpid");
  EXPECT_EQ(config.kafka.partitions, 4);
  EXPECT_EQ(config.kafka.bootstrap_file, "");
  EXPECT_EQ(config.kafka.dead_letter_topic, "");
  EXPECT_EQ(config.kafka.workers, 0);
  EXPECT_EQ(config.kafka.max_message_bytes, 1 << 20);
  EXPECT_THAT(config.kafka.properties, IsEmpty());
  EXPECT_EQ(config.http_listen, "0.0.0.0:9464");
  EXPECT_EQ(config.grpc_listen, "0.0.0.0:50051");
  EXPECT_EQ(config.grpc_api.snapshot_cache_ttl, absl::Seconds(1));
  EXPECT_EQ(config.grpc_api.max_concurrent_snapshot_reads, 1);
  EXPECT_EQ(config.grpc_api.snapshot_calls_per_second, 20);
  EXPECT_EQ(config.grpc_api.max_queued_snapshot_calls, 32);
  EXPECT_EQ(config.grpc_api.max_watch_streams, 16);
  EXPECT_EQ(config.clock, ClockMode::kWall);
  EXPECT_THAT(config.windows,
              ElementsAre(absl::Minutes(5), absl::Hours(1), absl::Hours(24), absl::Hours(24 * 7)));
  EXPECT_EQ(config.retention, absl::Hours(24 * 15));
  EXPECT_EQ(config.case_ttl, absl::Hours(24 * 30));
  EXPECT_EQ(config.dedup_horizon, absl::Hours(1));
  EXPECT_THAT(config.dimensions.names, IsEmpty());
  EXPECT_EQ(config.dimensions.max_series_per_process, 1000);
  EXPECT_THAT(config.rules, IsEmpty());
  EXPECT_THAT(config.alertmanagers, IsEmpty());
  EXPECT_EQ(config.alerting.resend_interval, absl::Minutes(1));
  EXPECT_EQ(config.alerting.timeout, absl::Seconds(10));
  EXPECT_EQ(config.alerting.queue_capacity, 10000);
  EXPECT_EQ(config.max_future_skew, absl::Hours(1));
  EXPECT_EQ(config.max_past_age, absl::Hours(24 * 3650));
  EXPECT_DOUBLE_EQ(config.max_abs_value, 1e12);
  EXPECT_EQ(config.max_open_cases, 10'000'000);
  EXPECT_EQ(config.max_dedup_ids, 10'000'000);
  EXPECT_EQ(config.max_closed_cases, 10'000'000);

  ASSERT_EQ(config.processes.size(), 1u);
  const ProcessConfig& p = config.processes[0];
  EXPECT_EQ(p.id, "p");
  EXPECT_THAT(p.kpi_tree, IsEmpty());
  ASSERT_EQ(p.stages.size(), 1u);
  EXPECT_EQ(p.stages[0].id, "a");
  EXPECT_EQ(p.stages[0].sla, absl::Hours(1));
  EXPECT_EQ(p.stages[0].simulate.median, std::nullopt);
  EXPECT_DOUBLE_EQ(p.stages[0].simulate.sigma, 0.6);
  EXPECT_DOUBLE_EQ(p.stages[0].simulate.fallout, 0.1);
  EXPECT_DOUBLE_EQ(p.stages[0].simulate.rework, 0.0);
  EXPECT_DOUBLE_EQ(p.simulate.arrivals_per_hour, 60);
  EXPECT_DOUBLE_EQ(p.simulate.deal_median, 20000);
  EXPECT_DOUBLE_EQ(p.simulate.deal_sigma, 0.8);
  EXPECT_DOUBLE_EQ(p.simulate.cost_per_case, 0);
  EXPECT_DOUBLE_EQ(p.simulate.feedback_odds, 0);
  EXPECT_THAT(p.simulate.attributes, IsEmpty());
}

TEST(ConfigTest, NullSectionsMeanDefaults) {
  Config config = Parse(
      "kafka:\n"                          // 1
      "http:\n"                           // 2
      "dimensions:\n"                     // 3
      "processes:\n"                      // 4
      "  - id: p\n"                       // 5
      "    stages: [{id: a, sla: 1h}]\n"  // 6
      "    simulate:\n");                 // 7
  EXPECT_EQ(config.kafka.topic, "process-events");
  EXPECT_EQ(config.http_listen, "0.0.0.0:9464");
  EXPECT_DOUBLE_EQ(config.processes[0].simulate.arrivals_per_hour, 60);
}

TEST(ConfigTest, ExtraKeys) {
  Config config = Parse(
      "kafka:\n"                                                                // 1
      "  brokers: \"k1:9092,k2:9092\"\n"                                        // 2
      "  topic: events\n"                                                       // 3
      "  group_id: kpid-eu\n"                                                   // 4
      "  workers: 8\n"                                                          // 5
      "  max_message_bytes: 4194304\n"                                          // 6
      "  properties:\n"                                                         // 7
      "    security.protocol: SSL\n"                                            // 8
      "    fetch.wait.max.ms: 50\n"                                             // 9
      "http: {listen: \":0\"}\n"                                                // 10
      "grpc: {listen: \"[::1]:0\"}\n"                                           // 11
      "clock: event\n"                                                          // 12
      "retention: 30d\n"                                                        // 13
      "windows: [7d, 1m, 30d, 1h30m]\n"                                         // 14
      "dimensions: {names: [region], max_series_per_process: 50}\n"             // 15
      "processes:\n"                                                            // 16
      "  - id: p\n"                                                             // 17
      "    stages:\n"                                                           // 18
      "      - id: a\n"                                                         // 19
      "        sla: 90s\n"                                                      // 20
      "        simulate: {median: 30s, sigma: 1.2, fallout: 0, rework: 0.5}\n"  // 21
      "    kpi_tree:\n"                                                         // 22
      "      - {id: conv, ratio: [done, entered]}\n"                            // 23
      "      - {id: done, kpi: exited, stage: a}\n"                             // 24
      "      - {id: entered, kpi: entered, stage: a}\n"                         // 25
      "      - {id: total, sum: [conv]}\n"                                      // 26
      "    simulate:\n"                                                         // 27
      "      arrivals_per_hour: 0.5\n"                                          // 28
      "      attributes: {region: [eu]}\n"                                      // 29
      "rules: [\"rules/*.yaml\", /etc/kpid/rules.yaml]\n"                       // 30
      "alertmanagers: [\"https://am.example:9093/\"]\n");                       // 31
  EXPECT_FALSE(config.kafka.embedded());
  EXPECT_EQ(config.kafka.brokers, "k1:9092,k2:9092");
  EXPECT_EQ(config.kafka.workers, 8);
  EXPECT_EQ(config.kafka.max_message_bytes, 4194304);
  EXPECT_THAT(config.kafka.properties,
              ElementsAre(Pair("fetch.wait.max.ms", "50"), Pair("security.protocol", "SSL")));
  EXPECT_EQ(config.http_listen, ":0");
  EXPECT_EQ(config.grpc_listen, "[::1]:0");
  EXPECT_EQ(config.clock, ClockMode::kEvent);
  // Sorted ascending.
  EXPECT_THAT(config.windows, ElementsAre(absl::Minutes(1), absl::Minutes(90), absl::Hours(24 * 7),
                                          absl::Hours(24 * 30)));
  EXPECT_EQ(config.dimensions.max_series_per_process, 50);
  const ProcessConfig& p = config.processes[0];
  EXPECT_EQ(p.stages[0].sla, absl::Seconds(90));
  EXPECT_EQ(p.stages[0].simulate.median, absl::Seconds(30));
  EXPECT_DOUBLE_EQ(p.stages[0].simulate.sigma, 1.2);
  EXPECT_DOUBLE_EQ(p.stages[0].simulate.fallout, 0);
  EXPECT_DOUBLE_EQ(p.stages[0].simulate.rework, 0.5);
  ASSERT_EQ(p.kpi_tree.size(), 4u);
  EXPECT_THAT(p.kpi_tree[0].ratio, ElementsAre("done", "entered"));
  EXPECT_EQ(p.kpi_tree[1].stage, "a");
  EXPECT_THAT(p.kpi_tree[3].sum, ElementsAre("conv"));
  EXPECT_DOUBLE_EQ(p.simulate.arrivals_per_hour, 0.5);
  EXPECT_THAT(p.simulate.attributes, ElementsAre(Pair("region", ElementsAre("eu"))));
  EXPECT_THAT(config.rules, ElementsAre("rules/*.yaml", "/etc/kpid/rules.yaml"));
  EXPECT_THAT(config.alertmanagers, ElementsAre("https://am.example:9093/"));
}

// ---------------------------------------------------------------------------
// Bad configs: every error is checked in full, position included.

TEST(ConfigErrorsTest, YamlSyntaxError) {
  EXPECT_THAT(Errors("clock: wall: event\n"),  // 1: the second ':' is column 12
              ElementsAre("t.yaml:1:12: illegal map value"));
  EXPECT_THAT(Errors("processes:\n"                       // 1
                     "  - id: p\n"                        // 2
                     "    stages: [{id: a, sla: 1h}\n"),  // 3: '[' never closed
              ElementsAre("t.yaml:4:1: end of sequence flow not found"));
  EXPECT_THAT(Errors("processes:\n"       // 1
                     "  - id: p\n"        // 2
                     "   stages: []\n"),  // 3: indented less than "id"
              ElementsAre("t.yaml:3:4: end of sequence not found"));
}

TEST(ConfigErrorsTest, EmptyFile) {
  EXPECT_THAT(Errors(""), ElementsAre("t.yaml: empty configuration"));
  EXPECT_THAT(Errors("# nothing yet\n"), ElementsAre("t.yaml: empty configuration"));
  EXPECT_THAT(Errors("---\n"), ElementsAre("t.yaml: empty configuration"));
}

TEST(ConfigErrorsTest, DocumentIsNotAMap) {
  EXPECT_THAT(Errors("- processes\n"), ElementsAre("t.yaml:1:1: document: expected a mapping"));
  EXPECT_THAT(Errors("kpid\n"), ElementsAre("t.yaml:1:1: document: expected a mapping"));
}

TEST(ConfigErrorsTest, UnknownTopLevelKey) {
  EXPECT_THAT(Errors("windowz: [5m]\n"                   // 1
                     "processes:\n"                      // 2
                     "  - id: p\n"                       // 3
                     "    stages: [{id: a, sla: 1h}]\n"  // 4
                     "zzzz: 1\n"),                       // 5
              ElementsAre("t.yaml:1:1: unknown key \"windowz\"; did you mean \"windows\"?",
                          "t.yaml:5:1: unknown key \"zzzz\""));
}

TEST(ConfigErrorsTest, UnknownNestedKeys) {
  // Each map reports its unknown keys when it is done: the innermost first.
  EXPECT_THAT(
      Errors("kafka:\n"                           // 1
             "  topik: x\n"                       // 2
             "http: {lisen: \":1\"}\n"            // 3: "lisen" at column 8
             "processes:\n"                       // 4
             "  - id: p\n"                        // 5
             "    kpi_tre: []\n"                  // 6
             "    stages:\n"                      // 7
             "      - id: a\n"                    // 8
             "        sla: 1h\n"                  // 9
             "        slaa: 2h\n"                 // 10
             "        simulate: {falout: 0.2}\n"  // 11: "falout" at column 20
             "    simulate: {arrivals: 5}\n"),    // 12: "arrivals" at column 16
      ElementsAre(
          "t.yaml:2:3: unknown key \"kafka.topik\"; did you mean \"topic\"?",
          "t.yaml:3:8: unknown key \"http.lisen\"; did you mean \"listen\"?",
          "t.yaml:11:20: unknown key \"process p: stages[0].simulate.falout\"; did you mean "
          "\"fallout\"?",
          "t.yaml:10:9: unknown key \"process p: stages[0].slaa\"; did you mean \"sla\"?",
          "t.yaml:12:16: unknown key \"process p: simulate.arrivals\"",
          "t.yaml:6:5: unknown key \"processes[0].kpi_tre\"; did you mean \"kpi_tree\"?"));
}

TEST(ConfigErrorsTest, DuplicateKeys) {
  EXPECT_THAT(Errors("kafka:\n"                             // 1
                     "  topic: a\n"                         // 2
                     "  topic: b\n"                         // 3
                     "processes:\n"                         // 4
                     "  - id: p\n"                          // 5
                     "    stages:\n"                        // 6
                     "      - {id: a, sla: 1h, sla: 2h}\n"  // 7: second "sla" at column 26
                     "clock: wall\n"                        // 8
                     "clock: event\n"),                     // 9
              ElementsAre("t.yaml:3:3: duplicate key \"kafka.topic\"",
                          "t.yaml:7:26: duplicate key \"process p: stages[0].sla\"",
                          "t.yaml:9:1: duplicate key \"clock\""));
}

TEST(ConfigErrorsTest, BadDurations) {
  EXPECT_THAT(
      Errors("retention: 15days\n"               // 1: value at column 12
             "case_ttl: 1.5d\n"                  // 2: column 11
             "dedup_horizon: {h: 1}\n"           // 3: column 16
             "processes:\n"                      // 4
             "  - id: p\n"                       // 5
             "    stages:\n"                     // 6
             "      - {id: a, sla: 1 hour}\n"),  // 7: column 22
      ElementsAre("t.yaml:1:12: retention: invalid duration \"15days\": expected a number "
                  "(expected e.g. 90s, 5m, 1h30m, 7d)",
                  "t.yaml:2:11: case_ttl: invalid duration \"1.5d\": missing or unknown unit "
                  "(expected e.g. 90s, 5m, 1h30m, 7d)",
                  "t.yaml:3:16: dedup_horizon: expected a duration such as 90s, 5m, 1h, 7d",
                  "t.yaml:7:22: process p: stages[0].sla: invalid duration \"1 hour\": missing "
                  "or unknown unit (expected e.g. 90s, 5m, 1h30m, 7d)"));
}

TEST(ConfigErrorsTest, ZeroAndNegativeDurations) {
  // Top-level durations are checked after the processes.
  EXPECT_THAT(
      Errors("case_ttl: 0s\n"                                        // 1: column 11
             "dedup_horizon: 0\n"                                    // 2: column 16
             "processes:\n"                                          // 3
             "  - id: p\n"                                           // 4
             "    stages:\n"                                         // 5
             "      - {id: a, sla: 0s}\n"                            // 6: column 22
             "      - {id: b, sla: -1h}\n"                           // 7: column 22
             "      - {id: c, sla: 1h, simulate: {median: 0s}}\n"),  // 8: column 45
      ElementsAre("t.yaml:6:22: process p: stages[0].sla: must be greater than 0",
                  "t.yaml:7:22: process p: stages[1].sla: invalid duration \"-1h\": expected a "
                  "number (expected e.g. 90s, 5m, 1h30m, 7d)",
                  "t.yaml:8:45: process p: stages[2].simulate.median: must be greater than 0",
                  "t.yaml:1:11: case_ttl: must be greater than 0",
                  "t.yaml:2:16: dedup_horizon: must be greater than 0"));
}

TEST(ConfigErrorsTest, ZeroRetentionIsOneError) {
  EXPECT_THAT(Errors("retention: 0\n"                      // 1: column 12
                     "windows: [5m]\n"                     // 2
                     "processes:\n"                        // 3
                     "  - id: p\n"                         // 4
                     "    stages: [{id: a, sla: 1h}]\n"),  // 5
              ElementsAre("t.yaml:1:12: retention: must be greater than 0"));
}

TEST(ConfigErrorsTest, MissingRequiredKeys) {
  EXPECT_THAT(Errors("clock: wall\n"),
              ElementsAre("t.yaml:1:1: missing required key \"processes\""));
  // A missing key is reported at the map that lacks it.
  EXPECT_THAT(Errors("processes:\n"               // 1
                     "  - id: p\n"                // 2: map at column 5
                     "  - stages: [{sla: 1h}]\n"  // 3: map at column 5, '{' at column 14
                     "  - id: q\n"                // 4
                     "    stages: [{id: a}]\n"),  // 5: '{' at column 14
              ElementsAre("t.yaml:2:5: missing required key \"processes[0].stages\"",
                          "t.yaml:3:5: missing required key \"processes[1].id\"",
                          "t.yaml:3:14: missing required key \"processes[1]: stages[0].id\"",
                          "t.yaml:5:14: missing required key \"process q: stages[0].sla\""));
}

TEST(ConfigErrorsTest, EmptyEntries) {
  EXPECT_THAT(Errors("processes:\n"           // 1
                     "  - ~\n"                // 2: column 5
                     "  - id: p\n"            // 3
                     "    stages: [~]\n"      // 4: column 14
                     "    kpi_tree: [~]\n"),  // 5: column 16
              ElementsAre("t.yaml:2:5: processes[0]: empty process",
                          "t.yaml:4:14: process p: stages[0]: empty",
                          "t.yaml:5:16: process p: kpi_tree[0]: empty node"));
}

TEST(ConfigErrorsTest, DuplicateIds) {
  EXPECT_THAT(Errors("processes:\n"                        // 1
                     "  - id: p\n"                         // 2
                     "    stages:\n"                       // 3
                     "      - {id: a, sla: 1h}\n"          // 4
                     "      - {id: a, sla: 2h}\n"          // 5: id value at column 14
                     "  - id: p\n"                         // 6: column 9
                     "    stages: [{id: a, sla: 1h}]\n"),  // 7: another process: fine
              ElementsAre("t.yaml:5:14: process p: duplicate stage \"a\"",
                          "t.yaml:6:9: processes[1].id: duplicate process \"p\""));
}

TEST(ConfigErrorsTest, InvalidIds) {
  const std::string long_id(129, 'x');
  EXPECT_THAT(
      Errors(absl::StrCat("processes:\n",                        // 1
                          "  - id: lead to cash\n",              // 2: column 9
                          "    stages:\n",                       // 3
                          "      - {id: \"a/b\", sla: 1h}\n",    // 4: the quote, column 14
                          "      - {id: \"\", sla: 1h}\n",       // 5: column 14
                          "      - {id: [c], sla: 1h}\n",        // 6: column 14
                          "  - id: ", long_id, "\n",             // 7: column 9
                          "    stages: [{id: a, sla: 1h}]\n")),  // 8
      ElementsAre("t.yaml:2:9: processes[0].id: \"lead to cash\" must be 1-128 of [A-Za-z0-9_.-]",
                  "t.yaml:4:14: process lead to cash: stages[0].id: \"a/b\" must be 1-128 of "
                  "[A-Za-z0-9_.-]",
                  "t.yaml:5:14: process lead to cash: stages[1].id: \"\" must be 1-128 of "
                  "[A-Za-z0-9_.-]",
                  "t.yaml:6:14: process lead to cash: stages[2].id: expected a string",
                  absl::StrCat("t.yaml:7:9: processes[1].id: \"", long_id,
                               "\" must be 1-128 of [A-Za-z0-9_.-]")));
}

TEST(ConfigErrorsTest, Windows) {
  // "windows: [90s, 5m, 3d, 5m, 60m, 1h]": entries at columns 11, 16, 20, 24, 28, 33.
  EXPECT_THAT(Errors("retention: 2d\n"                        // 1
                     "windows: [90s, 5m, 3d, 5m, 60m, 1h]\n"  // 2
                     "processes:\n"                           // 3
                     "  - id: p\n"                            // 4
                     "    stages: [{id: a, sla: 1h}]\n"),     // 5
              ElementsAre("t.yaml:2:11: windows[0]: 90s must be a whole number of minutes, >= 1m",
                          "t.yaml:2:20: windows[2]: 3d is longer than retention (2d)",
                          "t.yaml:2:24: windows[3]: duplicate window 5m",
                          "t.yaml:2:33: windows[5]: duplicate window 1h"));
  EXPECT_THAT(Errors("windows: [30s, 0, forever]\n"        // 1: columns 11, 16, 19
                     "processes:\n"                        // 2
                     "  - id: p\n"                         // 3
                     "    stages: [{id: a, sla: 1h}]\n"),  // 4
              ElementsAre("t.yaml:1:11: windows[0]: 30s must be a whole number of minutes, >= 1m",
                          "t.yaml:1:16: windows[1]: 0 must be a whole number of minutes, >= 1m",
                          "t.yaml:1:19: windows[2]: invalid duration \"forever\": expected a "
                          "number (expected e.g. 90s, 5m, 1h30m, 7d)"));
  EXPECT_THAT(Errors(absl::StrCat("windows: []\n", kMinimal)),
              ElementsAre("t.yaml:1:10: windows: expected a non-empty list of durations"));
  EXPECT_THAT(Errors(absl::StrCat("windows: {short: 5m}\n", kMinimal)),
              ElementsAre("t.yaml:1:10: windows: expected a non-empty list of durations"));
}

TEST(ConfigErrorsTest, DefaultWindowsLongerThanRetention) {
  // Without "windows", the defaults (up to 7d) must fit the retention too.
  EXPECT_THAT(Errors(absl::StrCat("retention: 2d\n", kMinimal)),  // 1: column 12
              ElementsAre("t.yaml:1:12: retention: 2d is shorter than the longest default "
                          "window (7d); list windows explicitly"));
  Config config = Parse(absl::StrCat("retention: 2d\nwindows: [5m, 2d]\n", kMinimal));
  EXPECT_EQ(config.retention, absl::Hours(48));
  // The default retention (15d) reads in days too.
  EXPECT_THAT(Errors(absl::StrCat("windows: [30d]\n", kMinimal)),  // column 11
              ElementsAre("t.yaml:1:11: windows[0]: 30d is longer than retention (15d)"));
  // An invalid retention falls back to the default, and says so.
  EXPECT_THAT(Errors(absl::StrCat("retention: 15days\n",  // 1: column 12
                                  "windows: [30d]\n",     // 2: column 11
                                  kMinimal)),
              ElementsAre("t.yaml:1:12: retention: invalid duration \"15days\": expected a number "
                          "(expected e.g. 90s, 5m, 1h30m, 7d)",
                          "t.yaml:2:11: windows[0]: 30d is longer than retention (15d)"));
}

TEST(ConfigErrorsTest, DimensionNames) {
  // Entries of line 2 at columns 19 (1st), 24 ("a-b"), 31 (__meta), 39 (stage),
  // 46 (region), 54 (le), 58 ([x]).
  EXPECT_THAT(
      Errors("dimensions:\n"                                                      // 1
             "  names: [region, 1st, \"a-b\", __meta, stage, region, le, [x]]\n"  // 2
             "  max_series_per_process: 0\n"                                      // 3: column 27
             "processes:\n"                                                       // 4
             "  - id: p\n"                                                        // 5
             "    stages: [{id: a, sla: 1h}]\n"),                                 // 6
      ElementsAre("t.yaml:3:27: dimensions.max_series_per_process: 0 is out of range [1, 1000000]",
                  "t.yaml:2:19: dimensions.names[1]: \"1st\" is not a valid label name "
                  "([a-zA-Z_][a-zA-Z0-9_]*)",
                  "t.yaml:2:24: dimensions.names[2]: \"a-b\" is not a valid label name "
                  "([a-zA-Z_][a-zA-Z0-9_]*)",
                  "t.yaml:2:31: dimensions.names[3]: \"__meta\" starts with __, which Prometheus "
                  "reserves",
                  "t.yaml:2:39: dimensions.names[4]: \"stage\" is a label kpid uses itself",
                  "t.yaml:2:46: dimensions.names[5]: duplicate \"region\"",
                  "t.yaml:2:54: dimensions.names[6]: \"le\" is a label kpid uses itself",
                  "t.yaml:2:58: dimensions.names[7]: expected a string"));
  EXPECT_THAT(Errors(absl::StrCat("dimensions: {names: region}\n", kMinimal)),  // column 21
              ElementsAre("t.yaml:1:21: dimensions.names: expected a list"));
}

TEST(ConfigErrorsTest, Clock) {
  EXPECT_THAT(Errors(absl::StrCat("clock: realtime\n", kMinimal)),  // column 8
              ElementsAre("t.yaml:1:8: clock: \"realtime\" is not wall or event"));
  EXPECT_THAT(Errors(absl::StrCat("clock: [wall]\n", kMinimal)),
              ElementsAre("t.yaml:1:8: clock: expected a string"));
}

TEST(ConfigErrorsTest, ListenAddresses) {
  EXPECT_THAT(Errors(absl::StrCat("http: {listen: \"localhost\"}\n",      // 1: column 16
                                  "grpc: {listen: \"0.0.0.0:70000\"}\n",  // 2: column 16
                                  kMinimal)),
              ElementsAre("t.yaml:1:16: http.listen: \"localhost\" is not host:port",
                          "t.yaml:2:16: grpc.listen: \"0.0.0.0:70000\" is not host:port"));
  EXPECT_THAT(Errors(absl::StrCat("http: 9464\n", kMinimal)),  // column 7
              ElementsAre("t.yaml:1:7: http: expected a mapping"));
}

TEST(ConfigErrorsTest, GrpcApiBounds) {
  EXPECT_THAT(
      Errors(absl::StrCat("grpc:\n",                                // 1
                          "  snapshot_cache_ttl: 61s\n",            // 2: column 23
                          "  max_concurrent_snapshot_reads: 0\n",   // 3: column 34
                          "  snapshot_calls_per_second: -1\n",      // 4: column 30
                          "  max_queued_snapshot_calls: 100001\n",  // 5: column 30
                          "  max_watch_streams: 0\n",               // 6: column 22
                          "  max_watch_stream: 1\n",                // 7: column 3
                          kMinimal)),
      ElementsAre("t.yaml:2:23: grpc.snapshot_cache_ttl: 61s is out of range [0, 1m]",
                  "t.yaml:3:34: grpc.max_concurrent_snapshot_reads: 0 is out of range [1, 256]",
                  "t.yaml:4:30: grpc.snapshot_calls_per_second: -1 is out of range [0, 1000000]",
                  "t.yaml:5:30: grpc.max_queued_snapshot_calls: 100001 is out of range [0, 100000]",
                  "t.yaml:6:22: grpc.max_watch_streams: 0 is out of range [1, 100000]",
                  "t.yaml:7:3: unknown key \"grpc.max_watch_stream\"; did you mean "
                  "\"max_watch_streams\"?"));
  EXPECT_THAT(Errors(absl::StrCat("grpc: {snapshot_cache_ttl: soon}\n", kMinimal)),  // column 28
              ElementsAre("t.yaml:1:28: grpc.snapshot_cache_ttl: invalid duration \"soon\": "
                          "expected a number (expected e.g. 90s, 5m, 1h30m, 7d)"));
}

TEST(ConfigErrorsTest, IsValidListenAddress) {
  for (const char* good :
       {"0.0.0.0:9464", "127.0.0.1:0", ":9464", "localhost:65535", "[::1]:50051", "[::]:80"}) {
    EXPECT_TRUE(IsValidListenAddress(good)) << good;
  }
  for (const char* bad :
       {"", "localhost", "9464", "host:", "host:65536", "host:-1", "host:+80", "host: 80",
        "host:80x", "host:000080", "::1:80", "[::1]", "[]:80", "[::1:80"}) {
    EXPECT_FALSE(IsValidListenAddress(bad)) << bad;
  }
}

TEST(ConfigErrorsTest, IntegersOutOfRange) {
  EXPECT_THAT(Errors(absl::StrCat("kafka:\n",                   // 1
                                  "  partitions: 0\n",          // 2: column 15
                                  "  workers: 257\n",           // 3: column 12
                                  "  max_message_bytes: 10\n",  // 4: column 22
                                  kMinimal)),
              ElementsAre("t.yaml:2:15: kafka.partitions: 0 is out of range [1, 1024]",
                          "t.yaml:3:12: kafka.workers: 257 is out of range [0, 256]",
                          "t.yaml:4:22: kafka.max_message_bytes: 10 is out of range [64, "
                          "67108864]"));
  EXPECT_THAT(Errors(absl::StrCat("kafka: {partitions: four}\n", kMinimal)),  // column 21
              ElementsAre("t.yaml:1:21: kafka.partitions: expected an integer, got \"four\""));
}

TEST(ConfigErrorsTest, NumbersOutOfRange) {
  EXPECT_THAT(
      Errors("processes:\n"                                                     // 1
             "  - id: p\n"                                                      // 2
             "    stages:\n"                                                    // 3
             "      - {id: a, sla: 1h, simulate: {fallout: 1.5, sigma: -1}}\n"  // 4: 46, 58
             "    simulate:\n"                                                  // 5
             "      arrivals_per_hour: 0\n"                                     // 6: column 26
             "      feedback_odds: 2\n"),                                       // 7: column 22
      ElementsAre("t.yaml:4:58: process p: stages[0].simulate.sigma: -1 is out of range [0, 5]",
                  "t.yaml:4:46: process p: stages[0].simulate.fallout: 1.5 is out of range [0, "
                  "1]",
                  "t.yaml:6:26: process p: simulate.arrivals_per_hour: 0 is out of range "
                  "[1e-06, 1e+09]",
                  "t.yaml:7:22: process p: simulate.feedback_odds: 2 is out of range [0, 1]"));
}

TEST(ConfigErrorsTest, Alertmanagers) {
  // Entries at columns 17, 35 and 53.
  EXPECT_THAT(
      Errors(absl::StrCat(
          "alertmanagers: [\"127.0.0.1:9093\", \"http://am:9093\", \"ftp://x\", [a], http://]\n",
          kMinimal)),
      ElementsAre("t.yaml:1:17: alertmanagers[0]: \"127.0.0.1:9093\" is not an http:// or "
                  "https:// URL",
                  "t.yaml:1:53: alertmanagers[2]: \"ftp://x\" is not an http:// or https:// URL",
                  "t.yaml:1:64: alertmanagers[3]: expected a string",
                  "t.yaml:1:69: alertmanagers[4]: \"http://\" is not an http:// or https:// URL"));
  EXPECT_THAT(Errors(absl::StrCat("alertmanagers: http://am:9093\n", kMinimal)),  // column 16
              ElementsAre("t.yaml:1:16: alertmanagers: expected a list"));
}

TEST(ConfigErrorsTest, KpiTree) {
  EXPECT_THAT(
      Errors("processes:\n"                                       // 1
             "  - id: p\n"                                        // 2
             "    stages: [{id: a, sla: 1h}]\n"                   // 3
             "    kpi_tree:\n"                                    // 4
             "      - {id: w, kpi: win_rate}\n"                   // 5: kpi value at column 22
             "      - {id: s, kpi: bogus, stage: a}\n"            // 6: column 22
             "      - {id: c, kpi: conversion, stage: zz}\n"      // 7: stage value at column 41
             "      - {id: x, kpi: started, product: [w]}\n"      // 8: '{' at column 9
             "      - {id: y}\n"                                  // 9: column 9
             "      - {id: r, ratio: [w]}\n"                      // 10: '[' at column 24
             "      - {kpi: started}\n"                           // 11: column 9
             "      - {id: w, kpi: completed}\n"                  // 12: id value at column 14
             "      - {id: t, sum: [w, ghost]}\n"                 // 13: ghost at column 26
             "      - {id: u, product: [w], stage: a}\n"          // 14: stage value at column 38
             "      - {id: v, kpi: sla_atainment, stage: a}\n"),  // 15: column 22
      ElementsAre(
          "t.yaml:5:22: process p: kpi_tree[0]: unknown process KPI \"win_rate\"; did you mean "
          "\"win_ratio\"?",
          "t.yaml:6:22: process p: kpi_tree[1]: unknown stage KPI \"bogus\"",
          "t.yaml:7:41: process p: kpi_tree[2]: unknown stage \"zz\"",
          "t.yaml:8:9: process p: kpi_tree[3]: needs exactly one of kpi, product, sum, ratio",
          "t.yaml:9:9: process p: kpi_tree[4]: needs exactly one of kpi, product, sum, ratio",
          "t.yaml:10:24: process p: kpi_tree[5]: ratio needs [numerator, denominator]",
          "t.yaml:11:9: process p: kpi_tree[6]: needs an id of [A-Za-z0-9_.-]",
          "t.yaml:12:14: process p: duplicate kpi_tree node \"w\"",
          "t.yaml:14:38: process p: kpi_tree[9]: stage only goes with kpi",
          "t.yaml:15:22: process p: kpi_tree[10]: unknown stage KPI \"sla_atainment\"; did you "
          "mean \"sla_attainment\"?",
          "t.yaml:13:26: process p: kpi_tree node \"t\" refers to unknown node \"ghost\""));
}

TEST(ConfigErrorsTest, KpiTreeKpiScope) {
  EXPECT_THAT(
      Errors("processes:\n"                                 // 1
             "  - id: p\n"                                  // 2
             "    stages: [{id: a, sla: 1h}]\n"             // 3
             "    kpi_tree:\n"                              // 4
             "      - {id: w, kpi: win_ratio, stage: a}\n"  // 5: stage value at column 40
             "      - {id: c, kpi: conversion}\n"           // 6: kpi value at column 22
             "      - {id: b, kpi: backlog, stage: a}\n"),  // 7: kpi value at column 22
      ElementsAre(
          "t.yaml:5:40: process p: kpi_tree[0]: \"win_ratio\" is a process KPI; it takes no stage",
          "t.yaml:6:22: process p: kpi_tree[1]: \"conversion\" is a stage KPI; it needs a stage",
          "t.yaml:7:22: process p: kpi_tree[2]: \"backlog\" is not a window KPI"));
}

TEST(ConfigErrorsTest, KpiTreeIsATree) {
  // n has two parents; revenue, spare and other are all roots. Reported at
  // the second reference to n and at the second root.
  EXPECT_THAT(
      Errors("processes:\n"                              // 1
             "  - id: p\n"                               // 2
             "    stages: [{id: a, sla: 1h}]\n"          // 3
             "    kpi_tree:\n"                           // 4
             "      - {id: revenue, product: [n, m]}\n"  // 5
             "      - {id: n, kpi: started}\n"           // 6
             "      - {id: m, sum: [n]}\n"               // 7: n at column 23
             "      - {id: spare, kpi: completed}\n"     // 8: column 9
             "      - {id: other, kpi: revenue}\n"),     // 9
      ElementsAre("t.yaml:7:23: process p: kpi_tree node \"n\" is used by both \"revenue\" "
                  "and \"m\"; a node has one parent",
                  "t.yaml:8:9: process p: kpi_tree has more than one root (\"revenue\", "
                  "\"spare\", \"other\"); every node but the root must be used by another"));
}

TEST(ConfigErrorsTest, KpiTreeCycle) {
  // revenue -> m -> k -> m: the cycle is reported at a node on it, not at revenue.
  EXPECT_THAT(Errors("processes:\n"                              // 1
                     "  - id: p\n"                               // 2
                     "    stages: [{id: a, sla: 1h}]\n"          // 3
                     "    kpi_tree:\n"                           // 4
                     "      - {id: revenue, product: [n, m]}\n"  // 5
                     "      - {id: n, kpi: started}\n"           // 6
                     "      - {id: m, sum: [k]}\n"               // 7: column 9
                     "      - {id: k, ratio: [n, m]}\n"),        // 8
              ElementsAre("t.yaml:7:9: process p: kpi_tree has a cycle through node \"m\""));
  EXPECT_THAT(Errors("processes:\n"                      // 1
                     "  - id: p\n"                       // 2
                     "    stages: [{id: a, sla: 1h}]\n"  // 3
                     "    kpi_tree:\n"                   // 4
                     "      - id: self\n"                // 5: map at column 9
                     "        product: [self]\n"),       // 6
              ElementsAre("t.yaml:5:9: process p: kpi_tree has a cycle through node \"self\""));
}

TEST(ConfigErrorsTest, KpiTreeWrongTypes) {
  EXPECT_THAT(Errors("processes:\n"                      // 1
                     "  - id: p\n"                       // 2
                     "    stages: [{id: a, sla: 1h}]\n"  // 3
                     "    kpi_tree: {id: x}\n"),         // 4: column 15
              ElementsAre("t.yaml:4:15: process p: kpi_tree must be a list of nodes"));
  EXPECT_THAT(Errors("processes:\n"                      // 1
                     "  - id: p\n"                       // 2
                     "    stages: [{id: a, sla: 1h}]\n"  // 3
                     "    kpi_tree:\n"                   // 4
                     "      - [x]\n"                     // 5: column 9
                     "      - {id: y, product: z}\n"),   // 6: "z" at column 26
              ElementsAre("t.yaml:5:9: process p: kpi_tree[0]: expected a mapping",
                          "t.yaml:6:26: process p: kpi_tree[1].product: expected a list",
                          "t.yaml:6:9: process p: kpi_tree[1]: needs exactly one of kpi, "
                          "product, sum, ratio"));
}

TEST(ConfigErrorsTest, SimulateAttributes) {
  EXPECT_THAT(Errors("dimensions: {names: [region, channel]}\n"  // 1
                     "processes:\n"                              // 2
                     "  - id: p\n"                               // 3
                     "    stages: [{id: a, sla: 1h}]\n"          // 4
                     "    simulate:\n"                           // 5
                     "      attributes:\n"                       // 6
                     "        region: []\n"                      // 7: column 17
                     "        segment: [smb, enterprise]\n"      // 8: column 9
                     "        channel: web\n"),                  // 9: column 18
              ElementsAre("t.yaml:7:17: process p: simulate.attributes.region: needs at least "
                          "one value",
                          "t.yaml:8:9: process p: simulate.attributes: \"segment\" is not in "
                          "dimensions.names",
                          "t.yaml:9:18: process p: simulate.attributes.channel: expected a list"));
}

TEST(ConfigErrorsTest, KafkaWithExternalBrokers) {
  EXPECT_THAT(Errors(absl::StrCat("kafka:\n",                          // 1
                                  "  brokers: \"k1:9092,k2:9092\"\n",  // 2
                                  "  partitions: 8\n",                 // 3: column 15
                                  "  bootstrap_file: /tmp/x\n",        // 4: column 19
                                  "  topic: events\n",                 // 5
                                  "  dead_letter_topic: events\n",     // 6: column 22
                                  kMinimal)),
              ElementsAre("t.yaml:6:22: kafka.dead_letter_topic: must differ from kafka.topic",
                          "t.yaml:3:15: kafka.partitions: only meaningful with brokers: embedded",
                          "t.yaml:4:19: kafka.bootstrap_file: only meaningful with brokers: "
                          "embedded"));
}

TEST(ConfigErrorsTest, KafkaNamesAndProperties) {
  EXPECT_THAT(
      Errors(absl::StrCat("kafka:\n",                         // 1
                          "  brokers: \"\"\n",                // 2: column 12
                          "  topic: \"bad topic\"\n",         // 3: column 10
                          "  group_id: \"\"\n",               // 4: column 13
                          "  dead_letter_topic: \"dl/q\"\n",  // 5: column 22
                          "  properties:\n",                  // 6
                          "    security.protocol: SSL\n",     // 7
                          "    ssl.ca.location: [a]\n",       // 8: column 22
                          "    ~: x\n",                       // 9: column 5
                          kMinimal)),
      ElementsAre("t.yaml:2:12: kafka.brokers: must not be empty",
                  "t.yaml:3:10: kafka.topic: \"bad topic\" is not a valid topic name",
                  "t.yaml:5:22: kafka.dead_letter_topic: \"dl/q\" is not a valid topic name",
                  "t.yaml:4:13: kafka.group_id: must not be empty",
                  "t.yaml:8:22: kafka.properties.ssl.ca.location: expected a string",
                  "t.yaml:9:5: kafka.properties: keys must be strings"));
  // An empty topic is one error, not also a clash with the (absent) dead-letter topic.
  EXPECT_THAT(Errors(absl::StrCat("kafka: {topic: \"\"}\n", kMinimal)),  // column 16
              ElementsAre("t.yaml:1:16: kafka.topic: \"\" is not a valid topic name"));
}

TEST(ConfigErrorsTest, StateTopic) {
  EXPECT_THAT(Errors(absl::StrCat("kafka:\n",                 // 1
                                  "  topic: events\n",        // 2
                                  "  state_topic: events\n",  // 3: column 16
                                  kMinimal)),
              ElementsAre("t.yaml:3:16: kafka.state_topic: must differ from kafka.topic and "
                          "kafka.dead_letter_topic"));
  EXPECT_THAT(Errors(absl::StrCat("kafka:\n",                   // 1
                                  "  dead_letter_topic: dl\n",  // 2
                                  "  state_topic: dl\n",        // 3: column 16
                                  kMinimal)),
              ElementsAre("t.yaml:3:16: kafka.state_topic: must differ from kafka.topic and "
                          "kafka.dead_letter_topic"));
  EXPECT_THAT(Errors(absl::StrCat("kafka: {state_topic: \"a b\"}\n", kMinimal)),  // column 22
              ElementsAre("t.yaml:1:22: kafka.state_topic: \"a b\" is not a valid topic name"));
  absl::StatusOr<Config> config =
      ParseConfig(absl::StrCat("kafka: {state_topic: kpid-state}\n", kMinimal), "t.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->kafka.state_topic, "kpid-state");
}

TEST(ConfigErrorsTest, WrongNodeTypes) {
  EXPECT_THAT(
      Errors("kafka: [embedded]\n"             // 1: column 8
             "http: 9464\n"                    // 2: column 7
             "windows: {short: 5m}\n"          // 3: column 10
             "dimensions: {names: region}\n"   // 4: column 21
             "rules: \"rules/*.yaml\"\n"       // 5: column 8
             "processes:\n"                    // 6
             "  - just_a_name\n"               // 7: column 5
             "  - id: p\n"                     // 8
             "    stages: {id: a, sla: 1h}\n"  // 9: column 13
             "  - id: q\n"                     // 10
             "    stages:\n"                   // 11
             "      - [a, 1h]\n"               // 12: column 9
             "    simulate: [1]\n"),           // 13: column 15
      ElementsAre("t.yaml:1:8: kafka: expected a mapping", "t.yaml:2:7: http: expected a mapping",
                  "t.yaml:3:10: windows: expected a non-empty list of durations",
                  "t.yaml:4:21: dimensions.names: expected a list",
                  "t.yaml:7:5: processes[0]: expected a mapping",
                  "t.yaml:9:13: process p: stages must be a non-empty list",
                  "t.yaml:12:9: process q: stages[0]: expected a mapping",
                  "t.yaml:13:15: process q: simulate: expected a mapping",
                  "t.yaml:5:8: rules: expected a list"));
  EXPECT_THAT(Errors("processes: {id: p}\n"),  // column 12
              ElementsAre("t.yaml:1:12: processes: expected a non-empty list"));
  EXPECT_THAT(Errors("processes: []\n"),
              ElementsAre("t.yaml:1:12: processes: expected a non-empty list"));
  // A value left empty is null, not a list. yaml-cpp marks a null at the next
  // token (here the end of input, 2:1), not at the key: a known limitation.
  EXPECT_THAT(Errors("processes:\n"),
              ElementsAre("t.yaml:2:1: processes: expected a non-empty list"));
}

TEST(ConfigErrorsTest, ManyErrorsAtOnce) {
  // One bad value per section; every one is reported, the cycle included.
  EXPECT_THAT(Errors("kafka: {partitions: 0}\n"         // 1: column 21
                     "clock: sometimes\n"               // 2: column 8
                     "windows: [90s]\n"                 // 3: column 11
                     "processes:\n"                     // 4
                     "  - id: p\n"                      // 5
                     "    stages:\n"                    // 6
                     "      - {id: a, sla: 0}\n"        // 7: column 22
                     "    kpi_tree:\n"                  // 8
                     "      - {id: x, product: [x]}\n"  // 9: column 9
                     "alertmanagers: [localhost]\n"     // 10: column 17
                     "bogus: 1\n"),                     // 11
              ElementsAre("t.yaml:1:21: kafka.partitions: 0 is out of range [1, 1024]",
                          "t.yaml:2:8: clock: \"sometimes\" is not wall or event",
                          "t.yaml:3:11: windows[0]: 90s must be a whole number of minutes, >= 1m",
                          "t.yaml:7:22: process p: stages[0].sla: must be greater than 0",
                          "t.yaml:9:9: process p: kpi_tree has a cycle through node \"x\"",
                          "t.yaml:10:17: alertmanagers[0]: \"localhost\" is not an http:// or "
                          "https:// URL",
                          "t.yaml:11:1: unknown key \"bogus\""));
}

// ---------------------------------------------------------------------------
// Files

class LoadConfigFileTest : public ::testing::Test {
 protected:
  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = ::testing::TempDir() + "/config_test_" + name;
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }
};

TEST_F(LoadConfigFileTest, MissingFile) {
  const std::string path = ::testing::TempDir() + "/config_test_does_not_exist.yaml";
  absl::StatusOr<Config> config = LoadConfigFile(path);
  EXPECT_EQ(config.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(config.status().message(), path + ": cannot open file");
}

TEST_F(LoadConfigFileTest, Directory) {
  absl::StatusOr<Config> config = LoadConfigFile(ExamplesDir());
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(config.status().message(), ExamplesDir() + ": is a directory, not a file");
}

TEST_F(LoadConfigFileTest, ErrorsNameThePath) {
  const std::string path = Write("bad.yaml", absl::StrCat("clock: never\n", kMinimal));
  absl::StatusOr<Config> config = LoadConfigFile(path);
  EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(config.status().message(), path + ":1:8: clock: \"never\" is not wall or event");
}

TEST_F(LoadConfigFileTest, EmptyFile) {
  const std::string path = Write("empty.yaml", "");
  absl::StatusOr<Config> config = LoadConfigFile(path);
  EXPECT_EQ(config.status().message(), path + ": empty configuration");
}

TEST_F(LoadConfigFileTest, SetsSourcePath) {
  const std::string path = Write("good.yaml", kMinimal);
  absl::StatusOr<Config> config = LoadConfigFile(path);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->source_path, path);
}

}  // namespace
}  // namespace kpid::model
