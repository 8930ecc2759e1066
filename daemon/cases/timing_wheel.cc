#include "daemon/cases/timing_wheel.h"

#include <algorithm>
#include <bit>

namespace kpid::cases {

TimingWheel::TimingWheel(int64_t start)
    : near_(static_cast<size_t>(kSlots), kNone),
      far_(static_cast<size_t>(kSlots), kNone),
      next_(start) {}

TimingWheel::~TimingWheel() = default;

TimingWheel::Packed TimingWheel::Pack(const TimerEntry& e) {
  return {static_cast<int64_t>(static_cast<uint64_t>(e.due) << 8 | e.kind), e.slot, e.token};
}

TimerEntry TimingWheel::Unpack(const Packed& p) {
  return {p.slot, p.token, static_cast<uint8_t>(p.due_kind & 0xff), p.due_kind >> 8};
}

uint32_t TimingWheel::NewBlock() {
  if (free_ != kNone) {
    const uint32_t id = free_;
    free_ = block(id).next;
    return id;
  }
  if (blocks_ % kBlocksPerPage == 0) {
    pages_.push_back(std::make_unique_for_overwrite<Block[]>(kBlocksPerPage));
  }
  return blocks_++;
}

void TimingWheel::Push(uint32_t& head, const Packed& entry) {
  if (head == kNone || block(head).count == Block::kEntries) {
    const uint32_t id = NewBlock();
    Block& b = block(id);
    b.next = head;
    b.count = 0;
    head = id;
  }
  Block& b = block(head);
  b.entries[b.count++] = entry;
}

void TimingWheel::PushNear(size_t index, const Packed& entry) {
  Push(near_[index], entry);
  near_occupied_[index / 64] |= uint64_t{1} << (index % 64);
}

void TimingWheel::FireNear(size_t index) {
  near_occupied_[index / 64] &= ~(uint64_t{1} << (index % 64));
  FireAll(near_[index]);
}

int64_t TimingWheel::NextOccupied(int64_t from, int64_t limit) const {
  if (from >= limit) return limit;
  const int64_t epoch_start = from & ~(kSlots - 1);
  size_t word = Index(from) / 64;
  uint64_t bits = near_occupied_[word] & (~uint64_t{0} << (Index(from) % 64));
  while (bits == 0) {
    if (++word == near_occupied_.size()) return limit;
    if (epoch_start + static_cast<int64_t>(word * 64) >= limit) return limit;
    bits = near_occupied_[word];
  }
  const int64_t found = epoch_start + static_cast<int64_t>(word * 64) + std::countr_zero(bits);
  return std::min(found, limit);
}

uint32_t TimingWheel::Take(uint32_t& head) {
  const uint32_t list = head;
  head = kNone;
  return list;
}

void TimingWheel::FreeList(uint32_t head) {
  if (head == kNone) return;
  uint32_t last = head;
  while (block(last).next != kNone) last = block(last).next;
  block(last).next = free_;
  free_ = head;
}

void TimingWheel::Schedule(const TimerEntry& entry) {
  // An entry already due lands in the next slot to process.
  const int64_t second = std::max(entry.due, next_);
  if (Epoch(second) == Epoch(next_)) {
    PushNear(Index(second), Pack(entry));
  } else {
    Push(far_[Index(Epoch(second))], Pack(entry));
  }
  ++size_;
}

void TimingWheel::FireAll(uint32_t& head) {
  const uint32_t list = Take(head);
  for (uint32_t id = list; id != kNone; id = block(id).next) {
    const Block& b = block(id);
    for (uint32_t i = 0; i < b.count; ++i) firing_.push_back(Unpack(b.entries[i]));
  }
  FreeList(list);
}

void TimingWheel::Cascade(int64_t epoch, int64_t now) {
  uint32_t& head = far_[Index(epoch)];
  const uint32_t list = Take(head);
  for (uint32_t id = list; id != kNone; id = block(id).next) {
    const Block& b = block(id);
    for (uint32_t i = 0; i < b.count; ++i) {
      const int64_t due = b.entries[i].due_kind >> 8;
      if (due <= now) {
        firing_.push_back(Unpack(b.entries[i]));
      } else if (Epoch(due) == epoch) {
        PushNear(Index(due), b.entries[i]);
      } else {
        Push(head, b.entries[i]);  // a later revolution of this slot
      }
    }
  }
  FreeList(list);
}

bool TimingWheel::Sweep(int64_t now) {
  if (now < next_) return false;
  firing_.clear();
  if (now - next_ >= kSlots) {
    // A jump of a revolution or more. Every near entry is placed within
    // kSlots seconds of next_, so all of them are due.
    for (int64_t s = NextOccupied(0, kSlots); s < kSlots; s = NextOccupied(s + 1, kSlots)) {
      FireNear(Index(s));
    }
    const int64_t first = Epoch(next_), last = Epoch(now);
    if (last - first >= kSlots) {
      for (int64_t e = last - kSlots + 1; e <= last; ++e) Cascade(e, now);
    } else {
      for (int64_t e = first; e <= last; ++e) Cascade(e, now);
    }
  } else {
    for (int64_t second = next_; second <= now;) {
      // Entering an epoch: its entries move down (or fire, if due by now).
      if (Index(second) == 0) Cascade(Epoch(second), now);
      const int64_t limit = std::min(now + 1, (Epoch(second) + 1) << kShift);
      second = NextOccupied(second, limit);
      if (second == limit) continue;  // on to the next epoch's start, or done
      FireNear(Index(second));
      ++second;
    }
  }
  next_ = now + 1;
  size_ -= firing_.size();
  // Slots are swept in time order, so only overdue entries (scheduled for a
  // second already passed) need the sort.
  auto by_due = [](const TimerEntry& a, const TimerEntry& b) { return a.due < b.due; };
  if (!std::is_sorted(firing_.begin(), firing_.end(), by_due)) {
    std::sort(firing_.begin(), firing_.end(), by_due);
  }
  return true;
}

}  // namespace kpid::cases
