// Builds kpid.v1.Snapshot messages (GetSnapshot / WatchSnapshots) from the
// aggregator's read side: every KPI of DESIGN §3 per process and stage, per
// window asked, ending `offset` before now.
//
//   SnapshotReader reader({.config = &config, .shards = shards, .dimensions = tables,
//                          .clock = &reader_clock, .watermark = [&] { ... }});
//   absl::StatusOr<v1::Snapshot> s = reader.Read(request);  // INVALID_ARGUMENT on a bad request
//
// Per-dimension reads group series across workers by their dimension values
// (each worker interns values in its own DimensionTable), as the exporter
// does. Quantiles and KPI tree values exist for all dimensions together only
// (the aggregator keeps distributions per stage and process), so a
// dimension-filtered snapshot leaves them unset.
//
// Thread-safe: Read only reads the shards and tables through their lock-free
// reader APIs; it never blocks the ingest workers. `cancelled` lets a caller
// give up between processes (a gRPC deadline).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/optional.h"
#include "daemon/aggregate/merged_reader.h"
#include "daemon/aggregate/shard_set.h"
#include "daemon/api/snapshot_window.h"
#include "daemon/cases/clock.h"
#include "daemon/cases/dimension_table.h"
#include "daemon/kpitree/kpi_tree.h"
#include "daemon/model/config.h"
#include "kpid/v1/kpi_service.pb.h"

namespace kpid::api {

// A process's KPI tree evaluated over a window, node by node in config order
// (kpitree::KpiTreeEvaluator::Evaluate in the daemon; fakes in tests), with
using KpiTreeNodeValue = kpitree::NodeValue;

class SnapshotReader {
 public:
  struct Options {
    const model::Config* config = nullptr;
    // The current shards, taken once per Read (the daemon's engines come
    // and go with partitions). When empty, `shards` (at least one) and
    // `dimensions` (per shard) are read, and must outlive the reader.
    aggregate::ShardSource shard_source;
    std::vector<const aggregate::AggregateShard*> shards;
    std::vector<const cases::DimensionTable*> dimensions;
    // "Now": windows end here (wall clock, or the latest event time).
    const cases::Clock* clock = nullptr;
    // Latest event time seen; may be empty (no watermark in snapshots).
    std::function<absl::optional<absl::Time>()> watermark;
    // Of the values each window was read as, for the config the shards are
    // shaped by. May be empty: snapshots then carry no KPI tree values.
    WindowKpiTree kpi_tree;
    // This replica's id (config replica_id), named in Snapshot.replicas
    // with the partitions read and those still restoring.
    std::string replica;
  };

  // Everything in `options` must outlive the reader.
  explicit SnapshotReader(Options options);

  // The request checked against the config: INVALID_ARGUMENT with a message
  // naming what is wrong (unknown process, window not configured, offset
  // beyond retention, unknown dimension, malformed duration).
  absl::Status Validate(const v1::GetSnapshotRequest& request) const;
  // Against `config`: what Read does, with the config of the shards it reads.
  static absl::Status Validate(const model::Config& config, const v1::GetSnapshotRequest& request);

  // Validate, then read. `cancelled`, when given, is polled between
  // processes; once true, Read returns CANCELLED.
  absl::StatusOr<v1::Snapshot> Read(const v1::GetSnapshotRequest& request,
                                    const std::function<bool()>& cancelled = nullptr) const;

  absl::Time Now() const { return options_.clock->Now(); }
  // The config the engines are shaped by now (a reload may reshape them:
  // see aggregate::ShardSet::config); Options::config for fixed shards.
  std::shared_ptr<const model::Config> config() const;

 private:
  void ReadProcess(const model::Config& config, const aggregate::ShardSet& set,
                   const aggregate::MergedReader& reader, int process,
                   const v1::GetSnapshotRequest& request, absl::Time as_of,
                   const std::vector<int>& windows, v1::ProcessSnapshot* out) const;
  // Series of `process` whose dimension values match the request's filter.
  std::vector<aggregate::MergedReader::SeriesRef> MatchingSeries(
      const model::Config& config, const aggregate::ShardSet& set,
      const aggregate::MergedReader& reader, int process,
      const v1::GetSnapshotRequest& request) const;

  Options options_;
  aggregate::ShardSource shards_;
};

}  // namespace kpid::api
