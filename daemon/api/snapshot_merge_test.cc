// The global snapshot's merge with expectations worked out by hand: two
// replicas' local answers (written as SnapshotReader writes them, with
// merge_inputs) add up to the totals below; ratios, quantiles and the KPI
// tree come from the merged values, never from averaging the replicas'.
#include "daemon/api/snapshot_merge.h"

#include <string>
#include <vector>

#include "daemon/api/proto_time.h"
#include "daemon/api/snapshot_window.h"
#include "daemon/kpitree/kpi_tree.h"
#include "daemon/model/config.h"
#include "gtest/gtest.h"

namespace kpid::api {
namespace {

constexpr char kYaml[] = R"(
kafka: {brokers: "localhost:9092", topic: events}
windows: [1h, 7d]
processes:
  - id: sales
    stages:
      - {id: lead, sla: 1h}
      - {id: won, sla: 1d}
    kpi_tree:
      - {id: revenue, product: [leads, conv, deal]}
      - {id: leads, kpi: started}
      - {id: conv, kpi: conversion, stage: lead}
      - {id: deal, kpi: avg_deal}
)";

class MergeTest : public ::testing::Test {
 protected:
  MergeTest() : config_(*model::ParseConfig(kYaml, "t.yaml")), trees_(config_) {
    request_.set_process("sales");
    ToProto(absl::Hours(1), request_.add_windows());
  }

  // A replica's local answer for the 1h window, as SnapshotReader writes it.
  v1::Snapshot Local(const std::string& replica, const WindowValues& values, int64_t lead_backlog,
                     std::vector<int32_t> partitions) const {
    v1::Snapshot s;
    ToProto(kAsOf, s.mutable_as_of());
    ToProto(kAsOf - absl::Minutes(replica == "a" ? 1 : 2), s.mutable_watermark());
    v1::ReplicaStatus* r = s.add_replicas();
    r->set_replica(replica);
    for (int32_t p : partitions) r->add_partitions(p);
    v1::ProcessSnapshot* p = s.add_processes();
    p->set_process("sales");
    p->set_open_cases(lead_backlog);
    for (const model::StageConfig& stage : config_.processes[0].stages) {
      v1::StageBacklog* b = p->add_backlog();
      b->set_stage(stage.id);
      b->set_backlog(stage.id == "lead" ? lead_backlog : 0);
      b->set_backlog_over_sla(stage.id == "lead" ? 1 : 0);
    }
    v1::ProcessWindow* w = p->add_windows();
    ToProto(absl::Hours(1), w->mutable_coverage()->mutable_window());
    WriteWindowValues(config_.processes[0], values, {.quantiles = true, .merge_inputs = true}, w);
    return s;
  }

  v1::Snapshot Merge(const std::vector<ReplicaAnswer>& answers) const {
    return MergeSnapshots(config_, request_, answers,
                          [this](const model::Config&, int process,
                                 const kpitree::KpiTreeEvaluator::WindowValues& w) {
                            return trees_.Evaluate(process, w);
                          });
  }

  // Replica a: 10 started, 3 completed (1000 + 1000 + 1000), 1 fallout;
  // cost 300 (one COST); scores 9 and 7; 14 stage entries. Lead stage: 10
  // entered, 4 advanced, 1 fell out, 4 within SLA, 1 rework; its 5 exits
  // took 10 min each. Lead times 1h, 2h, 3h.
  static WindowValues ReplicaA() {
    WindowValues v;
    v.counts.process = {.started = 10,
                        .completed = 3,
                        .fallout = 1,
                        .revenue = 3000,
                        .cost = 300,
                        .score_sum = 16,
                        .score_count = 2,
                        .cost_count = 1,
                        .stage_entries = 14};
    v.counts.stages.resize(2);
    v.counts.stages[0] = {.entered = 10, .advanced = 4, .fallout = 1, .sla_met = 4, .rework = 1};
    for (double s : {3600.0, 7200.0, 10800.0}) v.lead_time.Add(s);
    v.cycle_times.resize(2);
    v.cycle_times[0].Add(600, 5);
    return v;
  }
  // Replica b: 6 started, 1 completed (5000), 3 fallout; cost 100; score
  // 3. Lead stage: 6 entered, 2 advanced, 2 fell out, 1 within SLA; its 4
  // exits took 100 min each. Lead time 10h.
  static WindowValues ReplicaB() {
    WindowValues v;
    v.counts.process = {.started = 6,
                        .completed = 1,
                        .fallout = 3,
                        .revenue = 5000,
                        .cost = 100,
                        .score_sum = 3,
                        .score_count = 1,
                        .cost_count = 1,
                        .stage_entries = 8};
    v.counts.stages.resize(2);
    v.counts.stages[0] = {.entered = 6, .advanced = 2, .fallout = 2, .sla_met = 1};
    v.lead_time.Add(36000);
    v.cycle_times.resize(2);
    v.cycle_times[0].Add(6000, 4);
    return v;
  }

  static double Secs(const google::protobuf::Duration& d) {
    return absl::ToDoubleSeconds(FromProto(d));
  }

  const absl::Time kAsOf = absl::FromUnixSeconds(1'800'000'000);
  model::Config config_;
  kpitree::KpiTreeEvaluator trees_;
  v1::GetSnapshotRequest request_;
};

TEST_F(MergeTest, CountsAddRatiosQuantilesAndTreeFromMergedValues) {
  const v1::Snapshot merged = Merge({{"", Local("a", ReplicaA(), 5, {0, 2})},
                                     {"10.0.0.2:50051", Local("b", ReplicaB(), 2, {1})}});
  EXPECT_FALSE(merged.partial());
  EXPECT_EQ(FromProto(merged.as_of()), kAsOf);
  EXPECT_EQ(FromProto(merged.watermark()), kAsOf - absl::Minutes(1));  // the later one (a's)
  ASSERT_EQ(merged.replicas_size(), 2);
  EXPECT_EQ(merged.replicas(0).replica(), "a");
  EXPECT_EQ(merged.replicas(0).address(), "");
  EXPECT_EQ(merged.replicas(0).partitions_size(), 2);
  EXPECT_EQ(merged.replicas(1).replica(), "b");
  EXPECT_EQ(merged.replicas(1).address(), "10.0.0.2:50051");
  EXPECT_EQ(merged.replicas(1).error(), "");

  ASSERT_EQ(merged.processes_size(), 1);
  const v1::ProcessSnapshot& p = merged.processes(0);
  EXPECT_EQ(p.open_cases(), 7);                   // 5 + 2
  EXPECT_EQ(p.backlog(0).backlog(), 7);           // 5 + 2
  EXPECT_EQ(p.backlog(0).backlog_over_sla(), 2);  // 1 + 1
  ASSERT_EQ(p.windows_size(), 1);
  const v1::ProcessWindow& w = p.windows(0);
  EXPECT_FALSE(w.has_merge_inputs());              // the client did not ask
  EXPECT_EQ(w.started(), 16u);                     // 10 + 6
  EXPECT_EQ(w.completed(), 4u);                    // 3 + 1
  EXPECT_EQ(w.fallout(), 4u);                      // 1 + 3
  EXPECT_EQ(w.revenue(), 8000);                    // 3000 + 5000
  EXPECT_EQ(w.cost(), 400);                        // 300 + 100
  EXPECT_EQ(w.feedback_count(), 3u);               // 2 + 1
  EXPECT_DOUBLE_EQ(w.win_ratio(), 0.5);            // 4 / (4 + 4)
  EXPECT_DOUBLE_EQ(w.avg_deal(), 2000);            // 8000 / 4, not (1000 + 5000) / 2
  EXPECT_DOUBLE_EQ(w.cost_to_serve(), 100);        // 400 / 4
  EXPECT_DOUBLE_EQ(w.feedback_score(), 19.0 / 3);  // (9 + 7 + 3) / 3, not (8 + 3) / 2

  const v1::StageWindow& lead = w.stages(0);
  EXPECT_EQ(lead.entered(), 16u);  // 10 + 6
  EXPECT_EQ(lead.advanced(), 6u);  // 4 + 2
  EXPECT_EQ(lead.fallout(), 3u);   // 1 + 2
  EXPECT_EQ(lead.exited(), 9u);    // 6 + 3
  EXPECT_EQ(lead.sla_met(), 5u);   // 4 + 1
  EXPECT_EQ(lead.rework(), 1u);
  EXPECT_DOUBLE_EQ(lead.conversion(), 6.0 / 9);
  EXPECT_DOUBLE_EQ(lead.fallout_ratio(), 3.0 / 9);
  EXPECT_DOUBLE_EQ(lead.sla_attainment(), 5.0 / 9);
  EXPECT_DOUBLE_EQ(lead.rework_ratio(), 1.0 / 16);
  // Won: no exits anywhere: its ratios are absent, not 0.
  EXPECT_FALSE(w.stages(1).has_conversion());
  EXPECT_FALSE(w.stages(1).has_rework_ratio());
  EXPECT_FALSE(w.stages(1).cycle_time().has_p50());

  // Quantiles of the merged sketch (nearest rank, within 1%): lead times
  // 1h, 2h, 3h, 10h: p50 = the 2nd = 2h, p90 = p99 = the 4th = 10h.
  EXPECT_EQ(w.lead_time().count(), 4u);
  EXPECT_NEAR(Secs(w.lead_time().p50()), 7200, 72);
  EXPECT_NEAR(Secs(w.lead_time().p90()), 36000, 360);
  EXPECT_NEAR(Secs(w.lead_time().p99()), 36000, 360);
  // Lead cycle times 5 x 10 min + 4 x 100 min: p50 = the 5th = 10 min
  // (a's own p50 is 10 min, b's 100 min), p90 = the 9th = 100 min.
  EXPECT_EQ(lead.cycle_time().count(), 9u);
  EXPECT_NEAR(Secs(lead.cycle_time().p50()), 600, 6);
  EXPECT_NEAR(Secs(lead.cycle_time().p90()), 6000, 60);

  // KPI tree over merged values: leads 16 x conv 6/9 x deal 2000 =
  // 21333.33. Sensitivity of conv (a ratio: +1 point) = 16 x 0.01 x 2000 =
  // 320; of leads (+1%) = 21333.33 x 0.01 = 213.33.
  ASSERT_EQ(w.kpi_tree_size(), 4);
  EXPECT_EQ(w.kpi_tree(0).node(), "revenue");
  EXPECT_NEAR(w.kpi_tree(0).value(), 16 * (6.0 / 9) * 2000, 1e-6);
  EXPECT_NEAR(w.kpi_tree(2).sensitivity(), 320, 1e-6);
  EXPECT_NEAR(w.kpi_tree(1).sensitivity(), 16 * (6.0 / 9) * 2000 * 0.01, 1e-6);
}

TEST_F(MergeTest, FilteredMergeHasTreeFromCountsAndNoQuantiles) {
  // A dimension filter: the replicas read no distributions (none are kept
  // per dimension value), only the matching series' counts.
  (*request_.mutable_dimensions())["region"] = "emea";
  auto counts_only = [](WindowValues v) {
    v.lead_time = aggregate::Distribution();
    for (aggregate::Distribution& d : v.cycle_times) d = aggregate::Distribution();
    return v;
  };
  const v1::Snapshot merged = Merge({{"", Local("a", counts_only(ReplicaA()), 5, {0})},
                                     {"b:1", Local("b", counts_only(ReplicaB()), 2, {1})}});
  const v1::ProcessWindow& w = merged.processes(0).windows(0);
  EXPECT_EQ(w.started(), 16u);  // 10 + 6
  EXPECT_FALSE(w.lead_time().has_p50());
  EXPECT_FALSE(w.stages(0).cycle_time().has_p50());
  // The tree needs counts only: leads 16 x conv (4 + 2) / 9 x deal 8000 / 4.
  ASSERT_EQ(w.kpi_tree_size(), 4);
  EXPECT_NEAR(w.kpi_tree(0).value(), 16 * (6.0 / 9) * 2000, 1e-6);
  EXPECT_NEAR(w.kpi_tree(2).sensitivity(), 320, 1e-6);
}

TEST_F(MergeTest, FailedPeerMakesThePartialAnswerNameIt) {
  const v1::Snapshot merged =
      Merge({{"", Local("a", ReplicaA(), 5, {0})},
             {"10.0.0.3:50051", absl::DeadlineExceededError("deadline exceeded")}});
  EXPECT_TRUE(merged.partial());
  ASSERT_EQ(merged.replicas_size(), 2);
  EXPECT_EQ(merged.replicas(1).replica(), "10.0.0.3:50051");  // no id: it never answered
  EXPECT_NE(merged.replicas(1).error().find("deadline exceeded"), std::string::npos);
  EXPECT_EQ(merged.processes(0).windows(0).started(), 10u);  // a's alone
}

TEST_F(MergeTest, SameReplicaTwiceCountsOnce) {
  // This replica reached through its own peer address: skipped, not added.
  const v1::Snapshot merged = Merge(
      {{"", Local("a", ReplicaA(), 5, {0})}, {"10.0.0.1:50051", Local("a", ReplicaA(), 5, {0})}});
  EXPECT_FALSE(merged.partial());
  EXPECT_EQ(merged.replicas_size(), 1);
  EXPECT_EQ(merged.processes(0).windows(0).started(), 10u);
}

TEST_F(MergeTest, AnswerOfAnotherConfigIsLeftOut) {
  v1::Snapshot other = Local("c", ReplicaB(), 2, {3});
  other.mutable_processes(0)->set_process("support");
  const v1::Snapshot merged = Merge({{"", Local("a", ReplicaA(), 5, {0})}, {"c:1", other}});
  EXPECT_TRUE(merged.partial());
  EXPECT_NE(merged.replicas(1).error(), "");
  EXPECT_EQ(merged.processes(0).windows(0).started(), 10u);
}

TEST_F(MergeTest, ZeroDenominatorsStayAbsentAfterMerging) {
  // Two replicas with starts only: nothing completed, exited or scored.
  WindowValues only_starts;
  only_starts.counts.process.started = 2;
  only_starts.counts.stages.resize(2);
  only_starts.counts.stages[0].entered = 2;
  only_starts.cycle_times.resize(2);
  const v1::Snapshot merged =
      Merge({{"", Local("a", only_starts, 2, {0})}, {"b:1", Local("b", only_starts, 2, {1})}});
  const v1::ProcessWindow& w = merged.processes(0).windows(0);
  EXPECT_EQ(w.started(), 4u);
  EXPECT_FALSE(w.has_win_ratio());
  EXPECT_FALSE(w.has_avg_deal());
  EXPECT_FALSE(w.has_cost_to_serve());
  EXPECT_FALSE(w.has_feedback_score());
  EXPECT_FALSE(w.stages(0).has_conversion());
  EXPECT_DOUBLE_EQ(w.stages(0).rework_ratio(), 0);  // 0 / 4: a denominator, a value
  EXPECT_EQ(w.lead_time().count(), 0u);
  EXPECT_FALSE(w.lead_time().has_p50());
  ASSERT_EQ(w.kpi_tree_size(), 4);
  EXPECT_FALSE(w.kpi_tree(0).has_value());  // conv and deal absent: the root too
  EXPECT_DOUBLE_EQ(w.kpi_tree(1).value(), 4);
}

}  // namespace
}  // namespace kpid::api
