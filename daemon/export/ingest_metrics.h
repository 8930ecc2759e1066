// Renders ingest's own counters at scrape time (DESIGN §4, "Self"):
//
//   kpid_events_consumed_total, kpid_events_rejected_total{reason},
//   kpid_events_duplicate_total, kpid_consumer_lag_messages{topic,partition},
//   kpid_watermark_timestamp_seconds, kpid_dead_letter_messages_total{result},
//   kpid_kafka_connected.
//
// Reads the partitions' single-writer counters (kept with their engines, so
// they survive restarts); never blocks the workers. Every reason is
// rendered, zeros included, so rate() works from the first rejection.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "daemon/ingest/dead_letter.h"
#include "daemon/ingest/kafka_ingest.h"
#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"

namespace kpid::exporter {

class IngestMetrics : public prometheus::Collectable {
 public:
  // The counts of every partition this daemon owns; any thread.
  using StatsSource = std::function<std::vector<std::shared_ptr<const ingest::PartitionStats>>()>;

  // `ingest` and `dead_letter` must outlive this collectable; `dead_letter`
  // may be null.
  IngestMetrics(const ingest::KafkaIngest* ingest, const ingest::DeadLetterProducer* dead_letter,
                StatsSource stats);

  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const ingest::KafkaIngest* ingest_;
  const ingest::DeadLetterProducer* dead_letter_;
  StatsSource stats_;
};

// kpid_build_info{version} 1.
class BuildInfo : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override;
};

}  // namespace kpid::exporter
