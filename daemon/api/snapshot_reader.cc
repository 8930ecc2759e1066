#include "daemon/api/snapshot_reader.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "daemon/api/proto_time.h"
#include "daemon/api/snapshot_window.h"
#include "daemon/common/duration.h"

namespace kpid::api {
namespace {

using aggregate::MergedReader;

std::string ProcessIds(const model::Config& config) {
  return absl::StrJoin(config.processes, ", ", [](std::string* out, const model::ProcessConfig& p) {
    absl::StrAppend(out, p.id);
  });
}

std::string WindowNames(const model::Config& config) {
  return absl::StrJoin(config.windows, ", ", [](std::string* out, absl::Duration w) {
    absl::StrAppend(out, FormatPromDuration(w));
  });
}

// Window indexes (into config.windows) the request asks for, in its order;
// every configured window when it names none.
absl::StatusOr<std::vector<int>> RequestedWindows(const model::Config& config,
                                                  const v1::GetSnapshotRequest& request) {
  std::vector<int> indexes;
  if (request.windows().empty()) {
    for (size_t w = 0; w < config.windows.size(); ++w) indexes.push_back(static_cast<int>(w));
    return indexes;
  }
  for (const google::protobuf::Duration& asked : request.windows()) {
    if (!IsValid(asked)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "malformed window duration (seconds ", asked.seconds(), ", nanos ", asked.nanos(), ")"));
    }
    const absl::Duration window = FromProto(asked);
    int found = -1;
    for (size_t w = 0; w < config.windows.size(); ++w) {
      if (config.windows[w] == window) found = static_cast<int>(w);
    }
    if (found < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("window ", FormatPromDuration(window),
                       " is not configured (windows: ", WindowNames(config), ")"));
    }
    indexes.push_back(found);
  }
  return indexes;
}

}  // namespace

SnapshotReader::SnapshotReader(Options options)
    : options_(std::move(options)),
      shards_(options_.shard_source
                  ? options_.shard_source
                  : aggregate::FixedShards(options_.shards, options_.dimensions)) {}

std::shared_ptr<const model::Config> SnapshotReader::config() const {
  const aggregate::ShardSet set = shards_();
  if (set.config != nullptr) return set.config;
  return std::shared_ptr<const model::Config>(std::shared_ptr<void>(), options_.config);
}

absl::Status SnapshotReader::Validate(const v1::GetSnapshotRequest& request) const {
  return Validate(*config(), request);
}

absl::Status SnapshotReader::Validate(const model::Config& c,
                                      const v1::GetSnapshotRequest& request) {
  if (!request.process().empty() && c.FindProcess(request.process()) == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("unknown process \"", request.process(),
                                                   "\" (processes: ", ProcessIds(c), ")"));
  }
  absl::StatusOr<std::vector<int>> windows = RequestedWindows(c, request);
  if (!windows.ok()) return windows.status();
  if (!IsValid(request.offset())) return absl::InvalidArgumentError("malformed offset duration");
  const absl::Duration offset = FromProto(request.offset());
  if (offset < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("offset ", FormatPromDuration(offset), " is negative"));
  }
  for (int w : *windows) {
    const absl::Duration window = c.windows[static_cast<size_t>(w)];
    if (offset + window > c.retention) {
      return absl::InvalidArgumentError(absl::StrCat(
          "offset ", FormatPromDuration(offset), " + window ", FormatPromDuration(window),
          " reaches beyond retention ", FormatPromDuration(c.retention)));
    }
  }
  for (const auto& [name, value] : request.dimensions()) {
    bool known = false;
    for (const std::string& configured : c.dimensions.names) known |= configured == name;
    if (!known) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown dimension \"", name, "\" (dimensions: ",
          c.dimensions.names.empty() ? "none configured" : absl::StrJoin(c.dimensions.names, ", "),
          ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::Snapshot> SnapshotReader::Read(const v1::GetSnapshotRequest& request,
                                                  const std::function<bool()>& cancelled) const {
  // The shards first: the request is checked against, and read with, the
  // config they are shaped by.
  const aggregate::ShardSet set = shards_();
  const model::Config& config = aggregate::ConfigOf(set, *options_.config);
  if (absl::Status s = Validate(config, request); !s.ok()) return s;
  const std::vector<int> windows = *RequestedWindows(config, request);
  // A pinned as_of (a global snapshot's coordinator) makes every replica
  // read the same buckets.
  const absl::Time as_of = request.has_as_of() ? FromProto(request.as_of()) : Now();

  v1::Snapshot snapshot;
  ToProto(as_of, snapshot.mutable_as_of());
  if (options_.watermark) {
    if (absl::optional<absl::Time> watermark = options_.watermark()) {
      ToProto(*watermark, snapshot.mutable_watermark());
    }
  }
  ToProto(FromProto(request.offset()), snapshot.mutable_offset());
  *snapshot.mutable_dimensions() = request.dimensions();
  // This replica's part: partitions still restoring are not in the counts.
  v1::ReplicaStatus* self = snapshot.add_replicas();
  self->set_replica(options_.replica);
  for (int32_t partition : set.partitions) self->add_partitions(partition);
  self->mutable_restoring_partitions()->Add(set.restoring.begin(), set.restoring.end());
  snapshot.set_partial(!set.restoring.empty());
  if (request.clock_only()) return snapshot;
  const MergedReader reader(set.shards);
  for (size_t p = 0; p < config.processes.size(); ++p) {
    if (!request.process().empty() && config.processes[p].id != request.process()) continue;
    if (cancelled && cancelled()) return absl::CancelledError("snapshot abandoned: call cancelled");
    ReadProcess(config, set, reader, static_cast<int>(p), request, as_of, windows,
                snapshot.add_processes());
  }
  return snapshot;
}

std::vector<MergedReader::SeriesRef> SnapshotReader::MatchingSeries(
    const model::Config& config, const aggregate::ShardSet& set, const MergedReader& reader,
    int process, const v1::GetSnapshotRequest& request) const {
  const std::vector<std::string>& names = config.dimensions.names;
  std::vector<MergedReader::SeriesRef> matching;
  for (const MergedReader::SeriesRef& ref : reader.ListSeries(process)) {
    const std::vector<std::string>& values =
        set.tables[static_cast<size_t>(ref.shard)]->Values(process, ref.dims);
    bool match = true;
    for (size_t d = 0; d < names.size() && match; ++d) {
      auto wanted = request.dimensions().find(names[d]);
      if (wanted == request.dimensions().end()) continue;
      match = d < values.size() && values[d] == wanted->second;
    }
    if (match) matching.push_back(ref);
  }
  return matching;
}

void SnapshotReader::ReadProcess(const model::Config& config, const aggregate::ShardSet& set,
                                 const MergedReader& reader, int process,
                                 const v1::GetSnapshotRequest& request, absl::Time as_of,
                                 const std::vector<int>& windows, v1::ProcessSnapshot* out) const {
  const model::ProcessConfig& pc = config.processes[static_cast<size_t>(process)];
  const bool filtered = !request.dimensions().empty();
  const std::vector<MergedReader::SeriesRef> refs =
      filtered ? MatchingSeries(config, set, reader, process, request)
               : std::vector<MergedReader::SeriesRef>{};
  out->set_process(pc.id);

  const aggregate::SeriesTotals totals =
      filtered ? reader.ReadSeriesTotals(process, refs) : reader.ReadAllDimsTotals(process);
  out->set_open_cases(totals.open_cases());
  for (size_t s = 0; s < pc.stages.size(); ++s) {
    v1::StageBacklog* b = out->add_backlog();
    b->set_stage(pc.stages[s].id);
    ToProto(pc.stages[s].sla, b->mutable_sla());
    if (s >= totals.stages.size()) continue;
    b->set_backlog(totals.stages[s].backlog);
    b->set_backlog_over_sla(totals.stages[s].backlog_over_sla);
    b->set_sla_breaches_total(totals.stages[s].sla_breaches);
  }

  const absl::Time end = as_of - FromProto(request.offset());
  for (int w : windows) {
    const aggregate::WindowSpan span = reader.Resolve(w, end);
    v1::ProcessWindow* pw = out->add_windows();
    v1::WindowCoverage* coverage = pw->mutable_coverage();
    ToProto(config.windows[static_cast<size_t>(w)], coverage->mutable_window());
    ToProto(end, coverage->mutable_end());
    if (!span.empty()) {
      ToProto(span.from, coverage->mutable_from());
      ToProto(span.to, coverage->mutable_to());
    }

    WindowValues values;
    values.counts = filtered ? reader.ReadSeriesWindow(process, refs, span)
                             : reader.ReadAllDimsWindow(process, span);
    if (!filtered) {
      values.lead_time = reader.ReadLeadTimes(process, span);
      for (size_t s = 0; s < pc.stages.size(); ++s) {
        values.cycle_times.push_back(reader.ReadCycleTimes(process, static_cast<int>(s), span));
      }
    }
    const WindowWrite how{.quantiles = !filtered, .merge_inputs = request.include_merge_inputs()};
    WriteWindowValues(pc, values, how, pw);
    WriteKpiTree(config, process, values, how, options_.kpi_tree, pw);
  }
}

}  // namespace kpid::api
