// An in-process Kafka-protocol broker (librdkafka's mock cluster) for the
// demo and tests: `kafka.brokers: embedded` and `kpid dev-broker`.
//
//   auto broker = EmbeddedBroker::Start({{"process-events", 4}, {"kpid-dead-letter", 1}});
//   std::string bootstrap = (*broker)->bootstrap();   // "127.0.0.1:40123"
//
// Any Kafka client can produce to and consume from it. It keeps only a few
// MiB per partition and is single-threaded; it is not for production.
// Thread-safe: SetBrokerUp may be called from any thread.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

struct rd_kafka_s;
struct rd_kafka_mock_cluster_s;

namespace kpid::ingest {

struct TopicSpec {
  std::string name;
  int partitions = 1;
};

class EmbeddedBroker {
 public:
  // Starts `broker_count` mock brokers on loopback and creates `topics`.
  static absl::StatusOr<std::unique_ptr<EmbeddedBroker>> Start(const std::vector<TopicSpec>& topics,
                                                               int broker_count = 1);
  ~EmbeddedBroker();
  EmbeddedBroker(const EmbeddedBroker&) = delete;
  EmbeddedBroker& operator=(const EmbeddedBroker&) = delete;

  // Comma-separated host:port list for bootstrap.servers.
  const std::string& bootstrap() const { return bootstrap_; }

  // Simulates a broker outage (ids start at 1).
  absl::Status SetBrokerUp(int broker_id, bool up);

 private:
  EmbeddedBroker(rd_kafka_s* handle, rd_kafka_mock_cluster_s* cluster, std::string bootstrap);

  rd_kafka_s* handle_;  // owns the mock cluster's threads
  rd_kafka_mock_cluster_s* cluster_;
  std::string bootstrap_;
};

}  // namespace kpid::ingest
