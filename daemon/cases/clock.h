// The tracker's notion of "now" (DESIGN §3 `clock`), injected so tests never
// sleep and replays can run on event time.
#pragma once

#include <algorithm>
#include <cstdint>
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

// clock: event. Now is the watermark: the latest event time any worker has
// seen, so a quiet partition's deadlines still fire as the others advance.
// Each worker has its own EventTimeClock over a shared board; a worker writes
// only its own slot (single writer), Now() reads them all (relaxed: each slot
// is an independent monotonic value; the max of slightly stale values only
// delays a deadline until the next tick).
class WatermarkBoard {
 public:
  explicit WatermarkBoard(int workers) : slots_(static_cast<size_t>(workers)) {}
  void Observe(int worker, int64_t unix_micros) {
    slots_[static_cast<size_t>(worker)].value.Observe(unix_micros);
  }
  // 0 (the Unix epoch) before any event.
  int64_t MaxMicros() const {
    int64_t max = 0;
    for (const Slot& s : slots_) max = std::max(max, s.value.Get());
    return max;
  }

 private:
  struct alignas(64) Slot {
    SingleWriterMax value{0};
  };
  std::vector<Slot> slots_;
};

class EventTimeClock : public Clock {
 public:
  EventTimeClock(WatermarkBoard* board, int worker) : board_(board), worker_(worker) {}
  absl::Time Now() const override { return absl::FromUnixMicros(board_->MaxMicros()); }
  void Observe(absl::Time event_time) override {
    board_->Observe(worker_, absl::ToUnixMicros(event_time));
  }

 private:
  WatermarkBoard* board_;
  int worker_;
};

}  // namespace kpid::cases
