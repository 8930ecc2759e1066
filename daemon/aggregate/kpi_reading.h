// The one place that turns the aggregator's window data into the value of a
// window KPI of DESIGN §3 (by its daemon/model/kpi.h name), for a process or
// one of its stages, with the number of events the value rests on (for an
// alert rule's min_events). The rule engine, the KPI tree and the gRPC API all
// read KPIs through it, so they agree on every value.
//
//   MergedReader reader(shards);
//   WindowSpan span = reader.Resolve(window_index, now);
//   KpiReading r = ReadWindowKpi(reader, process, /*stage=*/2, "sla_attainment", span);
//   if (r.value && r.events >= min_events) { ... }
//
// Counts and ratios come from SeriesWindow (StageWindowCounts::Value /
// ProcessWindowCounts::Value); "*_p50/_p90/_p99" from the stage's cycle-time
// or the process's lead-time Distribution. A ratio with a zero denominator
// and a quantile of no observations are absent.
//
// Thread safety: as MergedReader (any thread, no locks).
#pragma once

#include <cstdint>

#include "absl/strings/string_view.h"
#include "absl/types/optional.h"
#include "daemon/aggregate/aggregate_types.h"
#include "daemon/aggregate/merged_reader.h"

namespace kpid::aggregate {

struct KpiReading {
  absl::optional<double> value;
  // The events the value rests on: exits for stage ratios, entries for
  // entered/rework, completed (+ fallout for win_ratio and fallout) for
  // process KPIs, scores for feedback_score, observations for quantiles.
  uint64_t events = 0;
};

// "cycle_time_p90" -> 0.9; absent for a KPI that is not a quantile.
absl::optional<double> QuantileOf(absl::string_view kpi);

// A count or ratio KPI from window counts already read: stage `stage` of
// `window` (a stage beyond window.stages reads as no events), or the process
// when stage < 0. Quantile KPIs read as absent here.
KpiReading KpiFromCounts(const SeriesWindow& window, int stage, absl::string_view kpi);

// Window KPI `kpi` of `process` (stage < 0) or of its stage `stage` over
// `span`. Counts and ratios come from `counts` when given (the window of the
// series the caller wants, e.g. one group of dimension values), else from
// every series of the process. Quantiles always cover every series: the
// aggregator keeps distributions per stage and process only.
KpiReading ReadWindowKpi(const MergedReader& reader, int process, int stage, absl::string_view kpi,
                         const WindowSpan& span, const SeriesWindow* counts = nullptr);

}  // namespace kpid::aggregate
