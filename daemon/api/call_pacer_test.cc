#include "daemon/api/call_pacer.h"

#include "gtest/gtest.h"

namespace kpid::api {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1767225600);

// 4 calls a second: turns 250 ms apart, a burst of 4 after a quiet second.
TEST(CallPacerTest, BurstThenOneTurnPerInterval) {
  CallPacer pacer({.calls_per_second = 4, .max_queued = 10});
  for (int i = 0; i < 4; ++i) EXPECT_EQ(*pacer.Reserve(kT0), kT0) << i;
  EXPECT_EQ(*pacer.Reserve(kT0), kT0 + absl::Milliseconds(250));
  EXPECT_EQ(*pacer.Reserve(kT0), kT0 + absl::Milliseconds(500));
  // Long after the last turn (+500 ms) the burst is back.
  const absl::Time later = kT0 + absl::Seconds(10);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(*pacer.Reserve(later), later) << i;
  EXPECT_EQ(*pacer.Reserve(later), later + absl::Milliseconds(250));
}

TEST(CallPacerTest, ALoopingClientGetsTheRate) {
  CallPacer pacer({.calls_per_second = 4, .max_queued = 10});
  // Each call arrives the moment the previous one started (a zero-cost
  // server and client). Turns in the first 10 s: 4 at kT0, then one each
  // 250 ms at +250 ms ... +9750 ms: 4 + 39 = 43.
  int calls = 0;
  for (absl::Time now = kT0;; ++calls) {
    now = *pacer.Reserve(now);
    if (now >= kT0 + absl::Seconds(10)) break;
  }
  EXPECT_EQ(calls, 43);
}

TEST(CallPacerTest, QueueIsBounded) {
  CallPacer pacer({.calls_per_second = 4, .max_queued = 2});
  for (int i = 0; i < 4; ++i) ASSERT_EQ(*pacer.Reserve(kT0), kT0);
  EXPECT_EQ(*pacer.Reserve(kT0), kT0 + absl::Milliseconds(250));  // 0 waiting before it
  EXPECT_EQ(*pacer.Reserve(kT0), kT0 + absl::Milliseconds(500));  // 1 waiting
  absl::StatusOr<absl::Time> refused = pacer.Reserve(kT0);        // 2 waiting
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  // At +250 ms that turn has come: only the +500 ms one still waits.
  EXPECT_EQ(*pacer.Reserve(kT0 + absl::Milliseconds(250)), kT0 + absl::Milliseconds(750));
}

TEST(CallPacerTest, NoQueueRefusesEveryCallThatWouldWait) {
  CallPacer pacer({.calls_per_second = 1, .max_queued = 0});
  EXPECT_EQ(*pacer.Reserve(kT0), kT0);
  EXPECT_EQ(pacer.Reserve(kT0 + absl::Milliseconds(999)).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(*pacer.Reserve(kT0 + absl::Seconds(1)), kT0 + absl::Seconds(1));
}

TEST(CallPacerTest, ATurnAfterTheDeadlineIsRefusedAndNotReserved) {
  CallPacer pacer({.calls_per_second = 4, .max_queued = 10});
  for (int i = 0; i < 4; ++i) ASSERT_EQ(*pacer.Reserve(kT0), kT0);
  absl::StatusOr<absl::Time> refused = pacer.Reserve(kT0, kT0 + absl::Milliseconds(100));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(refused.status().message().find("after the call's deadline"), absl::string_view::npos)
      << refused.status();
  // The refused call took no turn: the next one gets +250 ms.
  EXPECT_EQ(*pacer.Reserve(kT0, kT0 + absl::Milliseconds(250)), kT0 + absl::Milliseconds(250));
}

TEST(CallPacerTest, ZeroRateDoesNotPace) {
  CallPacer pacer({.calls_per_second = 0, .max_queued = 0});
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(*pacer.Reserve(kT0), kT0);
}

}  // namespace
}  // namespace kpid::api
