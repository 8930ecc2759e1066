// Building librdkafka configurations from kpid's config.
#pragma once

#include <map>
#include <string>

#include "absl/status/statusor.h"

struct rd_kafka_conf_s;

namespace kpid::ingest {

// A new rd_kafka_conf_t with bootstrap.servers = `brokers`, then `defaults`,
// then the user's `properties` (which win, so TLS/SASL/tuning pass through).
// The caller owns the result (rd_kafka_new takes it).
absl::StatusOr<rd_kafka_conf_s*> MakeKafkaConf(
    const std::string& brokers, const std::map<std::string, std::string>& defaults,
    const std::map<std::string, std::string>& properties);

}  // namespace kpid::ingest
