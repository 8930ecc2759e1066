#include "daemon/api/call_metrics.h"

#include "daemon/export/metric_builder.h"

namespace kpid::api {
namespace {

constexpr const char* kMethodNames[] = {"GetSnapshot", "WatchSnapshots"};
constexpr const char* kResultNames[] = {"served",    "invalid", "refused", "deadline_exceeded",
                                        "cancelled", "failed"};

}  // namespace

SnapshotCallMetrics::Result SnapshotCallMetrics::ResultOf(const grpc::Status& status) {
  switch (status.error_code()) {
    case grpc::StatusCode::OK:
      return Result::kServed;
    case grpc::StatusCode::INVALID_ARGUMENT:
      return Result::kInvalid;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return Result::kRefused;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return Result::kDeadlineExceeded;
    case grpc::StatusCode::CANCELLED:
      return Result::kCancelled;
    default:
      return Result::kFailed;
  }
}

void SnapshotCallMetrics::Count(Method method, const grpc::Status& status) {
  calls_[static_cast<size_t>(method) * kResults + static_cast<size_t>(ResultOf(status))].fetch_add(
      1, std::memory_order_relaxed);
}

uint64_t SnapshotCallMetrics::calls(Method method, Result result) const {
  return calls_[static_cast<size_t>(method) * kResults + static_cast<size_t>(result)].load(
      std::memory_order_relaxed);
}

std::vector<prometheus::MetricFamily> SnapshotCallMetrics::Collect() const {
  using prometheus::MetricType;
  std::vector<prometheus::MetricFamily> families;
  prometheus::MetricFamily f = exporter::Family(
      "kpid_grpc_snapshot_calls_total",
      "GetSnapshot calls and WatchSnapshots streams, by how they ended: served, invalid, refused "
      "(pacer queue full, turn beyond the deadline, stream limit), deadline_exceeded, cancelled, "
      "failed.",
      MetricType::Counter);
  for (size_t m = 0; m < kMethods; ++m) {
    for (size_t r = 0; r < kResults; ++r) {
      exporter::AddCounter(
          &f, {{"method", kMethodNames[m]}, {"result", kResultNames[r]}},
          static_cast<double>(calls_[m * kResults + r].load(std::memory_order_relaxed)));
    }
  }
  families.push_back(std::move(f));
  f = exporter::Family("kpid_grpc_snapshot_calls_paced_total",
                       "GetSnapshot calls that waited for a later turn "
                       "(grpc.snapshot_calls_per_second).",
                       MetricType::Counter);
  exporter::AddCounter(&f, {}, static_cast<double>(paced()));
  families.push_back(std::move(f));
  f = exporter::Family("kpid_grpc_snapshot_builds_total",
                       "Snapshots read from the engines; calls served beyond these shared a "
                       "cached one (grpc.snapshot_cache_ttl).",
                       MetricType::Counter);
  exporter::AddCounter(&f, {}, static_cast<double>(builds()));
  families.push_back(std::move(f));
  return families;
}

}  // namespace kpid::api
