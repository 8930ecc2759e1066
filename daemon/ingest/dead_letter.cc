#include "daemon/ingest/dead_letter.h"

#include <librdkafka/rdkafka.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "daemon/common/log.h"
#include "daemon/ingest/kafka_conf.h"

namespace kpid::ingest {

absl::StatusOr<std::unique_ptr<DeadLetterProducer>> DeadLetterProducer::Create(
    const std::string& brokers, const std::string& topic,
    const std::map<std::string, std::string>& properties) {
  absl::StatusOr<rd_kafka_conf_t*> conf = MakeKafkaConf(brokers,
                                                        {
                                                            {"linger.ms", "20"},
                                                            {"enable.idempotence", "true"},
                                                            {"message.timeout.ms", "300000"},
                                                        },
                                                        properties);
  if (!conf.ok()) return conf.status();
  std::unique_ptr<DeadLetterProducer> dlq(new DeadLetterProducer(topic));
  rd_kafka_conf_set_dr_msg_cb(*conf, &DeadLetterProducer::OnDelivery);
  rd_kafka_conf_set_opaque(*conf, dlq.get());
  char err[512];
  dlq->producer_ = rd_kafka_new(RD_KAFKA_PRODUCER, *conf, err, sizeof(err));
  if (dlq->producer_ == nullptr) {
    rd_kafka_conf_destroy(*conf);
    return absl::InvalidArgumentError(absl::StrCat("dead-letter producer: ", err));
  }
  dlq->poller_ = std::thread([self = dlq.get()] {
    while (!self->stop_.load(std::memory_order_acquire)) rd_kafka_poll(self->producer_, 100);
  });
  return dlq;
}

DeadLetterProducer::DeadLetterProducer(std::string topic) : topic_(std::move(topic)) {}

DeadLetterProducer::~DeadLetterProducer() {
  if (producer_ == nullptr) return;
  Flush(absl::Seconds(10));
  stop_.store(true, std::memory_order_release);
  poller_.join();
  rd_kafka_destroy(producer_);
}

void DeadLetterProducer::OnDelivery(rd_kafka_s* rk, const rd_kafka_message_s* message, void*) {
  auto* self = static_cast<DeadLetterProducer*>(rd_kafka_opaque(rk));
  if (self == nullptr) return;
  if (message->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    self->delivered_.fetch_add(1, std::memory_order_relaxed);
  } else {
    self->failed_.fetch_add(1, std::memory_order_relaxed);
    log::Error("dead-letter delivery failed",
               {{"topic", self->topic_}, {"error", rd_kafka_err2str(message->err)}});
  }
}

void DeadLetterProducer::Send(const rd_kafka_message_s& original, const Rejection& rejection) {
  rd_kafka_headers_t* headers = nullptr;
  rd_kafka_headers_t* original_headers = nullptr;
  if (rd_kafka_message_headers(&original, &original_headers) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    headers = rd_kafka_headers_copy(original_headers);
  } else {
    headers = rd_kafka_headers_new(3);
  }
  const absl::string_view reason = model::RejectReasonName(rejection.reason);
  const std::string source = absl::StrCat(original.rkt ? rd_kafka_topic_name(original.rkt) : "",
                                          "/", original.partition, "/", original.offset);
  rd_kafka_header_add(headers, "kpid-reject-reason", -1, reason.data(),
                      static_cast<ssize_t>(reason.size()));
  rd_kafka_header_add(headers, "kpid-reject-detail", -1, rejection.detail.data(),
                      static_cast<ssize_t>(rejection.detail.size()));
  rd_kafka_header_add(headers, "kpid-source", -1, source.data(),
                      static_cast<ssize_t>(source.size()));

  // A full local queue means the broker is slow or away: wait for room a
  // while (back-pressure on this worker) before counting a failure.
  const absl::Time give_up = absl::Now() + absl::Seconds(30);
  while (true) {
    rd_kafka_resp_err_t e = rd_kafka_producev(producer_, RD_KAFKA_V_TOPIC(topic_.c_str()),
                                              RD_KAFKA_V_VALUE(original.payload, original.len),
                                              RD_KAFKA_V_KEY(original.key, original.key_len),
                                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                              RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_END);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) return;  // headers now belong to the message
    if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL && absl::Now() < give_up) {
      absl::SleepFor(absl::Milliseconds(10));
      continue;
    }
    rd_kafka_headers_destroy(headers);
    failed_.fetch_add(1, std::memory_order_relaxed);
    log::Error("dead-letter enqueue failed", {{"topic", topic_}, {"error", rd_kafka_err2str(e)}});
    return;
  }
}

void DeadLetterProducer::Flush(absl::Duration timeout) {
  rd_kafka_flush(producer_, static_cast<int>(absl::ToInt64Milliseconds(timeout)));
}

}  // namespace kpid::ingest
