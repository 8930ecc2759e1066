// How the gRPC snapshot calls ended, for the scrape: a client refused by the
// pacer or the stream limit, or timing out while it waited for its turn,
// shows here, not only in its own error log.
//
//   kpid_grpc_snapshot_calls_total{method="GetSnapshot|WatchSnapshots",
//       result="served|invalid|refused|deadline_exceeded|cancelled|failed"}
//     served: answered (a stream: ended by kpid's shutdown); invalid: a bad
//     request; refused: RESOURCE_EXHAUSTED (CallPacer's queue full or the
//     turn beyond the call's deadline, max_watch_streams reached);
//     deadline_exceeded / cancelled: given up while waiting its turn or for
//     the read (a stream: its client went away); failed: anything else.
//   kpid_grpc_snapshot_calls_paced_total: GetSnapshot calls that waited for
//     a later turn (snapshot_calls_per_second) before being served or
//     giving up.
//   kpid_grpc_snapshot_builds_total: snapshots read from the engines; the
//     calls served beyond these shared a cached one (snapshot_cache_ttl).
//
// Made before the listeners (the HTTP server serves it, the gRPC service
// counts into it). Thread-safe: relaxed atomic counters.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <vector>

#include "grpcpp/support/status.h"
#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"

namespace kpid::api {

class SnapshotCallMetrics : public prometheus::Collectable {
 public:
  enum class Method { kGetSnapshot, kWatchSnapshots, kCount };
  enum class Result { kServed, kInvalid, kRefused, kDeadlineExceeded, kCancelled, kFailed, kCount };

  // The result a call's final status stands for.
  static Result ResultOf(const grpc::Status& status);

  void Count(Method method, const grpc::Status& status);
  void CountPaced() { paced_.fetch_add(1, std::memory_order_relaxed); }
  void CountBuild() { builds_.fetch_add(1, std::memory_order_relaxed); }

  uint64_t calls(Method method, Result result) const;
  uint64_t paced() const { return paced_.load(std::memory_order_relaxed); }
  uint64_t builds() const { return builds_.load(std::memory_order_relaxed); }

  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  static constexpr size_t kMethods = static_cast<size_t>(Method::kCount);
  static constexpr size_t kResults = static_cast<size_t>(Result::kCount);
  std::array<std::atomic<uint64_t>, kMethods * kResults> calls_{};
  std::atomic<uint64_t> paced_{0};
  std::atomic<uint64_t> builds_{0};
};

}  // namespace kpid::api
