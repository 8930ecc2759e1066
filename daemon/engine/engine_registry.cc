#include "daemon/engine/engine_registry.h"

#include <filesystem>
#include <iterator>
#include <utility>

#include "absl/strings/str_cat.h"
#include "daemon/common/log.h"
#include "daemon/common/state_file.h"
#include "daemon/export/metric_builder.h"

namespace kpid::engine {
namespace {

constexpr const char* kRestoreResultNames[] = {"restored", "previous", "corrupt", "none"};

}  // namespace

EngineRegistry::EngineRegistry(Options options)
    : options_(std::move(options)),
      series_admission_(*options_.config),
      empty_table_(*options_.config),
      empty_shard_(*options_.config) {
  if (options_.state_dir.empty()) return;
  std::error_code ec;
  std::filesystem::create_directories(options_.state_dir, ec);
  if (ec) {
    log::Error("cannot make state_dir", {{"dir", options_.state_dir}, {"error", ec.message()}});
  }
  writer_ = std::make_unique<CheckpointWriter>();
}

EngineRegistry::~EngineRegistry() = default;

std::string EngineRegistry::StatePath(int32_t partition) const {
  return absl::StrCat(options_.state_dir, "/", options_.config->kafka.topic, "-", partition,
                      ".state");
}

PartitionEngine::Options EngineRegistry::EngineOptions(int32_t partition, int partition_count) {
  return {
      .config = options_.config,
      .partition = partition,
      .board = options_.board,
      .series_admission = &series_admission_,
      .max_open_cases = options_.config->MaxOpenCasesPerPartition(partition_count),
      .max_dedup_ids = options_.config->MaxDedupIdsPerPartition(partition_count),
      .max_closed_cases = options_.config->MaxClosedCasesPerPartition(partition_count),
      .writer = writer_.get(),
      .state_path = writer_ != nullptr ? StatePath(partition) : "",
  };
}

void EngineRegistry::Count(RestoreResult result) {
  restores_[static_cast<size_t>(result)].fetch_add(1, std::memory_order_relaxed);
}

std::shared_ptr<PartitionEngine> EngineRegistry::RestoreFromFile(
    const PartitionEngine::Options& options) {
  const std::string& path = options.state_path;
  bool rejected = false;
  // The current file, then (when that is unusable in any way) .prev.
  for (const std::string& candidate : {path, path + ".prev"}) {
    StateFileRead read = ReadStateFile(candidate, PartitionEngine::kStateKind);
    for (const absl::Status& bad : read.rejected) {
      rejected = true;
      log::Error("state file rejected",
                 {{"partition", absl::StrCat(options.partition)}, {"error", bad.ToString()}});
    }
    if (!read.file) continue;
    absl::StatusOr<std::unique_ptr<PartitionEngine>> engine =
        PartitionEngine::Restore(options, read.file->payload);
    if (!engine.ok()) {
      rejected = true;
      log::Error("state file rejected", {{"partition", absl::StrCat(options.partition)},
                                         {"file", read.file->path},
                                         {"error", engine.status().ToString()}});
      continue;
    }
    const bool current = read.file->path == path;
    Count(current ? RestoreResult::kRestored : RestoreResult::kPrevious);
    log::Info("partition state restored",
              {{"partition", absl::StrCat(options.partition)},
               {"file", read.file->path},
               {"next_offset", absl::StrCat((*engine)->next_offset())},
               {"open_cases", absl::StrCat((*engine)->tracker().open_cases())}});
    return std::shared_ptr<PartitionEngine>(*std::move(engine));
  }
  Count(rejected ? RestoreResult::kCorrupt : RestoreResult::kNone);
  if (rejected) {
    log::Error("no usable state: the partition starts empty and is read from its beginning",
               {{"partition", absl::StrCat(options.partition)}, {"file", path}});
  }
  return std::make_shared<PartitionEngine>(options);
}

int64_t EngineRegistry::StartOffset(const PartitionEngine& engine) const {
  // With durable state, an engine that covers no offset has counted nothing
  // that survived: the group's committed offset may be ahead of every
  // checkpoint (offsets are committed per batch, checkpoints every
  // checkpoint_interval), so starting there would lose what lies between.
  if (writer_ != nullptr && engine.next_offset() == ingest::kUnknownOffset) {
    return ingest::kFromBeginning;
  }
  return engine.next_offset();
}

ingest::PartitionHandlers::Opened EngineRegistry::Open(int32_t partition, int partition_count) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto kept = kept_.extract(partition)) {
      const int64_t next_offset = StartOffset(*kept.mapped());
      live_[partition] = kept.mapped();
      ++generation_;
      return {std::move(kept.mapped()), next_offset};
    }
  }
  const PartitionEngine::Options engine_options = EngineOptions(partition, partition_count);
  std::shared_ptr<PartitionEngine> engine = writer_ != nullptr
                                                ? RestoreFromFile(engine_options)
                                                : std::make_shared<PartitionEngine>(engine_options);
  const int64_t next_offset = StartOffset(*engine);
  std::lock_guard<std::mutex> lock(mu_);
  live_[partition] = engine;
  ++generation_;
  return {std::move(engine), next_offset};
}

void EngineRegistry::Close(int32_t partition, bool keep) {
  std::lock_guard<std::mutex> lock(mu_);
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
    std::lock_guard<std::mutex> lock(mu_);
    if (kept_.empty()) return;
    dropped.swap(kept_);
    ++generation_;
  }
  // Freed here (or by the last reader), outside the lock.
}

aggregate::ShardSet EngineRegistry::Shards() const {
  auto engines = std::make_shared<std::vector<std::shared_ptr<const PartitionEngine>>>();
  aggregate::ShardSet set;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto* engines_of : {&live_, &kept_}) {
      for (const auto& [partition, engine] : *engines_of) engines->push_back(engine);
    }
    set.generation = generation_;
  }
  for (const std::shared_ptr<const PartitionEngine>& engine : *engines) {
    set.shards.push_back(&engine->shard());
    set.tables.push_back(&engine->table());
    set.open_cases.push_back(engine->tracker().PublishedView());
  }
  if (set.shards.empty()) {
    set.shards.push_back(&empty_shard_);
    set.tables.push_back(&empty_table_);
    set.open_cases.push_back(nullptr);
  }
  set.keep_alive = std::move(engines);
  return set;
}

std::vector<std::shared_ptr<const ingest::PartitionStats>> EngineRegistry::Stats() const {
  std::vector<std::shared_ptr<const ingest::PartitionStats>> stats;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto* engines_of : {&live_, &kept_}) {
    for (const auto& [partition, engine] : *engines_of) {
      // Aliasing: the stats keep their engine alive.
      stats.emplace_back(engine, &engine->stats());
    }
  }
  return stats;
}

void EngineRegistry::Flush() {
  if (writer_ != nullptr) writer_->Flush();
}

std::vector<prometheus::MetricFamily> EngineRegistry::Collect() const {
  using exporter::AddCounter;
  using exporter::AddGauge;
  using exporter::Family;
  using prometheus::MetricType;
  const CheckpointWriter::Stats stats =
      writer_ != nullptr ? writer_->stats() : CheckpointWriter::Stats{};
  std::vector<prometheus::MetricFamily> families;

  prometheus::MetricFamily f =
      Family("kpid_state_checkpoints_total",
             "Partition checkpoints written to state_dir, by result.", MetricType::Counter);
  AddCounter(&f, {{"result", "ok"}}, static_cast<double>(stats.written));
  AddCounter(&f, {{"result", "failed"}}, static_cast<double>(stats.failed));
  families.push_back(std::move(f));

  f = Family("kpid_state_checkpoint_duration_seconds",
             "Time to write one partition checkpoint (write, fsync, rename).",
             MetricType::Histogram);
  prometheus::ClientMetric histogram;
  histogram.histogram.sample_count = stats.written;
  histogram.histogram.sample_sum = stats.duration_sum_seconds;
  for (size_t b = 0; b < std::size(CheckpointWriter::kDurationBuckets); ++b) {
    histogram.histogram.bucket.push_back(
        {b < stats.duration_buckets.size() ? stats.duration_buckets[b] : 0,
         CheckpointWriter::kDurationBuckets[b]});
  }
  histogram.histogram.bucket.push_back({stats.written, std::numeric_limits<double>::infinity()});
  f.metric.push_back(std::move(histogram));
  families.push_back(std::move(f));

  f = Family("kpid_state_checkpoint_bytes",
             "Size of the latest checkpoint of every partition written, summed.",
             MetricType::Gauge);
  AddGauge(&f, {}, static_cast<double>(stats.bytes));
  families.push_back(std::move(f));

  f = Family("kpid_state_restores_total",
             "Partitions assigned with state_dir set, by how their state was found: restored "
             "(the current file), previous (its .prev: the current one was unusable), corrupt "
             "(no usable file: started empty), none (no file: started empty).",
             MetricType::Counter);
  for (size_t r = 0; r < restores_.size(); ++r) {
    AddCounter(&f, {{"result", kRestoreResultNames[r]}},
               static_cast<double>(restores_[r].load(std::memory_order_relaxed)));
  }
  families.push_back(std::move(f));
  return families;
}

}  // namespace kpid::engine
