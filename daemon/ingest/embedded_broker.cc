#include "daemon/ingest/embedded_broker.h"

#include <librdkafka/rdkafka.h>
// rdkafka_mock.h must come after rdkafka.h.
#include <librdkafka/rdkafka_mock.h>

#include "absl/strings/str_cat.h"

namespace kpid::ingest {

absl::StatusOr<std::unique_ptr<EmbeddedBroker>> EmbeddedBroker::Start(
    const std::vector<TopicSpec>& topics, int broker_count) {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  // The handle only hosts the cluster; keep it quiet.
  rd_kafka_conf_set(conf, "log_level", "3", err, sizeof(err));
  rd_kafka_t* handle = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
  if (handle == nullptr) {
    rd_kafka_conf_destroy(conf);
    return absl::InternalError(absl::StrCat("embedded broker: rd_kafka_new: ", err));
  }
  rd_kafka_mock_cluster_t* cluster = rd_kafka_mock_cluster_new(handle, broker_count);
  if (cluster == nullptr) {
    rd_kafka_destroy(handle);
    return absl::InternalError("embedded broker: cannot create the mock cluster");
  }
  std::unique_ptr<EmbeddedBroker> broker(
      new EmbeddedBroker(handle, cluster, rd_kafka_mock_cluster_bootstraps(cluster)));
  for (const TopicSpec& topic : topics) {
    rd_kafka_resp_err_t e =
        rd_kafka_mock_topic_create(cluster, topic.name.c_str(), topic.partitions, 1);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return absl::InternalError(
          absl::StrCat("embedded broker: create topic ", topic.name, ": ", rd_kafka_err2str(e)));
    }
  }
  return broker;
}

EmbeddedBroker::EmbeddedBroker(rd_kafka_s* handle, rd_kafka_mock_cluster_s* cluster,
                               std::string bootstrap)
    : handle_(handle), cluster_(cluster), bootstrap_(std::move(bootstrap)) {}

EmbeddedBroker::~EmbeddedBroker() {
  rd_kafka_mock_cluster_destroy(cluster_);
  rd_kafka_destroy(handle_);
}

absl::Status EmbeddedBroker::SetBrokerUp(int broker_id, bool up) {
  rd_kafka_resp_err_t e = up ? rd_kafka_mock_broker_set_up(cluster_, broker_id)
                             : rd_kafka_mock_broker_set_down(cluster_, broker_id);
  if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return absl::InvalidArgumentError(
        absl::StrCat("broker ", broker_id, ": ", rd_kafka_err2str(e)));
  }
  return absl::OkStatus();
}

}  // namespace kpid::ingest
