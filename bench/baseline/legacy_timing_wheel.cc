// Frozen copy of daemon/cases/timing_wheel.cc as of commit 059da4d (before the
// hot-path work), kept so bench/ can measure old against new in one run.
// Not used by the daemon; do not fix or extend it.
#include "bench/baseline/legacy_timing_wheel.h"

#include <algorithm>

namespace kpid::bench_legacy {

TimingWheel::TimingWheel(int64_t start) : slots_(kSlots), next_(start) {}

void TimingWheel::Schedule(const TimerEntry& entry) {
  // An entry already due lands in the next slot to process.
  const int64_t second = std::max(entry.due, next_);
  slots_[static_cast<size_t>(second & (kSlots - 1))].push_back(entry);
  ++size_;
}

void TimingWheel::Advance(int64_t now, absl::FunctionRef<void(const TimerEntry&)> fire) {
  if (now < next_) return;
  // More than a revolution: every slot once is enough, each checked against `now`.
  const int64_t last = std::min(now, next_ + kSlots - 1);
  firing_.clear();
  for (int64_t second = next_; second <= last; ++second) {
    std::vector<TimerEntry>& slot = slots_[static_cast<size_t>(second & (kSlots - 1))];
    size_t kept = 0;
    for (size_t i = 0; i < slot.size(); ++i) {
      if (slot[i].due <= now) {
        firing_.push_back(slot[i]);
      } else {
        slot[kept++] = slot[i];
      }
    }
    size_ -= slot.size() - kept;
    slot.resize(kept);
  }
  next_ = now + 1;
  // Fire after the sweep, so entries scheduled by a callback are not seen
  // half-way through it.
  std::sort(firing_.begin(), firing_.end(),
            [](const TimerEntry& a, const TimerEntry& b) { return a.due < b.due; });
  for (const TimerEntry& entry : firing_) fire(entry);
}

}  // namespace kpid::bench_legacy
