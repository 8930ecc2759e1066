// Writes partition checkpoints to their state files on its own thread, so a
// slow fsync never stalls a worker: the worker serializes its engine (state
// and offset together, between two batches) and hands the bytes over.
//
//   CheckpointWriter writer;
//   writer.Submit("/var/lib/kpid/events-3.state", engine.Serialize(next_offset));
//   writer.Flush();   // everything submitted so far is on disk (or failed)
//
// A state not yet written when a newer one of the same file arrives is
// replaced by it (the newer covers more), so a slow disk bounds memory at one
// pending state per file. Files are written with WriteStateFile (atomic,
// checksummed, the previous one kept as .prev). Thread-safe.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"

namespace kpid::engine {

class CheckpointWriter {
 public:
  // Upper bounds (seconds) of the write-duration histogram's buckets.
  static constexpr double kDurationBuckets[] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10};

  struct Stats {
    uint64_t written = 0;
    uint64_t failed = 0;
    // Write durations: cumulative counts per kDurationBuckets bound, sum.
    std::vector<uint64_t> duration_buckets;
    double duration_sum_seconds = 0;
    // Size of the latest state written, summed over the files.
    uint64_t bytes = 0;
  };

  CheckpointWriter();
  ~CheckpointWriter();  // writes what is pending, then stops
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  // `payload`: PartitionEngine::Serialize's bytes for `path`.
  void Submit(const std::string& path, std::string payload);
  // Returns once everything submitted before the call is written or failed.
  void Flush();
  Stats stats() const;

 private:
  struct Job {
    std::string path;
    std::string payload;
  };
  void Run();

  mutable std::mutex mu_;  // std::mutex: visible to ThreadSanitizer
  std::condition_variable wake_;
  std::condition_variable done_;
  std::deque<Job> pending_;
  uint64_t submitted_ = 0;  // jobs ever queued, replaced ones included
  uint64_t finished_ = 0;
  bool stop_ = false;
  Stats stats_;
  std::map<std::string, uint64_t> bytes_by_path_;
  std::thread thread_;
};

}  // namespace kpid::engine
