// The global snapshot (GetSnapshotRequest.scope = SCOPE_GLOBAL) from every
// replica's local answer to the same request, merged exactly: the replicas
// own disjoint Kafka partitions, so counts, sums, backlogs and duration
// sketches add; ratios are recomputed from the summed counts (absent on a
// zero denominator), quantiles from the summed sketches, and the KPI tree is
// evaluated once over the merged values.
//
//   std::vector<ReplicaAnswer> answers = {{"", *local}, {"10.0.0.2:50051", peer}, ...};
//   v1::Snapshot global = MergeSnapshots(config, request, answers, kpi_tree);
//
// Every answer must have been read with include_merge_inputs and the same
// pinned as_of (PeerFanOut does both), so all read the same buckets and the
// coverage of each window is the same by construction (the first answer's is
// kept). An answer that failed, or whose shape does not match the first
// (another config: processes, stages or windows differ), is left out and its
// replica listed with the error; the result is then partial. An answer from
// a replica already merged (the same replica_id: this replica reached
// through a peer address, or two addresses of one peer) is skipped.
//
// Plain function; no state.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "daemon/api/snapshot_window.h"
#include "daemon/kpitree/kpi_tree.h"
#include "daemon/model/config.h"
#include "kpid/v1/kpi_service.pb.h"

namespace kpid::api {

struct ReplicaAnswer {
  std::string address;  // empty for the replica answering
  absl::StatusOr<v1::Snapshot> snapshot;
};

// `answers[0]` is this replica's own (successful) answer.
v1::Snapshot MergeSnapshots(const model::Config& config, const v1::GetSnapshotRequest& request,
                            const std::vector<ReplicaAnswer>& answers,
                            const WindowKpiTree& kpi_tree);

}  // namespace kpid::api
