// A hashed timing wheel with one-second slots for case expiry (and the SLA
// deadlines of stays that entered their stage out of order; the others are
// walked by a breach frontier, see case_tracker.h): O(1) to schedule, O(1) amortized per firing, no
// cancellation (entries carry a token the owner checks, so a stale entry is dropped when its slot
// comes round).
//
//   TimingWheel wheel;
//   wheel.Schedule({.slot = case_slot, .token = timer_id, .kind = kCaseTimer, .due = second});
//   wheel.Advance(now_second, [&](const TimerEntry& e) { ... });
//
// Two levels, as in hierarchical timing wheels: kSlots one-second slots for
// the current epoch (kSlots seconds), and kSlots one-epoch slots for later
// ones, whose entries move down once, when their epoch begins. So an entry is
// touched when scheduled, once more if it was more than an epoch ahead, and
// when it fires; nothing is rescanned while it waits. Deadlines beyond the
// second level's reach (kSlots epochs, ~194 days) stay in their slot and are
// skipped until due. A jump of more than a revolution (event-time replays)
// visits every slot once.
//
// Entries live in 16-byte form in fixed-size blocks from one pool, reused
// as slots empty, so scheduling allocates only when the number of pending
// entries reaches a new peak, and memory is that peak, not the sum of each
// slot's busiest moment (as with a vector per slot). Single-threaded: owned
// by one worker.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <memory>
#include <vector>

namespace kpid::cases {

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
  ~TimingWheel();
  TimingWheel(const TimingWheel&) = delete;
  TimingWheel& operator=(const TimingWheel&) = delete;

  void Schedule(const TimerEntry& entry);

  // Fires, in due order (in no particular order within a second), every
  // entry due at or before `now` that was scheduled before this call:
  // fire(const TimerEntry&). Entries scheduled by `fire` for a second <= now
  // fire in a later Advance. The callbacks are template parameters, inlined
  // into the firing loop (through a FunctionRef, a call per entry).
  template <typename FireFn>
  void Advance(int64_t now, const FireFn& fire) {
    Advance(now, fire, [](const TimerEntry&) {});
  }
  // The same, calling ahead(e) kFireAhead entries before fire(e): the owner
  // starts loading what firing e will read (its records are random accesses
  // into a large array), so the misses of consecutive entries overlap.
  static constexpr size_t kFireAhead = 8;
  template <typename FireFn, typename AheadFn>
  void Advance(int64_t now, const FireFn& fire, const AheadFn& ahead) {
    if (!Sweep(now)) return;
    // Fire after the sweep, so entries scheduled by a callback are not seen
    // half-way through it.
    const size_t n = firing_.size();
    for (size_t i = 0; i < std::min(n, kFireAhead); ++i) ahead(firing_[i]);
    for (size_t i = 0; i < n; ++i) {
      if (i + kFireAhead < n) ahead(firing_[i + kFireAhead]);
      fire(firing_[i]);
    }
  }

  int64_t next_second() const { return next_; }
  size_t size() const { return size_; }

 private:
  static constexpr int kShift = 12;  // log2(kSlots)
  static_assert(int64_t{1} << kShift == kSlots);
  static constexpr uint32_t kNone = 0xffffffff;

  // 16 bytes: `due` and `kind` share a word (due << 8 | kind).
  struct Packed {
    int64_t due_kind;
    uint32_t slot;
    uint32_t token;
  };
  // 128 bytes, two cache lines.
  struct Block {
    static constexpr uint32_t kEntries = 7;
    uint32_t next;
    uint32_t count;
    Packed entries[kEntries];
  };
  static constexpr uint32_t kBlocksPerPage = 512;  // 64 KiB pages

  static int64_t Epoch(int64_t second) { return second >> kShift; }
  static size_t Index(int64_t x) { return static_cast<size_t>(x & (kSlots - 1)); }
  static Packed Pack(const TimerEntry& e);
  static TimerEntry Unpack(const Packed& p);

  Block& block(uint32_t id) { return pages_[id / kBlocksPerPage][id % kBlocksPerPage]; }
  void Push(uint32_t& head, const Packed& entry);
  // Into near slot `index`, marking it occupied.
  void PushNear(size_t index, const Packed& entry);
  uint32_t NewBlock();
  // Detaches the list at `head` and returns it; FreeList gives it back.
  uint32_t Take(uint32_t& head);
  void FreeList(uint32_t head);
  // Moves the entries of far slot `epoch` that belong to it down to the near
  // slots, firing those due by `now` instead.
  void Cascade(int64_t epoch, int64_t now);
  void FireAll(uint32_t& head);
  // The first second in [from, limit) whose near slot holds entries, or
  // `limit`; both within one epoch (`limit` may be the next one's start).
  int64_t NextOccupied(int64_t from, int64_t limit) const;
  // Fires near slot `index` and marks it empty.
  void FireNear(size_t index);
  // Collects in firing_, in due order, every entry due at or before `now`
  // and moves past it; false (nothing collected) when now < next_second().
  bool Sweep(int64_t now);

  std::vector<uint32_t> near_;  // kSlots list heads, one per second of the epoch
  std::vector<uint32_t> far_;   // kSlots list heads, one per epoch
  // Bit i: near_[i] holds entries. When events are sparse in time (an
  // event-time replay walks hours per second, one partition's events seconds
  // apart), most seconds a sweep passes are empty; this skips 64 of them a
  // word instead of visiting each slot (bench/RESULTS.md §30).
  std::array<uint64_t, kSlots / 64> near_occupied_{};
  std::vector<std::unique_ptr<Block[]>> pages_;
  uint32_t free_ = kNone;
  uint32_t blocks_ = 0;
  std::vector<TimerEntry> firing_;  // reused between calls
  int64_t next_;
  size_t size_ = 0;
};

}  // namespace kpid::cases
