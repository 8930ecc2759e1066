#include "daemon/ingest/kafka_conf.h"

#include <librdkafka/rdkafka.h>

#include "absl/strings/str_cat.h"
#include "daemon/common/log.h"

namespace kpid::ingest {
namespace {

// librdkafka's own log lines (syslog levels) as kpid's structured log lines,
// so one parser reads everything kpid writes.
void LogToKpidLog(const rd_kafka_t* rk, int level, const char* facility, const char* message) {
  const std::initializer_list<log::Field> fields = {
      {"client", rd_kafka_name(rk)}, {"facility", facility}, {"detail", message}};
  if (level <= 3) {
    log::Error("librdkafka", fields);
  } else if (level <= 5) {
    log::Warn("librdkafka", fields);
  } else if (level == 6) {
    log::Info("librdkafka", fields);
  } else {
    log::Debug("librdkafka", fields);
  }
}

}  // namespace

absl::StatusOr<rd_kafka_conf_t*> MakeKafkaConf(
    const std::string& brokers, const std::map<std::string, std::string>& defaults,
    const std::map<std::string, std::string>& properties) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set_log_cb(conf, LogToKpidLog);
  char err[512];
  auto set = [&](const std::string& key, const std::string& value) -> absl::Status {
    if (rd_kafka_conf_set(conf, key.c_str(), value.c_str(), err, sizeof(err)) != RD_KAFKA_CONF_OK) {
      return absl::InvalidArgumentError(absl::StrCat("kafka property ", key, ": ", err));
    }
    return absl::OkStatus();
  };
  absl::Status status = set("bootstrap.servers", brokers);
  for (const auto& [key, value] : defaults) {
    if (status.ok()) status = set(key, value);
  }
  for (const auto& [key, value] : properties) {
    if (status.ok()) status = set(key, value);
  }
  if (!status.ok()) {
    rd_kafka_conf_destroy(conf);
    return status;
  }
  return conf;
}

}  // namespace kpid::ingest
