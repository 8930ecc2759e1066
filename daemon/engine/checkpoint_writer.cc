#include "daemon/engine/checkpoint_writer.h"

#include <iterator>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "daemon/common/log.h"
#include "daemon/common/state_file.h"
#include "daemon/engine/partition_engine.h"
#include "daemon/engine/state_topic.h"

namespace kpid::engine {

CheckpointWriter::CheckpointWriter(StateTopic* topic) : topic_(topic) {
  file_stats_.duration_buckets.assign(std::size(kDurationBuckets), 0);
  topic_stats_.duration_buckets.assign(std::size(kDurationBuckets), 0);
  thread_ = std::thread([this] { Run(); });
}

CheckpointWriter::~CheckpointWriter() {
  {
    kpid::MutexLock lock(&mu_);
    stop_ = true;
  }
  wake_.SignalAll();
  thread_.join();
}

void CheckpointWriter::Submit(Job job) {
  {
    kpid::MutexLock lock(&mu_);
    ++submitted_;
    for (Job& pending : pending_) {
      if (pending.partition == job.partition) {
        pending = std::move(job);
        ++finished_;  // the replaced one
        done_.SignalAll();
        return;
      }
    }
    pending_.push_back(std::move(job));
  }
  wake_.SignalAll();
}

void CheckpointWriter::Flush() {
  kpid::MutexLock lock(&mu_);
  const uint64_t target = submitted_;
  while (finished_ < target) done_.Wait(&mu_);
}

CheckpointWriter::Stats CheckpointWriter::file_stats() const {
  kpid::MutexLock lock(&mu_);
  return file_stats_;
}

CheckpointWriter::Stats CheckpointWriter::topic_stats() const {
  kpid::MutexLock lock(&mu_);
  return topic_stats_;
}

void CheckpointWriter::Count(Stats* stats, std::map<int32_t, uint64_t>* bytes_by_partition,
                             const Job& job, bool ok, double seconds) {
  if (!ok) {
    ++stats->failed;
    return;
  }
  ++stats->written;
  uint64_t& bytes = (*bytes_by_partition)[job.partition];
  stats->bytes += job.payload.size() - bytes;
  bytes = job.payload.size();
  for (size_t b = 0; b < std::size(kDurationBuckets); ++b) {
    if (seconds <= kDurationBuckets[b]) ++stats->duration_buckets[b];
  }
  stats->duration_sum_seconds += seconds;
}

void CheckpointWriter::Run() {
  kpid::MutexLock lock(&mu_);
  while (true) {
    while (!stop_ && pending_.empty()) wake_.Wait(&mu_);
    if (pending_.empty()) return;  // stopping, nothing left
    Job job = std::move(pending_.front());
    pending_.pop_front();
    mu_.Unlock();
    absl::Time start = absl::Now();
    absl::Status file_written = absl::OkStatus();
    if (!job.path.empty()) {
      file_written = WriteStateFile(job.path, PartitionEngine::kStateKind,
                                    PartitionEngine::kStateVersion, job.payload);
      if (!file_written.ok()) {
        log::Error("checkpoint not written",
                   {{"file", job.path}, {"error", file_written.ToString()}});
      }
    }
    const double file_seconds = absl::ToDoubleSeconds(absl::Now() - start);
    absl::Status topic_written = absl::OkStatus();
    start = absl::Now();
    if (topic_ != nullptr) {
      topic_written =
          topic_->Write(job.partition, job.next_offset,
                        EncodeStateEnvelope(PartitionEngine::kStateKind,
                                            PartitionEngine::kStateVersion, job.payload));
      if (!topic_written.ok()) {
        log::Error(
            "checkpoint not delivered to the state topic",
            {{"partition", absl::StrCat(job.partition)}, {"error", topic_written.ToString()}});
      }
    }
    const double topic_seconds = absl::ToDoubleSeconds(absl::Now() - start);
    mu_.Lock();
    if (!job.path.empty()) {
      Count(&file_stats_, &file_bytes_, job, file_written.ok(), file_seconds);
    }
    if (topic_ != nullptr) {
      Count(&topic_stats_, &topic_bytes_, job, topic_written.ok(), topic_seconds);
    }
    ++finished_;
    done_.SignalAll();
  }
}

}  // namespace kpid::engine
