#include "daemon/engine/checkpoint_writer.h"

#include <iterator>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "daemon/common/log.h"
#include "daemon/common/state_file.h"
#include "daemon/engine/partition_engine.h"

namespace kpid::engine {

CheckpointWriter::CheckpointWriter() {
  stats_.duration_buckets.assign(std::size(kDurationBuckets), 0);
  thread_ = std::thread([this] { Run(); });
}

CheckpointWriter::~CheckpointWriter() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void CheckpointWriter::Submit(const std::string& path, std::string payload) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++submitted_;
    for (Job& job : pending_) {
      if (job.path == path) {
        job.payload = std::move(payload);
        ++finished_;  // the replaced one
        done_.notify_all();
        return;
      }
    }
    pending_.push_back({path, std::move(payload)});
  }
  wake_.notify_all();
}

void CheckpointWriter::Flush() {
  std::unique_lock<std::mutex> lock(mu_);
  const uint64_t target = submitted_;
  done_.wait(lock, [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return finished_ >= target; });
}

CheckpointWriter::Stats CheckpointWriter::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void CheckpointWriter::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    wake_.wait(lock, [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return stop_ || !pending_.empty(); });
    if (pending_.empty()) return;  // stopping, nothing left
    Job job = std::move(pending_.front());
    pending_.pop_front();
    lock.unlock();
    const absl::Time start = absl::Now();
    const absl::Status written = WriteStateFile(job.path, PartitionEngine::kStateKind,
                                                PartitionEngine::kStateVersion, job.payload);
    const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
    if (!written.ok()) {
      log::Error("checkpoint not written", {{"file", job.path}, {"error", written.ToString()}});
    }
    lock.lock();
    if (written.ok()) {
      ++stats_.written;
      uint64_t& bytes = bytes_by_path_[job.path];
      stats_.bytes += job.payload.size() - bytes;
      bytes = job.payload.size();
      for (size_t b = 0; b < std::size(kDurationBuckets); ++b) {
        if (seconds <= kDurationBuckets[b]) ++stats_.duration_buckets[b];
      }
      stats_.duration_sum_seconds += seconds;
    } else {
      ++stats_.failed;
    }
    ++finished_;
    done_.notify_all();
  }
}

}  // namespace kpid::engine
