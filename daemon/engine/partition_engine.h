// One Kafka partition's engine: its case tracker and what the tracker
// writes (the dimension table and aggregator shard) and reads (its clock),
// with ingest's counts of the partition's messages. Made when the partition
// is assigned, dropped when it is revoked; the KPIs of the daemon are the
// sum over its engines (aggregate::MergedReader).
//
//   PartitionEngine engine({.config = &config, .partition = 3, .board = &board});
//   engine.Handle(event);                // worker thread (ingest::PartitionHandler)
//   engine.Checkpoint(next_offset);      // worker thread, between batches
//   std::string bytes = engine.Serialize(next_offset);
//   auto restored = PartitionEngine::Restore(options, bytes);
//
// Single writer: the thread of the worker that owns the partition calls
// Handle, Tick and Checkpoint; readers on any thread use shard(), table(),
// tracker().PublishedView() and stats() through their lock-free reader APIs.
//
// State (kStateVersion; varints, signed ones zigzag, see state_codec.h):
//   "KPPE" version partition next_offset clock_own_micros
//   stats: messages consumed duplicate late, reasons: count, counts...,
//          watermark_ms
//   dimension table, aggregator shard, case tracker: each length-prefixed
//   in its own versioned format (DimensionTable, AggregateShard,
//   CaseTracker::Serialize).
// The state covers exactly the partition's messages before next_offset, so
// a restart that restores it and reads from next_offset counts every message
// once. Rejection reasons a newer kpid adds are kept when it reads an older
// state (zero); an older kpid ignores the ones it does not know.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "daemon/aggregate/aggregate_shard.h"
#include "daemon/cases/case_tracker.h"
#include "daemon/cases/clock.h"
#include "daemon/cases/dimension_table.h"
#include "daemon/cases/series_admission.h"
#include "daemon/engine/checkpoint_writer.h"
#include "daemon/ingest/event_handler.h"
#include "daemon/model/config.h"

namespace kpid::engine {

class PartitionEngine final : public ingest::PartitionHandler {
 public:
  static constexpr uint32_t kStateVersion = 1;
  // The state file kind (see daemon/common/state_file.h).
  static constexpr absl::string_view kStateKind = "partition";

  struct Options {
    const model::Config* config = nullptr;  // must outlive the engine
    int32_t partition = 0;
    // clock: event only: the board of every partition's watermark.
    cases::WatermarkBoard* board = nullptr;
    // The replica's bound on each process's dimension combinations, shared
    // by every partition's DimensionTable (null: this table's own bound).
    // The engine keeps it alive: its table gives its combinations back to
    // it when the engine is freed (maybe by the last reader, after the
    // registry moved on to another admission).
    std::shared_ptr<cases::SeriesAdmission> series_admission = nullptr;
    // This partition's shares of the config's max_open_cases,
    // max_dedup_ids and max_closed_cases (0: the config's whole bound).
    size_t max_open_cases = 0;
    size_t max_dedup_ids = 0;
    size_t max_closed_cases = 0;
    // Where Checkpoint sends the state (to `state_path` when not empty, and
    // to the writer's state topic); null: checkpoints only remember their
    // offset (no durable state).
    CheckpointWriter* writer = nullptr;
    std::string state_path;
  };

  // What a Restore into a changed config left out (see Reshape).
  struct Dropped {
    // Open cases of processes no longer configured, or sitting in a stage
    // no longer configured.
    uint64_t open_cases = 0;
    // Dimension combinations (series) of processes no longer configured.
    uint64_t series = 0;
  };

  // An empty engine.
  explicit PartitionEngine(const Options& options);
  // An engine holding Serialize()'s state (made for the same partition),
  // into `options.config` (processes, stages and dimensions matched by id,
  // as each part's Restore). Bytes that do not decode: an error, nothing
  // made. `dropped` (optional): the series left out.
  static absl::StatusOr<std::unique_ptr<PartitionEngine>> Restore(const Options& options,
                                                                  absl::string_view bytes,
                                                                  Dropped* dropped = nullptr);
  // This engine's state moved into an engine for `options.config` (a
  // reloaded config; same partition), as if checkpointed at `next_offset`
  // and restored: processes, stages and dimensions matched by id, so a kept
  // stage keeps its counts, windows and open cases exactly, a new one starts
  // empty, and what belongs to removed ones is dropped and counted in
  // `dropped`. An open case in a removed stage is dropped (not closed: no
  // fact is reported for it); an event for it later starts a new case. The
  // ingest counts (stats) carry over. Worker thread, or while the
  // partition's worker is paused; this engine is left unchanged.
  absl::StatusOr<std::unique_ptr<PartitionEngine>> Reshape(const Options& options,
                                                           int64_t next_offset,
                                                           Dropped* dropped) const;
  ~PartitionEngine() override;
  PartitionEngine(const PartitionEngine&) = delete;
  PartitionEngine& operator=(const PartitionEngine&) = delete;

  // Worker thread, or while no worker owns the partition.
  std::string Serialize(int64_t next_offset) const;

  ingest::Verdict Handle(const ingest::DecodedEvent& event) override {
    return tracker_->Handle(event);
  }
  void HandleBatch(absl::Span<const ingest::DecodedEvent* const> events,
                   ingest::Verdict* verdicts) override {
    tracker_->HandleBatch(events, verdicts);
  }
  void Tick(absl::Time wall_now) override { tracker_->Tick(wall_now); }
  void SetCaughtUp(bool caught_up) override { clock_->SetCaughtUp(caught_up); }
  // Remembers `next_offset`; with a writer, hands it the serialized state.
  void Checkpoint(int64_t next_offset) override;

  int32_t partition() const { return options_.partition; }
  // The offset of the last Checkpoint, or of the restored state;
  // ingest::kUnknownOffset before either. Worker thread, or after the
  // worker let go of the partition.
  int64_t next_offset() const { return next_offset_; }

  const aggregate::AggregateShard& shard() const { return *shard_; }
  const cases::DimensionTable& table() const { return *dims_; }
  const cases::CaseTracker& tracker() const { return *tracker_; }

 private:
  struct Parts;
  PartitionEngine(const Options& options, Parts parts);

  Options options_;
  std::unique_ptr<cases::Clock> clock_;
  std::unique_ptr<cases::DimensionTable> dims_;
  std::unique_ptr<aggregate::AggregateShard> shard_;
  std::unique_ptr<cases::CaseTracker> tracker_;  // refers to the three above
  int64_t next_offset_ = ingest::kUnknownOffset;
};

}  // namespace kpid::engine
