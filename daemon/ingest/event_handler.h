// The seam between ingest and what consumes decoded events: one
// PartitionHandler (the daemon's engine: case tracker, aggregator shard,
// dimension table, clock) per assigned Kafka partition. All calls to a
// handler come from the thread of the worker that owns its partition, so a
// handler is the single writer of its state and needs no lock.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/time/time.h"
#include "absl/types/span.h"
#include "daemon/ingest/event_decoder.h"
#include "daemon/ingest/partition_stats.h"
#include "daemon/model/reject_reason.h"

namespace kpid::ingest {

struct Verdict {
  enum class Kind { kAccepted, kDuplicate, kRejected };
  Kind kind = Kind::kAccepted;
  model::RejectReason reason = model::RejectReason::kEmpty;  // kRejected only

  static Verdict Accepted() { return {}; }
  static Verdict Duplicate() { return {Kind::kDuplicate}; }
  static Verdict Rejected(model::RejectReason r) { return {Kind::kRejected, r}; }
};

class EventHandler {
 public:
  virtual ~EventHandler() = default;

  // One valid event, in partition order. Must not block.
  virtual Verdict Handle(const DecodedEvent& event) = 0;

  // Valid events in partition order: verdicts[i] = Handle(*events[i]), with
  // the same effects as those calls in order. A handler whose per-event
  // cost is cache misses overrides it to start loading later events' state
  // while it handles earlier ones. `verdicts` holds events.size() entries.
  virtual void HandleBatch(absl::Span<const DecodedEvent* const> events, Verdict* verdicts) {
    for (size_t i = 0; i < events.size(); ++i) verdicts[i] = Handle(*events[i]);
  }

  // Called about every 100 ms of wall time, with or without events, so timers
  // (SLA deadlines, expiry) fire on a quiet partition too.
  virtual void Tick(absl::Time wall_now) { (void)wall_now; }
  // Ingest says whether the partition's reader has reached the end of its
  // log since it was assigned (false at assignment, true once, then sticky):
  // an event-time clock takes the other partitions' time only after that,
  // never while its own backlog is still unread.
  virtual void SetCaughtUp(bool caught_up) { (void)caught_up; }
};

// Offset of a partition's first message not yet in its handler's state,
// when nothing says (no checkpoint, nothing read yet).
inline constexpr int64_t kUnknownOffset = -1;
// Read the partition from its first message kept (a durable handler with no
// usable checkpoint: whatever the group committed was counted in a state
// that never reached disk). librdkafka's RD_KAFKA_OFFSET_BEGINNING.
inline constexpr int64_t kFromBeginning = -2;

// The handler of one partition, with ingest's counts of its messages.
class PartitionHandler : public EventHandler {
 public:
  // Worker thread, between batches: the handler's state now covers exactly
  // the partition's messages before `next_offset`. A durable handler saves
  // it with that offset (a restart resumes there); every handler remembers
  // the offset for a later Open of the same partition.
  virtual void Checkpoint(int64_t next_offset) = 0;

  // Written by the owning worker only; read by any thread.
  PartitionStats& stats() { return stats_; }
  const PartitionStats& stats() const { return stats_; }

 private:
  PartitionStats stats_;
};

// Where ingest gets and returns the handlers of the partitions it is
// assigned (the daemon's engine registry). Called on ingest's poll thread,
// inside rebalances or when a restore ended; never on the event path.
class PartitionHandlers {
 public:
  virtual ~PartitionHandlers() = default;

  struct Opened {
    std::shared_ptr<PartitionHandler> handler;
    // Where to start reading: the offset the handler's state covers up to
    // (kUnknownOffset: the group's committed offset, for a handler that
    // starts empty without durable state; kFromBeginning: the partition's
    // first message, for a durable one that starts empty).
    int64_t next_offset = kUnknownOffset;
  };
  // The handler for a newly assigned `partition` of a topic of
  // `partition_count` partitions: the one returned by the last Close of it
  // if kept, else restored from its checkpoint, else empty.
  virtual Opened Open(int32_t partition, int partition_count) = 0;
  // Open for every partition of one assignment, in their order; a registry
  // may restore them in parallel.
  virtual std::vector<Opened> OpenAll(const std::vector<int32_t>& partitions, int partition_count) {
    std::vector<Opened> opened;
    for (int32_t partition : partitions) opened.push_back(Open(partition, partition_count));
    return opened;
  }
  // A restore that ended: the partition's handler, ready to be read from
  // `opened.next_offset`.
  using Restored = std::function<void(int32_t partition, Opened opened)>;
  // OpenAll without waiting for restores, so a rebalance returns at once
  // (max.poll.interval.ms): in their order, each partition's handler when
  // it is at hand (kept by an eager revoke, or new without durable state),
  // else a null handler while its state is restored on another thread; the
  // restored handler then goes to `restored`, from that thread, unless a
  // Close of the partition came first (the restore is then discarded).
  // `restored` must not block nor call back into the handlers; it is never
  // called after the Close of its partition returned.
  virtual std::vector<Opened> OpenAsync(const std::vector<int32_t>& partitions, int partition_count,
                                        Restored restored) {
    (void)restored;
    return OpenAll(partitions, partition_count);
  }
  // The partition was revoked and its worker has let go of its handler
  // (after a final Checkpoint); or it was revoked while restoring, and its
  // restore is discarded. `keep`: the group protocol gives revoked
  // partitions back at once (eager rebalance), so keep the handler for the
  // next Open; a kept handler that Open does not ask for is dropped by
  // DropKept().
  virtual void Close(int32_t partition, bool keep) = 0;
  // After an assignment: handlers kept by Close and not opened again belong
  // to another consumer now.
  virtual void DropKept() = 0;
};

}  // namespace kpid::ingest
