#include "daemon/ingest/kafka_ingest.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <limits>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "daemon/common/log.h"
#include "daemon/common/unix_time.h"
#include "daemon/ingest/kafka_conf.h"

namespace kpid::ingest {

// A partition a worker owns.
struct KafkaIngest::Owned {
  std::shared_ptr<PartitionHandler> handler;  // null: not owned
  // The first message not yet in the handler's state: messages before it
  // are dropped (they are in the state already).
  int64_t next_offset = kUnknownOffset;
  // next_offset at the handler's last checkpoint (or restore).
  int64_t checkpointed = kUnknownOffset;
  // Reached the end of the partition's log since adopted (sticky).
  bool caught_up = false;

  // A checkpoint only when messages were handled since the last: what ticks
  // changed meanwhile (deadlines, expiries) a restored state redoes at its
  // first tick, with the same facts. With no offset known nothing was read:
  // there is nothing a restart from the group's committed offset would not
  // rebuild.
  void CheckpointIfMoved() {
    if (next_offset == kUnknownOffset || next_offset == checkpointed) return;
    handler->Checkpoint(next_offset);
    checkpointed = next_offset;
  }
};

// A change of a worker's partitions, made on the worker thread between
// batches (or by the poll thread once the worker has exited).
struct KafkaIngest::Control {
  enum class Kind { kAdopt, kRelease, kPause };
  Kind kind = Kind::kAdopt;
  int32_t partition = 0;
  std::shared_ptr<PartitionHandler> handler;  // kAdopt
  int64_t next_offset = kUnknownOffset;       // kAdopt
  PauseGate* gate = nullptr;                  // kPause

  static Control Release(int32_t partition) {
    Control c;
    c.kind = Kind::kRelease;
    c.partition = partition;
    return c;
  }
};

// Holds workers between two batches while SwapHandlers changes what they
// own. kpid::Mutex so ThreadSanitizer sees the ordering: what a worker
// wrote before pausing, and what the swapper wrote before resuming them.
struct KafkaIngest::PauseGate {
  kpid::Mutex mu;
  kpid::CondVar cv;
  size_t paused ABSL_GUARDED_BY(mu) = 0;
  bool resume ABSL_GUARDED_BY(mu) = false;

  void PauseUntilResumed() {
    kpid::MutexLock lock(&mu);
    ++paused;
    cv.SignalAll();
    while (!resume) cv.Wait(&mu);
  }
  void AwaitPaused(size_t workers) {
    kpid::MutexLock lock(&mu);
    while (paused < workers) cv.Wait(&mu);
  }
  void Resume() {
    kpid::MutexLock lock(&mu);
    resume = true;
    cv.SignalAll();
  }
};

// Everything a worker thread owns.
struct KafkaIngest::Worker {
  int index = 0;
  rd_kafka_queue_t* queue = nullptr;
  std::unique_ptr<EventDecoder> decoder;
  // A run of a batch's messages of one partition (kHandleChunk at most),
  // decoded before the handler gets the valid ones in one HandleBatch call;
  // each slot keeps its memory from run to run, so after warm-up a message
  // allocates nothing (as the one reused event did before).
  std::vector<DecodedEvent> events;
  std::vector<const DecodedEvent*> valid;          // the run's decoded events
  std::vector<const rd_kafka_message_t*> sources;  // their messages
  std::vector<Verdict> verdicts;
  // Single writer: the worker thread (the poll thread once `exited`).
  std::vector<Owned> partitions;  // by partition number
  std::vector<int32_t> owned;     // the partitions with a handler
  std::thread thread;

  // Control requests from the poll thread.
  kpid::Mutex control_mu;
  kpid::CondVar control_done_cv;
  std::vector<Control> control ABSL_GUARDED_BY(control_mu);
  uint64_t control_posted ABSL_GUARDED_BY(control_mu) = 0;
  uint64_t control_done ABSL_GUARDED_BY(control_mu) = 0;
  bool exited ABSL_GUARDED_BY(control_mu) = false;
  // Set with a request, so the worker checks once per batch without the lock.
  std::atomic<bool> control_pending{false};

  Owned* Find(int32_t partition) {
    if (partition < 0 || static_cast<size_t>(partition) >= partitions.size()) return nullptr;
    Owned& o = partitions[static_cast<size_t>(partition)];
    return o.handler != nullptr ? &o : nullptr;
  }
};

namespace {

constexpr size_t kBatchSize = 1024;
// Messages decoded, then handled, together: enough for the tracker to
// prefetch several events ahead (CaseTracker::HandleBatch), few enough that
// the decoded events (~0.5 KB each) are still in the core's L2 cache when
// handled.
constexpr size_t kHandleChunk = 128;
constexpr int kPollTimeoutMs = 100;
constexpr absl::Duration kTickInterval = absl::Milliseconds(100);
// How often the cluster is asked for metadata, and how long an answer may
// take before the cluster counts as unreachable.
constexpr absl::Duration kConnectivityProbeInterval = absl::Seconds(1);
constexpr int kConnectivityProbeTimeoutMs = 2000;

// Bad input is counted in full but logged sparsely: on the 1st, 2nd, 4th,
// 8th... rejection of each reason per partition.
bool ShouldLogRejection(uint64_t count_after) { return (count_after & (count_after - 1)) == 0; }

// How long a cluster metadata request may take inside a rebalance.
constexpr int kMetadataTimeoutMs = 2000;
// A restored partition's seek to its handler's offset, and how often it is
// tried (once per poll) while librdkafka has not started the partition's
// fetcher yet.
constexpr int kSeekTimeoutMs = 2000;
constexpr int kSeekAttempts = 50;

bool HasJsonContentType(const rd_kafka_message_t& message) {
  rd_kafka_headers_t* headers = nullptr;
  if (rd_kafka_message_headers(&message, &headers) != RD_KAFKA_RESP_ERR_NO_ERROR) return false;
  const void* value = nullptr;
  size_t size = 0;
  if (rd_kafka_header_get_last(headers, "content-type", &value, &size) !=
          RD_KAFKA_RESP_ERR_NO_ERROR ||
      value == nullptr) {
    return false;
  }
  return EventDecoder::IsJsonContentType(absl::string_view(static_cast<const char*>(value), size));
}

// Keeps in `last` the latest message of each partition.
void RememberLast(std::vector<rd_kafka_message_t*>& last, rd_kafka_message_t* message) {
  for (auto it = last.rbegin(); it != last.rend(); ++it) {
    if ((*it)->partition == message->partition && (*it)->rkt == message->rkt) {
      *it = message;
      return;
    }
  }
  last.push_back(message);
}

}  // namespace

absl::StatusOr<std::unique_ptr<KafkaIngest>> KafkaIngest::Start(Options options) {
  if (options.config == nullptr || options.partitions == nullptr) {
    return absl::InvalidArgumentError("KafkaIngest: config and partitions are required");
  }
  std::unique_ptr<KafkaIngest> ingest(new KafkaIngest(std::move(options)));
  if (absl::Status s = ingest->Init(); !s.ok()) return s;
  return ingest;
}

KafkaIngest::KafkaIngest(Options options) : options_(std::move(options)) {}

int KafkaIngest::WorkerCount(const model::Config& config, int requested) {
  int workers = requested > 0 ? requested : config.kafka.workers;
  if (workers <= 0) workers = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (config.kafka.embedded()) workers = std::min(workers, config.kafka.partitions);
  return workers;
}

absl::Status KafkaIngest::Init() {
  const model::Config& config = *options_.config;
  const int workers = WorkerCount(config, options_.workers);
  retention_ms_ = absl::ToInt64Milliseconds(config.retention);

  absl::StatusOr<rd_kafka_conf_t*> conf =
      MakeKafkaConf(options_.brokers,
                    {
                        {"group.id", config.kafka.group_id},
                        {"auto.offset.reset", "earliest"},
                        // Offsets are stored after a batch is processed, then committed.
                        {"enable.auto.offset.store", "false"},
                        {"enable.auto.commit", "true"},
                        {"auto.commit.interval.ms", "1000"},
                        {"enable.partition.eof", "false"},
                        {"fetch.wait.max.ms", "100"},
                        // Partition queues are forwarded into one queue per worker, and
                        // librdkafka applies this threshold to that whole queue: a low value
                        // stalls every partition of a busy worker for ~1 s (librdkafka
                        // #2879). Memory stays bounded by queued.max.messages.kbytes.
                        {"queued.min.messages", "1000000"},
                        {"client.id", "kpid"},
                    },
                    config.kafka.properties);
  if (!conf.ok()) return conf.status();
  rd_kafka_conf_set_opaque(*conf, this);
  rd_kafka_conf_set_error_cb(*conf, [](rd_kafka_t* rk, int err, const char* reason, void* opaque) {
    ErrorTrampoline(rk, err, reason, opaque);
  });
  rd_kafka_conf_set_rebalance_cb(
      *conf, [](rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* parts,
                void* opaque) { RebalanceTrampoline(rk, static_cast<int>(err), parts, opaque); });
  char err[512];
  consumer_ = rd_kafka_new(RD_KAFKA_CONSUMER, *conf, err, sizeof(err));
  if (consumer_ == nullptr) {
    rd_kafka_conf_destroy(*conf);
    return absl::InvalidArgumentError(absl::StrCat("kafka consumer: ", err));
  }
  // Group events (rebalances, errors) are served by rd_kafka_consumer_poll.
  rd_kafka_poll_set_consumer(consumer_);

  for (int i = 0; i < workers; ++i) {
    auto worker = std::make_unique<Worker>();
    worker->index = i;
    worker->queue = rd_kafka_queue_new(consumer_);
    worker->decoder = std::make_unique<EventDecoder>(config);
    workers_.push_back(std::move(worker));
  }

  rd_kafka_topic_partition_list_t* topics = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(topics, config.kafka.topic.c_str(), RD_KAFKA_PARTITION_UA);
  rd_kafka_resp_err_t e = rd_kafka_subscribe(consumer_, topics);
  rd_kafka_topic_partition_list_destroy(topics);
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return absl::InternalError(absl::StrCat("kafka subscribe: ", rd_kafka_err2str(e)));
  }
  for (auto& worker : workers_) {
    worker->thread = std::thread([this, w = worker.get()] { WorkerLoop(w); });
  }
  poll_thread_ = std::thread([this] { PollLoop(); });
  probe_thread_ = std::thread([this] { ProbeLoop(); });
  log::Info("kafka consumer started", {{"brokers", options_.brokers},
                                       {"topic", config.kafka.topic},
                                       {"group", config.kafka.group_id},
                                       {"workers", absl::StrCat(workers)}});
  return absl::OkStatus();
}

KafkaIngest::~KafkaIngest() {
  Stop();
  for (auto& worker : workers_) {
    if (worker->queue != nullptr) rd_kafka_queue_destroy(worker->queue);
  }
  if (consumer_ != nullptr) rd_kafka_destroy(consumer_);
}

void KafkaIngest::Stop() {
  if (stopped_.exchange(true)) return;
  stop_.store(true, std::memory_order_release);
  // Workers first, so the offsets they stored are final; then the poll
  // thread closes the consumer, which commits them, revokes the partitions
  // (checkpointed and closed by the poll thread, the workers having exited)
  // and leaves the group.
  for (auto& worker : workers_) {
    if (worker->thread.joinable()) worker->thread.join();
  }
  if (poll_thread_.joinable()) poll_thread_.join();
  // A close that could not reach the group revokes nothing: the partitions
  // still owned are let go of here (checkpointed too).
  std::vector<Control> releases;
  for (auto& worker : workers_) {
    for (int32_t partition : worker->owned) {
      releases.push_back(Control::Release(partition));
    }
  }
  if (!releases.empty()) {
    std::vector<int32_t> released;
    for (const Control& c : releases) released.push_back(c.partition);
    RunOnWorkers(std::move(releases));
    for (int32_t partition : released) options_.partitions->Close(partition, /*keep=*/false);
  }
  // Restores still under way are discarded: none is handed over after this.
  {
    kpid::MutexLock rebalance(&rebalance_mu_);
    for (const auto& [partition, restoring] : restoring_) {
      if (!restoring.adopted) options_.partitions->Close(partition, /*keep=*/false);
    }
    restoring_.clear();
  }
  {
    absl::MutexLock lock(&probe_mu_);
    probe_stop_ = true;
  }
  if (probe_thread_.joinable()) probe_thread_.join();
  log::Info("kafka consumer stopped");
}

void KafkaIngest::PollLoop() {
  while (!stop_.load(std::memory_order_acquire)) {
    rd_kafka_message_t* message = rd_kafka_consumer_poll(consumer_, kPollTimeoutMs);
    ServeRestored();
    if (message == nullptr) continue;
    if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      log::Warn("kafka consumer error", {{"error", rd_kafka_message_errstr(message)}});
    } else {
      // Every assigned partition is forwarded to a worker before it is
      // assigned, so a message here means that invariant broke.
      log::Error("message on the group queue; partition was not forwarded",
                 {{"partition", absl::StrCat(message->partition)},
                  {"offset", absl::StrCat(message->offset)}});
    }
    rd_kafka_message_destroy(message);
  }
  rd_kafka_resp_err_t e = rd_kafka_consumer_close(consumer_);
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    log::Warn("kafka consumer close", {{"error", rd_kafka_err2str(e)}});
  }
}

void KafkaIngest::ProbeLoop() {
  absl::MutexLock lock(&probe_mu_);
  while (!probe_mu_.AwaitWithTimeout(absl::Condition(&probe_stop_), kConnectivityProbeInterval)) {
    probe_mu_.Unlock();
    // Only topics the client knows (ours): a small request, answered by any
    // broker that is up.
    const rd_kafka_metadata_t* metadata = nullptr;
    const rd_kafka_resp_err_t err = rd_kafka_metadata(consumer_, /*all_topics=*/0, nullptr,
                                                      &metadata, kConnectivityProbeTimeoutMs);
    if (metadata != nullptr) rd_kafka_metadata_destroy(metadata);
    const bool up = err == RD_KAFKA_RESP_ERR_NO_ERROR;
    if (connected_.exchange(up, std::memory_order_relaxed) != up) {
      if (up) {
        log::Info("kafka cluster reachable again", {{"brokers", options_.brokers}});
      } else {
        log::Error("kafka cluster unreachable",
                   {{"brokers", options_.brokers}, {"error", rd_kafka_err2str(err)}});
      }
    }
    probe_mu_.Lock();
  }
}

void KafkaIngest::ErrorTrampoline(rd_kafka_s* rk, int err, const char* reason, void* opaque) {
  (void)rk;
  auto* self = static_cast<KafkaIngest*>(opaque);
  if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
    // Sooner than the next probe; the probe says when it is back.
    if (self->connected_.exchange(false, std::memory_order_relaxed)) {
      log::Error("kafka cluster unreachable",
                 {{"brokers", self->options_.brokers}, {"error", reason}});
    }
    return;
  }
  // During an outage every reconnect attempt fails again; its first failure
  // is news, the rest are librdkafka's own log lines.
  if (err == RD_KAFKA_RESP_ERR__TRANSPORT && !self->connected()) return;
  log::Warn(
      "kafka client error",
      {{"error", rd_kafka_err2str(static_cast<rd_kafka_resp_err_t>(err))}, {"detail", reason}});
}

void KafkaIngest::RebalanceTrampoline(rd_kafka_s* rk, int err,
                                      rd_kafka_topic_partition_list_s* partitions, void* opaque) {
  (void)rk;
  static_cast<KafkaIngest*>(opaque)->OnRebalance(err, partitions);
}

int KafkaIngest::TopicPartitionCount(int fallback) {
  const std::string& topic_name = options_.config->kafka.topic;
  rd_kafka_topic_t* topic = rd_kafka_topic_new(consumer_, topic_name.c_str(), nullptr);
  if (topic == nullptr) return fallback;
  const rd_kafka_metadata_t* metadata = nullptr;
  int count = fallback;
  if (rd_kafka_metadata(consumer_, /*all_topics=*/0, topic, &metadata, kMetadataTimeoutMs) ==
          RD_KAFKA_RESP_ERR_NO_ERROR &&
      metadata != nullptr) {
    for (int i = 0; i < metadata->topic_cnt; ++i) {
      if (topic_name == metadata->topics[i].topic && metadata->topics[i].partition_cnt > 0) {
        count = metadata->topics[i].partition_cnt;
      }
    }
  }
  if (metadata != nullptr) rd_kafka_metadata_destroy(metadata);
  rd_kafka_topic_destroy(topic);
  return count;
}

void KafkaIngest::RunOnWorkers(std::vector<Control> controls) {
  std::vector<std::pair<Worker*, uint64_t>> waits;
  for (Control& control : controls) {
    Worker* worker = workers_[static_cast<size_t>(control.partition) % workers_.size()].get();
    kpid::MutexLock lock(&worker->control_mu);
    if (worker->exited) {
      // The worker thread is gone: its partitions are ours to change.
      Apply(worker, control);
      continue;
    }
    worker->control.push_back(std::move(control));
    waits.emplace_back(worker, ++worker->control_posted);
    worker->control_pending.store(true, std::memory_order_release);
  }
  for (const auto& [worker, ticket] : waits) rd_kafka_queue_yield(worker->queue);
  AwaitControls(waits);
}

void KafkaIngest::AwaitControls(const std::vector<std::pair<Worker*, uint64_t>>& waits) {
  for (const auto& [worker, ticket] : waits) {
    kpid::MutexLock lock(&worker->control_mu);
    while (worker->control_done < ticket) worker->control_done_cv.Wait(&worker->control_mu);
  }
}

void KafkaIngest::ServeControl(Worker* worker) {
  kpid::MutexLock lock(&worker->control_mu);
  worker->control_pending.store(false, std::memory_order_relaxed);
  for (Control& control : worker->control) Apply(worker, control);
  worker->control_done += worker->control.size();
  worker->control.clear();
  worker->control_done_cv.SignalAll();
}

bool KafkaIngest::ReachedEnd(const Owned& owned, int32_t partition) const {
  int64_t low = 0;
  int64_t high = 0;
  // librdkafka's cached watermarks (from fetch responses): no request.
  if (rd_kafka_get_watermark_offsets(consumer_, options_.config->kafka.topic.c_str(), partition,
                                     &low, &high) != RD_KAFKA_RESP_ERR_NO_ERROR ||
      high < 0) {
    return false;
  }
  if (owned.next_offset < 0) return low >= high;  // nothing read: only an empty log
  return owned.next_offset >= high;
}

void KafkaIngest::Apply(Worker* worker, Control& control) {
  if (control.kind == Control::Kind::kPause) {
    control.gate->PauseUntilResumed();
    return;
  }
  const size_t p = static_cast<size_t>(control.partition);
  if (control.kind == Control::Kind::kAdopt) {
    if (p >= worker->partitions.size()) worker->partitions.resize(p + 1);
    if (worker->partitions[p].handler == nullptr) worker->owned.push_back(control.partition);
    worker->partitions[p] = {std::move(control.handler), control.next_offset, control.next_offset};
    worker->partitions[p].handler->SetCaughtUp(false);
    return;
  }
  Owned* owned = worker->Find(control.partition);
  if (owned == nullptr) return;
  owned->CheckpointIfMoved();
  *owned = Owned{};
  std::erase(worker->owned, control.partition);
}

absl::Status KafkaIngest::SwapHandlers(std::shared_ptr<const model::Config> config,
                                       const HandlerSwap& swap) {
  kpid::MutexLock rebalance(&rebalance_mu_);
  if (stop_.load(std::memory_order_acquire)) {
    return absl::UnavailableError("kafka ingest is stopping");
  }
  PauseGate gate;
  std::vector<std::pair<Worker*, uint64_t>> waits;
  for (auto& worker : workers_) {
    kpid::MutexLock lock(&worker->control_mu);
    // An exited worker's partitions are ours to change already.
    if (worker->exited) continue;
    Control pause;
    pause.kind = Control::Kind::kPause;
    pause.gate = &gate;
    worker->control.push_back(std::move(pause));
    waits.emplace_back(worker.get(), ++worker->control_posted);
    worker->control_pending.store(true, std::memory_order_release);
  }
  for (const auto& [worker, ticket] : waits) rd_kafka_queue_yield(worker->queue);
  gate.AwaitPaused(waits.size());

  // Every worker is between two batches: their partitions are ours.
  std::map<int32_t, int64_t> next_offsets;
  for (auto& worker : workers_) {
    for (int32_t partition : worker->owned) {
      next_offsets[partition] = worker->Find(partition)->next_offset;
    }
  }
  absl::StatusOr<std::map<int32_t, std::shared_ptr<PartitionHandler>>> handlers =
      swap(next_offsets);
  if (handlers.ok()) {
    for (auto& [partition, handler] : *handlers) {
      Worker* worker = workers_[static_cast<size_t>(partition) % workers_.size()].get();
      Owned* owned = worker->Find(partition);
      if (owned == nullptr || handler == nullptr) continue;
      handler->SetCaughtUp(owned->caught_up);
      owned->handler = std::move(handler);
    }
    for (auto& worker : workers_) worker->decoder = std::make_unique<EventDecoder>(*config);
    // The old decoders are gone before the config they refer to may be.
    decoder_config_ = std::move(config);
    // Restored, not adopted yet: adopted as swapped.
    kpid::MutexLock lock(&restored_mu_);
    for (Restored& restored : restored_) {
      auto it = handlers->find(restored.partition);
      if (it != handlers->end() && it->second != nullptr) restored.opened.handler = it->second;
    }
  }

  gate.Resume();
  AwaitControls(waits);
  return handlers.status();
}

void KafkaIngest::OnRebalance(int err, rd_kafka_topic_partition_list_s* partitions) {
  kpid::MutexLock rebalance(&rebalance_mu_);
  const bool cooperative =
      std::string_view(rd_kafka_rebalance_protocol(consumer_)) == "COOPERATIVE";
  std::string names;
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    int32_t highest = -1;
    for (int i = 0; i < partitions->cnt; ++i) {
      highest = std::max(highest, partitions->elems[i].partition);
    }
    const int partition_count =
        TopicPartitionCount(std::max(options_.config->kafka.partitions, highest + 1));
    // Handlers to their workers before any message can arrive; then each
    // partition starts where its handler's state ends.
    std::vector<int32_t> numbers;
    for (int i = 0; i < partitions->cnt; ++i) numbers.push_back(partitions->elems[i].partition);
    // Restores run on the handlers' threads, not here: readers answer
    // without the partitions restoring, and /readyz waits for them.
    const uint64_t ticket = ++last_ticket_;
    std::vector<PartitionHandlers::Opened> opened = options_.partitions->OpenAsync(
        numbers, partition_count, [this, ticket](int32_t partition, PartitionHandlers::Opened o) {
          OnRestored(partition, ticket, std::move(o));
        });
    std::vector<Control> adopts;
    rd_kafka_topic_partition_list_t* paused = rd_kafka_topic_partition_list_new(partitions->cnt);
    for (int i = 0; i < partitions->cnt; ++i) {
      rd_kafka_topic_partition_t& tp = partitions->elems[i];
      static_assert(kFromBeginning == RD_KAFKA_OFFSET_BEGINNING);
      if (opened[static_cast<size_t>(i)].handler == nullptr) {
        // Restoring: paused, then sought to the restored offset. From the
        // beginning should that seek fail: never past what the state holds.
        tp.offset = RD_KAFKA_OFFSET_BEGINNING;
        restoring_[tp.partition] = {.ticket = ticket};
        rd_kafka_topic_partition_list_add(paused, tp.topic, tp.partition);
        continue;
      }
      const int64_t next_offset = opened[static_cast<size_t>(i)].next_offset;
      if (next_offset != kUnknownOffset) tp.offset = next_offset;
      adopts.push_back({.kind = Control::Kind::kAdopt,
                        .partition = tp.partition,
                        .handler = std::move(opened[static_cast<size_t>(i)].handler),
                        .next_offset = next_offset});
    }
    RunOnWorkers(std::move(adopts));
    options_.partitions->DropKept();
    for (int i = 0; i < partitions->cnt; ++i) {
      const rd_kafka_topic_partition_t& tp = partitions->elems[i];
      rd_kafka_queue_t* queue = rd_kafka_queue_get_partition(consumer_, tp.topic, tp.partition);
      if (queue == nullptr) {
        log::Error("cannot get partition queue", {{"partition", absl::StrCat(tp.partition)}});
        continue;
      }
      Worker* worker = workers_[static_cast<size_t>(tp.partition) % workers_.size()].get();
      rd_kafka_queue_forward(queue, worker->queue);
      rd_kafka_queue_destroy(queue);
      absl::StrAppend(&names, names.empty() ? "" : ",", tp.partition,
                      restoring_.contains(tp.partition) ? "(restoring)"
                      : tp.offset >= 0                  ? absl::StrCat("@", tp.offset)
                                                        : "");
    }
    // Before the assignment starts their fetchers (the partitions exist:
    // their queues were just taken), so not one message is fetched.
    if (paused->cnt > 0) {
      rd_kafka_resp_err_t e = rd_kafka_pause_partitions(consumer_, paused);
      for (int i = 0; i < paused->cnt; ++i) {
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR) e = paused->elems[i].err;
      }
      if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        // Then messages may arrive before the handler: dropped uncounted by
        // its worker, and read again after the seek.
        log::Error("cannot pause restoring partitions", {{"error", rd_kafka_err2str(e)}});
      }
    }
    rd_kafka_topic_partition_list_destroy(paused);
    if (cooperative) {
      rd_kafka_error_t* error = rd_kafka_incremental_assign(consumer_, partitions);
      if (error != nullptr) {
        log::Error("incremental assign failed", {{"error", rd_kafka_error_string(error)}});
        rd_kafka_error_destroy(error);
      }
    } else {
      rd_kafka_assign(consumer_, partitions);
    }
    absl::MutexLock lock(&assignment_mu_);
    if (!cooperative) assignment_.clear();
    for (int i = 0; i < partitions->cnt; ++i) {
      const rd_kafka_topic_partition_t& tp = partitions->elems[i];
      // Restoring: where it starts is known once restored (Resume).
      assignment_.push_back(
          {tp.topic, tp.partition, restoring_.contains(tp.partition) ? kUnknownOffset : tp.offset});
    }
    assigned_count_.store(static_cast<int>(assignment_.size()), std::memory_order_relaxed);
    log::Info("partitions assigned", {{"partitions", names}});
  } else {
    // Each worker checkpoints and lets go of its revoked partitions first:
    // none is closed while its worker may be inside a batch touching it.
    std::vector<Control> releases;
    for (int i = 0; i < partitions->cnt; ++i) {
      releases.push_back(Control::Release(partitions->elems[i].partition));
    }
    RunOnWorkers(std::move(releases));
    // Partitions still restoring (their restore is discarded by Close) or
    // not sought yet: librdkafka keeps an application's pause across
    // assignments, and their next one decides anew.
    rd_kafka_topic_partition_list_t* unpause = rd_kafka_topic_partition_list_new(partitions->cnt);
    for (int i = 0; i < partitions->cnt; ++i) {
      const rd_kafka_topic_partition_t& tp = partitions->elems[i];
      if (restoring_.erase(tp.partition) > 0) {
        rd_kafka_topic_partition_list_add(unpause, tp.topic, tp.partition);
      }
    }
    if (cooperative) {
      rd_kafka_error_t* error = rd_kafka_incremental_unassign(consumer_, partitions);
      if (error != nullptr) rd_kafka_error_destroy(error);
    } else {
      rd_kafka_assign(consumer_, nullptr);
    }
    if (unpause->cnt > 0) rd_kafka_resume_partitions(consumer_, unpause);
    rd_kafka_topic_partition_list_destroy(unpause);
    // An eager rebalance revokes everything and gives most of it back at
    // once: keep the handlers until the next assignment says.
    for (int i = 0; i < partitions->cnt; ++i) {
      options_.partitions->Close(partitions->elems[i].partition, /*keep=*/!cooperative);
    }
    absl::MutexLock lock(&assignment_mu_);
    if (cooperative) {
      for (int i = 0; i < partitions->cnt; ++i) {
        std::erase_if(assignment_, [&](const Assigned& a) {
          return a.topic == partitions->elems[i].topic &&
                 a.partition == partitions->elems[i].partition;
        });
      }
    } else {
      assignment_.clear();
    }
    assigned_count_.store(static_cast<int>(assignment_.size()), std::memory_order_relaxed);
    log::Info("partitions revoked", {{"count", absl::StrCat(partitions->cnt)}});
  }
}

void KafkaIngest::OnRestored(int32_t partition, uint64_t ticket, PartitionHandlers::Opened opened) {
  // Called under the handlers' lock: only queued here. The poll thread
  // serves it within kPollTimeoutMs (waking it would take librdkafka's
  // queue lock under ours).
  kpid::MutexLock lock(&restored_mu_);
  restored_.push_back({partition, ticket, std::move(opened)});
}

void KafkaIngest::ServeRestored() {
  std::vector<Restored> restored;
  {
    kpid::MutexLock lock(&restored_mu_);
    restored.swap(restored_);
  }
  kpid::MutexLock rebalance(&rebalance_mu_);
  if (restoring_.empty()) return;
  std::vector<Control> adopts;
  for (Restored& r : restored) {
    auto it = restoring_.find(r.partition);
    // Revoked since (and assigned again: another ticket).
    if (it == restoring_.end() || it->second.ticket != r.ticket || it->second.adopted) continue;
    it->second.adopted = true;
    it->second.next_offset = r.opened.next_offset;
    adopts.push_back({.kind = Control::Kind::kAdopt,
                      .partition = r.partition,
                      .handler = std::move(r.opened.handler),
                      .next_offset = r.opened.next_offset});
  }
  RunOnWorkers(std::move(adopts));

  // Assigned from the beginning: a restored state that ends elsewhere seeks.
  const std::string& topic = options_.config->kafka.topic;
  rd_kafka_topic_partition_list_t* seeks = rd_kafka_topic_partition_list_new(0);
  std::vector<int32_t> resume;
  for (const auto& [partition, restoring] : restoring_) {
    if (!restoring.adopted) continue;
    if (restoring.next_offset >= 0) {
      rd_kafka_topic_partition_list_add(seeks, topic.c_str(), partition)->offset =
          restoring.next_offset;
    } else {
      resume.push_back(partition);
    }
  }
  if (seeks->cnt > 0) {
    rd_kafka_error_t* error = rd_kafka_seek_partitions(consumer_, seeks, kSeekTimeoutMs);
    for (int i = 0; i < seeks->cnt; ++i) {
      const rd_kafka_topic_partition_t& tp = seeks->elems[i];
      rd_kafka_resp_err_t e = error != nullptr ? rd_kafka_error_code(error) : tp.err;
      Restoring& restoring = restoring_[tp.partition];
      // Not started yet (the assignment waits for a commit or for fetchers
      // stopping): tried again at the next poll.
      if ((e == RD_KAFKA_RESP_ERR__STATE || e == RD_KAFKA_RESP_ERR__PREV_IN_PROGRESS) &&
          ++restoring.seek_attempts < kSeekAttempts) {
        continue;
      }
      if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        // Correct still: its worker skips what the state holds.
        log::Warn("restored partition not sought: read from its beginning",
                  {{"partition", absl::StrCat(tp.partition)}, {"error", rd_kafka_err2str(e)}});
      }
      resume.push_back(tp.partition);
    }
    if (error != nullptr) rd_kafka_error_destroy(error);
  }
  rd_kafka_topic_partition_list_destroy(seeks);
  Resume(std::move(resume));
}

void KafkaIngest::Resume(std::vector<int32_t> partitions) {
  if (partitions.empty()) return;
  const std::string& topic = options_.config->kafka.topic;
  rd_kafka_topic_partition_list_t* list =
      rd_kafka_topic_partition_list_new(static_cast<int>(partitions.size()));
  std::string names;
  absl::MutexLock lock(&assignment_mu_);
  for (int32_t partition : partitions) {
    const int64_t next_offset = restoring_[partition].next_offset;
    restoring_.erase(partition);
    rd_kafka_topic_partition_list_add(list, topic.c_str(), partition);
    for (Assigned& a : assignment_) {
      if (a.partition == partition) a.start_offset = next_offset;
    }
    absl::StrAppend(&names, names.empty() ? "" : ",", partition,
                    next_offset >= 0 ? absl::StrCat("@", next_offset) : "");
  }
  rd_kafka_resp_err_t e = rd_kafka_resume_partitions(consumer_, list);
  rd_kafka_topic_partition_list_destroy(list);
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    log::Error("cannot resume restored partitions",
               {{"partitions", names}, {"error", rd_kafka_err2str(e)}});
    return;
  }
  log::Info("restored partitions resumed", {{"partitions", names}});
}

void KafkaIngest::WorkerLoop(Worker* worker) {
  std::vector<rd_kafka_message_t*> batch(kBatchSize);
  worker->events.resize(kHandleChunk);
  worker->valid.resize(kHandleChunk);
  worker->sources.resize(kHandleChunk);
  worker->verdicts.resize(kHandleChunk);
  // Last message per partition in the batch, whose offset is stored once per
  // batch. A worker has few partitions and a batch comes in runs of one
  // partition, so a short vector checked from its back beats a hash map
  // updated per message.
  std::vector<rd_kafka_message_t*> last_in_partition;
  const absl::Duration checkpoint_interval = options_.config->checkpoint_interval;
  absl::Time next_tick = absl::Now();
  absl::Time next_checkpoint = next_tick + checkpoint_interval;
  while (!stop_.load(std::memory_order_acquire)) {
    if (worker->control_pending.load(std::memory_order_acquire)) ServeControl(worker);
    // Wait for one message, then take whatever else is already queued:
    // waiting for a full batch would add up to kPollTimeoutMs of latency.
    ssize_t n = rd_kafka_consume_batch_queue(worker->queue, kPollTimeoutMs, batch.data(), 1);
    if (n == 1) {
      const ssize_t more =
          rd_kafka_consume_batch_queue(worker->queue, 0, batch.data() + 1, batch.size() - 1);
      if (more > 0) n += more;
    }
    if (n < 0) {
      log::Error("consume failed", {{"error", rd_kafka_err2str(rd_kafka_last_error())}});
      continue;
    }
    last_in_partition.clear();
    if (n > 0) worker->decoder->SetWallNow(absl::Now());
    for (ssize_t i = 0; i < n;) {
      rd_kafka_message_t* message = batch[i];
      if (message->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        log::Warn("kafka fetch error", {{"error", rd_kafka_message_errstr(message)}});
        ++i;
        continue;
      }
      Owned* owned = worker->Find(message->partition);
      // Not ours any more, or already in the state it was restored with.
      if (owned == nullptr || message->offset < owned->next_offset) {
        if (owned != nullptr) reread_messages_.fetch_add(1, std::memory_order_relaxed);
        ++i;
        continue;
      }
      // The messages after it of the same partition, in offset order.
      ssize_t end = i + 1;
      while (end < n && static_cast<size_t>(end - i) < kHandleChunk &&
             batch[end]->err == RD_KAFKA_RESP_ERR_NO_ERROR && batch[end]->rkt == message->rkt &&
             batch[end]->partition == message->partition &&
             batch[end]->offset > batch[end - 1]->offset) {
        ++end;
      }
      ProcessRun(worker, *owned, absl::MakeConstSpan(batch.data() + i, end - i));
      owned->next_offset = batch[end - 1]->offset + 1;
      RememberLast(last_in_partition, batch[end - 1]);
      i = end;
    }
    for (rd_kafka_message_t* message : last_in_partition) {
      // Stores offset + 1: the next message to read.
      rd_kafka_offset_store(message->rkt, message->partition, message->offset);
    }
    for (ssize_t i = 0; i < n; ++i) rd_kafka_message_destroy(batch[i]);
    const absl::Time now = absl::Now();
    if (now >= next_tick) {
      for (int32_t partition : worker->owned) {
        Owned* owned = worker->Find(partition);
        if (!owned->caught_up && ReachedEnd(*owned, partition)) {
          owned->caught_up = true;
          owned->handler->SetCaughtUp(true);
        }
        owned->handler->Tick(now);
      }
      next_tick = now + kTickInterval;
    }
    if (now >= next_checkpoint) {
      for (int32_t partition : worker->owned) worker->Find(partition)->CheckpointIfMoved();
      next_checkpoint = now + checkpoint_interval;
    }
  }
  // Requests posted while this loop ended are served here; later ones by
  // their poster.
  ServeControl(worker);
  kpid::MutexLock lock(&worker->control_mu);
  worker->exited = true;
}

void KafkaIngest::ProcessRun(Worker* worker, Owned& owned,
                             absl::Span<rd_kafka_message_t* const> run) {
  // Counts and rejections by the decoder as the messages come; what the
  // handler says afterwards, in order: the same counts as one at a time
  // (the late check reads the watermark the accepted events before it set).
  size_t valid = 0;
  // The run's events refer to the decoder's memo until they are handled and
  // accounted for below; the memo may only be emptied here, between runs.
  worker->decoder->StartRun();
  for (size_t k = 0; k < run.size(); ++k) {
    const rd_kafka_message_t& message = *run[k];
    owned.handler->stats().messages.Add();
    const absl::string_view value(static_cast<const char*>(message.payload), message.len);
    // Only a value that does not look like JSON needs its content-type:
    // reading a message's headers costs librdkafka a calloc and a free.
    const bool json = EventDecoder::LooksLikeJson(value) || HasJsonContentType(message);
    if (std::optional<Rejection> rejection =
            worker->decoder->Decode(value, json, &worker->events[k])) {
      Reject(owned, message, *std::move(rejection));
      continue;
    }
    worker->valid[valid] = &worker->events[k];
    worker->sources[valid++] = &message;
  }
  if (valid > 0) {
    owned.handler->HandleBatch(absl::MakeConstSpan(worker->valid.data(), valid),
                               worker->verdicts.data());
  }
  for (size_t k = 0; k < valid; ++k) {
    Account(owned, *worker->sources[k], *worker->valid[k], worker->verdicts[k]);
  }
  // The decoder drops a large value's memory at its next Decode, into the
  // same event; here the next Decode goes into another slot, so drop it now.
  for (size_t k = 0; k < run.size(); ++k) {
    if (run[k]->len > EventDecoder::kLargeValueBytes) worker->events[k].ReleaseMemory();
  }
}

void KafkaIngest::Account(Owned& owned, const rd_kafka_message_t& message,
                          const DecodedEvent& event, Verdict verdict) {
  PartitionStats& stats = owned.handler->stats();
  switch (verdict.kind) {
    case Verdict::Kind::kAccepted: {
      stats.consumed.Add();
      const int64_t at_ms = UnixMillis(event.occurred_at);
      const int64_t watermark_ms = stats.watermark_ms.Get();
      if (watermark_ms != std::numeric_limits<int64_t>::min() &&
          at_ms < watermark_ms - retention_ms_) {
        stats.late.Add();
      }
      stats.watermark_ms.Observe(at_ms);
      return;
    }
    case Verdict::Kind::kDuplicate:
      stats.duplicate.Add();
      return;
    case Verdict::Kind::kRejected:
      Reject(owned, message,
             Rejection{verdict.reason, absl::StrCat("rejected by case tracker: ",
                                                    model::RejectReasonName(verdict.reason))});
      return;
  }
}

void KafkaIngest::Reject(Owned& owned, const rd_kafka_message_t& message, Rejection rejection) {
  SingleWriterCounter& counter =
      owned.handler->stats().rejected[static_cast<size_t>(rejection.reason)];
  counter.Add();
  if (ShouldLogRejection(counter.Get())) {
    log::Warn("event rejected", {{"reason", model::RejectReasonName(rejection.reason)},
                                 {"detail", rejection.detail},
                                 {"partition", absl::StrCat(message.partition)},
                                 {"offset", absl::StrCat(message.offset)},
                                 {"count", absl::StrCat(counter.Get())}});
  }
  if (options_.dead_letter != nullptr) options_.dead_letter->Send(message, rejection);
}

std::vector<KafkaIngest::PartitionLag> KafkaIngest::Lags() const {
  std::vector<PartitionLag> lags;
  absl::MutexLock lock(&assignment_mu_);
  if (assignment_.empty()) return lags;
  rd_kafka_topic_partition_list_t* list =
      rd_kafka_topic_partition_list_new(static_cast<int>(assignment_.size()));
  for (const Assigned& a : assignment_) {
    rd_kafka_topic_partition_list_add(list, a.topic.c_str(), a.partition);
  }
  rd_kafka_position(consumer_, list);
  for (int i = 0; i < list->cnt; ++i) {
    const rd_kafka_topic_partition_t& tp = list->elems[i];
    int64_t low = 0, high = 0;
    if (rd_kafka_get_watermark_offsets(consumer_, tp.topic, tp.partition, &low, &high) !=
            RD_KAFKA_RESP_ERR_NO_ERROR ||
        high < 0) {
      continue;  // no fetch response yet: lag unknown, not zero
    }
    // Before the first fetch the position is unknown: the partition was
    // assigned at its restored offset (or from its beginning, when nothing
    // was restored); a start at the group's committed offset is unknown
    // until fetched, and left out rather than counted as wholly unread.
    int64_t position = tp.offset;
    if (position < 0) position = assignment_[static_cast<size_t>(i)].start_offset;
    if (position == kFromBeginning) position = low;
    if (position < 0) continue;
    lags.push_back({tp.topic, tp.partition, std::max<int64_t>(0, high - position)});
  }
  rd_kafka_topic_partition_list_destroy(list);
  return lags;
}

}  // namespace kpid::ingest
