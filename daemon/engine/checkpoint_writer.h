// Writes partition checkpoints to their state files and the state topic on
// its own thread, so a slow fsync or broker never stalls a worker: the
// worker serializes its engine (state and offset together, between two
// batches) and hands the bytes over.
//
//   CheckpointWriter writer(state_topic);   // null: files only
//   writer.Submit({.partition = 3, .next_offset = 42,
//                  .path = "/var/lib/kpid/events-3.state", .payload = engine.Serialize(42)});
//   writer.Flush();   // everything submitted so far is on disk and delivered (or failed)
//
// A state not yet written when a newer one of the same partition arrives is
// replaced by it (the newer covers more), so a slow disk or broker bounds
// memory at one pending state per partition. Files are written with
// WriteStateFile (atomic, checksummed, the previous one kept as .prev); the
// state topic gets the same envelope (StateTopic::Write: chunks, manifest,
// acknowledged). Thread-safe.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#include "daemon/common/mutex.h"

namespace kpid::engine {

class StateTopic;

class CheckpointWriter {
 public:
  // Upper bounds (seconds) of the write-duration histogram's buckets.
  static constexpr double kDurationBuckets[] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10};

  // What one sink (the files, or the state topic) did.
  struct Stats {
    uint64_t written = 0;
    uint64_t failed = 0;
    // Write durations: cumulative counts per kDurationBuckets bound, sum.
    std::vector<uint64_t> duration_buckets;
    double duration_sum_seconds = 0;
    // Size of the latest state written, summed over the partitions.
    uint64_t bytes = 0;
  };

  struct Job {
    int32_t partition = 0;
    int64_t next_offset = 0;
    std::string path;     // empty: no state file
    std::string payload;  // PartitionEngine::Serialize's bytes
  };

  // `topic` (optional) must outlive the writer.
  explicit CheckpointWriter(StateTopic* topic = nullptr);
  ~CheckpointWriter();  // writes what is pending, then stops
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  void Submit(Job job);
  // Returns once everything submitted before the call is written or failed.
  void Flush();
  Stats file_stats() const;
  Stats topic_stats() const;

 private:
  void Run();
  // Records one write's outcome in `stats`.
  void Count(Stats* stats, std::map<int32_t, uint64_t>* bytes_by_partition, const Job& job, bool ok,
             double seconds) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  StateTopic* const topic_;
  mutable kpid::Mutex mu_;
  kpid::CondVar wake_;
  kpid::CondVar done_;
  std::deque<Job> pending_ ABSL_GUARDED_BY(mu_);
  uint64_t submitted_ ABSL_GUARDED_BY(mu_) = 0;  // jobs ever queued, replaced ones included
  uint64_t finished_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  Stats file_stats_ ABSL_GUARDED_BY(mu_);
  Stats topic_stats_ ABSL_GUARDED_BY(mu_);
  std::map<int32_t, uint64_t> file_bytes_ ABSL_GUARDED_BY(mu_);
  std::map<int32_t, uint64_t> topic_bytes_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace kpid::engine
