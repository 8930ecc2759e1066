#include "daemon/reload/config_diff.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace kpid::reload {
namespace {

// `processes` without the kpi-loadgen knobs, which the daemon ignores.
std::vector<model::ProcessConfig> WithoutSimulation(std::vector<model::ProcessConfig> processes) {
  for (model::ProcessConfig& process : processes) {
    process.simulate = {};
    for (model::StageConfig& stage : process.stages) stage.simulate = {};
  }
  return processes;
}

// `config` without what a reload may change: what must stay equal.
model::Config RestartShape(const model::Config& config) {
  model::Config shape = config;
  shape.source_path.clear();
  shape.rules.clear();
  shape.reload_token_file.clear();
  shape.alertmanagers.clear();
  shape.alerting = {};
  // Applied live by reshaping the engines (EngineReshapeChanges).
  shape.processes.clear();
  shape.dimensions = {};
  return shape;
}

class ChangeList {
 public:
  template <typename T>
  void Compare(const T& a, const T& b, std::string key) {
    if (!(a == b)) keys_.push_back(std::move(key));
  }
  std::vector<std::string> Take() { return std::move(keys_); }

 private:
  std::vector<std::string> keys_;
};

}  // namespace

std::vector<std::string> EngineReshapeChanges(const model::Config& running,
                                              const model::Config& next) {
  ChangeList changes;
  changes.Compare(running.dimensions.names, next.dimensions.names, "dimensions.names");
  changes.Compare(running.dimensions.max_series_per_process, next.dimensions.max_series_per_process,
                  "dimensions.max_series_per_process");
  changes.Compare(WithoutSimulation(running.processes), WithoutSimulation(next.processes),
                  "processes");
  return changes.Take();
}

std::vector<std::string> RestartRequiredChanges(const model::Config& running,
                                                const model::Config& next) {
  const model::Config a = RestartShape(running);
  const model::Config b = RestartShape(next);
  if (a == b) return {};

  ChangeList changes;
  changes.Compare(a.kafka.brokers, b.kafka.brokers, "kafka.brokers");
  changes.Compare(a.kafka.topic, b.kafka.topic, "kafka.topic");
  changes.Compare(a.kafka.group_id, b.kafka.group_id, "kafka.group_id");
  changes.Compare(a.kafka.partitions, b.kafka.partitions, "kafka.partitions");
  changes.Compare(a.kafka.bootstrap_file, b.kafka.bootstrap_file, "kafka.bootstrap_file");
  changes.Compare(a.kafka.dead_letter_topic, b.kafka.dead_letter_topic, "kafka.dead_letter_topic");
  changes.Compare(a.kafka.state_topic, b.kafka.state_topic, "kafka.state_topic");
  changes.Compare(a.kafka.workers, b.kafka.workers, "kafka.workers");
  changes.Compare(a.kafka.max_message_bytes, b.kafka.max_message_bytes, "kafka.max_message_bytes");
  changes.Compare(a.kafka.properties, b.kafka.properties, "kafka.properties");
  changes.Compare(a.http_listen, b.http_listen, "http.listen");
  changes.Compare(a.http_tls, b.http_tls, "http.tls");
  changes.Compare(a.grpc_listen, b.grpc_listen, "grpc.listen");
  changes.Compare(a.grpc_api.snapshot_cache_ttl, b.grpc_api.snapshot_cache_ttl,
                  "grpc.snapshot_cache_ttl");
  changes.Compare(a.grpc_api.max_concurrent_snapshot_reads,
                  b.grpc_api.max_concurrent_snapshot_reads, "grpc.max_concurrent_snapshot_reads");
  changes.Compare(a.grpc_api.snapshot_calls_per_second, b.grpc_api.snapshot_calls_per_second,
                  "grpc.snapshot_calls_per_second");
  changes.Compare(a.grpc_api.max_queued_snapshot_calls, b.grpc_api.max_queued_snapshot_calls,
                  "grpc.max_queued_snapshot_calls");
  changes.Compare(a.grpc_api.max_watch_streams, b.grpc_api.max_watch_streams,
                  "grpc.max_watch_streams");
  changes.Compare(a.grpc_tls, b.grpc_tls, "grpc.tls");
  changes.Compare(a.clock, b.clock, "clock");
  changes.Compare(a.windows, b.windows, "windows");
  changes.Compare(a.retention, b.retention, "retention");
  changes.Compare(a.case_ttl, b.case_ttl, "case_ttl");
  changes.Compare(a.dedup_horizon, b.dedup_horizon, "dedup_horizon");
  changes.Compare(a.max_future_skew, b.max_future_skew, "max_future_skew");
  changes.Compare(a.max_past_age, b.max_past_age, "max_past_age");
  changes.Compare(a.max_abs_value, b.max_abs_value, "max_abs_value");
  changes.Compare(a.max_open_cases, b.max_open_cases, "max_open_cases");
  changes.Compare(a.state_dir, b.state_dir, "state_dir");
  changes.Compare(a.checkpoint_interval, b.checkpoint_interval, "checkpoint_interval");
  changes.Compare(a.max_dedup_ids, b.max_dedup_ids, "max_dedup_ids");
  changes.Compare(a.max_closed_cases, b.max_closed_cases, "max_closed_cases");
  changes.Compare(a.replica_id, b.replica_id, "replica_id");
  changes.Compare(a.peers, b.peers, "peers");
  std::vector<std::string> keys = changes.Take();
  // A key Config gained without being named above still counts.
  if (keys.empty()) keys.push_back("the configuration");
  return keys;
}

}  // namespace kpid::reload
