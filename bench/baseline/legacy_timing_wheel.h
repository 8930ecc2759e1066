// Frozen copy of daemon/cases/timing_wheel.h as of commit 059da4d (before the
// hot-path work), kept so bench/ can measure old against new in one run.
// Not used by the daemon; do not fix or extend it.
// A hashed timing wheel with one-second slots for SLA deadlines and case
// expiry: O(1) to schedule, O(1) amortized per firing, no cancellation
// (entries carry a token the owner checks, so a stale entry is dropped when
// its slot comes round).
//
//   TimingWheel wheel;
//   wheel.Schedule(deadline_second, {.slot = case_slot, .token = stay_id, .kind = kSla});
//   wheel.Advance(now_second, [&](const TimerEntry& e, int64_t due) { ... });
//
// Deadlines beyond one revolution (kSlots seconds) stay in their slot and are
// skipped until due. A jump of more than a revolution (event-time replays)
// visits every slot once. Single-threaded: owned by one worker.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/functional/function_ref.h"

namespace kpid::bench_legacy {

struct TimerEntry {
  uint32_t slot;   // owner's record index
  uint32_t token;  // owner's check that the entry is still wanted
  uint8_t kind;    // owner-defined
  int64_t due;     // unix seconds
};

class TimingWheel {
 public:
  static constexpr int64_t kSlots = 4096;  // a power of two; ~68 minutes a revolution

  // `start` is the first second not yet processed.
  explicit TimingWheel(int64_t start = 0);

  void Schedule(const TimerEntry& entry);

  // Fires, in no particular order within a second, every entry due at or
  // before `now` that was scheduled before this call. Entries scheduled by
  // `fire` for a second <= now fire in a later Advance.
  void Advance(int64_t now, absl::FunctionRef<void(const TimerEntry&)> fire);

  int64_t next_second() const { return next_; }
  size_t size() const { return size_; }

 private:
  std::vector<std::vector<TimerEntry>> slots_;
  std::vector<TimerEntry> firing_;  // reused between calls
  int64_t next_;
  size_t size_ = 0;
};

}  // namespace kpid::bench_legacy
