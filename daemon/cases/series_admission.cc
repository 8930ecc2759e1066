#include "daemon/cases/series_admission.h"

#include <algorithm>
#include <bit>
#include <thread>

namespace kpid::cases {
namespace {

// A slot: 0 (empty: never used, ends a probe), kFree (used before), or an
// entry: tag << kTagShift | references << kRefShift | state.
constexpr uint64_t kStateMask = 3;
constexpr uint64_t kPending = 1;  // a claim deciding on the count; no references
constexpr uint64_t kLive = 2;     // admitted; 1 or more references
constexpr uint64_t kFree = 3;     // the whole word: state 3, no tag, no references
constexpr int kRefShift = 2;
constexpr int kRefBits = 20;
constexpr uint64_t kMaxReferences = (uint64_t{1} << kRefBits) - 1;
constexpr uint64_t kOneReference = uint64_t{1} << kRefShift;
constexpr int kTagShift = kRefShift + kRefBits;  // the tag: the hash's high 42 bits

uint64_t State(uint64_t v) { return v & kStateMask; }
uint64_t References(uint64_t v) { return (v >> kRefShift) & kMaxReferences; }
// An entry (pending or live) of `tag`.
bool IsEntryOf(uint64_t v, uint64_t tag) { return v != 0 && v != kFree && (v >> kTagShift) == tag; }
bool IsLiveEntryOf(uint64_t v, uint64_t tag) {
  return State(v) == kLive && (v >> kTagShift) == tag;
}

uint64_t PendingEntryOf(uint64_t tag) { return (tag << kTagShift) | kPending; }

// Waits out a pending entry of `tag` in `slot` (a CAS on the count away)
// and returns what replaced it. Only of `tag`: a claim waits only for
// claims of its own combination further from the home, so no two wait for
// each other.
uint64_t Settled(const std::atomic<uint64_t>& slot, uint64_t tag, uint64_t v) {
  while (v == PendingEntryOf(tag)) {
    std::this_thread::yield();
    v = slot.load(std::memory_order_seq_cst);
  }
  return v;
}

}  // namespace

SeriesAdmission::SeriesAdmission(const model::Config& config)
    : limit_(config.dimensions.max_series_per_process) {
  // At most half full with `limit` live entries; the slack takes the
  // pending claims (at most one per thread) and restored combinations
  // beyond the limit, and keeps windows short of full.
  const size_t capacity = std::bit_ceil(static_cast<size_t>(std::max<int64_t>(limit_, 0)) * 2 + 64);
  mask_ = capacity - 1;
  window_ = std::min(kMaxProbe, capacity);
  for (size_t p = 0; p < config.processes.size(); ++p) {
    auto table = std::make_unique<Table>();
    table->slots = std::make_unique<std::atomic<uint64_t>[]>(capacity);  // zeros: empty
    tables_.push_back(std::move(table));
  }
}

size_t SeriesAdmission::Home(uint64_t tag) const {
  return static_cast<size_t>((tag * 0x9E3779B97F4A7C15ull) >> 32) & mask_;
}

SeriesAdmission::Found SeriesAdmission::Lookup(const Table& t, uint64_t tag) const {
  Found found;
  const size_t home = Home(tag);
  for (size_t d = 0; d < window_; ++d) {
    const size_t i = (home + d) & mask_;
    uint64_t v = t.slots[i].load(std::memory_order_seq_cst);
    if (IsEntryOf(v, tag)) v = Settled(t.slots[i], tag, v);
    if (IsLiveEntryOf(v, tag)) {
      found.live = static_cast<int64_t>(i);
      return found;
    }
    if ((v == 0 || v == kFree) && found.claim < 0) {
      found.claim = static_cast<int64_t>(i);
      found.claim_seen = v;
    }
    // Entries are placed in the first free or empty slot, and slots never
    // become empty again: none of this combination lies beyond an empty one.
    if (v == 0) break;
  }
  return found;
}

bool SeriesAdmission::AddReference(Table& t, size_t slot, uint64_t tag) {
  uint64_t v = t.slots[slot].load(std::memory_order_seq_cst);
  for (;;) {
    if (!IsLiveEntryOf(v, tag)) return false;
    if (References(v) == kMaxReferences) return true;  // saturated: admitted for good
    if (t.slots[slot].compare_exchange_weak(v, v + kOneReference, std::memory_order_seq_cst)) {
      return true;
    }
  }
}

bool SeriesAdmission::ClaimStands(const Table& t, uint64_t tag, size_t mine) const {
  const size_t home = Home(tag);
  const size_t my_distance = (mine - home) & mask_;
  for (size_t d = 0; d < window_; ++d) {
    const size_t i = (home + d) & mask_;
    if (i == mine) continue;
    uint64_t v = t.slots[i].load(std::memory_order_seq_cst);
    if (v == 0) break;
    if (!IsEntryOf(v, tag)) continue;
    if (State(v) == kPending) {
      // The nearer claim wins; a further one defers to this one if it saw
      // it, or else becomes live (and this one then defers to it).
      if (d < my_distance) return false;
      v = Settled(t.slots[i], tag, v);
    }
    if (IsLiveEntryOf(v, tag)) return false;
  }
  return true;
}

bool SeriesAdmission::Reserve(Table& t, bool force) {
  if (force) {
    t.count.fetch_add(1, std::memory_order_seq_cst);
    return true;
  }
  uint64_t c = t.count.load(std::memory_order_seq_cst);
  while (c < static_cast<uint64_t>(limit_)) {
    if (t.count.compare_exchange_weak(c, c + 1, std::memory_order_seq_cst)) return true;
  }
  return false;
}

bool SeriesAdmission::Acquire(Table& t, uint64_t tag, bool force) {
  for (;;) {
    Found found = Lookup(t, tag);
    if (found.live >= 0) {
      if (AddReference(t, static_cast<size_t>(found.live), tag)) return true;
      continue;  // its last reference went meanwhile
    }
    if (!force && t.count.load(std::memory_order_seq_cst) >= static_cast<uint64_t>(limit_)) {
      // Full. Each admission claimed its slot before it took its unit of
      // the count, so all that made the count full are visible now: one
      // may be this combination, admitted while we looked.
      found = Lookup(t, tag);
      return found.live >= 0 && AddReference(t, static_cast<size_t>(found.live), tag);
    }
    if (found.claim < 0) {
      // The window holds other combinations only.
      if (!force) return false;
      t.count.fetch_add(1, std::memory_order_seq_cst);  // counted, so the bound still holds
      return true;
    }
    const size_t slot = static_cast<size_t>(found.claim);
    uint64_t expected = found.claim_seen;
    if (!t.slots[slot].compare_exchange_strong(expected, PendingEntryOf(tag),
                                               std::memory_order_seq_cst)) {
      continue;  // the slot was taken meanwhile (maybe by this combination)
    }
    if (!ClaimStands(t, tag, slot)) {
      t.slots[slot].store(kFree, std::memory_order_seq_cst);
      continue;  // another entry of it decides: take a reference there
    }
    const bool admitted = Reserve(t, force);
    t.slots[slot].store(admitted ? (tag << kTagShift) | kOneReference | kLive : kFree,
                        std::memory_order_seq_cst);
    return admitted;
  }
}

bool SeriesAdmission::Admit(int process, uint64_t hash) {
  return Acquire(*tables_[static_cast<size_t>(process)], hash >> kTagShift, /*force=*/false);
}

void SeriesAdmission::Register(int process, uint64_t hash) {
  Acquire(*tables_[static_cast<size_t>(process)], hash >> kTagShift, /*force=*/true);
}

void SeriesAdmission::Release(int process, uint64_t hash) {
  Table& t = *tables_[static_cast<size_t>(process)];
  const uint64_t tag = hash >> kTagShift;
  const size_t home = Home(tag);
  for (size_t d = 0; d < window_; ++d) {
    const size_t i = (home + d) & mask_;
    uint64_t v = t.slots[i].load(std::memory_order_seq_cst);
    if (v == 0) break;
    // A pending entry of it is a claim that will defer to the live one, or
    // (no live one) turn live with a reference of its own.
    while (IsLiveEntryOf(v, tag)) {
      if (References(v) == kMaxReferences) return;  // saturated: never freed
      const uint64_t next = References(v) == 1 ? kFree : v - kOneReference;
      if (t.slots[i].compare_exchange_weak(v, next, std::memory_order_seq_cst)) {
        if (next == kFree) t.count.fetch_sub(1, std::memory_order_seq_cst);
        return;
      }
    }
  }
  // No live entry: the reference was a unit counted but not stored (a
  // Register into a full window), or its entry's other references were
  // those units and went first. Either way one unit is this reference's.
  t.count.fetch_sub(1, std::memory_order_seq_cst);
}

uint64_t SeriesAdmission::Admitted(int process) const {
  return tables_[static_cast<size_t>(process)]->count.load(std::memory_order_relaxed);
}

}  // namespace kpid::cases
