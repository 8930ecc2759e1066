// kpid.v1.KpiService (proto/kpid/v1/kpi_service.proto) on gRPC's synchronous
// API: snapshots from SnapshotReader, alerts from the rule engine, breaching
// cases from a BreachingCasesSource.
//
//   KpiService service({.snapshots = &reader, .alerts = [&] { return engine.Alerts(); }});
//   builder.RegisterService(&service);
//   ...
//   service.Shutdown();  // ends open WatchSnapshots streams, then server->Shutdown()
//
// Deadlines: a call whose deadline passes while a snapshot is read gives up
// between processes; a WatchSnapshots stream ends when its deadline passes or
// the client cancels. At most `max_watch_streams` streams run at once (each
// holds a server thread); more get RESOURCE_EXHAUSTED.
//
// What a client may cost (`limits`, the config's `grpc:` keys, issue 6):
// snapshots go through a SnapshotCache (identical requests within
// snapshot_cache_ttl share one read; at most max_concurrent_snapshot_reads
// reads at once), and GetSnapshot calls through a CallPacer (at most
// snapshot_calls_per_second start each second, first come first served;
// beyond max_queued_snapshot_calls waiting, RESOURCE_EXHAUSTED). Watch
// ticks are not paced: streams are bounded and tick at most every 100 ms.
//
// Scope: SCOPE_LOCAL (the default) reads this replica's partitions; a
// request with clock_only is answered without reading any shard and without
// the cache (a global snapshot's first round). SCOPE_GLOBAL goes through the
// same pacer, then a cache of its own (a client polling the global view
// within snapshot_cache_ttl costs one fan-out), then GlobalSnapshots, whose
// peers each pace and cache the LOCAL calls they get: one global call costs
// each peer at most two paced calls, never a cascade.
//
// Thread-safe: gRPC calls the handlers on its own threads.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "daemon/alert/rule_engine.h"
#include "daemon/api/breaching_cases.h"
#include "daemon/api/call_metrics.h"
#include "daemon/api/call_pacer.h"
#include "daemon/api/peers.h"
#include "daemon/api/snapshot_cache.h"
#include "daemon/api/snapshot_reader.h"
#include "daemon/model/config.h"
#include "kpid/v1/kpi_service.grpc.pb.h"

namespace kpid::api {

class KpiService final : public v1::KpiService::Service {
 public:
  static constexpr absl::Duration kDefaultWatchInterval = absl::Seconds(5);
  static constexpr absl::Duration kMinWatchInterval = absl::Milliseconds(100);
  static constexpr int kDefaultBreachingLimit = 100;

  struct Options {
    const SnapshotReader* snapshots = nullptr;
    // The rule engine's alert instances; empty: no alerts.
    std::function<std::vector<alert::AlertView>()> alerts;
    // Null: ListBreachingCases answers UNIMPLEMENTED.
    const BreachingCasesSource* breaching = nullptr;
    model::GrpcApiConfig limits;
    // Null: a SCOPE_GLOBAL request is answered from this replica alone (no
    // peers configured), its only replica listed.
    GlobalSnapshots* global = nullptr;
    // Where the snapshot calls are counted; may be null.
    SnapshotCallMetrics* metrics = nullptr;
  };

  explicit KpiService(Options options);

  // Ends every WatchSnapshots stream (status OK) and refuses new ones
  // (UNAVAILABLE); call before grpc::Server::Shutdown, which waits for them.
  void Shutdown();

  grpc::Status GetSnapshot(grpc::ServerContext* context, const v1::GetSnapshotRequest* request,
                           v1::Snapshot* response) override;
  grpc::Status WatchSnapshots(grpc::ServerContext* context,
                              const v1::WatchSnapshotsRequest* request,
                              grpc::ServerWriter<v1::Snapshot>* writer) override;
  grpc::Status ListAlerts(grpc::ServerContext* context, const v1::ListAlertsRequest* request,
                          v1::ListAlertsResponse* response) override;
  grpc::Status ListBreachingCases(grpc::ServerContext* context,
                                  const v1::ListBreachingCasesRequest* request,
                                  v1::ListBreachingCasesResponse* response) override;

  int active_watch_streams() const;
  // GetSnapshot calls waiting for their turn (CallPacer).
  int waiting_snapshot_calls() const;

 private:
  // SnapshotReader::Read through the cache; SCOPE_GLOBAL through
  // GlobalSnapshots and its own cache, whose peer calls may last up to
  // peers.timeout and so must not hold one of the local reads' slots (a
  // peer's LOCAL read of this replica could then wait for it).
  absl::StatusOr<SnapshotCache::Shared> ReadSnapshot(const v1::GetSnapshotRequest& request,
                                                     absl::Time deadline,
                                                     const std::function<bool()>& cancelled);
  // Sleeps until `turn`; false when the call is cancelled first.
  bool WaitForTurn(grpc::ServerContext* context, absl::Time turn);
  // The calls' bodies; the overrides count how they ended.
  grpc::Status ServeSnapshot(grpc::ServerContext* context, const v1::GetSnapshotRequest* request,
                             v1::Snapshot* response);
  grpc::Status ServeWatch(grpc::ServerContext* context, const v1::WatchSnapshotsRequest* request,
                          grpc::ServerWriter<v1::Snapshot>* writer);
  grpc::Status Counted(SnapshotCallMetrics::Method method, grpc::Status status);

  Options options_;
  SnapshotCache cache_;
  SnapshotCache global_cache_;
  CallPacer pacer_;
  mutable absl::Mutex mu_;
  int watch_streams_ ABSL_GUARDED_BY(mu_) = 0;
  int waiting_snapshot_calls_ ABSL_GUARDED_BY(mu_) = 0;
  bool shutdown_ ABSL_GUARDED_BY(mu_) = false;
};

// absl::Status -> grpc::Status, code and message kept.
grpc::Status ToGrpc(const absl::Status& status);

}  // namespace kpid::api
