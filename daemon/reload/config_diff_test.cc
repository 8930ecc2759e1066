#include "daemon/reload/config_diff.h"

#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kpid::reload {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr char kConfig[] = R"(
kafka: {brokers: embedded, topic: events, partitions: 2}
http: {listen: "127.0.0.1:9464"}
windows: [5m, 1h]
retention: 1d
dimensions: {names: [region]}
processes:
  - id: sales
    stages:
      - {id: lead, sla: 1h, simulate: {fallout: 0.1}}
      - {id: quote, sla: 1d}
    simulate: {arrivals_per_hour: 60}
rules: ["rules/*.yaml"]
)";

model::Config Parse(const std::string& yaml) {
  absl::StatusOr<model::Config> config = model::ParseConfig(yaml, "kpid.yaml");
  EXPECT_TRUE(config.ok()) << config.status();
  return config.ok() ? *config : model::Config{};
}

// `kConfig` with one piece of text replaced.
model::Config Edited(const std::string& from, const std::string& to) {
  const std::string yaml = absl::StrReplaceAll(kConfig, {{from, to}});
  EXPECT_NE(yaml, kConfig) << from;
  return Parse(yaml);
}

TEST(ConfigDiffTest, TheSameConfigNeedsNoRestart) {
  EXPECT_THAT(RestartRequiredChanges(Parse(kConfig), Parse(kConfig)), IsEmpty());
}

TEST(ConfigDiffTest, ReloadableKeysNeedNoRestart) {
  const model::Config running = Parse(kConfig);
  EXPECT_THAT(RestartRequiredChanges(running, Edited("rules/*.yaml", "other/*.yaml")), IsEmpty());
  EXPECT_THAT(
      RestartRequiredChanges(running, Edited(R"(listen: "127.0.0.1:9464"})",
                                             R"(listen: "127.0.0.1:9464", reload_token_file: t})")),
      IsEmpty());
  // The notifier is rebuilt.
  EXPECT_THAT(
      RestartRequiredChanges(
          running, Edited("rules: [", "alertmanagers: [\"http://127.0.0.1:9093\"]\nrules: [")),
      IsEmpty());
  EXPECT_THAT(RestartRequiredChanges(
                  running, Edited("rules: [", "alerting: {resend_interval: 2m}\nrules: [")),
              IsEmpty());
  // kpi-loadgen's knobs: the daemon ignores them.
  EXPECT_THAT(RestartRequiredChanges(running, Edited("fallout: 0.1", "fallout: 0.3")), IsEmpty());
  EXPECT_THAT(
      RestartRequiredChanges(running, Edited("arrivals_per_hour: 60", "arrivals_per_hour: 5")),
      IsEmpty());
  model::Config moved = running;
  moved.source_path = "/etc/kpid/kpid.yaml";
  EXPECT_THAT(RestartRequiredChanges(running, moved), IsEmpty());
}

TEST(ConfigDiffTest, RestartOnlyKeysAreNamed) {
  const model::Config running = Parse(kConfig);
  EXPECT_THAT(RestartRequiredChanges(running, Edited("topic: events", "topic: other")),
              ElementsAre("kafka.topic"));
  EXPECT_THAT(RestartRequiredChanges(running, Edited("partitions: 2", "partitions: 3")),
              ElementsAre("kafka.partitions"));
  EXPECT_THAT(RestartRequiredChanges(running, Edited("[5m, 1h]", "[5m, 1h, 1d]")),
              ElementsAre("windows"));
  EXPECT_THAT(RestartRequiredChanges(running, Edited("127.0.0.1:9464", "127.0.0.1:9465")),
              ElementsAre("http.listen"));
  EXPECT_THAT(RestartRequiredChanges(running, Edited("retention: 1d",
                                                     "retention: 1d\ngrpc: {snapshot_cache_ttl: 0, "
                                                     "max_watch_streams: 4}")),
              ElementsAre("grpc.snapshot_cache_ttl", "grpc.max_watch_streams"));
  EXPECT_THAT(
      RestartRequiredChanges(
          running, Edited(R"(listen: "127.0.0.1:9464"})",
                          R"(listen: "127.0.0.1:9464", tls: {cert_file: c, key_file: k}})")),
      ElementsAre("http.tls"));
  EXPECT_THAT(RestartRequiredChanges(running, Edited("retention: 1d",
                                                     "retention: 1d\ngrpc: {tls: {cert_file: c, "
                                                     "key_file: k, client_ca_file: ca}}")),
              ElementsAre("grpc.tls"));
  EXPECT_THAT(
      RestartRequiredChanges(running, Edited("retention: 1d", "retention: 2d\nclock: event")),
      ElementsAre("clock", "retention"));
  // A live-reshapable change alongside does not hide the restart-only one.
  model::Config both = Edited("[5m, 1h]", "[5m]");
  both.dimensions.names.clear();
  EXPECT_THAT(RestartRequiredChanges(running, both), ElementsAre("windows"));
}

// Every kind of processes / dimensions change: no restart, and named by
// EngineReshapeChanges (the engines are reshaped).
TEST(ConfigDiffTest, ProcessAndDimensionChangesReshapeTheEnginesLive) {
  const model::Config running = Parse(kConfig);
  EXPECT_THAT(EngineReshapeChanges(running, Parse(kConfig)), IsEmpty());
  const std::vector<std::pair<std::string, std::string>> edits = {
      // SLA.
      {"{id: quote, sla: 1d}", "{id: quote, sla: 2d}"},
      // A stage added, one removed, the stages reordered.
      {"      - {id: quote, sla: 1d}\n",
       "      - {id: quote, sla: 1d}\n      - {id: won, sla: 1h}\n"},
      {"      - {id: quote, sla: 1d}\n", ""},
      {"      - {id: lead, sla: 1h, simulate: {fallout: 0.1}}\n      - {id: quote, sla: 1d}\n",
       "      - {id: quote, sla: 1d}\n      - {id: lead, sla: 1h}\n"},
      // A process added.
      {"    simulate: {arrivals_per_hour: 60}\n",
       "  - id: support\n    stages: [{id: open, sla: 1h}]\n"},
  };
  for (const auto& [from, to] : edits) {
    const model::Config next = Edited(from, to);
    EXPECT_THAT(RestartRequiredChanges(running, next), IsEmpty()) << to;
    EXPECT_THAT(EngineReshapeChanges(running, next), ElementsAre("processes")) << to;
  }
  const model::Config more_dims = Edited("names: [region]", "names: [region, channel]");
  EXPECT_THAT(RestartRequiredChanges(running, more_dims), IsEmpty());
  EXPECT_THAT(EngineReshapeChanges(running, more_dims), ElementsAre("dimensions.names"));
  const model::Config fewer_series =
      Edited("names: [region]", "names: [region], max_series_per_process: 10");
  EXPECT_THAT(EngineReshapeChanges(running, fewer_series),
              ElementsAre("dimensions.max_series_per_process"));
  // kpi-loadgen's knobs reshape nothing.
  EXPECT_THAT(EngineReshapeChanges(running, Edited("fallout: 0.1", "fallout: 0.3")), IsEmpty());
}

TEST(ConfigDiffTest, MapsAndNestedListsCompareByValue) {
  model::Config running = Parse(kConfig);
  model::Config next = running;
  next.kafka.properties["security.protocol"] = "ssl";
  EXPECT_THAT(RestartRequiredChanges(running, next), ElementsAre("kafka.properties"));
  next = running;
  model::KpiTreeNode leads;
  leads.id = "leads";
  leads.kpi = "started";
  next.processes[0].kpi_tree.push_back(leads);
  EXPECT_THAT(RestartRequiredChanges(running, next), IsEmpty());
  EXPECT_THAT(EngineReshapeChanges(running, next), ElementsAre("processes"));
}

}  // namespace
}  // namespace kpid::reload
