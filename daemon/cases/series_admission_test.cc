#include "daemon/cases/series_admission.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "daemon/cases/stable_hash.h"
#include "gtest/gtest.h"

namespace kpid::cases {
namespace {

model::Config TwoProcesses(int limit) {
  return *model::ParseConfig(
      absl::StrCat("dimensions: {names: [region], max_series_per_process: ", limit,
                   "}\nprocesses:\n  - {id: a, stages: [{id: s, sla: 1h}]}\n"
                   "  - {id: b, stages: [{id: s, sla: 1h}]}\n"),
      "t.yaml");
}

// A combination's hash: the admission tells combinations apart by the high
// 42 bits.
uint64_t Combination(uint64_t n) { return n << 32; }

TEST(SeriesAdmission, AdmitsUpToTheLimitPerProcessAndKeepsVerdicts) {
  SeriesAdmission admission(TwoProcesses(2));
  EXPECT_EQ(admission.limit(), 2);
  EXPECT_TRUE(admission.Admit(0, Combination(11)));
  EXPECT_TRUE(admission.Admit(0, Combination(11)));  // the same combination: no second unit
  EXPECT_TRUE(admission.Admit(0, Combination(22)));
  EXPECT_EQ(admission.Admitted(0), 2u);
  // Two admitted = the limit: a third is refused, the first two stay admitted.
  EXPECT_FALSE(admission.Admit(0, Combination(33)));
  EXPECT_FALSE(admission.Admit(0, Combination(33)));
  EXPECT_TRUE(admission.Admit(0, Combination(22)));
  EXPECT_EQ(admission.Admitted(0), 2u);
  // Process b has its own table.
  EXPECT_TRUE(admission.Admit(1, Combination(33)));
  EXPECT_EQ(admission.Admitted(1), 1u);
}

TEST(SeriesAdmission, RegisterAdmitsWhateverTheCount) {
  SeriesAdmission admission(TwoProcesses(1));
  EXPECT_TRUE(admission.Admit(0, Combination(4)));
  admission.Register(0, Combination(8));  // restored: admitted beyond the limit of 1
  admission.Register(0, Combination(4));  // known: no second unit
  EXPECT_EQ(admission.Admitted(0), 2u);
  EXPECT_TRUE(admission.Admit(0, Combination(8)));
  EXPECT_FALSE(admission.Admit(0, Combination(12)));
}

TEST(SeriesAdmission, HashesEqualInTheirHigh42BitsShareAVerdict) {
  SeriesAdmission admission(TwoProcesses(2));
  const uint64_t low_bits = (uint64_t{1} << 22) - 1;
  EXPECT_TRUE(admission.Admit(0, Combination(5)));
  EXPECT_TRUE(admission.Admit(0, Combination(5) | low_bits));
  EXPECT_EQ(admission.Admitted(0), 1u);
  EXPECT_TRUE(admission.Admit(0, Combination(5) + (uint64_t{1} << 22)));  // 2 of 2
  EXPECT_FALSE(admission.Admit(0, Combination(6)));
}

TEST(SeriesAdmission, ReleasingTheLastReferenceMakesRoom) {
  SeriesAdmission admission(TwoProcesses(2));
  // Two tables take a reference to 1, one to 2: 2 of 2 admitted.
  EXPECT_TRUE(admission.Admit(0, Combination(1)));
  EXPECT_TRUE(admission.Admit(0, Combination(1)));
  EXPECT_TRUE(admission.Admit(0, Combination(2)));
  EXPECT_FALSE(admission.Admit(0, Combination(3)));
  // One of 1's two references goes: 1 stays admitted, no room.
  admission.Release(0, Combination(1));
  EXPECT_EQ(admission.Admitted(0), 2u);
  EXPECT_FALSE(admission.Admit(0, Combination(3)));
  // 2's only one goes: 1 of 2, and 3 (refused twice before) takes the room.
  admission.Release(0, Combination(2));
  EXPECT_EQ(admission.Admitted(0), 1u);
  EXPECT_TRUE(admission.Admit(0, Combination(3)));
  EXPECT_EQ(admission.Admitted(0), 2u);
  // 2 is new again, beyond the limit.
  EXPECT_FALSE(admission.Admit(0, Combination(2)));
  admission.Release(0, Combination(1));
  admission.Release(0, Combination(3));
  EXPECT_EQ(admission.Admitted(0), 0u);
  EXPECT_EQ(admission.Admitted(1), 0u);
}

TEST(SeriesAdmission, RegisteredBeyondTheLimitHoldsRoomUntilReleased) {
  SeriesAdmission admission(TwoProcesses(1));
  EXPECT_TRUE(admission.Admit(0, Combination(1)));
  admission.Register(0, Combination(2));  // 2 units, limit 1
  admission.Release(0, Combination(1));
  // 1 unit (2's) = the limit: still no room.
  EXPECT_EQ(admission.Admitted(0), 1u);
  EXPECT_FALSE(admission.Admit(0, Combination(3)));
  admission.Release(0, Combination(2));
  EXPECT_TRUE(admission.Admit(0, Combination(3)));
}

// Freed slots are taken again: many more combinations than the table has
// slots (128 for a limit of 1) come and go, each admitted in turn.
TEST(SeriesAdmission, FreedSlotsAreReused) {
  SeriesAdmission admission(TwoProcesses(1));
  for (int c = 0; c < 10000; ++c) {
    const uint64_t hash = StableHash64(absl::StrCat("region-", c));
    ASSERT_TRUE(admission.Admit(0, hash)) << c;
    ASSERT_FALSE(admission.Admit(0, StableHash64(absl::StrCat("other-", c)))) << c;
    admission.Release(0, hash);
  }
  EXPECT_EQ(admission.Admitted(0), 0u);
}

// More restored combinations than the table's 128 slots: those it cannot
// store are counted all the same, and given back on release.
TEST(SeriesAdmission, RegisteredButNotStoredIsCountedAndGivenBack) {
  SeriesAdmission admission(TwoProcesses(1));
  std::vector<uint64_t> hashes;
  for (int c = 0; c < 300; ++c) hashes.push_back(StableHash64(absl::StrCat("region-", c)));
  for (uint64_t hash : hashes) admission.Register(0, hash);
  EXPECT_EQ(admission.Admitted(0), 300u);
  EXPECT_FALSE(admission.Admit(0, StableHash64("new")));
  for (uint64_t hash : hashes) admission.Release(0, hash);
  EXPECT_EQ(admission.Admitted(0), 0u);
  EXPECT_TRUE(admission.Admit(0, StableHash64("new")));
}

}  // namespace
}  // namespace kpid::cases
