#include "daemon/engine/engine_registry.h"

#include <algorithm>
#include <filesystem>
#include <iterator>
#include <limits>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "daemon/common/log.h"
#include "daemon/common/state_file.h"
#include "daemon/export/metric_builder.h"

namespace kpid::engine {
namespace {

constexpr const char* kRestoreResultNames[] = {"restored", "previous", "corrupt", "none"};
constexpr const char* kRestoreSourceNames[] = {"file", "topic", "none"};
// A look at the state topic's end finds the newest manifest: a checkpoint
// ends with its manifest and the previous generation's tombstones (one per
// chunk of 512 KiB), so this covers states up to ~30 MiB; beyond, or when
// the tail lacks the newest generation's chunks, the whole partition is read.
constexpr int64_t kTailRecords = 64;
// Partitions restored at once.
constexpr size_t kRestoreThreads = 4;
constexpr const char* kDroppedNames[] = {"process", "stage", "open_cases", "series"};

}  // namespace

EngineRegistry::EngineRegistry(Options options)
    : options_(std::move(options)),
      // Not owned: the options' config outlives the registry.
      config_(std::shared_ptr<const void>(), options_.config),
      series_admission_(std::make_shared<cases::SeriesAdmission>(*options_.config)),
      empty_(std::make_shared<Empty>(*options_.config)) {
  if (!options_.state_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(options_.state_dir, ec);
    if (ec) {
      log::Error("cannot make state_dir", {{"dir", options_.state_dir}, {"error", ec.message()}});
    }
  }
  if (!options_.state_dir.empty() || options_.state_topic != nullptr) {
    writer_ = std::make_unique<CheckpointWriter>(options_.state_topic);
  }
}

EngineRegistry::~EngineRegistry() {
  std::vector<std::thread> threads;
  {
    kpid::MutexLock lock(&mu_);
    stopping_ = true;
    threads.swap(restore_threads_);
  }
  restore_queued_.SignalAll();
  // A restore under way ends first; those queued are dropped.
  for (std::thread& thread : threads) thread.join();
}

std::string EngineRegistry::StatePath(int32_t partition) const {
  return absl::StrCat(options_.state_dir, "/", options_.config->kafka.topic, "-", partition,
                      ".state");
}

std::shared_ptr<const model::Config> EngineRegistry::config() const {
  kpid::MutexLock lock(&mu_);
  return config_;
}

PartitionEngine::Options EngineRegistry::EngineOptions(
    const model::Config* config, std::shared_ptr<cases::SeriesAdmission> series_admission,
    int32_t partition, int partition_count) {
  return {
      .config = config,
      .partition = partition,
      .board = options_.board,
      .series_admission = std::move(series_admission),
      .max_open_cases = config->MaxOpenCasesPerPartition(partition_count),
      .max_dedup_ids = config->MaxDedupIdsPerPartition(partition_count),
      .max_closed_cases = config->MaxClosedCasesPerPartition(partition_count),
      .writer = writer_.get(),
      .state_path = options_.state_dir.empty() ? "" : StatePath(partition),
  };
}

void EngineRegistry::Count(RestoreSource source, RestoreResult result) {
  restores_[static_cast<size_t>(source)][static_cast<size_t>(result)].fetch_add(
      1, std::memory_order_relaxed);
}

std::shared_ptr<PartitionEngine> EngineRegistry::RestoreFromFile(
    const PartitionEngine::Options& options, bool* rejected, bool* from_previous) {
  const std::string& path = options.state_path;
  // The current file, then (when that is unusable in any way) .prev.
  for (const std::string& candidate : {path, path + ".prev"}) {
    StateFileRead read = ReadStateFile(candidate, PartitionEngine::kStateKind);
    for (const absl::Status& bad : read.rejected) {
      *rejected = true;
      log::Error("state file rejected",
                 {{"partition", absl::StrCat(options.partition)}, {"error", bad.ToString()}});
    }
    if (!read.file) continue;
    restore_bytes_[static_cast<size_t>(RestoreSource::kFile)].fetch_add(read.file->payload.size(),
                                                                        std::memory_order_relaxed);
    absl::StatusOr<std::unique_ptr<PartitionEngine>> engine =
        PartitionEngine::Restore(options, read.file->payload);
    if (!engine.ok()) {
      *rejected = true;
      log::Error("state file rejected", {{"partition", absl::StrCat(options.partition)},
                                         {"file", read.file->path},
                                         {"error", engine.status().ToString()}});
      continue;
    }
    *from_previous = read.file->path != path;
    log::Info("partition state restored",
              {{"partition", absl::StrCat(options.partition)},
               {"file", read.file->path},
               {"next_offset", absl::StrCat((*engine)->next_offset())},
               {"open_cases", absl::StrCat((*engine)->tracker().open_cases())}});
    return std::shared_ptr<PartitionEngine>(*std::move(engine));
  }
  return nullptr;
}

std::shared_ptr<PartitionEngine> EngineRegistry::RestoreFromTopic(
    const PartitionEngine::Options& options, int64_t file_offset, bool* rejected) {
  StateTopic& topic = *options_.state_topic;
  const std::string partition = absl::StrCat(options.partition);
  auto read = [&](int64_t tail) -> absl::StatusOr<StateTopic::Scan> {
    absl::StatusOr<StateTopic::Scan> scan = topic.Read(options.partition, tail);
    if (!scan.ok()) {
      *rejected = true;
      log::Error("state topic not read",
                 {{"partition", partition}, {"error", scan.status().ToString()}});
      return scan;
    }
    restore_bytes_[static_cast<size_t>(RestoreSource::kTopic)].fetch_add(scan->bytes,
                                                                         std::memory_order_relaxed);
    topic.Found(options.partition, *scan);
    for (const absl::Status& bad : scan->rejected) {
      *rejected = true;
      log::Error("state topic record rejected",
                 {{"partition", partition}, {"error", bad.ToString()}});
    }
    return scan;
  };
  absl::StatusOr<StateTopic::Scan> scan = read(kTailRecords);
  if (!scan.ok()) return nullptr;
  if (scan->newest_manifest && scan->newest_manifest->next_offset <= file_offset) {
    return nullptr;  // the file is at least as new: the fast path
  }
  const bool newest_in_tail = scan->state && scan->newest_manifest &&
                              scan->state->manifest.generation == scan->newest_manifest->generation;
  if (!newest_in_tail && !scan->whole_log) {
    scan = read(/*tail=*/0);
    if (!scan.ok()) return nullptr;
  }
  if (!scan->state || scan->state->manifest.next_offset <= file_offset) return nullptr;
  StateFile file;
  absl::Status decoded =
      DecodeStateEnvelope(scan->state->state, PartitionEngine::kStateKind,
                          absl::StrCat("state topic partition ", partition), &file);
  absl::StatusOr<std::unique_ptr<PartitionEngine>> engine =
      decoded.ok() ? PartitionEngine::Restore(options, file.payload)
                   : absl::StatusOr<std::unique_ptr<PartitionEngine>>(decoded);
  if (!engine.ok()) {
    *rejected = true;
    log::Error("state topic generation rejected",
               {{"partition", partition},
                {"generation", absl::StrCat(scan->state->manifest.generation)},
                {"error", engine.status().ToString()}});
    return nullptr;
  }
  log::Info("partition state restored",
            {{"partition", partition},
             {"state_topic", options_.config->kafka.state_topic},
             {"generation", absl::StrCat(scan->state->manifest.generation)},
             {"next_offset", absl::StrCat((*engine)->next_offset())},
             {"open_cases", absl::StrCat((*engine)->tracker().open_cases())}});
  return std::shared_ptr<PartitionEngine>(*std::move(engine));
}

std::shared_ptr<PartitionEngine> EngineRegistry::Restore(const PartitionEngine::Options& options,
                                                         RestoreSource* source_out,
                                                         RestoreResult* result_out) {
  const absl::Time start = absl::Now();
  bool rejected = false;
  bool from_previous = false;
  std::shared_ptr<PartitionEngine> engine;
  if (!options.state_path.empty()) engine = RestoreFromFile(options, &rejected, &from_previous);
  RestoreSource source = engine != nullptr ? RestoreSource::kFile : RestoreSource::kNone;
  if (options_.state_topic != nullptr) {
    std::shared_ptr<PartitionEngine> newer = RestoreFromTopic(
        options, engine != nullptr ? engine->next_offset() : ingest::kUnknownOffset, &rejected);
    if (newer != nullptr) {
      if (engine != nullptr) {
        log::Info("state topic is newer than the state file",
                  {{"partition", absl::StrCat(options.partition)},
                   {"file_next_offset", absl::StrCat(engine->next_offset())},
                   {"topic_next_offset", absl::StrCat(newer->next_offset())}});
      }
      engine = std::move(newer);
      source = RestoreSource::kTopic;
    }
  }
  *source_out = source;
  if (source == RestoreSource::kFile) {
    *result_out = from_previous ? RestoreResult::kPrevious : RestoreResult::kRestored;
  } else if (source == RestoreSource::kTopic) {
    *result_out = RestoreResult::kRestored;
  } else {
    *result_out = rejected ? RestoreResult::kCorrupt : RestoreResult::kNone;
    if (rejected) {
      log::Error("no usable state: the partition starts empty and is read from its beginning",
                 {{"partition", absl::StrCat(options.partition)}});
    }
    engine = std::make_shared<PartitionEngine>(options);
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  kpid::MutexLock lock(&mu_);
  for (size_t b = 0; b < std::size(kRestoreBuckets); ++b) {
    if (seconds <= kRestoreBuckets[b]) ++restore_buckets_[b];
  }
  restore_seconds_sum_ += seconds;
  ++restore_count_;
  return engine;
}

int64_t EngineRegistry::StartOffset(const PartitionEngine& engine) const {
  // With durable state, an engine that covers no offset has counted nothing
  // that survived: the group's committed offset may be ahead of every
  // checkpoint (offsets are committed per batch, checkpoints every
  // checkpoint_interval), so starting there would lose what lies between.
  if (durable() && engine.next_offset() == ingest::kUnknownOffset) {
    return ingest::kFromBeginning;
  }
  return engine.next_offset();
}

ingest::PartitionHandlers::Opened EngineRegistry::Open(int32_t partition, int partition_count) {
  return OpenAll({partition}, partition_count).front();
}

std::vector<ingest::PartitionHandlers::Opened> EngineRegistry::OpenAll(
    const std::vector<int32_t>& partitions, int partition_count) {
  kpid::Mutex mu;
  kpid::CondVar cv;
  std::map<int32_t, Opened> restored;
  std::vector<Opened> opened =
      OpenAsync(partitions, partition_count, [&](int32_t partition, Opened restored_one) {
        kpid::MutexLock lock(&mu);
        restored[partition] = std::move(restored_one);
        cv.SignalAll();
      });
  kpid::MutexLock lock(&mu);
  for (size_t i = 0; i < partitions.size(); ++i) {
    if (opened[i].handler != nullptr) continue;
    while (!restored.contains(partitions[i])) cv.Wait(&mu);
    opened[i] = std::move(restored[partitions[i]]);
  }
  return opened;
}

std::vector<ingest::PartitionHandlers::Opened> EngineRegistry::OpenAsync(
    const std::vector<int32_t>& partitions, int partition_count, Restored restored) {
  std::vector<Opened> opened(partitions.size());
  kpid::MutexLock lock(&mu_);
  partition_count_ = partition_count;
  for (size_t i = 0; i < partitions.size(); ++i) {
    const int32_t partition = partitions[i];
    if (auto kept = kept_.extract(partition)) {
      opened[i] = {kept.mapped(), StartOffset(*kept.mapped())};
      live_[partition] = std::move(kept.mapped());
    } else if (!durable()) {
      // Nothing to restore: an empty engine at the group's committed offset.
      auto engine = std::make_shared<PartitionEngine>(
          EngineOptions(config_.get(), series_admission_, partition, partition_count));
      opened[i] = {engine, StartOffset(*engine)};
      live_[partition] = std::move(engine);
    } else {
      // Readers meanwhile see it restoring (partial answers).
      const uint64_t id = ++last_restore_id_;
      restoring_[partition] = {.id = id, .partition_count = partition_count, .restored = restored};
      restore_queue_.emplace_back(partition, id);
    }
  }
  ++generation_;
  const size_t wanted = std::min(kRestoreThreads, restore_queue_.size());
  while (restore_threads_.size() < wanted) {
    restore_threads_.emplace_back([this] { RestoreLoop(); });
  }
  restore_queued_.SignalAll();
  return opened;
}

void EngineRegistry::RequeueRestores() {
  for (auto& [partition, restoring] : restoring_) {
    restoring.id = ++last_restore_id_;
    restore_queue_.emplace_back(partition, restoring.id);
  }
  restore_queued_.SignalAll();
}

void EngineRegistry::RestoreLoop() {
  kpid::MutexLock lock(&mu_);
  while (true) {
    while (!stopping_ && restore_queue_.empty()) restore_queued_.Wait(&mu_);
    if (stopping_) return;
    const auto [partition, id] = restore_queue_.front();
    restore_queue_.pop_front();
    auto it = restoring_.find(partition);
    if (it == restoring_.end() || it->second.id != id) continue;  // revoked, or queued anew
    const int partition_count = it->second.partition_count;
    const PartitionEngine::Options engine_options =
        EngineOptions(config_.get(), series_admission_, partition, partition_count);
    RestoreSource source = RestoreSource::kNone;
    RestoreResult result = RestoreResult::kNone;
    std::shared_ptr<PartitionEngine> engine;
    mu_.Unlock();
    if (options_.before_restore) options_.before_restore(partition);
    engine = Restore(engine_options, &source, &result);
    mu_.Lock();
    it = restoring_.find(partition);
    if (it == restoring_.end() || it->second.id != id) {
      // Revoked meanwhile (or reshaped: restored anew for the new config).
      // Nobody saw this engine: it is freed, never checkpointed.
      log::Info("partition restore discarded: revoked (or reshaped) while restoring",
                {{"partition", absl::StrCat(partition)}});
      mu_.Unlock();
      engine.reset();
      mu_.Lock();
      continue;
    }
    Count(source, result);
    const Restored restored = std::move(it->second.restored);
    restoring_.erase(it);
    const Opened opened{engine, StartOffset(*engine)};
    live_[partition] = std::move(engine);
    ++generation_;
    // Under the lock: a Close of the partition after this hand-over finds
    // the engine live (and drops or keeps it); one before it discarded it.
    restored(partition, opened);
  }
}

int EngineRegistry::restoring() const {
  kpid::MutexLock lock(&mu_);
  return static_cast<int>(restoring_.size());
}

void EngineRegistry::Close(int32_t partition, bool keep) {
  // The partition's next owner may be another replica, which restores it
  // from the state topic as soon as this revoke completes: its last
  // checkpoint must be there (or failed) first.
  Flush();
  kpid::MutexLock lock(&mu_);
  // Still restoring: its restore is discarded when it ends.
  if (restoring_.erase(partition) > 0) ++generation_;
  auto live = live_.extract(partition);
  if (!live) return;
  if (keep) {
    kept_[partition] = std::move(live.mapped());
  } else {
    ++generation_;
  }
}

void EngineRegistry::DropKept() {
  std::map<int32_t, std::shared_ptr<PartitionEngine>> dropped;
  {
    kpid::MutexLock lock(&mu_);
    if (kept_.empty()) return;
    dropped.swap(kept_);
    ++generation_;
  }
  // Freed here (or by the last reader), outside the lock.
}

aggregate::ShardSet EngineRegistry::Shards() const {
  auto engines = std::make_shared<std::vector<std::shared_ptr<const PartitionEngine>>>();
  std::shared_ptr<const Empty> empty;
  aggregate::ShardSet set;
  {
    kpid::MutexLock lock(&mu_);
    for (const auto* engines_of : {&live_, &kept_}) {
      for (const auto& [partition, engine] : *engines_of) {
        engines->push_back(engine);
        set.partitions.push_back(partition);
      }
    }
    for (const auto& [partition, restoring] : restoring_) set.restoring.push_back(partition);
    set.generation = generation_;
    set.config = config_;
    empty = empty_;
  }
  std::sort(set.partitions.begin(), set.partitions.end());
  for (const std::shared_ptr<const PartitionEngine>& engine : *engines) {
    set.shards.push_back(&engine->shard());
    set.tables.push_back(&engine->table());
    set.open_cases.push_back(engine->tracker().PublishedView());
  }
  if (set.shards.empty()) {
    set.shards.push_back(&empty->shard);
    set.tables.push_back(&empty->table);
    set.open_cases.push_back(nullptr);
  }
  set.keep_alive = std::make_shared<std::pair<decltype(engines), std::shared_ptr<const Empty>>>(
      std::move(engines), std::move(empty));
  return set;
}

std::vector<std::shared_ptr<const ingest::PartitionStats>> EngineRegistry::Stats() const {
  std::vector<std::shared_ptr<const ingest::PartitionStats>> stats;
  kpid::MutexLock lock(&mu_);
  for (const auto* engines_of : {&live_, &kept_}) {
    for (const auto& [partition, engine] : *engines_of) {
      // Aliasing: the stats keep their engine alive.
      stats.emplace_back(engine, &engine->stats());
    }
  }
  return stats;
}

absl::StatusOr<std::map<int32_t, std::shared_ptr<ingest::PartitionHandler>>>
EngineRegistry::Reshape(std::shared_ptr<const model::Config> next,
                        const std::map<int32_t, int64_t>& next_offsets) {
  std::shared_ptr<const model::Config> current;
  // The series bound is per process: processes may have moved, so the
  // reshaped tables register what they keep anew.
  auto series_admission = std::make_shared<cases::SeriesAdmission>(*next);
  std::map<int32_t, std::shared_ptr<PartitionEngine>> live;
  std::map<int32_t, std::shared_ptr<PartitionEngine>> kept;
  int partition_count = 0;
  {
    kpid::MutexLock lock(&mu_);
    current = config_;
    live = live_;
    kept = kept_;
    partition_count = partition_count_;
    // Restores under way make engines for the current config: discarded
    // when they end, and run again for `next` below.
    for (auto& [partition, restoring] : restoring_) restoring.id = ++last_restore_id_;
  }
  PartitionEngine::Dropped dropped;
  auto reshape = [&](std::map<int32_t, std::shared_ptr<PartitionEngine>>& engines,
                     bool use_own_offset) -> absl::Status {
    for (auto& [partition, engine] : engines) {
      int64_t next_offset = engine->next_offset();
      if (!use_own_offset) {
        auto it = next_offsets.find(partition);
        if (it != next_offsets.end()) next_offset = it->second;
      }
      // The worker may not have read anything yet (kFromBeginning): its
      // engine covers no offset.
      next_offset = std::max(next_offset, ingest::kUnknownOffset);
      absl::StatusOr<std::unique_ptr<PartitionEngine>> reshaped =
          engine->Reshape(EngineOptions(next.get(), series_admission, partition, partition_count),
                          next_offset, &dropped);
      if (!reshaped.ok()) {
        return absl::Status(reshaped.status().code(), absl::StrCat("partition ", partition, ": ",
                                                                   reshaped.status().message()));
      }
      engine = std::shared_ptr<PartitionEngine>(*std::move(reshaped));
    }
    return absl::OkStatus();
  };
  absl::Status reshaped = reshape(live, false);
  if (reshaped.ok()) reshaped = reshape(kept, true);
  if (!reshaped.ok()) {
    kpid::MutexLock lock(&mu_);
    RequeueRestores();
    return reshaped;
  }

  // Processes and stages the reload removed, once per reload (their state
  // is per partition; this counts the configuration's change).
  uint64_t processes_removed = 0;
  uint64_t stages_removed = 0;
  for (const model::ProcessConfig& process : current->processes) {
    const model::ProcessConfig* kept_process = next->FindProcess(process.id);
    if (kept_process == nullptr) {
      ++processes_removed;
      continue;
    }
    for (const model::StageConfig& stage : process.stages) {
      if (kept_process->StageIndex(stage.id) < 0) ++stages_removed;
    }
  }

  std::map<int32_t, std::shared_ptr<ingest::PartitionHandler>> handlers(live.begin(), live.end());
  auto empty = std::make_shared<const Empty>(*next);
  {
    kpid::MutexLock lock(&mu_);
    retired_configs_.push_back(std::move(config_));
    config_ = std::move(next);
    series_admission_ = std::move(series_admission);
    empty_ = std::move(empty);
    live_ = std::move(live);
    kept_ = std::move(kept);
    ++generation_;
    RequeueRestores();
  }
  auto add = [this](Dropped what, uint64_t n) {
    reload_dropped_[static_cast<size_t>(what)].fetch_add(n, std::memory_order_relaxed);
  };
  add(Dropped::kProcess, processes_removed);
  add(Dropped::kStage, stages_removed);
  add(Dropped::kOpenCases, dropped.open_cases);
  add(Dropped::kSeries, dropped.series);
  log::Info("engines reshaped for the reloaded configuration",
            {{"partitions", absl::StrCat(handlers.size())},
             {"processes_removed", absl::StrCat(processes_removed)},
             {"stages_removed", absl::StrCat(stages_removed)},
             {"open_cases_dropped", absl::StrCat(dropped.open_cases)},
             {"series_dropped", absl::StrCat(dropped.series)}});
  return handlers;
}

void EngineRegistry::Flush() {
  if (writer_ != nullptr) writer_->Flush();
}

namespace {

void AddHistogram(prometheus::MetricFamily* f, const std::vector<uint64_t>& cumulative,
                  const double* bounds, size_t bound_count, uint64_t count, double sum) {
  prometheus::ClientMetric histogram;
  histogram.histogram.sample_count = count;
  histogram.histogram.sample_sum = sum;
  for (size_t b = 0; b < bound_count; ++b) {
    histogram.histogram.bucket.push_back({b < cumulative.size() ? cumulative[b] : 0, bounds[b]});
  }
  histogram.histogram.bucket.push_back({count, std::numeric_limits<double>::infinity()});
  f->metric.push_back(std::move(histogram));
}

// A checkpoint destination's (state_dir's or the state topic's) counter by
// result and write-duration histogram.
struct CheckpointFamilyNames {
  const char* total;
  const char* total_help;
  const char* duration;
  const char* duration_help;
};
void AddCheckpointFamilies(const CheckpointFamilyNames& names, const CheckpointWriter::Stats& stats,
                           std::vector<prometheus::MetricFamily>* families) {
  prometheus::MetricFamily f =
      exporter::Family(names.total, names.total_help, prometheus::MetricType::Counter);
  exporter::AddCounter(&f, {{"result", "ok"}}, static_cast<double>(stats.written));
  exporter::AddCounter(&f, {{"result", "failed"}}, static_cast<double>(stats.failed));
  families->push_back(std::move(f));

  f = exporter::Family(names.duration, names.duration_help, prometheus::MetricType::Histogram);
  AddHistogram(&f, stats.duration_buckets, CheckpointWriter::kDurationBuckets,
               std::size(CheckpointWriter::kDurationBuckets), stats.written,
               stats.duration_sum_seconds);
  families->push_back(std::move(f));
}

}  // namespace

std::vector<prometheus::MetricFamily> EngineRegistry::Collect() const {
  using exporter::AddCounter;
  using exporter::AddGauge;
  using exporter::Family;
  using prometheus::MetricType;
  const CheckpointWriter::Stats stats =
      writer_ != nullptr ? writer_->file_stats() : CheckpointWriter::Stats{};
  std::vector<prometheus::MetricFamily> families;

  AddCheckpointFamilies(
      {.total = "kpid_state_checkpoints_total",
       .total_help = "Partition checkpoints written to state_dir, by result.",
       .duration = "kpid_state_checkpoint_duration_seconds",
       .duration_help = "Time to write one partition checkpoint (write, fsync, rename)."},
      stats, &families);

  prometheus::MetricFamily f = Family(
      "kpid_state_checkpoint_bytes",
      "Size of the latest checkpoint of every partition written, summed.", MetricType::Gauge);
  AddGauge(&f, {}, static_cast<double>(stats.bytes));
  families.push_back(std::move(f));

  if (options_.state_topic != nullptr) {
    AddCheckpointFamilies(
        {.total = "kpid_state_topic_checkpoints_total",
         .total_help = "Partition checkpoints delivered to kafka.state_topic (every chunk and "
                       "the manifest acknowledged), by result.",
         .duration = "kpid_state_topic_checkpoint_duration_seconds",
         .duration_help = "Time to deliver one partition checkpoint to kafka.state_topic."},
        writer_->topic_stats(), &families);
    f = Family("kpid_state_topic_producers_recreated_total",
               "State-topic producers replaced after a fatal error (an idempotent producer "
               "whose sequence broke refuses every message).",
               MetricType::Counter);
    AddCounter(&f, {}, static_cast<double>(options_.state_topic->producers_recreated()));
    families.push_back(std::move(f));
  }

  f = Family("kpid_state_restores_total",
             "Partitions assigned with durable state (state_dir or kafka.state_topic), by where "
             "their state came from (file, topic, none) and how: restored (the current file or "
             "the topic's newest complete generation), previous (the file's .prev: the current "
             "one was unusable), corrupt (nothing usable: started empty), none (nothing stored: "
             "started empty).",
             MetricType::Counter);
  using Source = RestoreSource;
  using Result = RestoreResult;
  for (const auto& [source, result] :
       {std::pair{Source::kFile, Result::kRestored}, std::pair{Source::kFile, Result::kPrevious},
        std::pair{Source::kTopic, Result::kRestored}, std::pair{Source::kNone, Result::kCorrupt},
        std::pair{Source::kNone, Result::kNone}}) {
    AddCounter(&f,
               {{"result", kRestoreResultNames[static_cast<size_t>(result)]},
                {"source", kRestoreSourceNames[static_cast<size_t>(source)]}},
               static_cast<double>(
                   restores_[static_cast<size_t>(source)][static_cast<size_t>(result)].load(
                       std::memory_order_relaxed)));
  }
  families.push_back(std::move(f));

  f = Family("kpid_state_restore_bytes_total",
             "Bytes of partition state read to restore partitions, by source (file: state "
             "files' payloads; topic: the state topic's keys and values).",
             MetricType::Counter);
  for (Source source : {Source::kFile, Source::kTopic}) {
    AddCounter(&f, {{"source", kRestoreSourceNames[static_cast<size_t>(source)]}},
               static_cast<double>(
                   restore_bytes_[static_cast<size_t>(source)].load(std::memory_order_relaxed)));
  }
  families.push_back(std::move(f));

  std::vector<uint64_t> restore_buckets;
  double restore_sum = 0;
  uint64_t restore_count = 0;
  size_t restoring = 0;
  {
    kpid::MutexLock lock(&mu_);
    restore_buckets.assign(restore_buckets_.begin(), restore_buckets_.end());
    restore_sum = restore_seconds_sum_;
    restore_count = restore_count_;
    restoring = restoring_.size();
  }
  f = Family("kpid_state_restore_duration_seconds",
             "Time to restore one assigned partition's state (file, state topic, decoding).",
             MetricType::Histogram);
  AddHistogram(&f, restore_buckets, kRestoreBuckets, std::size(kRestoreBuckets), restore_count,
               restore_sum);
  families.push_back(std::move(f));

  f = Family("kpid_state_restore_partitions",
             "Assigned partitions whose state is being restored: not yet consumed, not in "
             "answers (which are marked partial), /readyz 503.",
             MetricType::Gauge);
  AddGauge(&f, {{"state", "restoring"}}, static_cast<double>(restoring));
  families.push_back(std::move(f));

  f = Family("kpid_reload_dropped_total",
             "What configuration reloads removed, with its state: process and stage (each "
             "removed one, once per reload), open_cases (open cases of removed processes or in "
             "removed stages, dropped without a fact), series (dimension combinations of "
             "removed processes).",
             MetricType::Counter);
  for (size_t w = 0; w < reload_dropped_.size(); ++w) {
    AddCounter(&f, {{"what", kDroppedNames[w]}},
               static_cast<double>(reload_dropped_[w].load(std::memory_order_relaxed)));
  }
  families.push_back(std::move(f));
  return families;
}

}  // namespace kpid::engine
