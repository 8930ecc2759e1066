// Consumes the process-event topic in a Kafka consumer group and spreads the
// assigned partitions over worker threads, each partition with its own
// handler (the daemon's engine) from a PartitionHandlers.
//
//   KafkaIngest::Options options{.config = &config, .brokers = bootstrap,
//                                .partitions = &registry};
//   absl::StatusOr<std::unique_ptr<KafkaIngest>> ingest = KafkaIngest::Start(options);
//   ...
//   (*ingest)->Stop();   // drains: workers finish their batch, every partition
//                        // is checkpointed and closed, offsets are committed
//
// Threads: one poll thread serves the group protocol (rebalances, errors);
// a probe thread asks the cluster for metadata every second, so an outage
// shows in connected() (and /readyz, kpid_kafka_connected) even on an idle
// topic; each worker owns a librdkafka queue that the partitions it owns
// (partition % workers) are forwarded to, and a small vector from partition
// to handler. A worker is the only thread that touches its handlers, their
// PartitionStats and its decoder, so the event path takes no lock of ours.
// Every message of an owned partition ends in exactly one of: consumed,
// duplicate, rejected{reason} (then dead-lettered when configured); a message
// of a partition the worker no longer owns (revoked while queued) is dropped
// uncounted: the partition's next owner reads it again from the offset of
// the partition's last checkpoint.
//
// Rebalances. On assign, the poll thread opens each partition's handler
// (kept from an eager revoke, or empty without durable state), hands it to
// the owning worker and waits until the worker took it, then assigns the
// partition at the offset the handler's state covers up to (so state and
// offsets never disagree; the group's committed offset only when the
// handler has none). A partition whose state must be restored is assigned
// paused, so nothing of it is fetched, and the rebalance returns without
// waiting for the restore (PartitionHandlers::OpenAsync): a long restore
// neither stalls the other partitions nor exceeds max.poll.interval.ms.
// When it is restored the poll thread hands the handler to its worker,
// seeks the partition to the handler's offset and resumes it; revoked
// before that, its restore is discarded. On revoke, it asks each owning
// worker to let go:
// the worker, between two batches, checkpoints the partition at the offset
// after the last message it handled and drops it, then acknowledges; only
// then is the handler closed. Workers also checkpoint every handler every
// `checkpoint_interval` (Config) between batches.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "daemon/common/mutex.h"
#include "daemon/ingest/dead_letter.h"
#include "daemon/ingest/event_handler.h"
#include "daemon/model/config.h"

struct rd_kafka_s;
struct rd_kafka_queue_s;
struct rd_kafka_topic_partition_s;
struct rd_kafka_topic_partition_list_s;

namespace kpid::ingest {

class KafkaIngest {
 public:
  struct Options {
    const model::Config* config = nullptr;      // must outlive the ingest
    std::string brokers;                        // bootstrap.servers
    int workers = 0;                            // 0: config's kafka.workers, else cores
    PartitionHandlers* partitions = nullptr;    // must outlive the ingest
    DeadLetterProducer* dead_letter = nullptr;  // optional; must outlive the ingest
  };

  struct PartitionLag {
    std::string topic;
    int32_t partition;
    int64_t lag;  // high watermark - position
  };

  static absl::StatusOr<std::unique_ptr<KafkaIngest>> Start(Options options);

  // How many workers Start() runs for `config` and Options::workers.
  static int WorkerCount(const model::Config& config, int requested);
  ~KafkaIngest();  // Stop()

  // Idempotent. Workers finish the batch in hand, every partition is
  // checkpointed and closed, stored offsets are committed and the consumer
  // leaves the group.
  void Stop();

  // True while partitions are assigned.
  bool ready() const { return assigned_count_.load(std::memory_order_relaxed) > 0; }
  // False once the cluster stopped answering (a metadata probe every
  // kConnectivityProbeInterval timed out, or librdkafka reported all brokers
  // down); true again at the first answer. Starts true: before the first
  // probe nothing says otherwise, and /readyz waits for an assignment anyway.
  bool connected() const { return connected_.load(std::memory_order_relaxed); }
  int worker_count() const { return static_cast<int>(workers_.size()); }

  // Per assigned partition; for the scrape (takes a lock, never on the event path).
  std::vector<PartitionLag> Lags() const;

  // Messages delivered to an owned partition's worker below the offset its
  // state ends at (skipped, so never counted twice): read again after a
  // restore whose seek failed, or delivered again around one. A restored
  // partition is sought to the offset after its state, so this is mostly 0.
  uint64_t reread_messages() const { return reread_messages_.load(std::memory_order_relaxed); }

  // Given the next offset of every partition a worker owns (the first
  // message not yet handled), the handlers to put in their place; a
  // partition left out keeps its handler. An error changes nothing.
  using HandlerSwap =
      std::function<absl::StatusOr<std::map<int32_t, std::shared_ptr<PartitionHandler>>>(
          const std::map<int32_t, int64_t>& next_offsets)>;
  // A configuration reload that reshapes the engines: every worker pauses
  // between two batches, `swap` runs while none handles a message, then the
  // workers resume with the new handlers (at the same offsets) and decoders
  // for `config` (processes and stages resolved against it). Serialized
  // with rebalances, so no partition is assigned or revoked meanwhile. Any
  // thread but a worker's or the poll thread; refused once Stop() began.
  absl::Status SwapHandlers(std::shared_ptr<const model::Config> config, const HandlerSwap& swap);

 private:
  struct Worker;
  struct Owned;
  struct Control;
  struct PauseGate;

  explicit KafkaIngest(Options options);
  absl::Status Init();
  void PollLoop();
  // Asks the cluster for metadata every probe interval until stop; sets connected_.
  void ProbeLoop();
  static void ErrorTrampoline(rd_kafka_s* rk, int err, const char* reason, void* opaque);
  void WorkerLoop(Worker* worker);
  // Messages of one partition, in order: decoded, the valid ones handed to
  // the handler in one HandleBatch call, then each accounted for in order.
  void ProcessRun(Worker* worker, Owned& owned, absl::Span<struct rd_kafka_message_s* const> run);
  void Account(Owned& owned, const struct rd_kafka_message_s& message, const DecodedEvent& event,
               Verdict verdict);
  void Reject(Owned& owned, const struct rd_kafka_message_s& message, Rejection rejection);
  // Runs `controls` (one per partition) on the owning workers between their
  // batches, or here when a worker has exited; returns when all are done.
  void RunOnWorkers(std::vector<Control> controls);
  // Returns once each worker has served its requests up to its ticket.
  static void AwaitControls(const std::vector<std::pair<Worker*, uint64_t>>& waits);
  static void ServeControl(Worker* worker);
  // Whether `owned` has read up to its partition's high watermark.
  bool ReachedEnd(const Owned& owned, int32_t partition) const;
  static void Apply(Worker* worker, Control& control);
  // Partitions of the topic, from the cluster; `fallback` when it does not say.
  int TopicPartitionCount(int fallback);
  void OnRebalance(int err, rd_kafka_topic_partition_list_s* partitions);
  // A restore thread: `opened` is `partition`'s handler, restored for the
  // assignment `ticket`. Queued for the poll thread.
  void OnRestored(int32_t partition, uint64_t ticket, PartitionHandlers::Opened opened);
  // Poll thread: restored partitions to their workers, sought to their
  // handlers' offsets and resumed.
  void ServeRestored();
  // Resumes `partitions` (restoring ones, paused at assign); consumes them.
  void Resume(std::vector<int32_t> partitions) ABSL_EXCLUSIVE_LOCKS_REQUIRED(rebalance_mu_);
  static void RebalanceTrampoline(rd_kafka_s* rk, int err,
                                  rd_kafka_topic_partition_list_s* partitions, void* opaque);

  Options options_;
  int64_t retention_ms_ = 0;
  rd_kafka_s* consumer_ = nullptr;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::thread poll_thread_;
  std::thread probe_thread_;
  // Wakes the probe thread for Stop().
  absl::Mutex probe_mu_;
  bool probe_stop_ ABSL_GUARDED_BY(probe_mu_) = false;
  // Release/acquire: a worker or the poll thread that sees stop also sees
  // everything written before Stop() set it.
  std::atomic<bool> stop_{false};
  std::atomic<bool> stopped_{false};
  // Relaxed: a readiness hint; nothing is ordered by it.
  std::atomic<int> assigned_count_{0};
  // Relaxed: a health signal (gauge, /readyz); nothing is ordered by it.
  std::atomic<bool> connected_{true};
  // Relaxed: a counter for the scrape. Added to only when a message is
  // skipped, never per event handled.
  std::atomic<uint64_t> reread_messages_{0};

  // Held by OnRebalance, ServeRestored and SwapHandlers: a swap never
  // interleaves with an assignment (an engine opened for the old config
  // adopted after it).
  kpid::Mutex rebalance_mu_;
  // What the workers' decoders resolve events against, after a SwapHandlers
  // (null: options_.config). Written only while every worker is paused.
  std::shared_ptr<const model::Config> decoder_config_;

  // Assigned partitions whose state is being restored: paused.
  struct Restoring {
    uint64_t ticket = 0;  // of the assignment that asked for the restore
    // Its restored handler is with its worker; waiting for the seek.
    bool adopted = false;
    int64_t next_offset = kUnknownOffset;
    int seek_attempts = 0;
  };
  std::map<int32_t, Restoring> restoring_ ABSL_GUARDED_BY(rebalance_mu_);
  uint64_t last_ticket_ ABSL_GUARDED_BY(rebalance_mu_) = 0;
  // Handed over by restore threads, served by the poll thread.
  struct Restored {
    int32_t partition = 0;
    uint64_t ticket = 0;
    PartitionHandlers::Opened opened;
  };
  kpid::Mutex restored_mu_;
  std::vector<Restored> restored_ ABSL_GUARDED_BY(restored_mu_);

  struct Assigned {
    std::string topic;
    int32_t partition = 0;
    // Where it was assigned to start: an offset, kFromBeginning, or
    // kUnknownOffset (the group's committed offset; or its state restoring).
    int64_t start_offset = kUnknownOffset;
  };
  mutable absl::Mutex assignment_mu_;
  std::vector<Assigned> assignment_ ABSL_GUARDED_BY(assignment_mu_);
};

}  // namespace kpid::ingest
