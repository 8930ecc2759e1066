// The tracker's notion of "now" (DESIGN §3 `clock`), injected so tests never
// sleep and replays can run on event time.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <limits>
#include <mutex>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "daemon/common/single_writer_counter.h"
#include "daemon/common/unix_time.h"

namespace kpid::cases {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() const = 0;
  // absl::ToUnixMicros(Now()): what the case tracker reads per event. An
  // override skips the round trip through absl::Time.
  virtual int64_t NowMicros() const { return UnixMicros(Now()); }
  // Told the time of every event the tracker handles; event-time clocks
  // advance with it.
  virtual void Observe(absl::Time event_time) { (void)event_time; }
  // Observe, for an event time in Unix microseconds (floored): the tracker
  // has it so, and event-time clocks keep microseconds.
  virtual void ObserveMicros(int64_t event_us) { Observe(absl::FromUnixMicros(event_us)); }
  // Called by the worker about every 100 ms of wall time.
  virtual void Tick(absl::Time wall_now) { (void)wall_now; }

  // For checkpoints: the latest event time this clock was told of (Unix
  // microseconds; 0 for clocks that do not follow events), and, before any
  // event of a restored engine, the same value back.
  virtual int64_t OwnMicros() const { return 0; }
  virtual void ResumeAt(int64_t own_micros) { (void)own_micros; }
  // See ingest::EventHandler::SetCaughtUp.
  virtual void SetCaughtUp(bool caught_up) { (void)caught_up; }
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

// clock: event. "Now" is event time. Each Kafka partition's engine tracks
// the latest event time it has seen (its watermark) on a shared board; one
// slot per partition, written only by the worker that owns the partition
// (single writer), read by all (relaxed: each slot is an independent
// monotonic value, and a slightly stale view only delays a deadline to the
// next tick).
//
// A partition's now is its own watermark while it reads events; while it is
// idle (a tick passed without events) it is the board's: the lowest
// watermark among partitions that saw events in the last second (as a
// stream processor takes the minimum over its inputs). So a lagging
// partition is not overtaken by a faster one's event time — a case there is
// not breached or expired before its own events have been read — while a
// quiet partition's deadlines still fire as the others advance.
//
// Slots are made on demand (Reserve, when a partition is assigned) in
// chunks that never move, so readers need no lock.
class WatermarkBoard {
 public:
  static constexpr int64_t kIdleAfterMillis = 1000;
  static constexpr int kMaxSlots = 1 << 16;  // Kafka partitions of a topic

  WatermarkBoard() = default;
  // Slots 0 .. slots-1 ready.
  explicit WatermarkBoard(int slots) {
    if (slots > 0) Reserve(slots - 1);
  }
  ~WatermarkBoard() {
    for (std::atomic<Slot*>& chunk : chunks_) delete[] chunk.load(std::memory_order_relaxed);
  }
  WatermarkBoard(const WatermarkBoard&) = delete;
  WatermarkBoard& operator=(const WatermarkBoard&) = delete;

  // Makes slot `index` (< kMaxSlots) usable; any thread.
  void Reserve(int index) {
    std::lock_guard<std::mutex> lock(grow_mu_);
    for (int i = size_.load(std::memory_order_relaxed); i <= index; ++i) {
      std::atomic<Slot*>& chunk = chunks_[static_cast<size_t>(i / kSlotsPerChunk)];
      if (chunk.load(std::memory_order_relaxed) == nullptr) {
        chunk.store(new Slot[kSlotsPerChunk], std::memory_order_release);
      }
    }
    if (index >= size_.load(std::memory_order_relaxed)) {
      size_.store(index + 1, std::memory_order_release);
    }
  }

  void Observe(int slot, int64_t unix_micros) { At(slot).watermark.Observe(unix_micros); }
  void MarkActive(int slot, int64_t wall_millis) {
    At(slot).active_wall_ms.store(wall_millis, std::memory_order_relaxed);
  }
  // The latest event time of any slot; 0 (the Unix epoch) before any.
  int64_t MaxMicros() const {
    int64_t max = 0;
    ForEach([&](const Slot& s) { max = std::max(max, s.watermark.Get()); });
    return max;
  }
  // The lowest watermark among slots active within kIdleAfterMillis of
  // `wall_millis`; MaxMicros() when none is.
  int64_t ActiveMinMicros(int64_t wall_millis) const {
    int64_t min = std::numeric_limits<int64_t>::max();
    ForEach([&](const Slot& s) {
      if (wall_millis - s.active_wall_ms.load(std::memory_order_relaxed) <= kIdleAfterMillis) {
        min = std::min(min, s.watermark.Get());
      }
    });
    return min == std::numeric_limits<int64_t>::max() ? MaxMicros() : min;
  }

 private:
  static constexpr int kSlotsPerChunk = 64;
  struct alignas(64) Slot {
    SingleWriterMax watermark{0};
    std::atomic<int64_t> active_wall_ms{std::numeric_limits<int64_t>::min() / 2};
  };
  Slot& At(int slot) {
    return chunks_[static_cast<size_t>(slot / kSlotsPerChunk)].load(
        std::memory_order_acquire)[slot % kSlotsPerChunk];
  }
  template <typename Fn>
  void ForEach(Fn&& fn) const {
    const int size = size_.load(std::memory_order_acquire);
    for (int i = 0; i < size; i += kSlotsPerChunk) {
      const Slot* chunk =
          chunks_[static_cast<size_t>(i / kSlotsPerChunk)].load(std::memory_order_acquire);
      for (int j = 0; j < kSlotsPerChunk && i + j < size; ++j) fn(chunk[j]);
    }
  }

  std::mutex grow_mu_;
  std::array<std::atomic<Slot*>, kMaxSlots / kSlotsPerChunk> chunks_{};
  std::atomic<int> size_{0};
};

// A partition's event-time clock. Single writer: the thread of the worker
// that owns the partition.
// Final, so that a caller holding one (the case tracker, per event) calls
// it without a virtual call.
class EventTimeClock final : public Clock {
 public:
  // `slot`: the partition; reserved on `board` here.
  EventTimeClock(WatermarkBoard* board, int slot) : board_(board), slot_(slot) {
    board_->Reserve(slot);
  }
  absl::Time Now() const override { return absl::FromUnixMicros(NowMicros()); }
  int64_t NowMicros() const override { return std::max(own_, shared_); }
  void Observe(absl::Time event_time) override { ObserveMicros(UnixMicros(event_time)); }
  void ObserveMicros(int64_t t) override {
    if (t > own_) {
      own_ = t;
      board_->Observe(slot_, t);
    }
    // Reading events again: the others' time, taken while this partition
    // was idle, no longer applies. A partition that idled until its backlog
    // arrived (start-up, rebalance) must not handle that backlog at the time
    // the others have reached, or its cases would expire and breach before
    // their own events are read.
    shared_ = 0;
    observed_ = true;
  }
  void Tick(absl::Time wall_now) override {
    const int64_t wall_ms = absl::ToUnixMillis(wall_now);
    if (observed_) board_->MarkActive(slot_, wall_ms);
    observed_ = false;
    // Behind on its own log (just assigned or restored), a partition keeps
    // its own time: with every partition idle the board's time is the
    // latest of all, restored watermarks included, and its cases would
    // expire and breach before its own events were read.
    shared_ = caught_up_ ? board_->ActiveMinMicros(wall_ms) : 0;
  }
  void SetCaughtUp(bool caught_up) override { caught_up_ = caught_up; }
  int64_t OwnMicros() const override { return own_; }
  // Not an event read now: the partition does not count as active.
  void ResumeAt(int64_t own_micros) override {
    own_ = std::max(own_, own_micros);
    board_->Observe(slot_, own_);
  }

 private:
  WatermarkBoard* board_;
  int slot_;
  int64_t own_ = 0;
  int64_t shared_ = 0;
  bool observed_ = false;
  // True unless ingest says otherwise (a clock not driven by ingest, e.g.
  // in tests, follows the board at once).
  bool caught_up_ = true;
};

// For readers (windows end here): the latest event time any partition has seen.
class LatestEventClock : public Clock {
 public:
  explicit LatestEventClock(const WatermarkBoard* board) : board_(board) {}
  absl::Time Now() const override { return absl::FromUnixMicros(board_->MaxMicros()); }

 private:
  const WatermarkBoard* board_;
};

}  // namespace kpid::cases
