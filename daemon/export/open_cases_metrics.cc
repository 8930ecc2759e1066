#include "daemon/export/open_cases_metrics.h"

#include <algorithm>
#include <utility>

namespace kpid::exporter {

OpenCasesMetrics::OpenCasesMetrics(const model::Config* config, ViewSource views,
                                   const cases::Clock* clock)
    : OpenCasesMetrics(
          config,
          [views = std::move(views)] {
            aggregate::ShardSet set;
            set.open_cases = views();
            return set;
          },
          clock) {}

OpenCasesMetrics::OpenCasesMetrics(const model::Config* config, aggregate::ShardSource shards,
                                   const cases::Clock* clock)
    : config_(config), shards_(std::move(shards)), clock_(clock) {}

void OpenCasesMetrics::WriteMetrics(MetricWriter* out) const {
  const aggregate::ShardSet set = shards_();
  const std::vector<std::shared_ptr<const cases::OpenCasesView>>& views = set.open_cases;
  const model::Config& config = aggregate::ConfigOf(set, *config_);
  const absl::Time now = clock_->Now();
  out->Family("kpid_stage_oldest_case_age_seconds",
              "How long the longest-waiting open case of the stage has been in it.",
              prometheus::MetricType::Gauge);
  for (size_t p = 0; p < config.processes.size(); ++p) {
    const model::ProcessConfig& process = config.processes[p];
    for (size_t s = 0; s < process.stages.size(); ++s) {
      absl::optional<absl::Time> oldest;
      for (const auto& view : views) {
        if (view == nullptr || p >= view->oldest_entered.size() ||
            s >= view->oldest_entered[p].size() || !view->oldest_entered[p][s]) {
          continue;
        }
        oldest =
            oldest ? std::min(*oldest, *view->oldest_entered[p][s]) : *view->oldest_entered[p][s];
      }
      if (!oldest) continue;
      out->Sample(SeriesLabels({{"process", process.id}, {"stage", process.stages[s].id}}),
                  absl::ToDoubleSeconds(std::max(absl::ZeroDuration(), now - *oldest)));
    }
  }
  out->Family("kpid_process_cases_evicted_total",
              "Open cases evicted (closed as expired) to stay within max_open_cases.",
              prometheus::MetricType::Counter);
  for (size_t p = 0; p < config.processes.size(); ++p) {
    uint64_t evicted = 0;
    for (const auto& view : views) {
      if (view != nullptr && p < view->evicted.size()) evicted += view->evicted[p];
    }
    out->Sample(SeriesLabels({{"process", config.processes[p].id}}), static_cast<double>(evicted));
  }
  uint64_t event_ids_forgotten = 0;
  uint64_t closed_cases_forgotten = 0;
  for (const auto& view : views) {
    if (view == nullptr) continue;
    event_ids_forgotten += view->event_ids_forgotten;
    closed_cases_forgotten += view->closed_cases_forgotten;
  }
  out->Family("kpid_dedup_forgotten_total",
              "Remembered event ids (set=event_ids) or closed cases (set=closed_cases) forgotten "
              "before dedup_horizon to stay within max_dedup_ids / max_closed_cases.",
              prometheus::MetricType::Counter);
  out->Sample(SeriesLabels().With("set", "event_ids"), static_cast<double>(event_ids_forgotten));
  out->Sample(SeriesLabels().With("set", "closed_cases"),
              static_cast<double>(closed_cases_forgotten));
}

}  // namespace kpid::exporter
