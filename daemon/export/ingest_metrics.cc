#include "daemon/export/ingest_metrics.h"

#include <limits>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "daemon/export/metric_builder.h"
#include "daemon/model/reject_reason.h"

#ifndef KPID_VERSION
#define KPID_VERSION "unknown"
#endif

namespace kpid::exporter {

using prometheus::MetricFamily;
using prometheus::MetricType;

IngestMetrics::IngestMetrics(const ingest::KafkaIngest* ingest,
                             const ingest::DeadLetterProducer* dead_letter, StatsSource stats)
    : ingest_(ingest), dead_letter_(dead_letter), stats_(std::move(stats)) {}

std::vector<MetricFamily> IngestMetrics::Collect() const {
  uint64_t consumed = 0, duplicate = 0, late = 0;
  std::array<uint64_t, model::kRejectReasonCount> rejected{};
  int64_t watermark_ms = std::numeric_limits<int64_t>::min();
  for (const std::shared_ptr<const ingest::PartitionStats>& partition : stats_()) {
    const ingest::PartitionStats& stats = *partition;
    consumed += stats.consumed.Get();
    duplicate += stats.duplicate.Get();
    late += stats.late.Get();
    for (size_t r = 0; r < rejected.size(); ++r) rejected[r] += stats.rejected[r].Get();
    watermark_ms = std::max(watermark_ms, stats.watermark_ms.Get());
  }

  std::vector<MetricFamily> families;
  MetricFamily f = Family("kpid_events_consumed_total", "Events taken from Kafka and accepted.",
                          MetricType::Counter);
  AddCounter(&f, {}, static_cast<double>(consumed));
  families.push_back(std::move(f));

  f = Family("kpid_events_rejected_total", "Messages rejected, by reason.", MetricType::Counter);
  for (size_t r = 0; r < rejected.size(); ++r) {
    AddCounter(&f, {{"reason", std::string(model::kRejectReasonNames[r])}},
               static_cast<double>(rejected[r]));
  }
  families.push_back(std::move(f));

  f = Family("kpid_events_duplicate_total",
             "Events ignored because their event_id was seen within dedup_horizon.",
             MetricType::Counter);
  AddCounter(&f, {}, static_cast<double>(duplicate));
  families.push_back(std::move(f));

  f = Family("kpid_events_late_total",
             "Accepted events older than the oldest kept bucket: in the totals, in no window.",
             MetricType::Counter);
  AddCounter(&f, {}, static_cast<double>(late));
  families.push_back(std::move(f));

  // Absent until the first event: a watermark of 0 would read as 1970.
  if (watermark_ms != std::numeric_limits<int64_t>::min()) {
    f = Family("kpid_watermark_timestamp_seconds", "Latest event time accepted (Unix seconds).",
               MetricType::Gauge);
    AddGauge(&f, {}, static_cast<double>(watermark_ms) / 1000.0);
    families.push_back(std::move(f));
  }

  f = Family("kpid_kafka_connected",
             "1 while the Kafka cluster answers kpid's metadata probe (every second), else 0.",
             MetricType::Gauge);
  AddGauge(&f, {}, ingest_->connected() ? 1.0 : 0.0);
  families.push_back(std::move(f));

  f = Family("kpid_state_reread_messages_total",
             "Messages delivered again below the offset a partition's state ends at, e.g. "
             "after a restore whose seek failed (skipped, never counted twice).",
             MetricType::Counter);
  AddCounter(&f, {}, static_cast<double>(ingest_->reread_messages()));
  families.push_back(std::move(f));

  f = Family("kpid_consumer_lag_messages",
             "Messages in the partition not yet consumed (high watermark - position).",
             MetricType::Gauge);
  for (const auto& lag : ingest_->Lags()) {
    AddGauge(&f, {{"topic", lag.topic}, {"partition", absl::StrCat(lag.partition)}},
             static_cast<double>(lag.lag));
  }
  families.push_back(std::move(f));

  if (dead_letter_ != nullptr) {
    f = Family("kpid_dead_letter_messages_total",
               "Rejected messages produced to the dead-letter topic, by delivery result.",
               MetricType::Counter);
    AddCounter(&f, {{"result", "delivered"}}, static_cast<double>(dead_letter_->delivered()));
    AddCounter(&f, {{"result", "failed"}}, static_cast<double>(dead_letter_->failed()));
    families.push_back(std::move(f));
  }
  return families;
}

std::vector<MetricFamily> BuildInfo::Collect() const {
  MetricFamily f = Family("kpid_build_info", "kpid build; value is always 1.", MetricType::Gauge);
  AddGauge(&f, {{"version", KPID_VERSION}}, 1);
  return {std::move(f)};
}

}  // namespace kpid::exporter
