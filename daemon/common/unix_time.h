// absl::ToUnixSeconds, absl::ToUnixMicros, absl::ToUnixMillis and
// absl::ToDoubleSeconds, inline and bit for bit the same. Debian's Abseil has them out of line (a
// PLT call each, ~24 instructions for ToUnixMicros: RESULTS §28), and the event path converts an
// event time or a duration several times per event: the ingest loop to milliseconds for its
// watermark, the case tracker to microseconds, the aggregator to seconds for its buckets and to
// double seconds for its distributions.
//
//   int64_t s = UnixSeconds(at);            // == absl::ToUnixSeconds(at)
//   int64_t us = UnixMicros(at);            // == absl::ToUnixMicros(at)
//   int64_t ms = UnixMillis(at);            // == absl::ToUnixMillis(at)
//   double d = DoubleSeconds(cycle_time);   // == absl::ToDoubleSeconds(cycle_time)
//
// All of them read the representation absl::Time and absl::Duration declare in
// time.h (time_internal: whole seconds, then quarter-nanosecond ticks in
// [0, 4e9), ticks ~0 for the infinities), as Abseil's own inline functions
// do, and leave what their fast path does not cover to Abseil. unix_time_test
// checks each against Abseil's function.
#pragma once

#include <cstdint>

#include "absl/time/time.h"

namespace kpid {

// absl::ToUnixSeconds(t) (the floor; InfiniteFuture/Past give the int64
// extremes): the representation's seconds, which is all that function returns.
inline int64_t UnixSeconds(absl::Time t) {
  return absl::time_internal::GetRepHi(absl::time_internal::ToUnixDuration(t));
}

namespace unix_time_internal {

// absl::ToUnixMicros / ToUnixMillis (`slow`) for units of 1/kPerSecond s.
// From 1970 on, below 2^43 s, the floored units are seconds x kPerSecond +
// ticks / (4e9 / kPerSecond), as Abseil computes them; anything else
// (before 1970, far out, infinite) goes to Abseil.
template <int64_t kPerSecond>
inline int64_t FlooredUnixUnits(absl::Time t, int64_t (*slow)(absl::Time)) {
  static_assert(4'000'000'000 % kPerSecond == 0);
  const absl::Duration d = absl::time_internal::ToUnixDuration(t);
  const int64_t seconds = absl::time_internal::GetRepHi(d);
  if (seconds >= 0 && seconds >> 43 == 0) {
    return seconds * kPerSecond +
           static_cast<int64_t>(absl::time_internal::GetRepLo(d) / (4'000'000'000 / kPerSecond));
  }
  return slow(t);
}

}  // namespace unix_time_internal

// absl::ToUnixMicros(t): the case tracker's time of every event.
inline int64_t UnixMicros(absl::Time t) {
  return unix_time_internal::FlooredUnixUnits<1'000'000>(t, absl::ToUnixMicros);
}

// absl::ToUnixMillis(t): the ingest loop's watermark of every event.
inline int64_t UnixMillis(absl::Time t) {
  return unix_time_internal::FlooredUnixUnits<1'000>(t, absl::ToUnixMillis);
}

// absl::ToDoubleSeconds(d), which computes (double(seconds) * 4e9 +
// double(ticks)) / 4e9. Under 2^21 s (24 days) both terms and their sum are
// integers below 2^53, so exact in a double, and the sum equals the int64
// seconds * 4e9 + ticks converted once: the same operand, the same quotient.
// Longer (and infinite) durations take Abseil's function.
inline double DoubleSeconds(absl::Duration d) {
  constexpr int64_t kTicksPerSecond = 4'000'000'000;
  constexpr int64_t kExactSeconds = int64_t{1} << 21;
  const int64_t seconds = absl::time_internal::GetRepHi(d);
  const uint32_t ticks = absl::time_internal::GetRepLo(d);
  if (seconds >= kExactSeconds || seconds <= -kExactSeconds || ticks == ~uint32_t{0}) {
    return absl::ToDoubleSeconds(d);
  }
  return static_cast<double>(seconds * kTicksPerSecond + ticks) /
         static_cast<double>(kTicksPerSecond);
}

}  // namespace kpid
