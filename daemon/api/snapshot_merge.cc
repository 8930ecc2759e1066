#include "daemon/api/snapshot_merge.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "daemon/api/proto_time.h"
#include "daemon/api/snapshot_window.h"

namespace kpid::api {
namespace {

std::string ReplicaOf(const v1::Snapshot& s) {
  return s.replicas().empty() ? std::string() : s.replicas(0).replica();
}

// Why `part` cannot be added to `first` (empty: it can): the same processes,
// windows, stages and merge inputs in the same order.
std::string ShapeMismatch(const v1::Snapshot& first, const v1::Snapshot& part) {
  if (part.processes_size() != first.processes_size()) {
    return absl::StrCat("answer has ", part.processes_size(), " processes, this replica ",
                        first.processes_size(), " (different config?)");
  }
  for (int p = 0; p < first.processes_size(); ++p) {
    const v1::ProcessSnapshot& a = first.processes(p);
    const v1::ProcessSnapshot& b = part.processes(p);
    if (a.process() != b.process() || a.backlog_size() != b.backlog_size() ||
        a.windows_size() != b.windows_size()) {
      return absl::StrCat("answer for process \"", b.process(),
                          "\" does not match this replica's config");
    }
    for (int w = 0; w < a.windows_size(); ++w) {
      if (a.windows(w).stages_size() != b.windows(w).stages_size() ||
          !b.windows(w).has_merge_inputs()) {
        return absl::StrCat("answer for process \"", b.process(),
                            "\" has no mergeable window (kpid too old or different config?)");
      }
    }
  }
  return "";
}

}  // namespace

v1::Snapshot MergeSnapshots(const model::Config& config, const v1::GetSnapshotRequest& request,
                            const std::vector<ReplicaAnswer>& answers,
                            const WindowKpiTree& kpi_tree) {
  v1::Snapshot out;
  if (answers.empty() || !answers[0].snapshot.ok()) return out;
  const v1::Snapshot& first = *answers[0].snapshot;
  out.mutable_as_of()->CopyFrom(first.as_of());
  out.mutable_offset()->CopyFrom(first.offset());
  *out.mutable_dimensions() = first.dimensions();
  out.set_partial(first.partial());

  // The answers that are merged, and who they are.
  std::vector<const v1::Snapshot*> parts;
  std::set<std::string> merged_replicas;
  for (const ReplicaAnswer& answer : answers) {
    std::string error;
    if (!answer.snapshot.ok()) {
      error = answer.snapshot.status().ToString();
    } else if (merged_replicas.count(ReplicaOf(*answer.snapshot)) > 0) {
      continue;  // this replica again, or a peer reached at a second address
    } else {
      error = ShapeMismatch(first, *answer.snapshot);
    }
    v1::ReplicaStatus* status = out.add_replicas();
    status->set_address(answer.address);
    if (!error.empty()) {
      status->set_replica(answer.address);
      status->set_error(error);
      out.set_partial(true);
      continue;
    }
    const v1::Snapshot& s = *answer.snapshot;
    merged_replicas.insert(ReplicaOf(s));
    if (!s.replicas().empty()) {
      const v1::ReplicaStatus& own = s.replicas(0);
      status->set_replica(own.replica());
      *status->mutable_partitions() = own.partitions();
      *status->mutable_restoring_partitions() = own.restoring_partitions();
    }
    if (s.partial()) out.set_partial(true);
    if (s.has_watermark() &&
        (!out.has_watermark() || FromProto(s.watermark()) > FromProto(out.watermark()))) {
      out.mutable_watermark()->CopyFrom(s.watermark());
    }
    parts.push_back(&s);
  }

  const bool filtered = !request.dimensions().empty();
  for (int p = 0; p < first.processes_size(); ++p) {
    const v1::ProcessSnapshot& shape = first.processes(p);
    const model::ProcessConfig* pc = config.FindProcess(shape.process());
    if (pc == nullptr) continue;  // answers are of this replica's config: cannot happen
    const int process = static_cast<int>(pc - config.processes.data());
    v1::ProcessSnapshot* merged = out.add_processes();
    merged->set_process(shape.process());
    merged->mutable_backlog()->CopyFrom(shape.backlog());
    for (v1::StageBacklog& b : *merged->mutable_backlog()) {
      b.set_backlog(0);
      b.set_backlog_over_sla(0);
      b.set_sla_breaches_total(0);
    }
    for (const v1::Snapshot* part : parts) {
      const v1::ProcessSnapshot& ps = part->processes(p);
      merged->set_open_cases(merged->open_cases() + ps.open_cases());
      for (int s = 0; s < ps.backlog_size(); ++s) {
        v1::StageBacklog* b = merged->mutable_backlog(s);
        b->set_backlog(b->backlog() + ps.backlog(s).backlog());
        b->set_backlog_over_sla(b->backlog_over_sla() + ps.backlog(s).backlog_over_sla());
        b->set_sla_breaches_total(b->sla_breaches_total() + ps.backlog(s).sla_breaches_total());
      }
    }

    for (int w = 0; w < shape.windows_size(); ++w) {
      WindowValues sum;
      sum.counts.stages.resize(pc->stages.size());
      sum.cycle_times.resize(pc->stages.size());
      for (const v1::Snapshot* part : parts) {
        const WindowValues v = ReadWindowValues(part->processes(p).windows(w), pc->stages.size());
        sum.counts.Merge(v.counts);
        sum.lead_time.Merge(v.lead_time);
        for (size_t s = 0; s < pc->stages.size(); ++s) sum.cycle_times[s].Merge(v.cycle_times[s]);
      }
      v1::ProcessWindow* pw = merged->add_windows();
      pw->mutable_coverage()->CopyFrom(shape.windows(w).coverage());
      const WindowWrite how{.quantiles = !filtered, .merge_inputs = request.include_merge_inputs()};
      WriteWindowValues(*pc, sum, how, pw);
      WriteKpiTree(config, process, sum, how, kpi_tree, pw);
    }
  }
  return out;
}

}  // namespace kpid::api
