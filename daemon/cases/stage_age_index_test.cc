#include "daemon/cases/stage_age_index.h"

#include <functional>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kpid::cases {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

// Plays the tracker: a token per slot (0 = closed) and each slot's entry time.
class StageAgeIndexTest : public ::testing::Test {
 protected:
  // True when the stay went to the ring (the breach frontier walks it).
  bool Enter(uint32_t slot, int64_t entered_us) {
    if (token_[slot] != 0) Leave(slot);
    token_[slot] = next_token_++;
    entered_[slot] = entered_us;
    return index_.Enter({entered_us, slot, token_[slot]}, live());
  }
  // The slots PassedBefore reports, in its order.
  std::vector<uint32_t> PassedBefore(int64_t before_us) {
    std::vector<uint32_t> slots;
    index_.PassedBefore(
        before_us, live(), [&](uint32_t s) { return entered_[s]; }, [](uint32_t) {},
        [&](const StageAgeIndex::Stay& stay) {
          EXPECT_EQ(stay.entered_us, entered_[stay.slot]);
          EXPECT_EQ(stay.token, token_[stay.slot]);
          slots.push_back(stay.slot);
        });
    return slots;
  }
  void Leave(uint32_t slot) {
    token_[slot] = 0;
    index_.Leave();
  }
  // The slots of the k oldest entered before `before`, oldest first.
  std::vector<uint32_t> Oldest(size_t k, int64_t before = StageAgeIndex::kNoLimit) {
    std::vector<StageAgeIndex::Stay> out;
    index_.Oldest(
        k, before, live(), [&](uint32_t s) { return entered_[s]; }, &out);
    std::vector<uint32_t> slots;
    for (const auto& stay : out) {
      EXPECT_EQ(stay.entered_us, entered_[stay.slot]);
      slots.push_back(stay.slot);
    }
    return slots;
  }
  // OldestLive's slot (-1: none), checked against Oldest(1).
  int64_t OldestLiveSlot() {
    const std::optional<StageAgeIndex::Stay> stay =
        index_.OldestLive(live(), [&](uint32_t s) { return entered_[s]; });
    const std::vector<uint32_t> oldest = Oldest(1);
    if (!stay) {
      EXPECT_THAT(oldest, IsEmpty());
      return -1;
    }
    EXPECT_EQ(stay->entered_us, entered_[stay->slot]);
    EXPECT_EQ(stay->token, token_[stay->slot]);
    EXPECT_THAT(oldest, ElementsAre(stay->slot));
    return stay->slot;
  }
  // A FunctionRef must not outlive what it refers to: refer to a member.
  const std::function<bool(uint32_t, uint32_t)>& live() const { return is_live_; }

  std::function<bool(uint32_t, uint32_t)> is_live_ = [this](uint32_t s, uint32_t t) {
    return token_[s] == t;
  };
  StageAgeIndex index_;
  std::map<uint32_t, uint32_t> token_;
  std::map<uint32_t, int64_t> entered_;
  uint32_t next_token_ = 1;
};

TEST_F(StageAgeIndexTest, OldestThroughEntriesAndExitsInTimeOrder) {
  EXPECT_THAT(Oldest(1), IsEmpty());
  Enter(1, 100);
  Enter(2, 200);
  Enter(3, 300);
  EXPECT_THAT(Oldest(1), ElementsAre(1u));
  Leave(1);  // the oldest leaves: the next one is oldest
  EXPECT_THAT(Oldest(1), ElementsAre(2u));
  Leave(3);  // a younger one leaving changes nothing
  EXPECT_THAT(Oldest(5), ElementsAre(2u));
  Leave(2);
  EXPECT_THAT(Oldest(1), IsEmpty());
  EXPECT_EQ(index_.entries(), 0u);
}

TEST_F(StageAgeIndexTest, OutOfOrderEntriesAreOrderedByEntryTime) {
  // Two partitions an hour apart, interleaved: 3600 s, 0 s, 3601 s, 1 s, ...
  for (uint32_t i = 0; i < 4; ++i) {
    Enter(10 + i, int64_t{3600 + i} * 1'000'000);
    Enter(20 + i, int64_t{i} * 1'000'000);
  }
  EXPECT_THAT(Oldest(10), ElementsAre(20u, 21u, 22u, 23u, 10u, 11u, 12u, 13u));
  // Before 2 s: only 20 (0 s) and 21 (1 s).
  EXPECT_THAT(Oldest(10, 2'000'000), ElementsAre(20u, 21u));
  // The K limit.
  EXPECT_THAT(Oldest(3), ElementsAre(20u, 21u, 22u));
  Leave(20);
  Leave(10);
  EXPECT_THAT(Oldest(10), ElementsAre(21u, 22u, 23u, 11u, 12u, 13u));
  // Asking again gives the same: Oldest puts back what it took.
  EXPECT_THAT(Oldest(10), ElementsAre(21u, 22u, 23u, 11u, 12u, 13u));
}

TEST_F(StageAgeIndexTest, EqualEntryTimesAreOrderedBySlot) {
  Enter(7, 50);
  Enter(3, 50);
  Enter(5, 40);  // out of order: to the heap
  EXPECT_THAT(Oldest(3), ElementsAre(5u, 3u, 7u));
}

TEST_F(StageAgeIndexTest, ReenteringTheStageIsANewStay) {
  Enter(1, 100);
  Enter(2, 200);
  Leave(1);
  Enter(1, 300);  // back in the stage: entered 300, after 2
  EXPECT_THAT(Oldest(3), ElementsAre(2u, 1u));
}

// One old case stays while 20,000 pass through: the entries stay within
// 2 x live + 64 and the oldest is still exact.
TEST_F(StageAgeIndexTest, StaleEntriesAreCompactedAndTheOldestStaysExact) {
  Enter(0, 1);
  for (uint32_t i = 1; i <= 20'000; ++i) {
    // Every fourth one arrives out of order (before the previous one).
    Enter(i, i % 4 == 0 ? int64_t{i} * 10 - 15 : int64_t{i} * 10);
    ASSERT_LE(index_.entries(), 2 * index_.live() + 64);
    Leave(i);
  }
  EXPECT_EQ(index_.live(), 1u);
  EXPECT_THAT(Oldest(5), ElementsAre(0u));
  // Some stay too: the live ones at slots 200001.. with times below.
  Enter(200'001, 5);
  Enter(200'002, 0);  // now the oldest
  EXPECT_THAT(Oldest(5), ElementsAre(200'002u, 0u, 200'001u));
}

TEST_F(StageAgeIndexTest, OldestDropsTheStaleEntriesItWalksOver) {
  Enter(0, 0);
  for (uint32_t i = 1; i <= 50; ++i) Enter(i, i);
  for (uint32_t i = 1; i <= 40; ++i) Leave(i);
  const size_t before = index_.entries();  // 51: no compaction yet (<= 2 x 11 + 64)
  EXPECT_EQ(before, 51u);
  EXPECT_THAT(Oldest(3), ElementsAre(0u, 41u, 42u));
  EXPECT_EQ(index_.entries(), 11u);  // the 40 stale ones before 42 are gone
}

TEST_F(StageAgeIndexTest, OldestLiveFromTheRingOrTheHeapDroppingStaleFronts) {
  EXPECT_EQ(OldestLiveSlot(), -1);
  Enter(1, 100);                   // ring
  Enter(2, 200);                   // ring
  Enter(3, 150);                   // out of order: heap
  EXPECT_EQ(OldestLiveSlot(), 1);  // ring front 100 < heap top 150
  Leave(1);
  EXPECT_EQ(OldestLiveSlot(), 3);  // ring front now 200 (stale 1 dropped) > heap 150
  Leave(3);
  EXPECT_EQ(OldestLiveSlot(), 2);  // heap's stale top dropped
  EXPECT_EQ(index_.entries(), 1u);
  Enter(4, 200);  // same time as 2, higher slot: after it
  Enter(0, 200);  // same time, lower slot: out of order, heap; oldest by slot
  EXPECT_EQ(OldestLiveSlot(), 0);
  Leave(0);
  Leave(2);
  EXPECT_EQ(OldestLiveSlot(), 4);
  Leave(4);
  EXPECT_EQ(OldestLiveSlot(), -1);
}

TEST_F(StageAgeIndexTest, BreachFrontierReportsEachInOrderStayOnceAsTheBoundPasses) {
  EXPECT_EQ(index_.frontier_entered(), StageAgeIndex::kNoLimit);
  EXPECT_TRUE(Enter(1, 100));
  EXPECT_TRUE(Enter(2, 200));
  EXPECT_FALSE(Enter(3, 150));  // out of order: heap, never walked
  EXPECT_TRUE(Enter(4, 300));
  EXPECT_EQ(index_.frontier_entered(), 100);
  EXPECT_THAT(PassedBefore(100), IsEmpty());  // entered at the bound: not before it
  EXPECT_THAT(PassedBefore(201), ElementsAre(1u, 2u));
  EXPECT_EQ(index_.frontier_entered(), 300);
  EXPECT_THAT(PassedBefore(201), IsEmpty());  // reported once
  Leave(4);
  EXPECT_TRUE(Enter(5, 350));  // after 4's entry, stale now: skipped
  EXPECT_THAT(PassedBefore(1000), ElementsAre(5u));
  EXPECT_EQ(index_.frontier_entered(), StageAgeIndex::kNoLimit);
  EXPECT_FALSE(Enter(6, 50));  // before the ring's last (5 at 350): heap
  EXPECT_THAT(PassedBefore(1000), IsEmpty());
  EXPECT_EQ(index_.frontier_entered(), StageAgeIndex::kNoLimit);
}

// Random entries (some out of order), exits, and the calls that move or
// drop ring entries (Oldest, OldestLive, compaction) between walks with a
// growing bound: every live stay that went to the ring is reported once,
// when the bound first passes its entry time, never earlier; and
// frontier_entered() never exceeds the entry time of one not yet reported.
TEST_F(StageAgeIndexTest, BreachFrontierStaysExactThroughCompactionAndOldest) {
  std::mt19937_64 rng(5);
  std::set<std::pair<uint32_t, uint32_t>> in_ring, reported;  // (slot, token)
  int64_t clock = 0, bound = 0;
  for (int step = 0; step < 30'000; ++step) {
    const uint64_t r = rng() % 100;
    const uint32_t slot = static_cast<uint32_t>(rng() % 300);
    if (r < 45) {
      clock += static_cast<int64_t>(rng() % 10);
      const int64_t at = r < 40 ? clock : clock - static_cast<int64_t>(rng() % 50);
      if (Enter(slot, at)) in_ring.insert({slot, token_[slot]});
    } else if (r < 85) {
      if (token_[slot] != 0) Leave(slot);
    } else if (r < 88) {
      Oldest(1 + rng() % 200, bound + static_cast<int64_t>(rng() % 300));
    } else if (r < 90) {
      OldestLiveSlot();
    } else {
      bound = std::max(bound, clock - static_cast<int64_t>(rng() % 200));
      for (uint32_t s : PassedBefore(bound)) {
        ASSERT_TRUE(in_ring.count({s, token_[s]}));
        ASSERT_LT(entered_[s], bound);
        ASSERT_TRUE(reported.insert({s, token_[s]}).second) << "reported twice";
      }
      std::erase_if(in_ring, [&](const auto& stay) { return token_[stay.first] != stay.second; });
      int64_t first_unreported = StageAgeIndex::kNoLimit;
      for (const auto& [s, t] : in_ring) {
        if (reported.count({s, t})) continue;
        ASSERT_GE(entered_[s], bound) << "slot " << s << " missed";
        first_unreported = std::min(first_unreported, entered_[s]);
      }
      ASSERT_LE(index_.frontier_entered(), first_unreported);
    }
  }
  EXPECT_GT(reported.size(), 500u);
}

}  // namespace
}  // namespace kpid::cases
