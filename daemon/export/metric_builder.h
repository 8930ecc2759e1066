// Terse construction of prometheus::MetricFamily values for Collectables.
//
//   MetricFamily f = Family("kpid_events_consumed_total", "Events accepted.", MetricType::Counter);
//   AddCounter(&f, {{"reason", "empty"}}, 3);
#pragma once

#include <string>
#include <vector>

#include "prometheus/client_metric.h"
#include "prometheus/metric_family.h"

namespace kpid::exporter {

using Labels = std::vector<prometheus::ClientMetric::Label>;

inline prometheus::MetricFamily Family(std::string name, std::string help,
                                       prometheus::MetricType type) {
  prometheus::MetricFamily family;
  family.name = std::move(name);
  family.help = std::move(help);
  family.type = type;
  return family;
}

inline void AddCounter(prometheus::MetricFamily* family, Labels labels, double value) {
  prometheus::ClientMetric metric;
  metric.label = std::move(labels);
  metric.counter.value = value;
  family->metric.push_back(std::move(metric));
}

inline void AddGauge(prometheus::MetricFamily* family, Labels labels, double value) {
  prometheus::ClientMetric metric;
  metric.label = std::move(labels);
  metric.gauge.value = value;
  family->metric.push_back(std::move(metric));
}

}  // namespace kpid::exporter
