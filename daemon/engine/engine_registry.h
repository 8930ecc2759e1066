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
// (or its .prev when that is truncated or corrupt, counted) and, with a
// state topic, from the topic's newest complete generation when that is
// newer than the file (a larger next offset: the partition was last owned
// by another replica, or this one's disk is gone); it says at which offset
// the restored state ends, so ingest resumes exactly there. Without durable
// state the engine starts empty at the group's committed offset; with
// durable state but none found, at the partition's beginning.
// Restores run on the registry's restore threads (4 at a time), never on
// the caller's: OpenAsync returns at once, so a rebalance does too, and
// hands each restored engine over when it is ready (Open and OpenAll wait
// for them). While they restore, readers get the other engines and the
// restoring partitions' numbers (ShardSet::restoring: answers are partial,
// /readyz waits). A Close of a partition still restoring discards its
// restore: the engine is never handed over, read or checkpointed. An engine
// closed by an eager rebalance is kept (and still read) until the next
// assignment: it resumes at its own offset if that gives it back, else it
// is dropped.
// The engines' dimension tables share one SeriesAdmission per config (the
// replica's max_series_per_process); an engine gives its combinations back
// when it is freed (revoked, dropped, reshaped, a discarded restore), so the
// bound counts the partitions this replica holds.
//
// Thread safety: Open, OpenAsync, Close and DropKept come from ingest's poll
// thread; Reshape from a reload, while ingest holds the workers and
// rebalances (KafkaIngest::SwapHandlers); Shards, Stats and Collect from any
// thread. One mutex guards the set; it is taken on assign/revoke, once per
// restore and once per read, never on the event path. A set handed to a
// reader keeps its engines alive (ShardSet::keep_alive): a revoked engine is
// freed when the last reader using it is done.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "daemon/aggregate/shard_set.h"
#include "daemon/cases/clock.h"
#include "daemon/cases/series_admission.h"
#include "daemon/common/mutex.h"
#include "daemon/engine/checkpoint_writer.h"
#include "daemon/engine/partition_engine.h"
#include "daemon/engine/state_topic.h"
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
    // The state topic (kafka.state_topic); null: none. Must outlive the registry.
    StateTopic* state_topic = nullptr;
    // Tests: called on a restore thread before each partition's restore
    // (a slow restore).
    std::function<void(int32_t partition)> before_restore = nullptr;
  };

  // How Open found a partition's state, for kpid_state_restores_total:
  // where from, and how.
  enum class RestoreSource { kFile, kTopic, kNone, kCount };
  enum class RestoreResult { kRestored, kPrevious, kCorrupt, kNone, kCount };
  // Upper bounds (seconds) of kpid_state_restore_duration_seconds' buckets.
  static constexpr double kRestoreBuckets[] = {0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300};

  explicit EngineRegistry(Options options);
  ~EngineRegistry() override;

  Opened Open(int32_t partition, int partition_count) override;
  std::vector<Opened> OpenAll(const std::vector<int32_t>& partitions, int partition_count) override;
  std::vector<Opened> OpenAsync(const std::vector<int32_t>& partitions, int partition_count,
                                Restored restored) override;
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

  // Partitions assigned whose state is still being restored.
  int restoring() const;

  // A reload that changed processes, stages or dimensions: every engine,
  // live or kept, moved into an engine for `next` (PartitionEngine::Reshape)
  // as of `next_offsets[partition]` (a kept engine: its own offset), then
  // readers switched to the new engines and `next` in one step (Shards()
  // never pairs an engine with a config of another shape). Call while no
  // worker writes: ingest::KafkaIngest::SwapHandlers' swap, which then has
  // the workers adopt the returned live engines. An engine whose state does
  // not reshape: an error, nothing changed. What was dropped is counted in
  // kpid_reload_dropped_total. Not concurrently with Open/Close/DropKept.
  absl::StatusOr<std::map<int32_t, std::shared_ptr<ingest::PartitionHandler>>> Reshape(
      std::shared_ptr<const model::Config> next, const std::map<int32_t, int64_t>& next_offsets);
  // The config the engines are now shaped by.
  std::shared_ptr<const model::Config> config() const;

  // Returns once every checkpoint handed over so far is written (and
  // delivered to the state topic, or failed).
  void Flush();

  // kpid_state_checkpoints_total{result}, kpid_state_checkpoint_duration_seconds,
  // kpid_state_checkpoint_bytes, kpid_state_topic_checkpoints_total{result},
  // kpid_state_topic_checkpoint_duration_seconds, kpid_state_topic_producers_recreated_total,
  // kpid_state_restores_total{result,source},
  // kpid_state_restore_partitions{state}, kpid_state_restore_bytes_total{source},
  // kpid_state_restore_duration_seconds, kpid_reload_dropped_total{what}.
  std::vector<prometheus::MetricFamily> Collect() const override;

  // `<state_dir>/<topic>-<partition>.state`.
  std::string StatePath(int32_t partition) const;

 private:
  PartitionEngine::Options EngineOptions(const model::Config* config,
                                         std::shared_ptr<cases::SeriesAdmission> series_admission,
                                         int32_t partition, int partition_count);
  // A partition's engine from its state file and the state topic, or empty;
  // where it came from in `source` and `result`.
  std::shared_ptr<PartitionEngine> Restore(const PartitionEngine::Options& options,
                                           RestoreSource* source, RestoreResult* result);
  // A restore thread: runs queued restores until the registry is destroyed.
  void RestoreLoop();
  // Queues every partition restoring for a restore (a new one: whatever
  // ran before is discarded when it ends).
  void RequeueRestores() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // From the state file (or .prev: `from_previous`); null when none is
  // usable (`rejected` then says whether one existed).
  std::shared_ptr<PartitionEngine> RestoreFromFile(const PartitionEngine::Options& options,
                                                   bool* rejected, bool* from_previous);
  // From the state topic's newest complete generation when its next offset
  // is beyond `file_offset`; else null.
  std::shared_ptr<PartitionEngine> RestoreFromTopic(const PartitionEngine::Options& options,
                                                    int64_t file_offset, bool* rejected);
  // Where a newly opened engine starts reading (see kFromBeginning).
  int64_t StartOffset(const PartitionEngine& engine) const;
  void Count(RestoreSource source, RestoreResult result);
  bool durable() const { return writer_ != nullptr; }

  Options options_;
  std::unique_ptr<CheckpointWriter> writer_;  // with a state_dir
  // What readers get while no engine is live, for one config.
  struct Empty {
    explicit Empty(const model::Config& config) : table(config), shard(config) {}
    const cases::DimensionTable table;
    const aggregate::AggregateShard shard;
  };

  mutable kpid::Mutex mu_;
  // Current: the options' config (not owned) until a Reshape. Every config
  // the engines were ever shaped by stays alive: an engine a reader still
  // holds refers to its own.
  std::shared_ptr<const model::Config> config_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<const model::Config>> retired_configs_ ABSL_GUARDED_BY(mu_);
  // max_series_per_process across every partition's DimensionTable, for
  // config_ (a retired one lives on with the engines that use it). Engines
  // hold references to the combinations they use, released when they are
  // freed: revoked, reshaped, discarded or shut down.
  std::shared_ptr<cases::SeriesAdmission> series_admission_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<const Empty> empty_ ABSL_GUARDED_BY(mu_);
  int partition_count_ ABSL_GUARDED_BY(mu_) = 0;  // of the latest Open
  std::map<int32_t, std::shared_ptr<PartitionEngine>> live_ ABSL_GUARDED_BY(mu_);
  std::map<int32_t, std::shared_ptr<PartitionEngine>> kept_ ABSL_GUARDED_BY(mu_);
  // A partition assigned and not restored yet: which restore counts (a
  // restore of another id that ends is discarded), and whom it goes to.
  struct Restoring {
    uint64_t id = 0;
    int partition_count = 0;
    Restored restored;
  };
  std::map<int32_t, Restoring> restoring_ ABSL_GUARDED_BY(mu_);
  uint64_t last_restore_id_ ABSL_GUARDED_BY(mu_) = 0;
  // Restores to run, by partition and id, for the restore threads.
  std::deque<std::pair<int32_t, uint64_t>> restore_queue_ ABSL_GUARDED_BY(mu_);
  kpid::CondVar restore_queued_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> restore_threads_ ABSL_GUARDED_BY(mu_);
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 1;
  // Restore durations: cumulative counts per kRestoreBuckets bound, sum, count.
  std::array<uint64_t, std::size(kRestoreBuckets)> restore_buckets_ ABSL_GUARDED_BY(mu_){};
  double restore_seconds_sum_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t restore_count_ ABSL_GUARDED_BY(mu_) = 0;

  std::array<std::array<std::atomic<uint64_t>, static_cast<size_t>(RestoreResult::kCount)>,
             static_cast<size_t>(RestoreSource::kCount)>
      restores_{};
  std::array<std::atomic<uint64_t>, static_cast<size_t>(RestoreSource::kCount)> restore_bytes_{};
  // kpid_reload_dropped_total{what}.
  enum class Dropped { kProcess, kStage, kOpenCases, kSeries, kCount };
  std::array<std::atomic<uint64_t>, static_cast<size_t>(Dropped::kCount)> reload_dropped_{};
};

}  // namespace kpid::engine
