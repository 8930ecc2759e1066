// Renders every process's KPI tree (daemon/kpitree) at scrape time, per
// configured window:
//
//   kpid_kpi_tree_value{process,node,parent,window}        every node with a value
//                                                          (the root has parent="")
//   kpid_kpi_tree_sensitivity{process,node,window}         every leaf with one: the change
//                                                          of the root for a 1% improvement
//
// Values cover every dimension value (a tree is a process-level view). An
// absent value (a zero denominator, or a child that is absent) is left out,
// never 0 or NaN.
//
// Thread-safe: Collect reads the shards through MergedReader and never
// blocks the workers.
#pragma once

#include <vector>

#include "daemon/aggregate/merged_reader.h"
#include "daemon/aggregate/shard_set.h"
#include "daemon/cases/clock.h"
#include "daemon/kpitree/kpi_tree.h"
#include "daemon/model/config.h"
#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"

namespace kpid::exporter {

class KpiTreeMetrics : public prometheus::Collectable {
 public:
  // `config` and `clock` (the end of every window) must outlive this
  // collectable; `shards` is asked once per scrape.
  KpiTreeMetrics(const model::Config* config, aggregate::ShardSource shards,
                 const cases::Clock* clock);
  // Fixed shards, which must outlive this collectable.
  KpiTreeMetrics(const model::Config* config, std::vector<const aggregate::AggregateShard*> shards,
                 const cases::Clock* clock);

  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const model::Config* config_;
  aggregate::ShardSource shards_;
  const cases::Clock* clock_;
  kpitree::KpiTreeEvaluatorCache trees_;
};

}  // namespace kpid::exporter
