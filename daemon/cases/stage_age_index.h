// The open cases of one (process, stage) by entry time, so that the oldest
// (kpid_stage_oldest_case_age_seconds) and the K oldest past their SLA
// (ListBreachingCases) are known exactly without scanning the cases.
//
//   StageAgeIndex index;
//   index.Enter({entered_us, slot, token}, is_live);   // a case entered the stage
//   index.Leave();                                     // one left (any of them)
//   index.Oldest(k, before_us, is_live, entered_at, &out);
//
// A stay is (case slot, stay token): the tracker gives a case a new token
// at every stage entry and zeroes it when the case closes, so an entry is
// live iff the slot still holds its token. Leaving costs nothing here: the
// entry goes stale and is dropped when met (lazy deletion).
//
// Structure. Events mostly arrive in event-time order, so entries mostly
// arrive in entry-time order: those go to a FIFO ring of 8-byte (slot,
// token) entries, sorted by (entry time, slot) by construction (an entry is
// appended only if it comes after the last appended). The rest (a worker's
// partitions far apart in event time, producer skew) go to a min-heap of
// 16-byte entries that carry their entry time. The oldest live stay is the
// first live entry of the ring or the heap's first live top, whichever
// entered first. Cost per stage entry: O(1) in order, O(log n) out of
// order, however disordered the stream; nothing per other event.
//
// Why not one heap (or a tree): 16 bytes per open case for the heap,
// 8 more than the ring (bench/RESULTS.md §3 has the per-case budget), and a
// push per entry instead of an append. Why lazy deletion: erasing from the
// middle of a heap or ring would need a back-pointer per case, written on
// every sift.
//
// Stale entries: dropped when they reach the ring's front or the heap's
// top, when Oldest walks over them, and all at once when entries exceed
// 2 x live + 64 (a compaction, O(entries), so amortized O(1) per entry: at
// least half of what it reads goes). So memory stays within twice the
// live cases however long one old case holds the front. When the last live
// case leaves, everything is dropped at once.
//
// Token reuse: tokens wrap at 2^32, so a stale entry could look live again
// if its slot got the very same token back 2^32 stage entries later while
// the entry survived; the timer wheel accepts the same odds.
//
// Breach frontier. Within one stage every stay has the same SLA, so the
// deadlines of the ring's stays come in ring order: the tracker finds the
// stays whose deadline passed by walking the ring from a frontier
// (PassedBefore), instead of scheduling a timer per stage entry. Entries
// before the frontier entered before a bound already walked; each entry is
// walked over once (stale ones cost a token check). Stays in the heap are
// not walked: the tracker gives them a timer of their own (Enter says which).
//
// Single writer: the tracker's worker thread.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <vector>

#include "absl/functional/function_ref.h"

namespace kpid::cases {

class StageAgeIndex {
 public:
  struct Stay {
    int64_t entered_us;
    uint32_t slot;
    uint32_t token;
  };
  using IsLive = absl::FunctionRef<bool(uint32_t slot, uint32_t token)>;
  // The entry time of the stay now in `slot` (called only for live ones).
  using EnteredAt = absl::FunctionRef<int64_t(uint32_t slot)>;

  static constexpr int64_t kNoLimit = std::numeric_limits<int64_t>::max();

  StageAgeIndex();

  // The walks take their callbacks as template parameters, inlined into
  // them: Compact checks a token per entry through `is_live`, and through a
  // FunctionRef that call was ~4% of the tracker's time (§21).
  // LiveFn: bool(uint32_t slot, uint32_t token); EnteredFn: as EnteredAt.

  // True when the stay went to the ring, i.e. PassedBefore will report it.
  template <typename LiveFn>
  bool Enter(const Stay& stay, const LiveFn& is_live);
  void Leave();

  // Calls passed(stay) for each live ring stay past the frontier that
  // entered before `before_us`, in ring order, and moves the frontier past
  // them. Returns a lower bound on the entry time of the first ring stay
  // past the frontier: kNoLimit when there is none.
  // `ahead(slot)` is called a few entries before is_live(slot, ...), to
  // start loading what that reads.
  template <typename LiveFn, typename EnteredFn, typename AheadFn, typename PassedFn>
  int64_t PassedBefore(int64_t before_us, const LiveFn& is_live, const EnteredFn& entered_at,
                       const AheadFn& ahead, const PassedFn& passed);
  // What PassedBefore would return now, without walking: kNoLimit when the
  // frontier is at the ring's end.
  int64_t frontier_entered() const { return frontier_ == tail_ ? kNoLimit : frontier_us_; }

  // Appends to `out` the up to `k` oldest live stays that entered before
  // `before_us`, oldest first (ties by slot). Drops the stale entries it
  // meets. O((k + stale met) log n).
  void Oldest(size_t k, int64_t before_us, IsLive is_live, EnteredAt entered_at,
              std::vector<Stay>* out);

  // The oldest live stay (ties by slot), or nullopt when none is live;
  // drops the stale entries in front of it. Allocates nothing: the
  // tracker's eviction calls it for every stage on the event path.
  // Amortized O(1) per call plus O(log n) per stale heap entry dropped.
  template <typename LiveFn, typename EnteredFn>
  std::optional<Stay> OldestLive(const LiveFn& is_live, const EnteredFn& entered_at);

  size_t live() const { return live_; }
  size_t entries() const { return static_cast<size_t>(tail_ - head_) + heap_.size(); }

 private:
  struct Ref {
    uint32_t slot;
    uint32_t token;
  };
  static bool Later(const Stay& a, const Stay& b) {
    return a.entered_us != b.entered_us ? a.entered_us > b.entered_us : a.slot > b.slot;
  }
  Ref& at(uint64_t position) { return ring_[position & mask_]; }
  void Append(const Ref& ref) {
    if (tail_ - head_ == mask_ + 1) GrowRing();
    at(tail_++) = ref;
  }
  void GrowRing();
  template <typename LiveFn>
  void Compact(const LiveFn& is_live);

  std::unique_ptr<Ref[]> ring_;  // mask_ + 1 entries
  uint64_t mask_;
  uint64_t head_ = 0;  // positions only grow; & mask_ indexes ring_
  uint64_t tail_ = 0;
  // Breach frontier: a position in [head_, tail_], and a lower bound on the
  // entry time of the stay there (exact after PassedBefore).
  uint64_t frontier_ = 0;
  int64_t frontier_us_ = kNoLimit;
  int64_t back_us_ = 0;  // (entry time, slot) of the last appended entry
  uint32_t back_slot_ = 0;
  std::vector<Stay> heap_;  // min-heap by (entered_us, slot)
  size_t live_ = 0;
};

template <typename LiveFn>
bool StageAgeIndex::Enter(const Stay& stay, const LiveFn& is_live) {
  ++live_;
  const bool in_order = head_ == tail_ || stay.entered_us > back_us_ ||
                        (stay.entered_us == back_us_ && stay.slot > back_slot_);
  if (in_order) {
    if (frontier_ == tail_) frontier_us_ = stay.entered_us;
    Append({stay.slot, stay.token});
    back_us_ = stay.entered_us;
    back_slot_ = stay.slot;
  } else {
    heap_.push_back(stay);
    std::push_heap(heap_.begin(), heap_.end(), Later);
  }
  if (entries() > 2 * live_ + 64) Compact(is_live);
  return in_order;
}

template <typename LiveFn, typename EnteredFn, typename AheadFn, typename PassedFn>
int64_t StageAgeIndex::PassedBefore(int64_t before_us, const LiveFn& is_live,
                                    const EnteredFn& entered_at, const AheadFn& ahead,
                                    const PassedFn& passed) {
  // Most entries walked over are stale, each a token read at a random
  // slot: start those loads a few entries ahead so their misses overlap.
  constexpr uint64_t kAhead = 8;
  for (uint64_t p = frontier_; p < std::min(tail_, frontier_ + kAhead); ++p) {
    ahead(at(p).slot);
  }
  for (; frontier_ < tail_; ++frontier_) {
    if (frontier_ + kAhead < tail_) ahead(at(frontier_ + kAhead).slot);
    const Ref ref = at(frontier_);
    if (!is_live(ref.slot, ref.token)) continue;
    const int64_t entered = entered_at(ref.slot);
    if (entered >= before_us) {
      frontier_us_ = entered;
      return entered;
    }
    passed(Stay{entered, ref.slot, ref.token});
  }
  return kNoLimit;
}

template <typename LiveFn>
void StageAgeIndex::Compact(const LiveFn& is_live) {
  uint64_t w = head_;
  uint64_t frontier = tail_;
  for (uint64_t r = head_; r < tail_; ++r) {
    if (r == frontier_) frontier = w;
    const Ref ref = at(r);
    if (is_live(ref.slot, ref.token)) at(w++) = ref;
  }
  tail_ = w;
  frontier_ = std::min(frontier, tail_);
  std::erase_if(heap_, [&](const Stay& s) { return !is_live(s.slot, s.token); });
  std::make_heap(heap_.begin(), heap_.end(), Later);
}

template <typename LiveFn, typename EnteredFn>
std::optional<StageAgeIndex::Stay> StageAgeIndex::OldestLive(const LiveFn& is_live,
                                                             const EnteredFn& entered_at) {
  while (head_ != tail_ && !is_live(at(head_).slot, at(head_).token)) ++head_;
  frontier_ = std::max(frontier_, head_);
  while (!heap_.empty() && !is_live(heap_.front().slot, heap_.front().token)) {
    std::pop_heap(heap_.begin(), heap_.end(), Later);
    heap_.pop_back();
  }
  std::optional<Stay> oldest;
  if (head_ != tail_) oldest = Stay{entered_at(at(head_).slot), at(head_).slot, at(head_).token};
  if (!heap_.empty() && (!oldest || Later(*oldest, heap_.front()))) oldest = heap_.front();
  return oldest;
}

}  // namespace kpid::cases
