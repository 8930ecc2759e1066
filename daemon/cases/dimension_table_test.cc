#include "daemon/cases/dimension_table.h"

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace kpid::cases {
namespace {

google::protobuf::Map<std::string, std::string> Attrs(
    std::initializer_list<std::pair<const std::string, std::string>> kv) {
  google::protobuf::Map<std::string, std::string> m;
  for (const auto& [k, v] : kv) m[k] = v;
  return m;
}

model::Config TwoDims(int limit) {
  return *model::ParseConfig(
      absl::StrCat("dimensions: {names: [region, channel], max_series_per_process: ", limit,
                   "}\nprocesses:\n  - {id: a, stages: [{id: s, sla: 1h}]}\n"
                   "  - {id: b, stages: [{id: s, sla: 1h}]}\n"),
      "t.yaml");
}

TEST(DimensionTable, InternsCombinationsPerProcessInNameOrder) {
  model::Config config = TwoDims(10);
  DimensionTable table(config);
  const DimsId emea_web = table.Resolve(0, Attrs({{"region", "emea"}, {"channel", "web"}}));
  EXPECT_EQ(emea_web, 2u);  // 0 = empty values, 1 = __other__
  EXPECT_EQ(table.Resolve(0, Attrs({{"channel", "web"}, {"region", "emea"}, {"x", "y"}})),
            emea_web);
  EXPECT_EQ(table.Values(0, emea_web), (std::vector<std::string>{"emea", "web"}));
  // Missing attributes are empty values; all missing is id 0.
  EXPECT_EQ(table.Resolve(0, Attrs({})), 0u);
  const DimsId only_region = table.Resolve(0, Attrs({{"region", "apac"}}));
  EXPECT_EQ(table.Values(0, only_region), (std::vector<std::string>{"apac", ""}));
  // Another process has its own ids.
  EXPECT_EQ(table.Resolve(1, Attrs({{"region", "amer"}, {"channel", "web"}})), 2u);
  EXPECT_EQ(table.Size(0), 4u);
  EXPECT_EQ(table.Size(1), 3u);
  EXPECT_EQ(table.Values(0, 1), (std::vector<std::string>{"__other__", "__other__"}));
}

TEST(DimensionTable, FoldsBeyondTheLimitIntoOther) {
  model::Config config = TwoDims(2);
  DimensionTable table(config);
  EXPECT_EQ(table.Resolve(0, Attrs({{"region", "r1"}})), 2u);
  EXPECT_EQ(table.Resolve(0, Attrs({{"region", "r2"}})), 3u);
  // The limit is reached: new combinations fold, known ones keep their id.
  EXPECT_EQ(table.Resolve(0, Attrs({{"region", "r3"}})), table.other_id());
  EXPECT_EQ(table.Resolve(0, Attrs({{"region", "r4"}})), table.other_id());
  EXPECT_EQ(table.Resolve(0, Attrs({{"region", "r1"}})), 2u);
  EXPECT_EQ(table.Folded(0), 2u);
  EXPECT_EQ(table.Folded(1), 0u);
}

TEST(DimensionTable, WithoutDimensionsEverythingIsIdZero) {
  model::Config config =
      *model::ParseConfig("processes: [{id: a, stages: [{id: s, sla: 1h}]}]\n", "t.yaml");
  DimensionTable table(config);
  EXPECT_EQ(table.Resolve(0, Attrs({{"region", "emea"}})), 0u);
  EXPECT_EQ(table.Size(0), 1u);
  EXPECT_TRUE(table.Values(0, 0).empty());
}

TEST(DimensionTable, RestoredTableKeepsIdsLookupsAndFoldedCount) {
  model::Config config = TwoDims(2);
  DimensionTable table(config);
  table.Resolve(0, Attrs({{"region", "r1"}, {"channel", "web"}}));  // 2
  table.Resolve(0, Attrs({{"region", "r2"}}));                      // 3
  table.Resolve(0, Attrs({{"region", "r3"}}));                      // folded
  table.Resolve(1, Attrs({{"channel", "x"}}));                      // 2 of b
  auto restored = DimensionTable::Restore(config, table.Serialize());
  ASSERT_TRUE(restored.ok()) << restored.status();
  DimensionTable& t = **restored;
  EXPECT_EQ(t.Size(0), 4u);
  EXPECT_EQ(t.Values(0, 2), (std::vector<std::string>{"r1", "web"}));
  EXPECT_EQ(t.Values(0, 3), (std::vector<std::string>{"r2", ""}));
  EXPECT_EQ(t.Values(1, 2), (std::vector<std::string>{"", "x"}));
  // Lookups find the restored ids; the limit still holds.
  EXPECT_EQ(t.Resolve(0, Attrs({{"region", "r2"}})), 3u);
  EXPECT_EQ(t.Resolve(0, Attrs({{"region", "r4"}})), t.other_id());
  EXPECT_EQ(t.Folded(0), 2u);  // r3 before, r4 now
}

TEST(DimensionTable, RestoredIntoALowerLimitKeepsEveryId) {
  model::Config config = TwoDims(3);
  DimensionTable table(config);
  for (const char* r : {"r1", "r2", "r3"}) table.Resolve(0, Attrs({{"region", r}}));  // 2..4
  auto restored = DimensionTable::Restore(TwoDims(1), table.Serialize());
  ASSERT_TRUE(restored.ok()) << restored.status();
  EXPECT_EQ((*restored)->Size(0), 5u);
  EXPECT_EQ((*restored)->Values(0, 4), (std::vector<std::string>{"r3", ""}));
  EXPECT_EQ((*restored)->Resolve(0, Attrs({{"region", "r9"}})), 1u);  // folds
}

}  // namespace
}  // namespace kpid::cases
