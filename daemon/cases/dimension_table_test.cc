#include "daemon/cases/dimension_table.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "daemon/ingest/event_view_testing.h"
#include "gtest/gtest.h"

namespace kpid::cases {
namespace {

model::Config TwoDims(int limit) {
  return *model::ParseConfig(
      absl::StrCat("dimensions: {names: [region, channel], max_series_per_process: ", limit,
                   "}\nprocesses:\n  - {id: a, stages: [{id: s, sla: 1h}]}\n"
                   "  - {id: b, stages: [{id: s, sla: 1h}]}\n"),
      "t.yaml");
}

// An event's attributes come as the wire has them; a key that comes twice
// is read as its last entry, as the contract's map keeps it; an empty value
// is a value, the same as a missing attribute.
TEST(DimensionTable, ALaterEntryOfAKeyWins) {
  model::Config config = TwoDims(10);
  DimensionTable table(config);
  const DimsId apac_web = table.Resolve(
      0, ingest::MakeAttributes({{"region", "emea"}, {"channel", "web"}, {"region", "apac"}}));
  EXPECT_EQ(table.Values(0, apac_web), (std::vector<std::string>{"apac", "web"}));
  EXPECT_EQ(table.Resolve(0, ingest::MakeAttributes({{"channel", "web"}, {"region", "apac"}})),
            apac_web);
  const DimsId no_region = table.Resolve(
      0, ingest::MakeAttributes({{"region", "emea"}, {"channel", "app"}, {"region", ""}}));
  EXPECT_EQ(table.Values(0, no_region), (std::vector<std::string>{"", "app"}));
  EXPECT_EQ(table.Resolve(0, ingest::MakeAttributes({{"channel", "app"}})), no_region);
}

TEST(DimensionTable, InternsCombinationsPerProcessInNameOrder) {
  model::Config config = TwoDims(10);
  DimensionTable table(config);
  const DimsId emea_web =
      table.Resolve(0, ingest::MakeAttributes({{"region", "emea"}, {"channel", "web"}}));
  EXPECT_EQ(emea_web, 2u);  // 0 = empty values, 1 = __other__
  EXPECT_EQ(table.Resolve(
                0, ingest::MakeAttributes({{"channel", "web"}, {"region", "emea"}, {"x", "y"}})),
            emea_web);
  EXPECT_EQ(table.Values(0, emea_web), (std::vector<std::string>{"emea", "web"}));
  // Missing attributes are empty values; all missing is id 0.
  EXPECT_EQ(table.Resolve(0, ingest::MakeAttributes({})), 0u);
  const DimsId only_region = table.Resolve(0, ingest::MakeAttributes({{"region", "apac"}}));
  EXPECT_EQ(table.Values(0, only_region), (std::vector<std::string>{"apac", ""}));
  // Another process has its own ids.
  EXPECT_EQ(table.Resolve(1, ingest::MakeAttributes({{"region", "amer"}, {"channel", "web"}})), 2u);
  EXPECT_EQ(table.Size(0), 4u);
  EXPECT_EQ(table.Size(1), 3u);
  EXPECT_EQ(table.Values(0, 1), (std::vector<std::string>{"__other__", "__other__"}));
}

TEST(DimensionTable, FoldsBeyondTheLimitIntoOther) {
  model::Config config = TwoDims(2);
  DimensionTable table(config);
  EXPECT_EQ(table.Resolve(0, ingest::MakeAttributes({{"region", "r1"}})), 2u);
  EXPECT_EQ(table.Resolve(0, ingest::MakeAttributes({{"region", "r2"}})), 3u);
  // The limit is reached: new combinations fold, known ones keep their id.
  EXPECT_EQ(table.Resolve(0, ingest::MakeAttributes({{"region", "r3"}})), table.other_id());
  EXPECT_EQ(table.Resolve(0, ingest::MakeAttributes({{"region", "r4"}})), table.other_id());
  EXPECT_EQ(table.Resolve(0, ingest::MakeAttributes({{"region", "r1"}})), 2u);
  EXPECT_EQ(table.Folded(0), 2u);
  EXPECT_EQ(table.Folded(1), 0u);
}

TEST(DimensionTable, WithoutDimensionsEverythingIsIdZero) {
  model::Config config =
      *model::ParseConfig("processes: [{id: a, stages: [{id: s, sla: 1h}]}]\n", "t.yaml");
  DimensionTable table(config);
  EXPECT_EQ(table.Resolve(0, ingest::MakeAttributes({{"region", "emea"}})), 0u);
  EXPECT_EQ(table.Size(0), 1u);
  EXPECT_TRUE(table.Values(0, 0).empty());
}

TEST(DimensionTable, RestoredTableKeepsIdsLookupsAndFoldedCount) {
  model::Config config = TwoDims(2);
  DimensionTable table(config);
  table.Resolve(0, ingest::MakeAttributes({{"region", "r1"}, {"channel", "web"}}));  // 2
  table.Resolve(0, ingest::MakeAttributes({{"region", "r2"}}));                      // 3
  table.Resolve(0, ingest::MakeAttributes({{"region", "r3"}}));                      // folded
  table.Resolve(1, ingest::MakeAttributes({{"channel", "x"}}));                      // 2 of b
  auto restored = DimensionTable::Restore(config, table.Serialize());
  ASSERT_TRUE(restored.ok()) << restored.status();
  DimensionTable& t = **restored;
  EXPECT_EQ(t.Size(0), 4u);
  EXPECT_EQ(t.Values(0, 2), (std::vector<std::string>{"r1", "web"}));
  EXPECT_EQ(t.Values(0, 3), (std::vector<std::string>{"r2", ""}));
  EXPECT_EQ(t.Values(1, 2), (std::vector<std::string>{"", "x"}));
  // Lookups find the restored ids; the limit still holds.
  EXPECT_EQ(t.Resolve(0, ingest::MakeAttributes({{"region", "r2"}})), 3u);
  EXPECT_EQ(t.Resolve(0, ingest::MakeAttributes({{"region", "r4"}})), t.other_id());
  EXPECT_EQ(t.Folded(0), 2u);  // r3 before, r4 now
}

TEST(DimensionTable, RestoredIntoALowerLimitKeepsEveryId) {
  model::Config config = TwoDims(3);
  DimensionTable table(config);
  for (const char* r : {"r1", "r2", "r3"})
    table.Resolve(0, ingest::MakeAttributes({{"region", r}}));  // 2..4
  auto restored = DimensionTable::Restore(TwoDims(1), table.Serialize());
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ((*restored)->Size(0), 5u);
  EXPECT_EQ((*restored)->Values(0, 4), (std::vector<std::string>{"r3", ""}));
  EXPECT_EQ((*restored)->Resolve(0, ingest::MakeAttributes({{"region", "r9"}})), 1u);  // folds
}

// Two partitions' tables of one replica share the per-process limit (2).
TEST(DimensionTable, TheLimitHoldsAcrossPartitionsSharingAnAdmission) {
  model::Config config = TwoDims(2);
  SeriesAdmission admission(config);
  DimensionTable p0(config, &admission), p1(config, &admission);
  EXPECT_EQ(p0.Resolve(0, ingest::MakeAttributes({{"region", "r1"}})), 2u);  // admitted: 1 of 2
  EXPECT_EQ(p1.Resolve(0, ingest::MakeAttributes({{"region", "r2"}})), 2u);  // admitted: 2 of 2
  // r1 is admitted already: p1 may intern it too (its own id there).
  EXPECT_EQ(p1.Resolve(0, ingest::MakeAttributes({{"region", "r1"}})), 3u);
  // r3 is new to the replica beyond the limit: it folds in either partition,
  // though each table has room for 2 + 2.
  EXPECT_EQ(p0.Resolve(0, ingest::MakeAttributes({{"region", "r3"}})), p0.other_id());
  EXPECT_EQ(p1.Resolve(0, ingest::MakeAttributes({{"region", "r3"}})), p1.other_id());
  EXPECT_EQ(p1.Resolve(0, ingest::MakeAttributes({{"region", "r3"}})), p1.other_id());
  EXPECT_EQ(p0.Resolve(0, ingest::MakeAttributes({{"region", "r2"}})), 3u);  // admitted by p1
  // The empty combination needs no admission.
  EXPECT_EQ(p0.Resolve(0, ingest::MakeAttributes({})), 0u);
  // Folds, per partition: p0 r3 once = 1; p1 r3 twice = 2. Process b: none.
  EXPECT_EQ(p0.Folded(0), 1u);
  EXPECT_EQ(p1.Folded(0), 2u);
  EXPECT_EQ(p0.Folded(1) + p1.Folded(1), 0u);
  EXPECT_EQ(admission.Admitted(0), 2u);
  // Series: p0 {r1, r2}, p1 {r2, r1}: 2 distinct combinations, the limit.
  EXPECT_EQ(p0.Size(0), 4u);  // empty, __other__, r1, r2
  EXPECT_EQ(p1.Size(0), 4u);
}

// A restored partition registers its combinations whatever the count: its
// DimsIds are referred to by the restored aggregator and cases.
TEST(DimensionTable, RestoredCombinationsAreRegisteredBeyondTheLimit) {
  model::Config config = TwoDims(2);
  DimensionTable saved(config);  // a partition saved before the shared limit
  saved.Resolve(0, ingest::MakeAttributes({{"region", "r1"}}));
  saved.Resolve(0, ingest::MakeAttributes({{"region", "r2"}}));
  SeriesAdmission admission(config);
  DimensionTable p0(config, &admission);
  EXPECT_EQ(p0.Resolve(0, ingest::MakeAttributes({{"region", "r3"}})), 2u);  // admitted: 1 of 2
  auto p1 = DimensionTable::Restore(config, saved.Serialize(), nullptr, &admission);
  ASSERT_TRUE(p1.ok()) << p1.status();
  // r3 + restored r1, r2 = 3 registered, over the limit of 2.
  EXPECT_EQ(admission.Admitted(0), 3u);
  EXPECT_EQ((*p1)->Resolve(0, ingest::MakeAttributes({{"region", "r2"}})), 3u);  // its restored id
  // Admitted anywhere: p0 may intern r1 (a 2nd local combination); r4 folds.
  EXPECT_EQ(p0.Resolve(0, ingest::MakeAttributes({{"region", "r1"}})), 3u);
  EXPECT_EQ(p0.Resolve(0, ingest::MakeAttributes({{"region", "r4"}})), p0.other_id());
  EXPECT_EQ((*p1)->Resolve(0, ingest::MakeAttributes({{"region", "r4"}})), (*p1)->other_id());
  EXPECT_EQ(p0.Folded(0), 1u);
  EXPECT_EQ((*p1)->Folded(0), 1u);
}

// A table gives its combinations back when it is destroyed (its partition
// revoked): what only it used makes room for other partitions' new ones.
TEST(DimensionTable, ADestroyedTableReleasesItsCombinations) {
  model::Config config = TwoDims(2);
  SeriesAdmission admission(config);
  auto p0 = std::make_unique<DimensionTable>(config, &admission);
  DimensionTable p1(config, &admission);
  EXPECT_EQ(p0->Resolve(0, ingest::MakeAttributes({{"region", "r1"}})), 2u);  // admitted: 1 of 2
  EXPECT_EQ(p0->Resolve(0, ingest::MakeAttributes({{"region", "r2"}})), 3u);  // admitted: 2 of 2
  EXPECT_EQ(p1.Resolve(0, ingest::MakeAttributes({{"region", "r1"}})), 2u);   // r1: 2nd reference
  EXPECT_EQ(p1.Resolve(0, ingest::MakeAttributes({{"region", "r3"}})), p1.other_id());
  EXPECT_EQ(p0->Resolve(1, ingest::MakeAttributes({{"region", "r9"}})), 2u);  // process b: 1 of 2
  p0.reset();
  // r2 was p0's alone: released; r1 is still p1's. Process a: 1 of 2, b: 0.
  EXPECT_EQ(admission.Admitted(0), 1u);
  EXPECT_EQ(admission.Admitted(1), 0u);
  // r3, folded once in p1, now gets its own series there (a later case);
  // the case folded before stays counted. Then a: 2 of 2 (r1, r3).
  EXPECT_EQ(p1.Resolve(0, ingest::MakeAttributes({{"region", "r3"}})), 3u);
  EXPECT_EQ(p1.Folded(0), 1u);
  EXPECT_EQ(p1.Values(0, 3), (std::vector<std::string>{"r3", ""}));
  EXPECT_EQ(admission.Admitted(0), 2u);
  EXPECT_EQ(p1.Resolve(0, ingest::MakeAttributes({{"region", "r2"}})), p1.other_id());
}

// A restored table's registered combinations go too, and a restore that
// fails halfway gives back what it had registered.
TEST(DimensionTable, RestoredCombinationsAreReleasedWithTheTable) {
  model::Config config = TwoDims(2);
  DimensionTable saved(config);
  saved.Resolve(0, ingest::MakeAttributes({{"region", "r1"}}));
  saved.Resolve(0, ingest::MakeAttributes({{"region", "r2"}}));
  saved.Resolve(0,
                ingest::MakeAttributes({{"region", "r3"}}));  // folds: the table's own limit is 2
  const std::string bytes = saved.Serialize();
  SeriesAdmission admission(config);
  {
    auto restored = DimensionTable::Restore(config, bytes, nullptr, &admission);
    ASSERT_TRUE(restored.ok()) << restored.status();
    EXPECT_EQ(admission.Admitted(0), 2u);  // r1, r2 (r3 folded in `saved`)
  }
  EXPECT_EQ(admission.Admitted(0), 0u);
  // Cut in process b's combinations, after a's were registered: an error,
  // and nothing kept.
  auto truncated =
      DimensionTable::Restore(config, bytes.substr(0, bytes.size() - 5), nullptr, &admission);
  EXPECT_FALSE(truncated.ok());
  EXPECT_EQ(admission.Admitted(0), 0u);
}

}  // namespace
}  // namespace kpid::cases
