// Prometheus-style durations: "90s", "5m", "1h30m", "7d", "2w", "500ms".
//
//   absl::StatusOr<absl::Duration> d = kpid::ParsePromDuration("1h30m");
//   std::string s = kpid::FormatPromDuration(absl::Hours(36));  // "1d12h"
//
// absl::ParseDuration stops at hours and accepts fractions and signs, which
// Prometheus does not; configs written for Prometheus must mean the same here.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace kpid {

// Parses one or more <integer><unit> terms with units in strictly decreasing
// order (y, w, d, h, m, s, ms); y = 365d, w = 7d. "0" alone is zero.
absl::StatusOr<absl::Duration> ParsePromDuration(absl::string_view text);

// The Prometheus-style spelling of a non-negative duration in whole
// milliseconds, days being the largest unit ("0s" for zero, "7d", "1d12h").
// ParsePromDuration(FormatPromDuration(d)) == d. Window labels use it.
std::string FormatPromDuration(absl::Duration d);

}  // namespace kpid
