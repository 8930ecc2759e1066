#include "daemon/cases/clock.h"

#include "gtest/gtest.h"

namespace kpid::cases {
namespace {

absl::Time Day(int d) { return absl::FromUnixSeconds(1767225600 + int64_t{d} * 86400); }
absl::Time Wall(int64_t ms) { return absl::FromUnixMillis(1800000000000 + ms); }

TEST(EventTimeClock, NowIsTheWorkersOwnWatermarkBetweenTicks) {
  WatermarkBoard board(2);
  EventTimeClock w0(&board, 0);
  EXPECT_EQ(w0.Now(), absl::UnixEpoch());
  w0.Observe(Day(3));
  w0.Observe(Day(1));  // older events do not move it back
  EXPECT_EQ(w0.Now(), Day(3));
  EXPECT_EQ(LatestEventClock(&board).Now(), Day(3));
}

TEST(EventTimeClock, NowMicrosIsNowInUnixMicros) {
  WatermarkBoard board(2);
  EventTimeClock busy(&board, 0), quiet(&board, 1);
  EXPECT_EQ(busy.NowMicros(), 0);
  // 1767225600 s + 2 days + 123456 us, after an older event.
  busy.Observe(Day(2) + absl::Microseconds(123456));
  busy.Observe(Day(1));
  EXPECT_EQ(busy.NowMicros(), (int64_t{1767225600} + 2 * 86400) * 1'000'000 + 123456);
  EXPECT_EQ(busy.NowMicros(), absl::ToUnixMicros(busy.Now()));
  // The quiet worker follows the board after ticks: its shared time.
  quiet.Tick(Wall(0));
  busy.Tick(Wall(0));
  quiet.Tick(Wall(100));
  EXPECT_EQ(quiet.NowMicros(), absl::ToUnixMicros(quiet.Now()));
  EXPECT_EQ(quiet.NowMicros(), busy.NowMicros());
  // The default: through Now().
  ManualClock manual(absl::FromUnixMicros(-1'500'001));
  EXPECT_EQ(manual.NowMicros(), -1'500'001);
}

TEST(EventTimeClock, ObserveMicrosIsObserveOfTheFlooredTime) {
  WatermarkBoard board(2);
  EventTimeClock by_time(&board, 0), by_micros(&board, 1);
  // 999 ns past a microsecond counts as that microsecond.
  const absl::Time t = Day(4) + absl::Microseconds(7) + absl::Nanoseconds(999);
  by_time.Observe(t);
  by_micros.ObserveMicros(absl::ToUnixMicros(t));
  EXPECT_EQ(by_micros.NowMicros(), (int64_t{1767225600} + 4 * 86400) * 1'000'000 + 7);
  EXPECT_EQ(by_micros.NowMicros(), by_time.NowMicros());
  EXPECT_EQ(by_micros.OwnMicros(), by_time.OwnMicros());
  by_micros.ObserveMicros(0);  // older: no move back
  EXPECT_EQ(by_micros.NowMicros(), by_time.NowMicros());
  EXPECT_EQ(LatestEventClock(&board).Now(), absl::FromUnixMicros(by_time.NowMicros()));
}

TEST(EventTimeClock, ALaggingWorkerIsNotOvertakenByAFasterOne) {
  WatermarkBoard board(2);
  EventTimeClock fast(&board, 0), slow(&board, 1);
  fast.Observe(Day(30));
  slow.Observe(Day(1));
  fast.Tick(Wall(0));
  slow.Tick(Wall(0));
  fast.Tick(Wall(100));
  slow.Tick(Wall(100));
  // Both are active: the slow worker's now stays at its own event time.
  EXPECT_EQ(slow.Now(), Day(1));
  EXPECT_EQ(fast.Now(), Day(30));
  // Readers' windows end at the latest event time anywhere.
  EXPECT_EQ(LatestEventClock(&board).Now(), Day(30));
}

TEST(EventTimeClock, AQuietWorkerFollowsTheActiveOnes) {
  WatermarkBoard board(2);
  EventTimeClock busy(&board, 0), quiet(&board, 1);
  quiet.Observe(Day(1));
  quiet.Tick(Wall(0));
  busy.Observe(Day(2));
  busy.Tick(Wall(0));
  // Within a second both count as active.
  quiet.Tick(Wall(WatermarkBoard::kIdleAfterMillis));
  EXPECT_EQ(quiet.Now(), Day(1));
  // The quiet worker has seen nothing for over a second; the busy one goes on.
  busy.Observe(Day(5));
  busy.Tick(Wall(2000));
  quiet.Tick(Wall(2000));
  EXPECT_EQ(quiet.Now(), Day(5));
}

TEST(EventTimeClock, AWorkerThatIdledUntilItsBacklogArrivedReadsItAtItsOwnTime) {
  WatermarkBoard board(2);
  EventTimeClock fast(&board, 0), late(&board, 1);
  // The fast worker is at day 30; the late one has had nothing to read yet
  // and, idle, follows it.
  fast.Observe(Day(30));
  fast.Tick(Wall(0));
  late.Tick(Wall(0));
  EXPECT_EQ(late.Now(), Day(30));
  // Its backlog from day 1 arrives: it handles it at day 1, not day 30.
  late.Observe(Day(1));
  EXPECT_EQ(late.Now(), Day(1));
  // Still reading at the next tick: both active, its own time holds.
  fast.Observe(Day(31));
  fast.Tick(Wall(100));
  late.Tick(Wall(100));
  EXPECT_EQ(late.Now(), Day(1));
}

TEST(EventTimeClock, WhenEveryoneIsIdleNowIsTheLatestEventTime) {
  WatermarkBoard board(2);
  EventTimeClock a(&board, 0), b(&board, 1);
  a.Observe(Day(4));
  a.Tick(Wall(0));
  b.Observe(Day(2));
  b.Tick(Wall(0));
  b.Tick(Wall(60000));
  EXPECT_EQ(b.Now(), Day(4));
}

}  // namespace
}  // namespace kpid::cases
