#include "daemon/api/kpi_service.h"

#include <algorithm>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "daemon/api/proto_time.h"
#include "daemon/common/duration.h"

namespace kpid::api {
namespace {

v1::Alert::State StateOf(alert::AlertPhase phase) {
  switch (phase) {
    case alert::AlertPhase::kInactive:
      return v1::Alert::INACTIVE;
    case alert::AlertPhase::kPending:
      return v1::Alert::PENDING;
    case alert::AlertPhase::kFiring:
      return v1::Alert::FIRING;
    case alert::AlertPhase::kResolved:
      return v1::Alert::RESOLVED;
  }
  return v1::Alert::STATE_UNSPECIFIED;
}

// A call abandoned because its deadline passed says so, not "cancelled".
grpc::Status Abandoned(grpc::ServerContext* context) {
  if (context->deadline() <= std::chrono::system_clock::now()) {
    return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "deadline exceeded");
  }
  return grpc::Status(grpc::StatusCode::CANCELLED, "call cancelled");
}

}  // namespace

grpc::Status ToGrpc(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

KpiService::KpiService(Options options)
    : options_(std::move(options)),
      cache_({.ttl = options_.limits.snapshot_cache_ttl,
              .max_concurrent_builds = options_.limits.max_concurrent_snapshot_reads}),
      global_cache_({.ttl = options_.limits.snapshot_cache_ttl,
                     .max_concurrent_builds = options_.limits.max_concurrent_snapshot_reads}),
      pacer_({.calls_per_second = options_.limits.snapshot_calls_per_second,
              .max_queued = options_.limits.max_queued_snapshot_calls}) {}

void KpiService::Shutdown() {
  absl::MutexLock lock(&mu_);
  shutdown_ = true;
}

int KpiService::active_watch_streams() const {
  absl::MutexLock lock(&mu_);
  return watch_streams_;
}

absl::StatusOr<SnapshotCache::Shared> KpiService::ReadSnapshot(
    const v1::GetSnapshotRequest& request, absl::Time deadline,
    const std::function<bool()>& cancelled) {
  const auto local = [&](const v1::GetSnapshotRequest& r) -> absl::StatusOr<v1::Snapshot> {
    // The clock round reads no shard: nothing to share, and a cached as_of
    // would be up to a ttl old.
    if (r.clock_only()) return options_.snapshots->Read(r, cancelled);
    absl::StatusOr<SnapshotCache::Shared> s = cache_.Get(
        SnapshotCache::KeyOf(r), [&] { return options_.snapshots->Read(r, cancelled); }, cancelled);
    if (!s.ok()) return s.status();
    return **s;
  };
  if (request.scope() == v1::SCOPE_GLOBAL) {
    return global_cache_.Get(
        SnapshotCache::KeyOf(request),
        [&]() -> absl::StatusOr<v1::Snapshot> {
          v1::GetSnapshotRequest own = request;
          own.set_scope(v1::SCOPE_LOCAL);
          if (options_.global == nullptr) return local(own);
          return options_.global->Read(own, deadline, local);
        },
        cancelled);
  }
  if (request.clock_only()) {
    absl::StatusOr<v1::Snapshot> s = local(request);
    if (!s.ok()) return s.status();
    return std::make_shared<const v1::Snapshot>(*std::move(s));
  }
  return cache_.Get(
      SnapshotCache::KeyOf(request),
      [&] {
        if (options_.metrics != nullptr) options_.metrics->CountBuild();
        return options_.snapshots->Read(request, cancelled);
      },
      cancelled);
}

int KpiService::waiting_snapshot_calls() const {
  absl::MutexLock lock(&mu_);
  return waiting_snapshot_calls_;
}

bool KpiService::WaitForTurn(grpc::ServerContext* context, absl::Time turn) {
  if (absl::Now() >= turn) return true;
  if (options_.metrics != nullptr) options_.metrics->CountPaced();
  {
    absl::MutexLock lock(&mu_);
    ++waiting_snapshot_calls_;
  }
  absl::Cleanup done = [this] {
    absl::MutexLock lock(&mu_);
    --waiting_snapshot_calls_;
  };
  for (absl::Time now = absl::Now(); now < turn; now = absl::Now()) {
    if (context->IsCancelled()) return false;
    // Notice a cancelled call (no callback for it here) within 50 ms.
    absl::SleepFor(std::min(turn - now, absl::Milliseconds(50)));
  }
  return true;
}

grpc::Status KpiService::Counted(SnapshotCallMetrics::Method method, grpc::Status status) {
  if (options_.metrics != nullptr) options_.metrics->Count(method, status);
  return status;
}

grpc::Status KpiService::GetSnapshot(grpc::ServerContext* context,
                                     const v1::GetSnapshotRequest* request,
                                     v1::Snapshot* response) {
  return Counted(SnapshotCallMetrics::Method::kGetSnapshot,
                 ServeSnapshot(context, request, response));
}

grpc::Status KpiService::WatchSnapshots(grpc::ServerContext* context,
                                        const v1::WatchSnapshotsRequest* request,
                                        grpc::ServerWriter<v1::Snapshot>* writer) {
  return Counted(SnapshotCallMetrics::Method::kWatchSnapshots,
                 ServeWatch(context, request, writer));
}

grpc::Status KpiService::ServeSnapshot(grpc::ServerContext* context,
                                       const v1::GetSnapshotRequest* request,
                                       v1::Snapshot* response) {
  // A bad request is told so at once, not after waiting its turn.
  if (absl::Status s = options_.snapshots->Validate(*request); !s.ok()) return ToGrpc(s);
  absl::StatusOr<absl::Time> turn =
      pacer_.Reserve(absl::Now(), absl::FromChrono(context->deadline()));
  if (!turn.ok()) return ToGrpc(turn.status());
  if (!WaitForTurn(context, *turn)) return Abandoned(context);
  absl::StatusOr<SnapshotCache::Shared> snapshot =
      ReadSnapshot(*request, absl::FromChrono(context->deadline()),
                   [context] { return context->IsCancelled(); });
  if (absl::IsCancelled(snapshot.status())) return Abandoned(context);
  if (!snapshot.ok()) return ToGrpc(snapshot.status());
  *response = **snapshot;
  return grpc::Status::OK;
}

grpc::Status KpiService::ServeWatch(grpc::ServerContext* context,
                                    const v1::WatchSnapshotsRequest* request,
                                    grpc::ServerWriter<v1::Snapshot>* writer) {
  if (absl::Status s = options_.snapshots->Validate(request->snapshot()); !s.ok()) {
    return ToGrpc(s);
  }
  absl::Duration interval = kDefaultWatchInterval;
  if (request->has_interval()) {
    if (!IsValid(request->interval())) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "malformed interval duration");
    }
    interval = FromProto(request->interval());
    if (interval < kMinWatchInterval) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("interval ", FormatPromDuration(interval),
                                       " is below the minimum of 100ms"));
    }
  }
  {
    absl::MutexLock lock(&mu_);
    if (shutdown_) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "kpid is shutting down");
    if (watch_streams_ >= options_.limits.max_watch_streams) {
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                          absl::StrCat("too many WatchSnapshots streams (at most ",
                                       options_.limits.max_watch_streams, "); retry later"));
    }
    ++watch_streams_;
  }
  absl::Cleanup release = [this] {
    absl::MutexLock lock(&mu_);
    --watch_streams_;
  };

  const auto cancelled = [context] { return context->IsCancelled(); };
  while (true) {
    absl::StatusOr<SnapshotCache::Shared> snapshot =
        ReadSnapshot(request->snapshot(), absl::FromChrono(context->deadline()), cancelled);
    if (absl::IsCancelled(snapshot.status())) return Abandoned(context);
    if (!snapshot.ok()) return ToGrpc(snapshot.status());
    if (!writer->Write(**snapshot)) return Abandoned(context);  // the client is gone
    // Sleep until the next snapshot; wake for shutdown at once and notice a
    // cancelled call (gRPC has no callback for it here) within 100 ms.
    const absl::Time next = absl::Now() + interval;
    absl::MutexLock lock(&mu_);
    while (!shutdown_ && absl::Now() < next) {
      if (context->IsCancelled()) return Abandoned(context);
      mu_.AwaitWithTimeout(absl::Condition(&shutdown_),
                           std::min(next - absl::Now(), absl::Milliseconds(100)));
    }
    if (shutdown_) return grpc::Status::OK;
  }
}

grpc::Status KpiService::ListAlerts(grpc::ServerContext* /*context*/,
                                    const v1::ListAlertsRequest* request,
                                    v1::ListAlertsResponse* response) {
  if (!request->process().empty() &&
      options_.snapshots->config()->FindProcess(request->process()) == nullptr) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("unknown process \"", request->process(), "\""));
  }
  std::vector<alert::AlertView> views;
  if (options_.alerts) views = options_.alerts();
  std::sort(views.begin(), views.end(), [](const alert::AlertView& a, const alert::AlertView& b) {
    return a.labels < b.labels;
  });
  for (const alert::AlertView& view : views) {
    if (view.phase == alert::AlertPhase::kInactive && !request->include_inactive()) continue;
    if (!request->process().empty()) {
      auto process = view.labels.find("process");
      if (process == view.labels.end() || process->second != request->process()) continue;
    }
    v1::Alert* a = response->add_alerts();
    if (auto name = view.labels.find("alertname"); name != view.labels.end()) {
      a->set_name(name->second);
    }
    a->set_state(StateOf(view.phase));
    a->mutable_labels()->insert(view.labels.begin(), view.labels.end());
    a->mutable_annotations()->insert(view.annotations.begin(), view.annotations.end());
    a->set_value(view.value);
    if (view.phase == alert::AlertPhase::kPending || view.phase == alert::AlertPhase::kFiring) {
      api::ToProto(view.active_at, a->mutable_active_at());
    }
  }
  return grpc::Status::OK;
}

grpc::Status KpiService::ListBreachingCases(grpc::ServerContext* /*context*/,
                                            const v1::ListBreachingCasesRequest* request,
                                            v1::ListBreachingCasesResponse* response) {
  if (request->limit() < 0) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "limit must not be negative");
  }
  if (options_.breaching == nullptr) {
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                        "breaching cases are not available: the case trackers do not publish "
                        "them in this build");
  }
  // The cases first: the request is resolved with the config their process
  // and stage indexes refer to (a reload may have reshaped the engines).
  std::shared_ptr<const model::Config> cases_config;
  std::vector<BreachingCaseRecord> cases = options_.breaching->Breaching(&cases_config);
  if (cases_config == nullptr) cases_config = options_.snapshots->config();
  const model::Config& config = *cases_config;
  int process = -1;
  int stage = -1;
  if (!request->process().empty()) {
    const model::ProcessConfig* p = config.FindProcess(request->process());
    if (p == nullptr) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("unknown process \"", request->process(), "\""));
    }
    process = static_cast<int>(p - config.processes.data());
    if (!request->stage().empty()) {
      stage = p->StageIndex(request->stage());
      if (stage < 0) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            absl::StrCat("unknown stage \"", request->stage(), "\" of process \"",
                                         request->process(), "\""));
      }
    }
  } else if (!request->stage().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "stage needs process");
  }

  std::erase_if(cases, [&](const BreachingCaseRecord& c) {
    return c.process < 0 || c.process >= static_cast<int>(config.processes.size()) || c.stage < 0 ||
           c.stage >=
               static_cast<int>(config.processes[static_cast<size_t>(c.process)].stages.size()) ||
           (process >= 0 && c.process != process) || (stage >= 0 && c.stage != stage);
  });
  std::sort(cases.begin(), cases.end(),
            [](const BreachingCaseRecord& a, const BreachingCaseRecord& b) {
              if (a.deadline != b.deadline) return a.deadline < b.deadline;
              return a.case_id < b.case_id;
            });
  const size_t limit =
      static_cast<size_t>(request->limit() == 0 ? kDefaultBreachingLimit : request->limit());
  const absl::Time as_of = options_.snapshots->Now();
  api::ToProto(as_of, response->mutable_as_of());
  response->set_total(cases.size());
  const std::vector<std::string>& names = config.dimensions.names;
  for (size_t i = 0; i < cases.size() && i < limit; ++i) {
    const BreachingCaseRecord& c = cases[i];
    const model::ProcessConfig& p = config.processes[static_cast<size_t>(c.process)];
    v1::BreachingCase* out = response->add_cases();
    out->set_case_id(c.case_id);
    out->set_process(p.id);
    out->set_stage(p.stages[static_cast<size_t>(c.stage)].id);
    api::ToProto(c.entered_at, out->mutable_entered_at());
    api::ToProto(c.deadline, out->mutable_deadline());
    api::ToProto(as_of - c.entered_at, out->mutable_age());
    api::ToProto(as_of - c.deadline, out->mutable_overdue());
    for (size_t d = 0; d < names.size() && d < c.dimension_values.size(); ++d) {
      (*out->mutable_dimensions())[names[d]] = c.dimension_values[d];
    }
  }
  return grpc::Status::OK;
}

}  // namespace kpid::api
