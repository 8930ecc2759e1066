// The live partition engines of the daemon: ingest opens and closes them as
// Kafka assigns and revokes partitions (ingest::PartitionHandlers); readers
// (exporter, rule engine, gRPC) take the current set once per read.
//
//   EngineRegistry registry({.config = &config, .board = &board,
//                            .state_dir = "/var/lib/kpid"});
//   ingest options.partitions = &registry;
//   EngineMetrics metrics(&config, registry.Source(), &clock);
//   ...
//   ingest->Stop();       // closes every partition after a final checkpoint
//   registry.Flush();     // the final checkpoints are on disk
//
// Open restores a partition from `<state_dir>/<topic>-<partition>.state`
// (or its .prev when that is truncated or corrupt, counted), and says at
// which offset the restored state ends, so ingest resumes exactly there.
// Without a state_dir, or without a file, the engine starts empty at the
// group's committed offset. An engine closed by an eager rebalance is kept
// (and still read) until the next assignment: it resumes at its own offset
// if that gives it back, else it is dropped.
//
// Thread safety: Open, Close and DropKept come from ingest's poll thread;
// Shards, Stats and Collect from any thread. One mutex guards the set; it
// is taken on assign/revoke and once per read, never on the event path.
// A set handed to a reader keeps its engines alive (ShardSet::keep_alive):
// a revoked engine is freed when the last reader using it is done.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "daemon/aggregate/shard_set.h"
#include "daemon/cases/clock.h"
#include "daemon/cases/series_admission.h"
#include "daemon/engine/checkpoint_writer.h"
#include "daemon/engine/partition_engine.h"
#include "daemon/ingest/event_handler.h"
#include "daemon/model/config.h"
#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"

namespace kpid::engine {

class EngineRegistry final : public ingest::PartitionHandlers, public prometheus::Collectable {
 public:
  struct Options {
    const model::Config* config = nullptr;  // must outlive the registry
    // clock: event: every partition's watermark (must outlive the registry).
    cases::WatermarkBoard* board = nullptr;
    // Where partition states are kept (made if missing); empty: nowhere.
    std::string state_dir;
  };

  // How Open found a partition's state, for kpid_state_restores_total.
  enum class RestoreResult { kRestored, kPrevious, kCorrupt, kNone, kCount };

  explicit EngineRegistry(Options options);
  ~EngineRegistry() override;

  Opened Open(int32_t partition, int partition_count) override;
  void Close(int32_t partition, bool keep) override;
  void DropKept() override;

  // The engines' shards, tables and open-case views (at least one shard:
  // an empty one while no partition is assigned).
  aggregate::ShardSet Shards() const;
  aggregate::ShardSource Source() const {
    return [this] { return Shards(); };
  }
  // Ingest's counts of every engine's partition.
  std::vector<std::shared_ptr<const ingest::PartitionStats>> Stats() const;

  // Returns once every checkpoint handed over so far is written.
  void Flush();

  // kpid_state_checkpoints_total{result}, kpid_state_checkpoint_duration_seconds,
  // kpid_state_checkpoint_bytes, kpid_state_restores_total{result}.
  std::vector<prometheus::MetricFamily> Collect() const override;

  // `<state_dir>/<topic>-<partition>.state`.
  std::string StatePath(int32_t partition) const;

 private:
  PartitionEngine::Options EngineOptions(int32_t partition, int partition_count);
  // A partition's engine from its state file; `next_offset` where it ends.
  std::shared_ptr<PartitionEngine> RestoreFromFile(const PartitionEngine::Options& options);
  // Where a newly opened engine starts reading (see kFromBeginning).
  int64_t StartOffset(const PartitionEngine& engine) const;
  void Count(RestoreResult result);

  Options options_;
  std::unique_ptr<CheckpointWriter> writer_;  // with a state_dir
  // max_series_per_process across every partition's DimensionTable.
  cases::SeriesAdmission series_admission_;
  // What readers get while no engine is live.
  const cases::DimensionTable empty_table_;
  const aggregate::AggregateShard empty_shard_;

  mutable std::mutex mu_;  // std::mutex: visible to ThreadSanitizer
  std::map<int32_t, std::shared_ptr<PartitionEngine>> live_;
  std::map<int32_t, std::shared_ptr<PartitionEngine>> kept_;
  uint64_t generation_ = 1;

  std::array<std::atomic<uint64_t>, static_cast<size_t>(RestoreResult::kCount)> restores_{};
};

}  // namespace kpid::engine
