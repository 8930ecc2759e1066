#include "tests/testing/kafka_client.h"

#include <librdkafka/rdkafka.h>

#include <atomic>
#include <stdexcept>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace kpid::testing {
namespace {

std::atomic<int> delivery_failures{0};

rd_kafka_t* NewClient(rd_kafka_type_t type, const std::map<std::string, std::string>& props) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  for (const auto& [k, v] : props) {
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof(err)) != RD_KAFKA_CONF_OK) {
      throw std::runtime_error(absl::StrCat("kafka conf ", k, ": ", err));
    }
  }
  if (type == RD_KAFKA_PRODUCER) {
    rd_kafka_conf_set_dr_msg_cb(conf, [](rd_kafka_t*, const rd_kafka_message_t* m, void*) {
      if (m->err) delivery_failures.fetch_add(1);
    });
  }
  rd_kafka_t* rk = rd_kafka_new(type, conf, err, sizeof(err));
  if (rk == nullptr) throw std::runtime_error(absl::StrCat("rd_kafka_new: ", err));
  return rk;
}

}  // namespace

TestProducer::TestProducer(const std::string& brokers)
    : rk_(NewClient(
          RD_KAFKA_PRODUCER,
          {{"bootstrap.servers", brokers}, {"linger.ms", "5"}, {"enable.idempotence", "true"}})) {}

TestProducer::~TestProducer() { rd_kafka_destroy(static_cast<rd_kafka_t*>(rk_)); }

void TestProducer::Send(const std::string& topic, const KafkaRecord& record) {
  auto* rk = static_cast<rd_kafka_t*>(rk_);
  rd_kafka_headers_t* headers = rd_kafka_headers_new(record.headers.size());
  for (const auto& [k, v] : record.headers) {
    rd_kafka_header_add(headers, k.c_str(), -1, v.data(), static_cast<ssize_t>(v.size()));
  }
  while (true) {
    rd_kafka_resp_err_t e = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(record.partition),
        RD_KAFKA_V_KEY(record.key.data(), record.key.size()),
        RD_KAFKA_V_VALUE(const_cast<char*>(record.value.data()), record.value.size()),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_END);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) return;
    if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      rd_kafka_headers_destroy(headers);
      throw std::runtime_error(absl::StrCat("produce: ", rd_kafka_err2str(e)));
    }
    rd_kafka_poll(rk, 10);
  }
}

int TestProducer::Flush(absl::Duration timeout) {
  rd_kafka_flush(static_cast<rd_kafka_t*>(rk_),
                 static_cast<int>(absl::ToInt64Milliseconds(timeout)));
  return delivery_failures.load() + rd_kafka_outq_len(static_cast<rd_kafka_t*>(rk_));
}

std::vector<KafkaRecord> ReadTopic(const std::string& brokers, const std::string& topic,
                                   size_t expected, absl::Duration timeout) {
  rd_kafka_t* rk = NewClient(RD_KAFKA_CONSUMER, {{"bootstrap.servers", brokers},
                                                 {"group.id", absl::StrCat("test-reader-", topic)},
                                                 {"auto.offset.reset", "earliest"},
                                                 {"enable.auto.commit", "false"}});
  // Manual assignment of every partition: no group join wait.
  const rd_kafka_metadata_t* metadata = nullptr;
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  if (rd_kafka_metadata(rk, 0, rkt, &metadata, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR ||
      metadata->topic_cnt != 1) {
    throw std::runtime_error("metadata for " + topic);
  }
  rd_kafka_topic_partition_list_t* parts = rd_kafka_topic_partition_list_new(1);
  for (int i = 0; i < metadata->topics[0].partition_cnt; ++i) {
    rd_kafka_topic_partition_list_add(parts, topic.c_str(), metadata->topics[0].partitions[i].id)
        ->offset = RD_KAFKA_OFFSET_BEGINNING;
  }
  rd_kafka_metadata_destroy(metadata);
  rd_kafka_topic_destroy(rkt);
  rd_kafka_assign(rk, parts);
  rd_kafka_topic_partition_list_destroy(parts);

  std::vector<KafkaRecord> records;
  const absl::Time deadline = absl::Now() + timeout;
  while (records.size() < expected && absl::Now() < deadline) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 100);
    if (m == nullptr) continue;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      KafkaRecord r;
      r.key.assign(static_cast<const char*>(m->key), m->key_len);
      r.value.assign(static_cast<const char*>(m->payload), m->len);
      r.partition = m->partition;
      rd_kafka_headers_t* headers = nullptr;
      if (rd_kafka_message_headers(m, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char* name;
        const void* value;
        size_t size;
        for (size_t i = 0; rd_kafka_header_get_all(headers, i, &name, &value, &size) ==
                           RD_KAFKA_RESP_ERR_NO_ERROR;
             ++i) {
          r.headers[name] = std::string(static_cast<const char*>(value), size);
        }
      }
      records.push_back(std::move(r));
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  return records;
}

}  // namespace kpid::testing
