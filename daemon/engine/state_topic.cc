#include "daemon/engine/state_topic.h"

#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "daemon/common/log.h"
#include "daemon/ingest/kafka_conf.h"

namespace kpid::engine {
namespace {

int TimeoutMs(absl::Duration d) { return static_cast<int>(absl::ToInt64Milliseconds(d)); }

// What the delivery reports of one Write say.
struct Deliveries {
  int delivered = 0;
  rd_kafka_resp_err_t first_error = RD_KAFKA_RESP_ERR_NO_ERROR;
};

void OnDelivery(rd_kafka_t*, const rd_kafka_message_t* message, void*) {
  auto* deliveries = static_cast<Deliveries*>(message->_private);
  if (deliveries == nullptr) return;
  if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    ++deliveries->delivered;
  } else if (deliveries->first_error == RD_KAFKA_RESP_ERR_NO_ERROR) {
    deliveries->first_error = message->err;
  }
}

// Partition counts of `names` from one metadata request of every topic (a
// request for named topics may make them, with the broker's defaults, where
// topics are auto-created). Missing topics are absent.
absl::StatusOr<std::map<std::string, int>> PartitionCounts(rd_kafka_t* rk, absl::Duration timeout) {
  const rd_kafka_metadata_t* metadata = nullptr;
  const rd_kafka_resp_err_t err =
      rd_kafka_metadata(rk, /*all_topics=*/1, nullptr, &metadata, TimeoutMs(timeout));
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return absl::UnavailableError(absl::StrCat("kafka metadata: ", rd_kafka_err2str(err)));
  }
  std::map<std::string, int> counts;
  for (int i = 0; i < metadata->topic_cnt; ++i) {
    if (metadata->topics[i].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      counts[metadata->topics[i].topic] = metadata->topics[i].partition_cnt;
    }
  }
  rd_kafka_metadata_destroy(metadata);
  return counts;
}

absl::StatusOr<rd_kafka_t*> NewProducer(const StateTopic::Options& options) {
  absl::StatusOr<rd_kafka_conf_t*> conf =
      ingest::MakeKafkaConf(options.brokers,
                            {
                                {"enable.idempotence", "true"},  // and acks=all
                                {"linger.ms", "5"},
                                {"allow.auto.create.topics", "false"},
                                {"client.id", "kpid-state"},
                            },
                            options.properties);
  if (!conf.ok()) return conf.status();
  rd_kafka_conf_set_dr_msg_cb(*conf, OnDelivery);
  char err[512];
  rd_kafka_t* producer = rd_kafka_new(RD_KAFKA_PRODUCER, *conf, err, sizeof(err));
  if (producer == nullptr) {
    rd_kafka_conf_destroy(*conf);
    return absl::InvalidArgumentError(absl::StrCat("state topic producer: ", err));
  }
  return producer;
}

}  // namespace

absl::StatusOr<std::unique_ptr<StateTopic>> StateTopic::Start(Options options) {
  absl::StatusOr<rd_kafka_t*> producer = NewProducer(options);
  if (!producer.ok()) return producer.status();
  std::unique_ptr<StateTopic> topic(new StateTopic(std::move(options)));
  topic->producer_ = *producer;
  if (absl::Status s = topic->EnsureTopic(); !s.ok()) return s;
  return topic;
}

absl::Status StateTopic::RecreateProducer() {
  char reason[512];
  const rd_kafka_resp_err_t fatal = rd_kafka_fatal_error(producer_, reason, sizeof(reason));
  absl::StatusOr<rd_kafka_t*> producer = NewProducer(options_);
  if (!producer.ok()) {
    log::Error("state topic producer failed and cannot be replaced",
               {{"error", rd_kafka_err2str(fatal)},
                {"detail", reason},
                {"replacement", producer.status().ToString()}});
    return producer.status();
  }
  // Every Write flushed or purged its own messages before returning: none
  // is left to report to a Deliveries that is gone.
  rd_kafka_destroy(producer_);
  producer_ = *producer;
  producers_recreated_.fetch_add(1, std::memory_order_relaxed);
  log::Error("state topic producer failed fatally: replaced",
             {{"error", rd_kafka_err2str(fatal)}, {"detail", reason}});
  return absl::OkStatus();
}

bool StateTopic::Failed() const {
  return rd_kafka_fatal_error(producer_, nullptr, 0) != RD_KAFKA_RESP_ERR_NO_ERROR;
}

void StateTopic::RaiseFatalErrorForTest() {
  rd_kafka_test_fatal_error(producer_, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                            "raised by a test");
}

StateTopic::~StateTopic() {
  if (producer_ == nullptr) return;
  rd_kafka_flush(producer_, TimeoutMs(options_.timeout));
  rd_kafka_destroy(producer_);
}

absl::Status StateTopic::EnsureTopic() {
  absl::StatusOr<std::map<std::string, int>> counts = PartitionCounts(producer_, options_.timeout);
  if (!counts.ok()) return counts.status();
  const auto input = counts->find(options_.input_topic);
  const int partitions = input != counts->end() ? input->second : options_.partitions_fallback;
  if (const auto existing = counts->find(options_.topic); existing != counts->end()) {
    if (existing->second < partitions) {
      return absl::FailedPreconditionError(absl::StrCat(
          "kafka.state_topic \"", options_.topic, "\" has ", existing->second,
          " partitions, fewer than the ", partitions, " of \"", options_.input_topic, "\""));
    }
    return absl::OkStatus();
  }
  char err[512];
  rd_kafka_NewTopic_t* new_topic =
      rd_kafka_NewTopic_new(options_.topic.c_str(), partitions,
                            /*replication_factor=*/-1, err, sizeof(err));
  if (new_topic == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("kafka.state_topic: ", err));
  }
  rd_kafka_NewTopic_set_config(new_topic, "cleanup.policy", "compact");
  rd_kafka_queue_t* queue = rd_kafka_queue_new(producer_);
  rd_kafka_CreateTopics(producer_, &new_topic, 1, nullptr, queue);
  rd_kafka_NewTopic_destroy(new_topic);
  rd_kafka_event_t* event = rd_kafka_queue_poll(queue, TimeoutMs(options_.timeout));
  absl::Status status = absl::OkStatus();
  if (event == nullptr) {
    status = absl::DeadlineExceededError("kafka.state_topic: no answer to CreateTopics");
  } else if (rd_kafka_event_error(event) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    status = absl::UnavailableError(
        absl::StrCat("kafka.state_topic: CreateTopics: ", rd_kafka_event_error_string(event)));
  } else {
    size_t n = 0;
    const rd_kafka_topic_result_t** results =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(event), &n);
    for (size_t i = 0; i < n; ++i) {
      const rd_kafka_resp_err_t e = rd_kafka_topic_result_error(results[i]);
      // Another replica may have made it meanwhile.
      if (e != RD_KAFKA_RESP_ERR_NO_ERROR && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
        status = absl::UnavailableError(
            absl::StrCat("kafka.state_topic: cannot create \"", options_.topic,
                         "\": ", rd_kafka_topic_result_error_string(results[i])));
      }
    }
  }
  if (event != nullptr) rd_kafka_event_destroy(event);
  rd_kafka_queue_destroy(queue);
  if (status.ok()) {
    log::Info("state topic created", {{"topic", options_.topic},
                                      {"partitions", absl::StrCat(partitions)},
                                      {"cleanup.policy", "compact"}});
  }
  return status;
}

void StateTopic::Found(int32_t partition, const Scan& scan) {
  kpid::MutexLock lock(&mu_);
  Known& known = known_[partition];
  if (scan.newest_manifest &&
      (!known.newest || scan.newest_manifest->generation >= known.newest->generation)) {
    known.newest = scan.newest_manifest;
  }
  known.newest_generation = std::max(known.newest_generation, scan.newest_generation);
  known.stale_chunks.insert(scan.chunk_keys.begin(), scan.chunk_keys.end());
}

absl::Status StateTopic::Write(int32_t partition, int64_t next_offset, absl::string_view state) {
  if (Failed()) {
    if (absl::Status s = RecreateProducer(); !s.ok()) return s;
  }
  uint64_t newest_generation = 0;
  {
    kpid::MutexLock lock(&mu_);
    if (auto it = known_.find(partition); it != known_.end()) {
      newest_generation = it->second.newest_generation;
    }
  }
  // Unique across replicas and runs (a chunk key must never name two
  // states), and above what the topic holds already, torn generations
  // included (their chunks are tombstoned below).
  const uint64_t generation = std::max<uint64_t>(
      newest_generation + 1, static_cast<uint64_t>(absl::ToUnixMicros(absl::Now())));
  auto produce = [&](const std::vector<ChangelogRecord>& records) -> absl::Status {
    Deliveries deliveries;
    for (const ChangelogRecord& r : records) {
      const absl::Time give_up = absl::Now() + options_.timeout;
      // A tombstone is a null value.
      void* value = r.value ? const_cast<char*>(r.value->data()) : nullptr;
      const size_t value_size = r.value ? r.value->size() : 0;
      while (true) {
        const rd_kafka_resp_err_t e = rd_kafka_producev(
            producer_, RD_KAFKA_V_TOPIC(options_.topic.c_str()), RD_KAFKA_V_PARTITION(partition),
            RD_KAFKA_V_KEY(r.key.data(), r.key.size()), RD_KAFKA_V_VALUE(value, value_size),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(&deliveries),
            RD_KAFKA_V_END);
        if (e == RD_KAFKA_RESP_ERR_NO_ERROR) break;
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL && absl::Now() < give_up) {
          rd_kafka_poll(producer_, 10);
          continue;
        }
        rd_kafka_flush(producer_, TimeoutMs(options_.timeout));  // the opaque must outlive them
        return absl::UnavailableError(
            absl::StrCat("state topic \"", options_.topic, "\": ", rd_kafka_err2str(e)));
      }
    }
    const rd_kafka_resp_err_t flushed = rd_kafka_flush(producer_, TimeoutMs(options_.timeout));
    if (flushed != RD_KAFKA_RESP_ERR_NO_ERROR) {
      // Still in flight: their reports must not reach `deliveries` any more.
      rd_kafka_purge(producer_, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
      rd_kafka_flush(producer_, TimeoutMs(options_.timeout));
      return absl::DeadlineExceededError(
          absl::StrCat("state topic \"", options_.topic, "\": not acknowledged in time"));
    }
    if (deliveries.first_error != RD_KAFKA_RESP_ERR_NO_ERROR ||
        deliveries.delivered != static_cast<int>(records.size())) {
      return absl::UnavailableError(absl::StrCat("state topic \"", options_.topic,
                                                 "\": ", rd_kafka_err2str(deliveries.first_error)));
    }
    return absl::OkStatus();
  };
  std::vector<ChangelogRecord> records =
      EncodeGeneration(partition, generation, next_offset, state, options_.chunk_bytes);
  absl::Status written = produce(records);
  // Failed fatally meanwhile: written again (the same keys and values) by
  // a new producer, so the fatal error costs no checkpoint.
  if (!written.ok() && Failed() && RecreateProducer().ok()) written = produce(records);
  if (!written.ok()) return written;
  // The new generation is complete: every older chunk known may go.
  std::set<std::string> stale;
  {
    kpid::MutexLock lock(&mu_);
    Known& known = known_[partition];
    if (known.newest) {
      for (const ChangelogRecord& r : ChunkTombstones(*known.newest)) stale.insert(r.key);
    }
    stale.merge(known.stale_chunks);
    known.stale_chunks.clear();
    known.newest = ChangelogManifest{.partition = partition,
                                     .generation = generation,
                                     .next_offset = next_offset,
                                     .chunk_count = static_cast<uint32_t>(records.size() - 1)};
    known.newest_generation = generation;
  }
  if (stale.empty()) return absl::OkStatus();
  std::vector<ChangelogRecord> tombstones;
  for (const std::string& key : stale) tombstones.push_back({key, std::nullopt});
  if (absl::Status s = produce(tombstones); !s.ok()) {
    // Costs only space: tried again after the next generation.
    log::Warn("state topic: old chunks not tombstoned",
              {{"partition", absl::StrCat(partition)}, {"error", s.ToString()}});
    kpid::MutexLock lock(&mu_);
    known_[partition].stale_chunks.merge(stale);
  }
  return absl::OkStatus();
}

absl::StatusOr<StateTopic::Scan> StateTopic::Read(int32_t partition, int64_t tail) {
  absl::StatusOr<rd_kafka_conf_t*> conf =
      ingest::MakeKafkaConf(options_.brokers,
                            {
                                // Never joins: assign() only, nothing committed.
                                {"group.id", "kpid-state-restore"},
                                {"enable.auto.commit", "false"},
                                {"enable.partition.eof", "true"},
                                {"allow.auto.create.topics", "false"},
                                {"client.id", "kpid-state-restore"},
                            },
                            options_.properties);
  if (!conf.ok()) return conf.status();
  char err[512];
  rd_kafka_t* consumer = rd_kafka_new(RD_KAFKA_CONSUMER, *conf, err, sizeof(err));
  if (consumer == nullptr) {
    rd_kafka_conf_destroy(*conf);
    return absl::InvalidArgumentError(absl::StrCat("state topic consumer: ", err));
  }
  Scan scan;
  absl::Status status = absl::OkStatus();
  int64_t low = 0;
  int64_t high = 0;
  const rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(
      consumer, options_.topic.c_str(), partition, &low, &high, TimeoutMs(options_.timeout));
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    status = absl::UnavailableError(absl::StrCat("state topic \"", options_.topic, "\" partition ",
                                                 partition, ": ", rd_kafka_err2str(e)));
  } else if (high > low) {
    const int64_t start = tail > 0 ? std::max(low, high - tail) : low;
    scan.whole_log = start == low;
    rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, options_.topic.c_str(), partition)->offset = start;
    rd_kafka_assign(consumer, list);
    rd_kafka_topic_partition_list_destroy(list);
    ChangelogAssembler assembler(partition);
    const absl::Time give_up = absl::Now() + options_.timeout;
    bool done = false;
    while (!done) {
      if (absl::Now() > give_up) {
        status = absl::DeadlineExceededError(absl::StrCat(
            "state topic \"", options_.topic, "\" partition ", partition, ": not read to its end"));
        break;
      }
      rd_kafka_message_t* m = rd_kafka_consumer_poll(consumer, 100);
      if (m == nullptr) continue;
      if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        done = true;
      } else if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        log::Warn("state topic read",
                  {{"partition", absl::StrCat(partition)}, {"error", rd_kafka_message_errstr(m)}});
      } else {
        const absl::string_view key(static_cast<const char*>(m->key), m->key_len);
        const absl::string_view value(static_cast<const char*>(m->payload), m->len);
        assembler.Add(key, m->payload != nullptr ? &value : nullptr);
        scan.bytes += m->key_len + m->len;
        done = m->offset + 1 >= high;
      }
      rd_kafka_message_destroy(m);
    }
    if (status.ok()) {
      scan.newest_manifest = assembler.NewestManifest();
      scan.chunk_keys = assembler.ChunkKeys();
      scan.newest_generation = assembler.NewestGeneration();
      if (absl::StatusOr<RestoredState> restored = assembler.Newest(); restored.ok()) {
        scan.state = *std::move(restored);
      }
      // A tail lacks the older chunks by design: not worth a complaint.
      if (scan.whole_log) scan.rejected = assembler.rejected();
    }
  }
  rd_kafka_consumer_close(consumer);
  rd_kafka_destroy(consumer);
  if (!status.ok()) return status;
  return scan;
}

}  // namespace kpid::engine
