#include "bench/scrape_benchmark_baseline.h"

#include <limits>
#include <map>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "daemon/common/duration.h"
#include "daemon/export/metric_builder.h"

namespace kpid::bench_legacy {
namespace {

using aggregate::LatencyHistogram;
using aggregate::MergedReader;
using exporter::AddCounter;
using exporter::AddGauge;
using exporter::Family;
using exporter::Labels;
using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

constexpr double kQuantiles[] = {0.5, 0.9, 0.99};

// Families by name, created on first use, rendered in creation order.
class Families {
 public:
  MetricFamily& Get(const std::string& name, const std::string& help, MetricType type) {
    auto [it, inserted] = index_.emplace(name, families_.size());
    if (inserted) families_.push_back(Family(name, help, type));
    return families_[it->second];
  }
  std::vector<MetricFamily> Take() { return std::move(families_); }

 private:
  std::map<std::string, size_t> index_;
  std::vector<MetricFamily> families_;
};

Labels With(Labels labels, std::string name, std::string value) {
  labels.push_back({std::move(name), std::move(value)});
  return labels;
}

void AddOptionalGauge(MetricFamily* family, Labels labels, absl::optional<double> value) {
  if (value.has_value()) AddGauge(family, std::move(labels), *value);
}

void AddHistogram(MetricFamily* family, Labels labels, const LatencyHistogram& h) {
  ClientMetric metric;
  metric.label = std::move(labels);
  metric.histogram.sample_count = h.count();
  metric.histogram.sample_sum = h.sum;
  for (int i = 0; i < LatencyHistogram::kBuckets; ++i) {
    ClientMetric::Bucket bucket;
    bucket.cumulative_count = h.cumulative(i);
    bucket.upper_bound = i < static_cast<int>(LatencyHistogram::kBounds.size())
                             ? LatencyHistogram::kBounds[static_cast<size_t>(i)]
                             : std::numeric_limits<double>::infinity();
    metric.histogram.bucket.push_back(bucket);
  }
  family->metric.push_back(std::move(metric));
}

// A window distribution as a summary: quantiles (absent when the window has
// no observations), count, and a sum from the bins (within the distribution's
// 1% relative error).
void AddQuantiles(MetricFamily* family, Labels labels, const aggregate::Distribution& d) {
  ClientMetric metric;
  metric.label = std::move(labels);
  metric.summary.sample_count = d.count();
  double sum = 0;
  for (size_t bin = 0; bin < d.bins().size(); ++bin) {
    sum += static_cast<double>(d.bins()[bin]) *
           aggregate::Distribution::BinValue(static_cast<int>(bin));
  }
  metric.summary.sample_sum = sum;
  for (double q : kQuantiles) {
    if (absl::optional<double> v = d.Quantile(q)) {
      metric.summary.quantile.push_back({q, *v});
    }
  }
  family->metric.push_back(std::move(metric));
}

}  // namespace

LegacyEngineMetrics::LegacyEngineMetrics(const model::Config* config,
                                         std::vector<const aggregate::AggregateShard*> shards,
                                         std::vector<const cases::DimensionTable*> dimensions,
                                         const cases::Clock* clock)
    : config_(config),
      reader_(std::move(shards)),
      dimensions_(std::move(dimensions)),
      clock_(clock) {}

std::vector<MetricFamily> LegacyEngineMetrics::Collect() const {
  Families f;
  const absl::Time now = clock_->Now();
  const auto& dim_names = config_->dimensions.names;
  std::vector<aggregate::WindowSpan> spans;
  std::vector<std::string> window_labels;
  for (size_t w = 0; w < config_->windows.size(); ++w) {
    spans.push_back(reader_.Resolve(static_cast<int>(w), now));
    window_labels.push_back(FormatPromDuration(config_->windows[w]));
  }

  for (size_t pi = 0; pi < config_->processes.size(); ++pi) {
    const int p = static_cast<int>(pi);
    const model::ProcessConfig& process = config_->processes[pi];
    const Labels process_labels = {{"process", process.id}};

    // Series of equal dimension values across workers, summed.
    std::map<std::vector<std::string>, std::vector<MergedReader::SeriesRef>> groups;
    for (const MergedReader::SeriesRef& ref : reader_.ListSeries(p)) {
      groups[dimensions_[static_cast<size_t>(ref.shard)]->Values(p, ref.dims)].push_back(ref);
    }
    for (const auto& [values, refs] : groups) {
      Labels dims = process_labels;
      for (size_t d = 0; d < dim_names.size() && d < values.size(); ++d) {
        dims.push_back({dim_names[d], values[d]});
      }
      const aggregate::SeriesTotals totals = reader_.ReadSeriesTotals(p, refs);
      const aggregate::ProcessTotals& pt = totals.process;
      AddCounter(&f.Get("kpid_process_cases_started_total", "Cases started.", MetricType::Counter),
                 dims, static_cast<double>(pt.started));
      AddCounter(
          &f.Get("kpid_process_cases_completed_total", "Cases completed.", MetricType::Counter),
          dims, static_cast<double>(pt.completed));
      AddCounter(
          &f.Get("kpid_process_cases_fallout_total", "Cases fallen out.", MetricType::Counter),
          dims, static_cast<double>(pt.fallout));
      AddCounter(&f.Get("kpid_process_cases_expired_total",
                        "Open cases closed after case_ttl without activity.", MetricType::Counter),
                 dims, static_cast<double>(pt.expired));
      AddCounter(&f.Get("kpid_process_revenue_total", "Sum of CASE_COMPLETED amounts.",
                        MetricType::Counter),
                 dims, pt.revenue);
      AddCounter(&f.Get("kpid_process_cost_total", "Sum of COST amounts.", MetricType::Counter),
                 dims, pt.cost);
      AddHistogram(
          &f.Get("kpid_process_lead_time_seconds",
                 "Lead time of completed cases (start to completion).", MetricType::Histogram),
          dims, pt.lead_time);
      AddGauge(&f.Get("kpid_process_open_cases", "Open cases now.", MetricType::Gauge), dims,
               static_cast<double>(totals.open_cases()));

      for (size_t si = 0; si < process.stages.size() && si < totals.stages.size(); ++si) {
        const aggregate::StageTotals& st = totals.stages[si];
        Labels stage = dims;
        stage.insert(stage.begin() + 1, {"stage", process.stages[si].id});
        AddCounter(
            &f.Get("kpid_stage_entered_total", "Entries into the stage.", MetricType::Counter),
            stage, static_cast<double>(st.entered));
        MetricFamily& exited = f.Get("kpid_stage_exited_total", "Exits from the stage, by outcome.",
                                     MetricType::Counter);
        AddCounter(&exited, With(stage, "outcome", "advanced"),
                   static_cast<double>(st.exited_advanced));
        AddCounter(&exited, With(stage, "outcome", "fallout"),
                   static_cast<double>(st.exited_fallout));
        AddCounter(
            &f.Get("kpid_stage_sla_met_total", "Exits within the stage SLA.", MetricType::Counter),
            stage, static_cast<double>(st.sla_met));
        AddCounter(
            &f.Get("kpid_stage_sla_missed_total", "Exits over the stage SLA.", MetricType::Counter),
            stage, static_cast<double>(st.sla_missed));
        AddCounter(&f.Get("kpid_stage_rework_total", "Re-entries into a stage visited before.",
                          MetricType::Counter),
                   stage, static_cast<double>(st.rework));
        AddCounter(&f.Get("kpid_stage_sla_breaches_total",
                          "Open cases that passed their stage deadline.", MetricType::Counter),
                   stage, static_cast<double>(st.sla_breaches));
        AddHistogram(&f.Get("kpid_stage_cycle_time_seconds", "Time in stage of each exit.",
                            MetricType::Histogram),
                     stage, st.cycle_time);
        AddGauge(&f.Get("kpid_stage_backlog", "Open cases in the stage now.", MetricType::Gauge),
                 stage, static_cast<double>(st.backlog));
        AddGauge(&f.Get("kpid_stage_backlog_over_sla",
                        "Open cases in the stage past their deadline now.", MetricType::Gauge),
                 stage, static_cast<double>(st.backlog_over_sla));
      }

      for (size_t w = 0; w < spans.size(); ++w) {
        const aggregate::SeriesWindow sw = reader_.ReadSeriesWindow(p, refs, spans[w]);
        const Labels pw = With(dims, "window", window_labels[w]);
        const aggregate::ProcessWindowCounts& pc = sw.process;
        AddGauge(&f.Get("kpid_window_process_started", "Cases started in the window.",
                        MetricType::Gauge),
                 pw, static_cast<double>(pc.started));
        AddGauge(&f.Get("kpid_window_process_completed", "Cases completed in the window.",
                        MetricType::Gauge),
                 pw, static_cast<double>(pc.completed));
        AddGauge(&f.Get("kpid_window_process_fallout", "Cases fallen out in the window.",
                        MetricType::Gauge),
                 pw, static_cast<double>(pc.fallout));
        AddGauge(&f.Get("kpid_window_process_revenue", "Revenue completed in the window.",
                        MetricType::Gauge),
                 pw, pc.revenue);
        AddGauge(&f.Get("kpid_window_process_cost", "Cost in the window.", MetricType::Gauge), pw,
                 pc.cost);
        AddOptionalGauge(
            &f.Get("kpid_window_process_win_ratio",
                   "completed / (completed + fallout) in the window.", MetricType::Gauge),
            pw, pc.win_ratio());
        AddOptionalGauge(
            &f.Get("kpid_window_process_avg_deal", "revenue / completed.", MetricType::Gauge), pw,
            pc.avg_deal());
        AddOptionalGauge(
            &f.Get("kpid_window_process_cost_to_serve", "cost / completed.", MetricType::Gauge), pw,
            pc.cost_to_serve());
        AddOptionalGauge(&f.Get("kpid_window_process_feedback_score",
                                "Mean feedback score in the window.", MetricType::Gauge),
                         pw, pc.feedback_score());
        for (size_t si = 0; si < process.stages.size() && si < sw.stages.size(); ++si) {
          const aggregate::StageWindowCounts& sc = sw.stages[si];
          Labels sl = dims;
          sl.insert(sl.begin() + 1, {"stage", process.stages[si].id});
          sl.push_back({"window", window_labels[w]});
          const std::pair<const char*, uint64_t> counts[] = {
              {"entered", sc.entered}, {"exited", sc.exited()}, {"advanced", sc.advanced},
              {"fallout", sc.fallout}, {"sla_met", sc.sla_met}, {"rework", sc.rework}};
          for (const auto& [name, value] : counts) {
            AddGauge(
                &f.Get(absl::StrCat("kpid_window_stage_", name),
                       absl::StrCat("Stage ", name, " count in the window."), MetricType::Gauge),
                sl, static_cast<double>(value));
          }
          AddOptionalGauge(
              &f.Get("kpid_window_stage_conversion_ratio", "advanced / exited.", MetricType::Gauge),
              sl, sc.conversion());
          AddOptionalGauge(
              &f.Get("kpid_window_stage_fallout_ratio", "fallout / exited.", MetricType::Gauge), sl,
              sc.fallout_ratio());
          AddOptionalGauge(&f.Get("kpid_window_stage_sla_attainment_ratio",
                                  "Exits within SLA / exits.", MetricType::Gauge),
                           sl, sc.sla_attainment());
          AddOptionalGauge(
              &f.Get("kpid_window_stage_rework_ratio", "rework / entered.", MetricType::Gauge), sl,
              sc.rework_ratio());
        }
      }
    }

    // Dims-less: transitions and window quantiles.
    MetricFamily& transitions = f.Get(
        "kpid_transitions_total", "Moves of cases from one stage to another.", MetricType::Counter);
    for (size_t from = 0; from < process.stages.size(); ++from) {
      for (size_t to = 0; to < process.stages.size(); ++to) {
        const uint64_t n = reader_.ReadTransitions(p, static_cast<int>(from), static_cast<int>(to));
        if (n == 0) continue;
        AddCounter(&transitions,
                   {{"process", process.id},
                    {"from", process.stages[from].id},
                    {"to", process.stages[to].id}},
                   static_cast<double>(n));
      }
    }
    for (size_t w = 0; w < spans.size(); ++w) {
      for (size_t si = 0; si < process.stages.size(); ++si) {
        AddQuantiles(
            &f.Get("kpid_window_stage_cycle_time_seconds",
                   "Time-in-stage quantiles of the exits in the window.", MetricType::Summary),
            {{"process", process.id},
             {"stage", process.stages[si].id},
             {"window", window_labels[w]}},
            reader_.ReadCycleTimes(p, static_cast<int>(si), spans[w]));
      }
      AddQuantiles(
          &f.Get("kpid_window_process_lead_time_seconds",
                 "Lead-time quantiles of the cases completed in the window.", MetricType::Summary),
          {{"process", process.id}, {"window", window_labels[w]}},
          reader_.ReadLeadTimes(p, spans[w]));
    }
    uint64_t folded = 0;
    for (const cases::DimensionTable* table : dimensions_) folded += table->Folded(p);
    AddCounter(&f.Get("kpid_series_folded_total",
                      "Cases whose dimension values were folded into __other__ "
                      "(max_series_per_process reached).",
                      MetricType::Counter),
               process_labels, static_cast<double>(folded));
  }
  return f.Take();
}

}  // namespace kpid::bench_legacy
