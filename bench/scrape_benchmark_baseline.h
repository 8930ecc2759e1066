// The engine's /metrics rendering as it was before the direct text path
// (daemon/export/engine_metrics.{h,cc} at 0a68fcc, frozen): EngineMetrics::
// Collect building prometheus MetricFamily objects family by family through
// a name-keyed map, rendered by prometheus-cpp's TextSerializer. The
// baseline scrape_benchmark compares the current path against in the same
// run. Do not change: it is the yardstick.
#pragma once

#include <vector>

#include "daemon/aggregate/merged_reader.h"
#include "daemon/cases/clock.h"
#include "daemon/cases/dimension_table.h"
#include "daemon/model/config.h"
#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"

namespace kpid::bench_legacy {

class LegacyEngineMetrics : public prometheus::Collectable {
 public:
  // `shards[i]` and `dimensions[i]` belong to worker i. Everything must
  // outlive this collectable. `clock` gives the end of every window.
  LegacyEngineMetrics(const model::Config* config,
                      std::vector<const aggregate::AggregateShard*> shards,
                      std::vector<const cases::DimensionTable*> dimensions,
                      const cases::Clock* clock);

  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const model::Config* config_;
  aggregate::MergedReader reader_;
  std::vector<const cases::DimensionTable*> dimensions_;
  const cases::Clock* clock_;
};

}  // namespace kpid::bench_legacy
