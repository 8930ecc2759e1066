// Produces rejected messages to the dead-letter topic, unchanged, with why
// in headers:
//
//   kpid-reject-reason   the kpid_events_rejected_total reason label
//   kpid-reject-detail   a human-readable explanation
//   kpid-source          "<topic>/<partition>/<offset>" of the original
//
// The original key and headers are kept. Thread-safe (librdkafka's producer
// is); workers call Send() directly. Delivery is asynchronous; every message
// ends in exactly one of delivered() or failed().
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "daemon/ingest/event_decoder.h"

struct rd_kafka_s;
struct rd_kafka_message_s;

namespace kpid::ingest {

class DeadLetterProducer {
 public:
  static absl::StatusOr<std::unique_ptr<DeadLetterProducer>> Create(
      const std::string& brokers, const std::string& topic,
      const std::map<std::string, std::string>& properties);
  ~DeadLetterProducer();  // flushes for up to 10 s

  void Send(const rd_kafka_message_s& original, const Rejection& rejection);

  // Waits until every sent message is delivered or failed.
  void Flush(absl::Duration timeout);

  const std::string& topic() const { return topic_; }
  uint64_t delivered() const { return delivered_.load(std::memory_order_relaxed); }
  uint64_t failed() const { return failed_.load(std::memory_order_relaxed); }

 private:
  explicit DeadLetterProducer(std::string topic);
  static void OnDelivery(rd_kafka_s*, const rd_kafka_message_s* message, void* opaque);

  rd_kafka_s* producer_ = nullptr;
  std::string topic_;
  // Relaxed: independent statistics, written by librdkafka's poll thread and
  // by Send() on enqueue failure.
  std::atomic<uint64_t> delivered_{0};
  std::atomic<uint64_t> failed_{0};
  std::atomic<bool> stop_{false};
  std::thread poller_;  // serves delivery reports
};

}  // namespace kpid::ingest
