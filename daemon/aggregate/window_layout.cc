#include "daemon/aggregate/window_layout.h"

#include <algorithm>

namespace kpid::aggregate {
namespace {

int64_t WholeSeconds(absl::Duration d) { return absl::ToInt64Seconds(d); }

}  // namespace

WindowLayout::WindowLayout(const model::Config& config) : windows_(config.windows) {
  // Window indexes are config.windows' (ascending once validated; not relied on).
  const int64_t retention = std::max<int64_t>(1, WholeSeconds(config.retention));
  // Bucket width of the history level: the largest window's, or (no windows,
  // a config that never went through validation) retention / 60.
  const int64_t history_width = std::max<int64_t>(
      1, (windows_.empty() ? retention
                           : WholeSeconds(*std::max_element(windows_.begin(), windows_.end()))) /
             kBucketsPerWindow);
  for (const absl::Duration w : windows_) {
    const int64_t width = std::max<int64_t>(1, WholeSeconds(w) / kBucketsPerWindow);
    if (width == history_width) {
      window_level_.push_back(-1);  // set below, once the history level has its index
      continue;
    }
    window_level_.push_back(static_cast<int>(levels_.size()));
    levels_.push_back(Level{width, kBucketsPerWindow + 1, total_slots_});
    total_slots_ += kBucketsPerWindow + 1;
  }
  // Cover retention, plus the bucket `now` is in; at least a full window.
  const int64_t history_slots =
      std::max<int64_t>(kBucketsPerWindow + 1, (retention + history_width - 1) / history_width + 1);
  for (int& level : window_level_) {
    if (level < 0) level = static_cast<int>(levels_.size());
  }
  levels_.push_back(Level{history_width, static_cast<int>(history_slots), total_slots_});
  total_slots_ += static_cast<int>(history_slots);
}

int WindowLayout::LevelWithWidth(int64_t width) const {
  for (size_t i = 0; i < levels_.size(); ++i) {
    if (levels_[i].width == width) return static_cast<int>(i);
  }
  return -1;
}

WindowSpan WindowLayout::Resolve(int window, absl::Time end, absl::optional<int64_t> latest) const {
  WindowSpan span;
  if (window < 0 || window >= window_count()) return span;
  const int64_t end_s = absl::ToUnixSeconds(end);  // rounds toward the past
  const int64_t window_s = WholeSeconds(windows_[static_cast<size_t>(window)]);
  int level = level_of_window(window);
  const Level* l = &levels_[static_cast<size_t>(level)];
  int64_t last = FloorDiv(end_s, l->width);
  int64_t first = last - kBucketsPerWindow;
  if (latest.has_value()) {
    int64_t oldest = FloorDiv(*latest, l->width) - l->slots + 1;
    if (last < oldest && level != history_level()) {
      level = history_level();
      l = &levels_[static_cast<size_t>(level)];
      last = FloorDiv(end_s, l->width);
      first = FloorDiv(end_s - window_s, l->width);
      oldest = FloorDiv(*latest, l->width) - l->slots + 1;
    }
    first = std::max(first, oldest);
  }
  // Never more buckets than the level has slots (each slot holds one bucket).
  first = std::max(first, last - l->slots + 1);
  span.level = level;
  span.first = first;
  span.last = last;
  span.from = absl::FromUnixSeconds(first * l->width);
  span.to = absl::FromUnixSeconds((last + 1) * l->width);
  return span;
}

}  // namespace kpid::aggregate
