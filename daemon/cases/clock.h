// The tracker's notion of "now" (DESIGN §3 `clock`), injected so tests never
// sleep and replays can run on event time.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "daemon/common/single_writer_counter.h"

namespace kpid::cases {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
  // Told the time of every event the tracker handles; event-time clocks
  // advance with it.
  virtual void Observe(absl::Time event_time) { (void)event_time; }
  // Called by the worker about every 100 ms of wall time.
  virtual void Tick(absl::Time wall_now) { (void)wall_now; }
};

// clock: wall.
class WallClock : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
};

// A clock tests set by hand.
class ManualClock : public Clock {
 public:
  explicit ManualClock(absl::Time now = absl::UnixEpoch()) : now_(now) {}
  absl::Time Now() const override { return now_; }
  void Set(absl::Time now) { now_ = now; }
  void Advance(absl::Duration d) { now_ += d; }

 private:
  absl::Time now_;
};

// clock: event. "Now" is event time. Each worker tracks the latest event
// time it has seen (its watermark) on a shared board; one slot per worker,
// written only by that worker (single writer), read by all (relaxed: each
// slot is an independent monotonic value, and a slightly stale view only
// delays a deadline to the next tick).
//
// A worker's now is its own watermark while it reads events; while it is
// idle (a tick passed without events) it is the board's: the lowest
// watermark among workers that saw events in the last second (as a stream
// processor takes the minimum over its inputs). So a lagging worker is not
// overtaken by a faster one's event time — a case there is not breached or
// expired before its own events have been read — while a quiet partition's
// deadlines still fire as the others advance.
class WatermarkBoard {
 public:
  static constexpr int64_t kIdleAfterMillis = 1000;

  explicit WatermarkBoard(int workers) : slots_(static_cast<size_t>(workers)) {}

  void Observe(int worker, int64_t unix_micros) { slot(worker).watermark.Observe(unix_micros); }
  void MarkActive(int worker, int64_t wall_millis) {
    slot(worker).active_wall_ms.store(wall_millis, std::memory_order_relaxed);
  }
  // The latest event time seen by any worker; 0 (the Unix epoch) before any.
  int64_t MaxMicros() const {
    int64_t max = 0;
    for (const Slot& s : slots_) max = std::max(max, s.watermark.Get());
    return max;
  }
  // The lowest watermark among workers active within kIdleAfterMillis of
  // `wall_millis`; MaxMicros() when none is.
  int64_t ActiveMinMicros(int64_t wall_millis) const {
    int64_t min = std::numeric_limits<int64_t>::max();
    for (const Slot& s : slots_) {
      if (wall_millis - s.active_wall_ms.load(std::memory_order_relaxed) <= kIdleAfterMillis) {
        min = std::min(min, s.watermark.Get());
      }
    }
    return min == std::numeric_limits<int64_t>::max() ? MaxMicros() : min;
  }

 private:
  struct alignas(64) Slot {
    SingleWriterMax watermark{0};
    std::atomic<int64_t> active_wall_ms{std::numeric_limits<int64_t>::min() / 2};
  };
  Slot& slot(int worker) { return slots_[static_cast<size_t>(worker)]; }
  std::vector<Slot> slots_;
};

// A worker's event-time clock. Single writer: that worker's thread.
class EventTimeClock : public Clock {
 public:
  EventTimeClock(WatermarkBoard* board, int worker) : board_(board), worker_(worker) {}
  absl::Time Now() const override { return absl::FromUnixMicros(std::max(own_, shared_)); }
  void Observe(absl::Time event_time) override {
    const int64_t t = absl::ToUnixMicros(event_time);
    if (t > own_) {
      own_ = t;
      board_->Observe(worker_, t);
    }
    // Reading events again: the others' time, taken while this worker was
    // idle, no longer applies. A worker that idled until its backlog arrived
    // (start-up, rebalance) must not handle that backlog at the time the
    // others have reached, or its cases would expire and breach before
    // their own events are read.
    shared_ = 0;
    observed_ = true;
  }
  void Tick(absl::Time wall_now) override {
    const int64_t wall_ms = absl::ToUnixMillis(wall_now);
    if (observed_) board_->MarkActive(worker_, wall_ms);
    observed_ = false;
    shared_ = board_->ActiveMinMicros(wall_ms);
  }

 private:
  WatermarkBoard* board_;
  int worker_;
  int64_t own_ = 0;
  int64_t shared_ = 0;
  bool observed_ = false;
};

// For readers (windows end here): the latest event time any worker has seen.
class LatestEventClock : public Clock {
 public:
  explicit LatestEventClock(const WatermarkBoard* board) : board_(board) {}
  absl::Time Now() const override { return absl::FromUnixMicros(board_->MaxMicros()); }

 private:
  const WatermarkBoard* board_;
};

}  // namespace kpid::cases
