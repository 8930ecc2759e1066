// Snapshots shared between callers of the same request (issue 6): a client
// calling GetSnapshot in a loop, or many WatchSnapshots streams of one
// request, must not make the server read every series of every shard per
// call.
//
//   SnapshotCache cache({.ttl = absl::Seconds(1), .max_concurrent_builds = 1});
//   absl::StatusOr<SnapshotCache::Shared> s = cache.Get(
//       SnapshotCache::KeyOf(request), [&] { return reader.Read(request, cancelled); }, cancelled);
//
// - Freshness: a snapshot is shared only with calls that arrive less than
//   `ttl` after its build started, so every answer reads the shards no
//   earlier than `ttl` before the call arrived.
// - Single flight: a call that finds its request being built waits for that
//   build instead of starting another. If that build was abandoned (its own
//   caller went away: CANCELLED), a waiter still wanting the answer builds it.
//   Other errors (INVALID_ARGUMENT) are the same for every caller and shared;
//   failed builds are not kept.
// - Keys are the request's deterministic serialization: process, windows,
//   offset and every dimension filter value are part of it, so different
//   requests never share a snapshot.
// - At most `max_concurrent_builds` builds (of different requests, or every
//   call with ttl 0) run at once; more calls wait for a slot, first come
//   first served by the mutex, until their `cancelled` says true. Waiting
//   rather than RESOURCE_EXHAUSTED: a build takes 1-20 ms (1k-10k series),
//   a rejected client retries at once and costs more than it waits, and the
//   number of waiting calls is bounded before they get here (CallPacer).
// - Nothing is keyed on the engine's shards: the build function reads
//   whatever the reader sees at that moment, and entries hold only
//   messages.
//
// Thread-safe. std::mutex rather than absl::Mutex so that ThreadSanitizer
// sees the ordering (Debian's Abseil is not instrumented).
#pragma once

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "kpid/v1/kpi_service.pb.h"

namespace kpid::api {

class SnapshotCache {
 public:
  using Shared = std::shared_ptr<const v1::Snapshot>;
  using Build = std::function<absl::StatusOr<v1::Snapshot>()>;

  struct Options {
    absl::Duration ttl = absl::Seconds(1);  // zero: nothing is shared
    int max_concurrent_builds = 1;
    size_t max_entries = 64;  // beyond, stale (then finished) entries go
    // Wall time for freshness; empty: absl::Now. A parameter for tests.
    std::function<absl::Time()> now = nullptr;
  };

  explicit SnapshotCache(Options options);

  // Equal requests give equal keys (map fields in a fixed order).
  static std::string KeyOf(const v1::GetSnapshotRequest& request);

  // The snapshot of `key`: shared if fresh, else built by `build` (here or
  // by a concurrent caller of the same key). `cancelled`, when given, is
  // polled while waiting; once true, Get returns CANCELLED.
  absl::StatusOr<Shared> Get(const std::string& key, const Build& build,
                             const std::function<bool()>& cancelled = nullptr);

  // For tests and metrics.
  int64_t builds() const;
  int waiting() const;  // calls waiting for a build or a build slot

 private:
  struct Flight {
    absl::Time started;
    bool done = false;
    absl::Status status;
    Shared snapshot;
  };

  absl::Time Now() const { return options_.now ? options_.now() : absl::Now(); }
  bool Fresh(const Flight& flight, absl::Time now) const;
  // Waits on `changed_` until `ready()` or `cancelled()`; false when cancelled.
  bool WaitUntil(std::unique_lock<std::mutex>& lock, const std::function<bool()>& ready,
                 const std::function<bool()>& cancelled);
  void Evict(absl::Time now);  // mu_ held

  const Options options_;
  mutable std::mutex mu_;
  std::condition_variable changed_;                         // a build finished or a slot freed
  std::map<std::string, std::shared_ptr<Flight>> flights_;  // guarded by mu_
  int running_builds_ = 0;                                  // guarded by mu_
  int waiting_ = 0;                                         // guarded by mu_
  int64_t builds_ = 0;                                      // guarded by mu_
};

}  // namespace kpid::api
