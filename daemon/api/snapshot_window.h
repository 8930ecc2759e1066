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

#include <vector>

#include "daemon/aggregate/aggregate_types.h"
#include "daemon/aggregate/distribution.h"
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

// The values a window written with merge_inputs holds, `stages` long.
WindowValues ReadWindowValues(const v1::ProcessWindow& window, size_t stages);

void ToProto(const aggregate::Distribution& d, v1::SketchBins* out);
// Bins outside the sketch's layout are ignored, as Distribution::AddToBin does.
aggregate::Distribution FromProto(const v1::SketchBins& bins);

}  // namespace kpid::api
