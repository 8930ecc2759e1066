// The state topic's Kafka side (config `kafka.state_topic`): writes a
// partition's checkpoints as generations of chunk and manifest records
// (state_changelog.h) and reads a partition's newest complete generation
// back when the partition is assigned, so state follows partitions from
// replica to replica.
//
//   auto topic = StateTopic::Start({.brokers = b, .topic = "kpid-state",
//                                   .input_topic = "process-events"});
//   (*topic)->Write(3, next_offset, state);          // returns once delivered
//   absl::StatusOr<StateTopic::Scan> scan = (*topic)->Read(3, /*tail=*/0);
//
// Start makes the topic when it is missing (Admin API: cleanup.policy=compact,
// the input topic's partition count, the broker's replication factor); state
// of input partition p lives in state-topic partition p. Writes use an
// idempotent producer (acks=all): a checkpoint counts only once the broker
// has acknowledged every chunk and the manifest. Only then are the previous
// generation's chunks tombstoned, with every other chunk a restore found
// (of a generation torn by a crash, or older than the one restored), so
// compaction keeps one generation per partition. A producer that failed
// fatally (an idempotent producer's sequence broken: librdkafka then
// refuses every message) is replaced by a new one at the next Write.
//
// Thread safety: Write is called by one thread (the checkpoint writer);
// Read and Found by any thread, concurrently (each read has its own
// consumer).
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "daemon/common/mutex.h"
#include "daemon/engine/state_changelog.h"

struct rd_kafka_s;

namespace kpid::engine {

class StateTopic {
 public:
  struct Options {
    std::string brokers;
    std::string topic;
    // The input topic, whose partition count the state topic is made with.
    std::string input_topic;
    // When the cluster does not say how many partitions the input topic has.
    int partitions_fallback = 1;
    // kafka.properties: TLS, SASL and tuning, as for every other client.
    std::map<std::string, std::string> properties;
    size_t chunk_bytes = kChunkBytes;
    // How long a write may wait for acknowledgements, and a read for records.
    absl::Duration timeout = absl::Seconds(30);
  };

  static absl::StatusOr<std::unique_ptr<StateTopic>> Start(Options options);
  ~StateTopic();
  StateTopic(const StateTopic&) = delete;
  StateTopic& operator=(const StateTopic&) = delete;

  // One checkpoint of `partition` (`state`: the state file's bytes, envelope
  // included); OK once the broker acknowledged it.
  absl::Status Write(int32_t partition, int64_t next_offset, absl::string_view state);

  struct Scan {
    std::optional<RestoredState> state;  // the newest complete generation read
    std::optional<ChangelogManifest> newest_manifest;
    // Chunks not tombstoned in what was read, and the newest generation
    // any record names (ChangelogAssembler::ChunkKeys, NewestGeneration).
    std::vector<std::string> chunk_keys;
    uint64_t newest_generation = 0;
    std::vector<absl::Status> rejected;
    uint64_t bytes = 0;  // keys and values read
    // Whether the scan started at the log's start (else only its tail).
    bool whole_log = true;
  };
  // State-topic partition `partition` up to its end as of the call; `tail`
  // > 0: only its last `tail` records (a cheap look at the newest manifest).
  absl::StatusOr<Scan> Read(int32_t partition, int64_t tail);

  // What a restore of `partition` read from the topic, so the partition's
  // next generation is newer than anything there and tombstones its chunks.
  void Found(int32_t partition, const Scan& scan);

  // Producers replaced after a fatal error.
  uint64_t producers_recreated() const {
    return producers_recreated_.load(std::memory_order_relaxed);
  }

  // Tests: the producer fails as on a fatal idempotence error.
  void RaiseFatalErrorForTest();

 private:
  explicit StateTopic(Options options) : options_(std::move(options)) {}
  absl::Status EnsureTopic();
  // Whether the producer failed fatally (librdkafka refuses every message).
  bool Failed() const;
  // A producer failed fatally replaced by a new one (Write's thread).
  absl::Status RecreateProducer();

  Options options_;
  rd_kafka_s* producer_ = nullptr;  // Write's thread (and Start, the destructor)
  kpid::Mutex mu_;
  // Per partition, what the topic holds as far as this replica knows.
  struct Known {
    std::optional<ChangelogManifest> newest;  // manifest, ours or found
    uint64_t newest_generation = 0;           // of any record, ours or found
    // Found by restores, or tombstones that failed: to tombstone once a
    // newer generation is acknowledged.
    std::set<std::string> stale_chunks;
  };
  std::map<int32_t, Known> known_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> producers_recreated_{0};
};

}  // namespace kpid::engine
