#include "daemon/aggregate/kpi_reading.h"

#include "absl/strings/match.h"

namespace kpid::aggregate {
namespace {

KpiReading StageReading(absl::string_view kpi, const StageWindowCounts& c) {
  KpiReading r{c.Value(kpi), c.exited()};
  if (kpi == "entered" || kpi == "rework" || kpi == "rework_ratio") r.events = c.entered;
  if (kpi == "sla_breaches") r.events = c.sla_breaches;
  return r;
}

KpiReading ProcessReading(absl::string_view kpi, const ProcessWindowCounts& c) {
  KpiReading r{c.Value(kpi), c.completed};
  if (kpi == "started") r.events = c.started;
  if (kpi == "win_ratio" || kpi == "fallout") r.events = c.completed + c.fallout;
  if (kpi == "feedback_score") r.events = c.score_count;
  if (kpi == "events") r.events = c.events();
  return r;
}

}  // namespace

absl::optional<double> QuantileOf(absl::string_view kpi) {
  if (absl::EndsWith(kpi, "_p50")) return 0.5;
  if (absl::EndsWith(kpi, "_p90")) return 0.9;
  if (absl::EndsWith(kpi, "_p99")) return 0.99;
  return absl::nullopt;
}

KpiReading KpiFromCounts(const SeriesWindow& window, int stage, absl::string_view kpi) {
  if (QuantileOf(kpi)) return {};
  if (stage < 0) return ProcessReading(kpi, window.process);
  const size_t s = static_cast<size_t>(stage);
  return s < window.stages.size() ? StageReading(kpi, window.stages[s]) : StageReading(kpi, {});
}

KpiReading ReadWindowKpi(const MergedReader& reader, int process, int stage, absl::string_view kpi,
                         const WindowSpan& span, const SeriesWindow* counts) {
  if (const absl::optional<double> q = QuantileOf(kpi)) {
    const Distribution d = stage >= 0 ? reader.ReadCycleTimes(process, stage, span)
                                      : reader.ReadLeadTimes(process, span);
    return {d.Quantile(*q), d.count()};
  }
  if (counts != nullptr) return KpiFromCounts(*counts, stage, kpi);
  return KpiFromCounts(reader.ReadAllDimsWindow(process, span), stage, kpi);
}

}  // namespace kpid::aggregate
