#include "daemon/export/kpi_tree_metrics.h"

#include "daemon/common/duration.h"
#include "daemon/export/metric_builder.h"

namespace kpid::exporter {

using prometheus::MetricFamily;
using prometheus::MetricType;

KpiTreeMetrics::KpiTreeMetrics(const model::Config* config, aggregate::ShardSource shards,
                               const cases::Clock* clock)
    : config_(config), shards_(std::move(shards)), clock_(clock) {}

KpiTreeMetrics::KpiTreeMetrics(const model::Config* config,
                               std::vector<const aggregate::AggregateShard*> shards,
                               const cases::Clock* clock)
    : KpiTreeMetrics(config, aggregate::FixedShards(std::move(shards), {}), clock) {}

std::vector<MetricFamily> KpiTreeMetrics::Collect() const {
  MetricFamily values =
      Family("kpid_kpi_tree_value",
             "Value of a node of the process's KPI tree over the window (root: parent=\"\").",
             MetricType::Gauge);
  MetricFamily sensitivities =
      Family("kpid_kpi_tree_sensitivity",
             "Change of the KPI tree's root for a 1% improvement of this leaf over the window.",
             MetricType::Gauge);
  const aggregate::ShardSet set = shards_();
  const aggregate::MergedReader reader(set.shards);
  const absl::Time now = clock_->Now();
  const model::Config& config = aggregate::ConfigOf(set, *config_);
  const std::shared_ptr<const kpitree::KpiTreeEvaluator> trees = trees_.For(config);
  for (size_t w = 0; w < config.windows.size(); ++w) {
    const aggregate::WindowSpan span = reader.Resolve(static_cast<int>(w), now);
    const std::string window = FormatPromDuration(config.windows[w]);
    for (size_t p = 0; p < config.processes.size(); ++p) {
      const std::string& process = config.processes[p].id;
      for (const kpitree::NodeValue& node : trees->Evaluate(reader, static_cast<int>(p), span)) {
        if (node.value) {
          AddGauge(&values,
                   {{"process", process},
                    {"node", node.id},
                    {"parent", node.parent},
                    {"window", window}},
                   *node.value);
        }
        if (node.sensitivity) {
          AddGauge(&sensitivities, {{"process", process}, {"node", node.id}, {"window", window}},
                   *node.sensitivity);
        }
      }
    }
  }
  std::vector<MetricFamily> out;
  if (!values.metric.empty()) out.push_back(std::move(values));
  if (!sensitivities.metric.empty()) out.push_back(std::move(sensitivities));
  return out;
}

}  // namespace kpid::exporter
