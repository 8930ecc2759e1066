#include "daemon/cases/series_admission.h"

#include <algorithm>
#include <bit>
#include <thread>

namespace kpid::cases {
namespace {

// A slot holds 0 (empty), kTombstone (a combination refused after it was
// claimed; probes pass it), or a combination's base (its hash with the two
// low bits cleared, never 0) with a state in those bits.
constexpr uint64_t kPending = 1;
constexpr uint64_t kAdmittedState = 2;
constexpr uint64_t kStateBits = 3;
constexpr uint64_t kTombstone = 3;

uint64_t Base(uint64_t hash) {
  const uint64_t base = hash & ~kStateBits;
  return base == 0 ? kStateBits + 1 : base;
}

size_t Home(uint64_t hash, size_t mask) { return static_cast<size_t>(hash ^ (hash >> 29)) & mask; }

}  // namespace

SeriesAdmission::SeriesAdmission(const model::Config& config)
    : limit_(config.dimensions.max_series_per_process) {
  // At most half full with `limit` entries; the slack takes the few
  // tombstones (at most one per thread that raced the count to the limit)
  // and restored combinations beyond the limit.
  const size_t capacity = std::bit_ceil(static_cast<size_t>(std::max<int64_t>(limit_, 0)) * 2 + 64);
  mask_ = capacity - 1;
  for (size_t p = 0; p < config.processes.size(); ++p) {
    auto table = std::make_unique<Table>();
    table->slots = std::make_unique<std::atomic<uint64_t>[]>(capacity);  // zeros: empty
    tables_.push_back(std::move(table));
  }
}

SeriesAdmission::Probe SeriesAdmission::Find(const Table& t, uint64_t base, size_t* empty) const {
  size_t i = Home(base, mask_);
  for (size_t n = 0; n <= mask_; ++n, i = (i + 1) & mask_) {
    uint64_t v = t.slots[i].load(std::memory_order_seq_cst);
    if (v == 0) {
      *empty = i;
      return Probe::kAbsent;
    }
    if ((v & ~kStateBits) != base) continue;
    // Another thread is deciding this combination: a CAS on the count away.
    while ((v & kStateBits) == kPending) {
      std::this_thread::yield();
      v = t.slots[i].load(std::memory_order_seq_cst);
    }
    return v == (base | kAdmittedState) ? Probe::kAdmitted : Probe::kRefused;
  }
  return Probe::kFull;
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

bool SeriesAdmission::Admit(int process, uint64_t hash) {
  Table& t = *tables_[static_cast<size_t>(process)];
  const uint64_t base = Base(hash);
  for (;;) {
    size_t empty = 0;
    switch (Find(t, base, &empty)) {
      case Probe::kAdmitted:
        return true;
      case Probe::kRefused:
      case Probe::kFull:
        return false;
      case Probe::kAbsent:
        break;
    }
    if (t.count.load(std::memory_order_seq_cst) >= static_cast<uint64_t>(limit_)) {
      // Full, for good. Each admission claimed its slot before it took its
      // unit of the count, so all that made the count full are visible now:
      // one may be this combination, admitted while we looked.
      return Find(t, base, &empty) == Probe::kAdmitted;
    }
    uint64_t expected = 0;
    if (!t.slots[empty].compare_exchange_strong(expected, base | kPending,
                                                std::memory_order_seq_cst)) {
      continue;  // the slot was taken meanwhile (maybe by this combination)
    }
    const bool admitted = Reserve(t, /*force=*/false);
    t.slots[empty].store(admitted ? base | kAdmittedState : kTombstone, std::memory_order_seq_cst);
    return admitted;
  }
}

void SeriesAdmission::Register(int process, uint64_t hash) {
  Table& t = *tables_[static_cast<size_t>(process)];
  const uint64_t base = Base(hash);
  for (;;) {
    size_t empty = 0;
    switch (Find(t, base, &empty)) {
      case Probe::kAdmitted:
        return;
      case Probe::kFull:
        Reserve(t, /*force=*/true);  // counted, so the bound still holds
        return;
      case Probe::kRefused:
        continue;  // its slot is a tombstone now: the next probe passes it
      case Probe::kAbsent:
        break;
    }
    uint64_t expected = 0;
    if (t.slots[empty].compare_exchange_strong(expected, base | kAdmittedState,
                                               std::memory_order_seq_cst)) {
      Reserve(t, /*force=*/true);
      return;
    }
  }
}

uint64_t SeriesAdmission::Admitted(int process) const {
  return tables_[static_cast<size_t>(process)]->count.load(std::memory_order_relaxed);
}

}  // namespace kpid::cases
