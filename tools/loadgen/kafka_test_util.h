// Test helper: an in-process Kafka-protocol cluster (librdkafka's mock
// cluster) that kpi-loadgen can produce to, and a consumer to read it back.
//
//   MockKafka kafka("events", /*partitions=*/2);
//   ... produce to kafka.bootstraps() ...
//   std::vector<MockKafka::Message> got = kafka.Consume(100, absl::Seconds(10));
//
// Thread-safety: one test thread; the mock cluster runs its own threads.
#pragma once

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace kpid::loadgen::testing {

class MockKafka {
 public:
  struct Message {
    std::string key;
    std::string value;
    std::string content_type;  // header, empty when absent
    int32_t partition = -1;
  };

  MockKafka(std::string topic, int partitions) : topic_(std::move(topic)), partitions_(partitions) {
    char errstr[256];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "log_level", "0", errstr, sizeof(errstr));
    handle_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    cluster_ = rd_kafka_mock_cluster_new(handle_, 1);
    rd_kafka_mock_topic_create(cluster_, topic_.c_str(), partitions_, 1);
    bootstraps_ = rd_kafka_mock_cluster_bootstraps(cluster_);
  }

  ~MockKafka() {
    rd_kafka_mock_cluster_destroy(cluster_);
    rd_kafka_destroy(handle_);
  }

  MockKafka(const MockKafka&) = delete;
  MockKafka& operator=(const MockKafka&) = delete;

  const std::string& bootstraps() const { return bootstraps_; }
  rd_kafka_mock_cluster_t* cluster() { return cluster_; }

  // Reads every partition from the beginning until `want` messages arrived or
  // `timeout` passed.
  std::vector<Message> Consume(size_t want, absl::Duration timeout) {
    char errstr[256];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstraps_.c_str(), errstr, sizeof(errstr));
    rd_kafka_conf_set(conf, "group.id", "kafka_test_util", errstr, sizeof(errstr));
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof(errstr));
    rd_kafka_t* consumer = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    rd_kafka_topic_partition_list_t* parts = rd_kafka_topic_partition_list_new(partitions_);
    for (int p = 0; p < partitions_; ++p) {
      rd_kafka_topic_partition_list_add(parts, topic_.c_str(), p)->offset =
          RD_KAFKA_OFFSET_BEGINNING;
    }
    rd_kafka_assign(consumer, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    std::vector<Message> out;
    const absl::Time deadline = absl::Now() + timeout;
    while (out.size() < want && absl::Now() < deadline) {
      rd_kafka_message_t* m = rd_kafka_consumer_poll(consumer, 100);
      if (m == nullptr) continue;
      if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        Message msg;
        msg.key.assign(static_cast<const char*>(m->key), m->key_len);
        msg.value.assign(static_cast<const char*>(m->payload), m->len);
        msg.partition = m->partition;
        rd_kafka_headers_t* headers = nullptr;
        const void* value = nullptr;
        size_t size = 0;
        if (rd_kafka_message_headers(m, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR &&
            rd_kafka_header_get_last(headers, "content-type", &value, &size) ==
                RD_KAFKA_RESP_ERR_NO_ERROR) {
          msg.content_type.assign(static_cast<const char*>(value), size);
        }
        out.push_back(std::move(msg));
      }
      rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(consumer);
    rd_kafka_destroy(consumer);
    return out;
  }

 private:
  std::string topic_;
  int partitions_;
  rd_kafka_t* handle_ = nullptr;
  rd_kafka_mock_cluster_t* cluster_ = nullptr;
  std::string bootstraps_;
};

}  // namespace kpid::loadgen::testing
