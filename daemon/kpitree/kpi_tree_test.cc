#include "daemon/kpitree/kpi_tree.h"

#include "absl/strings/str_cat.h"
#include "daemon/aggregate/aggregate_shard.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kpid::kpitree {
namespace {

using aggregate::AggregateShard;
using aggregate::MergedReader;
using cases::ExitOutcome;

constexpr int64_t kT0 = 1'008'000'000;
absl::Time T(int64_t offset_s) { return absl::FromUnixSeconds(kT0 + offset_s); }
constexpr int kP = 0, kA = 0, kB = 1;

model::Config Config(absl::string_view tree) {
  absl::StatusOr<model::Config> config =
      model::ParseConfig(absl::StrCat("windows: [1h]\n"
                                      "retention: 2h\n"
                                      "processes:\n"
                                      "  - id: p\n"
                                      "    stages: [{id: a, sla: 10m}, {id: b, sla: 1h}]\n"
                                      "    kpi_tree:\n",
                                      tree),
                         "t.yaml");
  EXPECT_TRUE(config.ok()) << config.status();
  return *config;
}

constexpr char kFunnel[] =
    "      - {id: revenue, product: [leads, funnel, deal]}\n"
    "      - {id: leads, kpi: started}\n"
    "      - {id: funnel, product: [conv_a, conv_b]}\n"
    "      - {id: conv_a, kpi: conversion, stage: a}\n"
    "      - {id: conv_b, kpi: conversion, stage: b}\n"
    "      - {id: deal, kpi: avg_deal}\n";

constexpr char kMixed[] =
    "      - {id: per_cost, ratio: [value, cost_each]}\n"
    "      - {id: value, sum: [rev, done]}\n"
    "      - {id: rev, kpi: revenue}\n"
    "      - {id: done, kpi: completed}\n"
    "      - {id: cost_each, kpi: cost_to_serve}\n";

void Exit(AggregateShard& shard, int stage, bool advanced) {
  shard.StageExited(kP, stage, 0, T(10), advanced ? ExitOutcome::kAdvanced : ExitOutcome::kFallout,
                    absl::Seconds(60), true);
}

// Two workers: 10 started; stage a 3 of 4 exits advanced, stage b 1 of 2;
// 2 completed for 1000 + 2000; cost 150 + 250.
void Record(AggregateShard& s0, AggregateShard& s1, bool stage_b_exits, bool costs) {
  for (int i = 0; i < 6; ++i) s0.CaseStarted(kP, 0, T(1));
  for (int i = 0; i < 4; ++i) s1.CaseStarted(kP, 0, T(1));
  Exit(s0, kA, true);
  Exit(s0, kA, true);
  Exit(s1, kA, true);
  Exit(s1, kA, false);
  if (stage_b_exits) {
    Exit(s0, kB, true);
    Exit(s1, kB, false);
  }
  s0.CaseCompleted(kP, 0, T(20), 1000, absl::Hours(1));
  s1.CaseCompleted(kP, 0, T(20), 2000, absl::Hours(1));
  if (costs) {
    s0.Cost(kP, 0, T(20), 150);
    s1.Cost(kP, 0, T(20), 250);
  }
}

std::vector<NodeValue> Evaluate(const model::Config& config, bool stage_b_exits = true,
                                bool costs = true) {
  AggregateShard s0(config), s1(config);
  Record(s0, s1, stage_b_exits, costs);
  MergedReader reader({&s0, &s1});
  return KpiTreeEvaluator(config).Evaluate(reader, kP, reader.Resolve(0, T(30)));
}

const NodeValue& Node(const std::vector<NodeValue>& nodes, absl::string_view id) {
  for (const NodeValue& n : nodes) {
    if (n.id == id) return n;
  }
  ADD_FAILURE() << "no node " << id;
  static const NodeValue kNone;
  return kNone;
}

TEST(KpiTreeTest, ProductOfTheFunnel) {
  const std::vector<NodeValue> nodes = Evaluate(Config(kFunnel));
  ASSERT_EQ(nodes.size(), 6u);
  EXPECT_EQ(nodes[0].id, "revenue");
  EXPECT_EQ(nodes[0].parent, "");
  EXPECT_EQ(Node(nodes, "conv_a").parent, "funnel");
  EXPECT_EQ(Node(nodes, "funnel").parent, "revenue");
  // leads 10; conv_a 3/4; conv_b 1/2; funnel 0.75 * 0.5 = 0.375;
  // deal 3000 / 2 = 1500; revenue 10 * 0.375 * 1500 = 5625.
  EXPECT_DOUBLE_EQ(*Node(nodes, "leads").value, 10);
  EXPECT_DOUBLE_EQ(*Node(nodes, "conv_a").value, 0.75);
  EXPECT_DOUBLE_EQ(*Node(nodes, "conv_b").value, 0.5);
  EXPECT_DOUBLE_EQ(*Node(nodes, "funnel").value, 0.375);
  EXPECT_DOUBLE_EQ(*Node(nodes, "deal").value, 1500);
  EXPECT_DOUBLE_EQ(*Node(nodes, "revenue").value, 5625);
}

TEST(KpiTreeTest, SensitivityInAProductRanksTheWeakestConversionFirst) {
  const std::vector<NodeValue> nodes = Evaluate(Config(kFunnel));
  // leads and deal x 1.01 multiply the root by 1.01: 5625 * 0.01 = 56.25.
  for (const char* leaf : {"leads", "deal"}) {
    ASSERT_TRUE(Node(nodes, leaf).sensitivity.has_value()) << leaf;
    EXPECT_NEAR(*Node(nodes, leaf).sensitivity, 56.25, 1e-9) << leaf;
  }
  // Conversions gain a percentage point: conv_a 0.75 -> 0.76 multiplies the
  // root by 0.76 / 0.75: 5625 * 0.01 / 0.75 = 75; conv_b 0.5 -> 0.51:
  // 5625 * 0.01 / 0.5 = 112.5, the most, as conv_b is the weaker stage.
  EXPECT_NEAR(*Node(nodes, "conv_a").sensitivity, 75, 1e-9);
  EXPECT_NEAR(*Node(nodes, "conv_b").sensitivity, 112.5, 1e-9);
  EXPECT_FALSE(Node(nodes, "revenue").sensitivity.has_value());
  EXPECT_FALSE(Node(nodes, "funnel").sensitivity.has_value());
}

TEST(KpiTreeTest, LowerIsBetterRatioLosesAPoint) {
  // Stage a: 3 of 4 exits advanced, 1 fell out; stage b: 1 of 2.
  const std::vector<NodeValue> nodes =
      Evaluate(Config("      - {id: root, ratio: [conv_b, fallout_a]}\n"
                      "      - {id: conv_b, kpi: conversion, stage: b}\n"
                      "      - {id: fallout_a, kpi: fallout_ratio, stage: a}\n"));
  // root 0.5 / 0.25 = 2; fallout_a improves to 0.24: 0.5 / 0.24 - 2 = 0.083333...
  EXPECT_DOUBLE_EQ(*Node(nodes, "root").value, 2);
  EXPECT_NEAR(*Node(nodes, "fallout_a").sensitivity, 0.5 / 0.24 - 2, 1e-12);
  // conv_b gains a point: 0.51 / 0.25 - 2 = 0.04.
  EXPECT_NEAR(*Node(nodes, "conv_b").sensitivity, 0.04, 1e-12);
  EXPECT_TRUE(IsRatio("win_ratio"));
  EXPECT_TRUE(IsRatio("sla_attainment"));
  EXPECT_FALSE(IsRatio("avg_deal"));
}

TEST(KpiTreeTest, SumRatioAndLowerIsBetter) {
  const std::vector<NodeValue> nodes = Evaluate(Config(kMixed));
  // rev 3000, done 2, value 3002; cost_each 400 / 2 = 200; per_cost 3002 / 200 = 15.01.
  EXPECT_DOUBLE_EQ(*Node(nodes, "value").value, 3002);
  EXPECT_DOUBLE_EQ(*Node(nodes, "cost_each").value, 200);
  EXPECT_DOUBLE_EQ(*Node(nodes, "per_cost").value, 15.01);
  // rev x 1.01: (3030 + 2) / 200 - 15.01 = 0.15.
  EXPECT_NEAR(*Node(nodes, "rev").sensitivity, 0.15, 1e-9);
  // done x 1.01: (3000 + 2.02) / 200 - 15.01 = 0.0001.
  EXPECT_NEAR(*Node(nodes, "done").sensitivity, 0.0001, 1e-9);
  // cost_to_serve improves downwards, x 0.99: 3002 / 198 - 15.01 = 0.151616...
  EXPECT_NEAR(*Node(nodes, "cost_each").sensitivity, 3002.0 / 198 - 15.01, 1e-9);
  EXPECT_GT(*Node(nodes, "cost_each").sensitivity, 0);
}

TEST(KpiTreeTest, AbsentPropagatesToTheRoot) {
  // No exits in stage b: its conversion, the funnel and revenue are absent;
  // the other leaves keep their values but have no sensitivity.
  const std::vector<NodeValue> nodes = Evaluate(Config(kFunnel), /*stage_b_exits=*/false);
  EXPECT_FALSE(Node(nodes, "conv_b").value.has_value());
  EXPECT_FALSE(Node(nodes, "funnel").value.has_value());
  EXPECT_FALSE(Node(nodes, "revenue").value.has_value());
  EXPECT_DOUBLE_EQ(*Node(nodes, "conv_a").value, 0.75);
  EXPECT_DOUBLE_EQ(*Node(nodes, "leads").value, 10);
  for (const NodeValue& n : nodes) EXPECT_FALSE(n.sensitivity.has_value()) << n.id;
}

TEST(KpiTreeTest, RatioByZeroIsAbsent) {
  // No costs: cost_to_serve 0 / 2 = 0, so per_cost = 3002 / 0 is absent.
  const std::vector<NodeValue> nodes = Evaluate(Config(kMixed), true, /*costs=*/false);
  EXPECT_DOUBLE_EQ(*Node(nodes, "cost_each").value, 0);
  EXPECT_FALSE(Node(nodes, "per_cost").value.has_value());
  EXPECT_FALSE(Node(nodes, "rev").sensitivity.has_value());
}

TEST(KpiTreeTest, NoTreeNoNodes) {
  model::Config config = Config(kFunnel);
  config.processes[0].kpi_tree.clear();
  AggregateShard shard(config);
  MergedReader reader({&shard});
  const KpiTreeEvaluator trees(config);
  EXPECT_FALSE(trees.HasTree(kP));
  EXPECT_TRUE(trees.Evaluate(reader, kP, reader.Resolve(0, T(0))).empty());
  EXPECT_TRUE(trees.Evaluate(reader, 5, reader.Resolve(0, T(0))).empty());
}

TEST(KpiTreeTest, LowerIsBetter) {
  for (const char* kpi : {"cycle_time_p90", "lead_time_p50", "fallout_ratio", "cost_to_serve",
                          "rework_ratio", "fallout", "cost", "sla_breaches"}) {
    EXPECT_TRUE(LowerIsBetter(kpi)) << kpi;
  }
  for (const char* kpi : {"conversion", "started", "win_ratio", "avg_deal", "sla_attainment",
                          "throughput", "revenue", "feedback_score"}) {
    EXPECT_FALSE(LowerIsBetter(kpi)) << kpi;
  }
}

TEST(KpiTreeTest, WithoutDistributionsQuantileLeavesAndTheirParentsAreAbsent) {
  // A dimension-filtered window: counts, and no distributions kept.
  const model::Config config = Config(
      "      - {id: pace, ratio: [done, wait]}\n"
      "      - {id: done, kpi: completed}\n"
      "      - {id: wait, kpi: cycle_time_p50, stage: a}\n");
  aggregate::SeriesWindow counts;
  counts.process.completed = 4;
  counts.stages.resize(2);
  const KpiTreeEvaluator trees(config);
  const std::vector<NodeValue> nodes = trees.Evaluate(kP, {.counts = &counts});
  ASSERT_EQ(nodes.size(), 3u);
  EXPECT_DOUBLE_EQ(*Node(nodes, "done").value, 4);
  EXPECT_FALSE(Node(nodes, "wait").value.has_value());
  EXPECT_FALSE(Node(nodes, "pace").value.has_value());
  EXPECT_FALSE(Node(nodes, "done").sensitivity.has_value());  // no root

  // With the distributions: cycle times of a 60 s, 60 s, 120 s: p50 = 60 s
  // (the 2nd by nearest rank); pace = 4 / 60.
  aggregate::Distribution lead_time;
  std::vector<aggregate::Distribution> cycle_times(2);
  cycle_times[0].Add(60, 2);
  cycle_times[0].Add(120);
  const std::vector<NodeValue> full =
      trees.Evaluate(kP, {.counts = &counts, .lead_time = &lead_time, .cycle_times = &cycle_times});
  EXPECT_NEAR(*Node(full, "wait").value, 60, 0.6);
  EXPECT_NEAR(*Node(full, "pace").value, 4.0 / 60, 4.0 / 60 * 0.01);
}

}  // namespace
}  // namespace kpid::kpitree
