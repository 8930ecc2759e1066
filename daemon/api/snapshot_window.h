// One ProcessWindow of a snapshot from the values behind it, and back: the
// local read (SnapshotReader) and the merge of replicas' answers
// (MergeSnapshots) write windows the one same way, so a global snapshot's
// ratios, quantiles and absent values follow the contract exactly as a local
// one's do.
//
//   WindowValues v{.counts = reader.ReadAllDimsWindow(p, span), ...};
//   WriteWindowValues(process_config, v, {.quantiles = true}, window_proto);
//   WindowValues back = ReadWindowValues(*window_proto, stages);  // needs merge_inputs
//
// Plain functions; no state.
#pragma once

#include <functional>
#include <vector>

#include "daemon/aggregate/aggregate_types.h"
#include "daemon/aggregate/distribution.h"
#include "daemon/kpitree/kpi_tree.h"
#include "daemon/model/config.h"
#include "kpid/v1/kpi_service.pb.h"

namespace kpid::api {

// A window of one process: counts summed over the series asked, and (for
// all series only) the distributions of durations.
struct WindowValues {
  aggregate::SeriesWindow counts;
  aggregate::Distribution lead_time;
  std::vector<aggregate::Distribution> cycle_times;  // by stage index
};

struct WindowWrite {
  // Quantiles from the distributions (false with a dimension filter: the
  // aggregator keeps no distributions per dimension value).
  bool quantiles = true;
  // ProcessWindow.merge_inputs too (GetSnapshotRequest.include_merge_inputs).
  bool merge_inputs = false;
};

// Counts, ratios (absent on a zero denominator), quantiles and stages of
// `out`; not its coverage or KPI tree.
void WriteWindowValues(const model::ProcessConfig& process, const WindowValues& values,
                       const WindowWrite& how, v1::ProcessWindow* out);

// A process's KPI tree over one window's values (KpiTreeEvaluator::Evaluate
// of the config the values were read with); may be empty: no KPI tree values.
using WindowKpiTree = std::function<std::vector<kpitree::NodeValue>(
    const model::Config& config, int process,
    const kpitree::KpiTreeEvaluator::WindowValues& window)>;

// out->kpi_tree from `values`, evaluated by `tree` (nothing when it is
// empty). With how.quantiles false (a dimension filter: no distributions
// kept) the nodes that need a quantile are unset, the others are computed
// from the filtered counts. Evaluated from the values the window was written
// from, so the tree agrees with the window's counts in the same answer.
void WriteKpiTree(const model::Config& config, int process, const WindowValues& values,
                  const WindowWrite& how, const WindowKpiTree& tree, v1::ProcessWindow* out);

// The values a window written with merge_inputs holds, `stages` long.
WindowValues ReadWindowValues(const v1::ProcessWindow& window, size_t stages);

void ToProto(const aggregate::Distribution& d, v1::SketchBins* out);
// Bins outside the sketch's layout are ignored, as Distribution::AddToBin does.
aggregate::Distribution FromProto(const v1::SketchBins& bins);

}  // namespace kpid::api
