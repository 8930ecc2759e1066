#include "daemon/cases/stage_age_index.h"

#include <algorithm>

namespace kpid::cases {

StageAgeIndex::StageAgeIndex() : ring_(std::make_unique_for_overwrite<Ref[]>(16)), mask_(15) {}

void StageAgeIndex::Leave() {
  if (--live_ == 0) {
    head_ = tail_;
    frontier_ = tail_;
    heap_.clear();
  }
}

void StageAgeIndex::GrowRing() {
  // Not value-initialized: only what is written becomes resident.
  const uint64_t capacity = 2 * (mask_ + 1);
  auto ring = std::make_unique_for_overwrite<Ref[]>(capacity);
  for (uint64_t p = head_; p < tail_; ++p) ring[p & (capacity - 1)] = at(p);
  ring_ = std::move(ring);
  mask_ = capacity - 1;
}

void StageAgeIndex::Oldest(size_t k, int64_t before_us, IsLive is_live, EnteredAt entered_at,
                           std::vector<Stay>* out) {
  if (k == 0) return;
  // The ring is sorted: its first live entries are its oldest. Stale ones
  // met on the way are dropped by moving the live ones up to the first
  // entry not read.
  std::vector<Stay> from_ring;
  uint64_t r = head_;
  for (; r < tail_ && from_ring.size() < k; ++r) {
    const Ref ref = at(r);
    if (!is_live(ref.slot, ref.token)) continue;
    const int64_t entered = entered_at(ref.slot);
    if (entered >= before_us) break;
    from_ring.push_back({entered, ref.slot, ref.token});
  }
  // The frontier keeps its place among the live entries: those it had not
  // passed are now the last `not_passed` of them.
  size_t not_passed = 0;
  if (frontier_ < r) {
    for (uint64_t p = frontier_; p < r; ++p) not_passed += is_live(at(p).slot, at(p).token);
  }
  uint64_t w = r;
  for (auto it = from_ring.rbegin(); it != from_ring.rend(); ++it) at(--w) = {it->slot, it->token};
  head_ = w;
  if (frontier_ < r) frontier_ = r - not_passed;

  // The heap's: pop the live ones wanted, then put them back.
  std::vector<Stay> from_heap;
  while (!heap_.empty() && from_heap.size() < k) {
    const Stay top = heap_.front();
    const bool live = is_live(top.slot, top.token);
    if (live && top.entered_us >= before_us) break;
    std::pop_heap(heap_.begin(), heap_.end(), Later);
    heap_.pop_back();
    if (live) from_heap.push_back(top);
  }
  for (const Stay& s : from_heap) {
    heap_.push_back(s);
    std::push_heap(heap_.begin(), heap_.end(), Later);
  }

  const size_t begin = out->size();
  std::merge(from_ring.begin(), from_ring.end(), from_heap.begin(), from_heap.end(),
             std::back_inserter(*out), [](const Stay& a, const Stay& b) { return Later(b, a); });
  out->resize(std::min(out->size(), begin + k));
}

}  // namespace kpid::cases
