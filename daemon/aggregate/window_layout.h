// The time levels of the aggregator (see aggregate_shard.h), derived from the
// config once, shared by every shard built from it and by readers that merge
// shards.
//
//   WindowLayout layout(config);          // windows [5m, 1h, 24h, 7d], retention 15d
//   layout.levels();                      // 5s x 61, 60s x 61, 1440s x 61, 10080s x 130
//   WindowSpan span = layout.Resolve(/*window=*/1, now, latest_seconds);
//
// One level per window W: buckets of W/60 (whole seconds, since windows are
// whole minutes), 61 of them (60 full buckets plus the one `now` is in). The
// last level is the history level: buckets of (largest window)/60, enough of
// them to cover `retention` plus the current one; the largest window reads
// the history level (same bucket width), so it has no level of its own.
//
// Immutable after construction; safe to share across threads.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/time/time.h"
#include "absl/types/optional.h"
#include "daemon/aggregate/aggregate_types.h"
#include "daemon/model/config.h"

namespace kpid::aggregate {

// Buckets per window: a read of window W at `now` sums the 60 buckets before
// the one `now` is in and that one, so it never misses a fact in (now - W,
// now] and includes at most one bucket of older ones.
inline constexpr int kBucketsPerWindow = 60;

struct Level {
  int64_t width = 0;  // bucket width in seconds
  int slots = 0;      // buckets kept
  int offset = 0;     // first slot of this level in a series' slot array
};

class WindowLayout {
 public:
  explicit WindowLayout(const model::Config& config);

  const std::vector<absl::Duration>& windows() const { return windows_; }
  int window_count() const { return static_cast<int>(windows_.size()); }
  const std::vector<Level>& levels() const { return levels_; }
  int history_level() const { return static_cast<int>(levels_.size()) - 1; }
  // The level window `w` reads when its span is still held at full resolution.
  int level_of_window(int w) const { return window_level_[static_cast<size_t>(w)]; }
  // Slots of all levels together: the length of a series' bucket array.
  int total_slots() const { return total_slots_; }
  // The level with buckets of `width` seconds, or -1.
  int LevelWithWidth(int64_t width) const;

  // The buckets to read for window `window` ending at `end`, given the latest
  // fact time the shard(s) have seen (Unix seconds; absent: none yet).
  // Normally the window's own level, buckets [E - 60, E] with E the bucket of
  // `end`. When `end` is so far back that the window's level holds nothing of
  // it any more (e.g. "the 1h window a week ago"), the history level at its
  // coarser resolution: [from, to) then says what was really covered. Buckets
  // older than the level keeps are left out of the span. An out-of-range
  // window gives an empty span.
  WindowSpan Resolve(int window, absl::Time end, absl::optional<int64_t> latest) const;

 private:
  std::vector<absl::Duration> windows_;
  std::vector<Level> levels_;
  std::vector<int> window_level_;
  int total_slots_ = 0;
};

// Floor division and modulo for possibly negative bucket indexes.
inline int64_t FloorDiv(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}
inline int64_t FloorMod(int64_t a, int64_t b) { return a - FloorDiv(a, b) * b; }

}  // namespace kpid::aggregate
