#include "daemon/common/lag_ring.h"

#include <vector>

#include "gtest/gtest.h"

namespace kpid {
namespace {

TEST(LagRingTest, EachItemGoesOnOnceThreeLaterOnesCameOrAtFlush) {
  LagRing<int, 3> ring;
  std::vector<int> out;
  auto emit = [&](int v) { out.push_back(v); };
  for (int v = 1; v <= 3; ++v) ring.Push(v, emit);
  EXPECT_TRUE(out.empty());  // 1 2 3 held
  ring.Push(4, emit);        // 1 goes on
  ring.Push(5, emit);        // 2
  EXPECT_EQ(out, (std::vector<int>{1, 2}));
  ring.Flush(emit);  // 3 4 5, oldest first
  EXPECT_EQ(out, (std::vector<int>{1, 2, 3, 4, 5}));
  ring.Flush(emit);  // nothing held
  EXPECT_EQ(out.size(), 5u);
  // Wrapped around the ring: still in arrival order.
  for (int v = 6; v <= 10; ++v) ring.Push(v, emit);  // 6 7 go on
  ring.Flush(emit);
  EXPECT_EQ(out, (std::vector<int>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}));
}

}  // namespace
}  // namespace kpid
