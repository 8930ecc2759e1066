// A minimal librdkafka producer and reader for integration tests.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace kpid::testing {

struct KafkaRecord {
  std::string key;
  std::string value;
  std::map<std::string, std::string> headers;
  int32_t partition = -1;  // produced to it when set; else partitioned by key
};

class TestProducer {
 public:
  explicit TestProducer(const std::string& brokers);
  ~TestProducer();
  // Produces one record and aborts the test run on error.
  void Send(const std::string& topic, const KafkaRecord& record);
  // Waits for every record to be acknowledged; returns the number that failed.
  int Flush(absl::Duration timeout);

 private:
  void* rk_;
};

// Reads every record of `topic` from the start, all partitions, until
// `expected` records have arrived or `timeout` passes.
std::vector<KafkaRecord> ReadTopic(const std::string& brokers, const std::string& topic,
                                   size_t expected, absl::Duration timeout);

}  // namespace kpid::testing
