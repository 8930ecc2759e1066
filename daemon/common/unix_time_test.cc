#include "daemon/common/unix_time.h"

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "gtest/gtest.h"

namespace kpid {
namespace {

TEST(UnixTimeTest, UnixSecondsIsAbseils) {
  std::vector<absl::Time> times = {absl::InfiniteFuture(), absl::InfinitePast(), absl::UnixEpoch()};
  std::mt19937_64 rng(11);
  std::uniform_int_distribution<int64_t> nanos(-(int64_t{1} << 62), int64_t{1} << 62);
  for (int i = 0; i < 100000; ++i) times.push_back(absl::FromUnixNanos(nanos(rng) >> (i % 40)));
  for (const int64_t s : {-2, -1, 0, 1, 2}) {
    times.push_back(absl::FromUnixSeconds(s));
    times.push_back(absl::FromUnixSeconds(s) - absl::Nanoseconds(1));
    times.push_back(absl::FromUnixSeconds(s) + absl::Nanoseconds(1));
  }
  for (const absl::Time t : times) ASSERT_EQ(UnixSeconds(t), absl::ToUnixSeconds(t)) << t;
}

TEST(UnixTimeTest, DoubleSecondsIsAbseilsBitForBit) {
  std::vector<absl::Duration> durations = {absl::InfiniteDuration(), -absl::InfiniteDuration(),
                                           absl::ZeroDuration()};
  // Around the 2^21 s limit of the inline path, both signs.
  for (const int64_t s : {(int64_t{1} << 21) - 1, int64_t{1} << 21, (int64_t{1} << 21) + 1}) {
    for (const absl::Duration frac : {absl::ZeroDuration(), absl::Nanoseconds(1),
                                      absl::Milliseconds(999), absl::Nanoseconds(999999999)}) {
      durations.push_back(absl::Seconds(s) + frac);
      durations.push_back(-(absl::Seconds(s) + frac));
    }
  }
  std::mt19937_64 rng(13);
  std::uniform_int_distribution<int64_t> nanos(-(int64_t{1} << 62), int64_t{1} << 62);
  for (int i = 0; i < 200000; ++i) {
    durations.push_back(absl::Nanoseconds(nanos(rng) >> (i % 50)));
    durations.push_back(absl::Milliseconds(nanos(rng) >> (i % 50 + 12)));
  }
  for (const absl::Duration d : durations) {
    const double fast = DoubleSeconds(d);
    const double absl_seconds = absl::ToDoubleSeconds(d);
    ASSERT_EQ(std::memcmp(&fast, &absl_seconds, sizeof(double)), 0) << d;
  }
}

TEST(UnixTimeTest, UnixMicrosAndMillisAreAbseils) {
  // Hand-computed: 1767225600 s + 7 us + 999 ns floors to ...007.
  EXPECT_EQ(UnixMicros(absl::FromUnixSeconds(1767225600) + absl::Microseconds(7) +
                       absl::Nanoseconds(999)),
            int64_t{1767225600} * 1'000'000 + 7);
  // Before 1970 floors down: -1 ns is -1 us, -1.5 s is -1500000 us.
  EXPECT_EQ(UnixMicros(absl::UnixEpoch() - absl::Nanoseconds(1)), -1);
  EXPECT_EQ(UnixMicros(absl::UnixEpoch() - absl::Milliseconds(1500)), -1'500'000);
  // Around the inline path's edges (0 and 2^43 s), far out, and infinite.
  std::vector<absl::Time> times = {absl::UnixEpoch(),
                                   absl::InfinitePast(),
                                   absl::InfiniteFuture(),
                                   absl::FromUnixSeconds(int64_t{1} << 43),
                                   absl::FromUnixSeconds((int64_t{1} << 43) - 1),
                                   absl::FromUnixSeconds(-(int64_t{1} << 43)),
                                   absl::FromUnixSeconds(int64_t{1} << 62)};
  uint64_t state = 42;
  for (int i = 0; i < 100000; ++i) {
    state = state * 6364136223846793005u + 1442695040888963407u;
    const int64_t seconds = static_cast<int64_t>(state >> 20) - (int64_t{1} << 43);
    state = state * 6364136223846793005u + 1442695040888963407u;
    const int64_t nanos = static_cast<int64_t>((state >> 33) % 1'000'000'000);
    times.push_back(absl::FromUnixSeconds(seconds) + absl::Nanoseconds(nanos));
    times.push_back(absl::FromUnixSeconds(seconds % 4'000'000'000) + absl::Nanoseconds(nanos));
  }
  // Hand-computed: the same instant in milliseconds, ...000 and -1 / -1500 before 1970.
  EXPECT_EQ(UnixMillis(absl::FromUnixSeconds(1767225600) + absl::Microseconds(7)),
            int64_t{1767225600} * 1'000);
  EXPECT_EQ(UnixMillis(absl::UnixEpoch() - absl::Nanoseconds(1)), -1);
  EXPECT_EQ(UnixMillis(absl::UnixEpoch() - absl::Milliseconds(1500)), -1'500);
  for (absl::Time t : times) {
    EXPECT_EQ(UnixMicros(t), absl::ToUnixMicros(t)) << t;
    EXPECT_EQ(UnixMillis(t), absl::ToUnixMillis(t)) << t;
  }
}

}  // namespace
}  // namespace kpid
