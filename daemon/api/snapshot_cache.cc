#include "daemon/api/snapshot_cache.h"

#include <chrono>
#include <utility>

#include "absl/time/clock.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

namespace kpid::api {
namespace {

// How often a waiting call looks at its `cancelled`: gRPC has no callback
// for a cancelled call on the synchronous API.
constexpr std::chrono::milliseconds kCancelPoll(50);

}  // namespace

SnapshotCache::SnapshotCache(Options options) : options_(std::move(options)) {}

std::string SnapshotCache::KeyOf(const v1::GetSnapshotRequest& request) {
  std::string key;
  {
    // The streams trim `key` to what was written when they go.
    google::protobuf::io::StringOutputStream stream(&key);
    google::protobuf::io::CodedOutputStream out(&stream);
    out.SetSerializationDeterministic(true);
    request.SerializeToCodedStream(&out);
  }
  return key;
}

int64_t SnapshotCache::builds() const {
  std::lock_guard<std::mutex> lock(mu_);
  return builds_;
}

int SnapshotCache::waiting() const {
  std::lock_guard<std::mutex> lock(mu_);
  return waiting_;
}

bool SnapshotCache::Fresh(const Flight& flight, absl::Time now) const {
  return now - flight.started < options_.ttl;
}

bool SnapshotCache::WaitUntil(std::unique_lock<std::mutex>& lock,
                              const std::function<bool()>& ready,
                              const std::function<bool()>& cancelled) {
  ++waiting_;
  bool done;
  while (!(done = ready()) && !(cancelled && cancelled())) changed_.wait_for(lock, kCancelPoll);
  --waiting_;
  return done;
}

void SnapshotCache::Evict(absl::Time now) {
  if (flights_.size() < options_.max_entries) return;
  std::erase_if(flights_, [&](const auto& entry) {
    return entry.second->done && !Fresh(*entry.second, now);
  });
  if (flights_.size() < options_.max_entries) return;
  // Fresh but finished entries go too: the next caller of each reads again.
  // Builds in flight stay (at most max_concurrent_builds of them).
  std::erase_if(flights_, [](const auto& entry) { return entry.second->done; });
}

absl::StatusOr<SnapshotCache::Shared> SnapshotCache::Get(const std::string& key, const Build& build,
                                                         const std::function<bool()>& cancelled) {
  const bool share = options_.ttl > absl::ZeroDuration();
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    if (share) {
      auto it = flights_.find(key);
      if (it != flights_.end() && Fresh(*it->second, Now())) {
        const std::shared_ptr<Flight> flight = it->second;
        const std::function<bool()> built = [&] { return flight->done; };
        if (!WaitUntil(lock, built, cancelled)) {
          return absl::CancelledError("call cancelled");
        }
        if (flight->status.ok()) return flight->snapshot;
        if (!absl::IsCancelled(flight->status)) return flight->status;
        continue;  // its caller went away; this one still wants the answer
      }
    }
    if (running_builds_ < options_.max_concurrent_builds) break;
    const std::function<bool()> slot_free = [&] {
      return running_builds_ < options_.max_concurrent_builds;
    };
    if (!WaitUntil(lock, slot_free, cancelled)) {
      return absl::CancelledError("call cancelled");
    }
    // Look again: the request may have been built while this call waited.
  }

  auto flight = std::make_shared<Flight>();
  flight->started = Now();
  if (share) {
    Evict(flight->started);
    flights_[key] = flight;
  }
  ++running_builds_;
  ++builds_;
  lock.unlock();
  absl::StatusOr<v1::Snapshot> built = build();
  Shared snapshot;
  if (built.ok()) snapshot = std::make_shared<const v1::Snapshot>(*std::move(built));
  lock.lock();
  --running_builds_;
  flight->done = true;
  if (built.ok()) {
    flight->snapshot = snapshot;
  } else {
    flight->status = built.status();
    // A later build of the key may have replaced this one (this one outlived
    // the ttl); leave that one be.
    if (auto it = flights_.find(key); it != flights_.end() && it->second == flight) {
      flights_.erase(it);
    }
  }
  changed_.notify_all();
  if (!built.ok()) return built.status();
  return snapshot;
}

}  // namespace kpid::api
