#include "tools/kpictl/report.h"

#include "gtest/gtest.h"

namespace kpid::kpictl {
namespace {

TEST(CompareTest, GrowthBeyondThresholdIsFlagged) {
  const KpiDelta d = Compare(12, 10, 0.1);
  EXPECT_EQ(d.current(), 12);
  EXPECT_EQ(d.previous(), 10);
  EXPECT_EQ(d.delta(), 2);                    // 12 - 10
  EXPECT_DOUBLE_EQ(d.relative_delta(), 0.2);  // 2 / 10
  EXPECT_TRUE(d.flagged());
}

TEST(CompareTest, SmallMovesAreNotFlagged) {
  const KpiDelta d = Compare(10.5, 10, 0.1);
  EXPECT_EQ(d.delta(), 0.5);
  EXPECT_DOUBLE_EQ(d.relative_delta(), 0.05);  // 0.5 / 10
  EXPECT_FALSE(d.flagged());
  // Exactly the threshold: -1 / 10 = -10%, not beyond it.
  EXPECT_FALSE(Compare(9, 10, 0.1).flagged());
}

TEST(CompareTest, FallingRatio) {
  // SLA attainment 80% -> 60%: -20 pp, -25% relative.
  const KpiDelta d = Compare(0.6, 0.8, 0.1);
  EXPECT_DOUBLE_EQ(d.delta(), 0.6 - 0.8);
  EXPECT_DOUBLE_EQ(d.relative_delta(), (0.6 - 0.8) / 0.8);
  EXPECT_TRUE(d.flagged());
}

TEST(CompareTest, NegativeBaselineIsMeasuredAgainstItsMagnitude) {
  // -10 -> -5 is up by 5, i.e. +50% of |-10|.
  const KpiDelta d = Compare(-5, -10, 0.1);
  EXPECT_EQ(d.delta(), 5);
  EXPECT_DOUBLE_EQ(d.relative_delta(), 0.5);
}

TEST(CompareTest, ZeroBaselineHasNoRelativeDelta) {
  const KpiDelta up = Compare(5, 0, 0.1);
  EXPECT_EQ(up.delta(), 5);
  EXPECT_FALSE(up.has_relative_delta());
  EXPECT_TRUE(up.flagged());  // off zero

  const KpiDelta flat = Compare(0, 0, 0.1);
  EXPECT_EQ(flat.delta(), 0);
  EXPECT_FALSE(flat.has_relative_delta());
  EXPECT_FALSE(flat.flagged());
}

TEST(CompareTest, AbsentValuesGiveNoDelta) {
  const KpiDelta gone = Compare(absl::nullopt, 0.5, 0.1);
  EXPECT_FALSE(gone.has_current());
  EXPECT_EQ(gone.previous(), 0.5);
  EXPECT_FALSE(gone.has_delta());
  EXPECT_FALSE(gone.has_relative_delta());
  EXPECT_FALSE(gone.flagged());
  const KpiDelta appeared = Compare(0.5, absl::nullopt, 0.1);
  EXPECT_EQ(appeared.current(), 0.5);
  EXPECT_FALSE(appeared.has_delta());
  EXPECT_FALSE(appeared.flagged());
}

v1::Snapshot Week(double revenue, uint64_t completed, uint64_t fallout, uint64_t exited,
                  uint64_t sla_met, int64_t over_sla) {
  v1::Snapshot s;
  s.mutable_as_of()->set_seconds(1773619200);
  v1::ProcessSnapshot* p = s.add_processes();
  p->set_process("sales");
  v1::StageBacklog* lead_backlog = p->add_backlog();
  lead_backlog->set_stage("lead");
  lead_backlog->mutable_sla()->set_seconds(3600);
  lead_backlog->set_backlog_over_sla(over_sla);
  p->add_backlog()->set_stage("demo");
  v1::ProcessWindow* w = p->add_windows();
  w->mutable_coverage()->mutable_window()->set_seconds(7 * 86400);
  w->set_revenue(revenue);
  w->set_completed(completed);
  w->set_fallout(fallout);
  if (completed + fallout > 0) {
    w->set_win_ratio(static_cast<double>(completed) / static_cast<double>(completed + fallout));
  }
  if (completed > 0) w->set_avg_deal(revenue / static_cast<double>(completed));
  v1::StageWindow* lead = w->add_stages();
  lead->set_stage("lead");
  lead->set_exited(exited);
  lead->set_sla_met(sla_met);
  if (exited > 0) lead->set_sla_attainment(static_cast<double>(sla_met) / exited);
  w->add_stages()->set_stage("demo");
  return s;
}

const KpiDelta& Find(const ProcessReport& p, const std::string& stage, const std::string& kpi) {
  for (const KpiDelta& d : p.kpis()) {
    if (d.stage() == stage && d.kpi() == kpi) return d;
  }
  ADD_FAILURE() << "no " << stage << " " << kpi;
  return KpiDelta::default_instance();
}

TEST(WeeklyReportTest, DeltasPerKpiAndBreachedStages) {
  // Last 7d: revenue 4000 from 2 completed, 1 fallout; lead 4 exits, 3 in SLA, 1 over SLA now.
  // 7d before: revenue 5000 from 2 completed, 0 fallout; lead no exits.
  const v1::Snapshot current = Week(4000, 2, 1, 4, 3, 1);
  const v1::Snapshot previous = Week(5000, 2, 0, 0, 0, 0);
  v1::ListBreachingCasesResponse cases;
  cases.add_cases()->set_case_id("L-1");
  cases.set_total(7);
  WeeklyInputs in;
  in.current = &current;
  in.previous = &previous;
  in.threshold = 0.1;
  in.breaching = &cases;
  absl::StatusOr<WeeklyReport> r = BuildWeeklyReport(in);
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->processes_size(), 1);
  const ProcessReport& p = r->processes(0);
  // 5 process KPIs + ... : 11 process rows, 9 per stage x 2 stages.
  EXPECT_EQ(p.kpis_size(), 11 + 2 * 9);

  const KpiDelta& revenue = Find(p, "", "revenue");
  EXPECT_EQ(revenue.delta(), -1000);                 // 4000 - 5000
  EXPECT_DOUBLE_EQ(revenue.relative_delta(), -0.2);  // -1000 / 5000
  EXPECT_TRUE(revenue.flagged());
  const KpiDelta& avg_deal = Find(p, "", "avg_deal");  // 2000 vs 2500
  EXPECT_DOUBLE_EQ(avg_deal.relative_delta(), -0.2);
  const KpiDelta& win = Find(p, "", "win_ratio");  // 2/3 vs 2/2
  EXPECT_DOUBLE_EQ(win.delta(), 2.0 / 3 - 1);
  EXPECT_TRUE(win.flagged());
  const KpiDelta& completed = Find(p, "", "completed");  // 2 vs 2
  EXPECT_EQ(completed.delta(), 0);
  EXPECT_EQ(completed.relative_delta(), 0);
  EXPECT_FALSE(completed.flagged());
  // Lead: no exits the week before, so no attainment then: no delta.
  const KpiDelta& attainment = Find(p, "lead", "sla_attainment");
  EXPECT_EQ(attainment.current(), 0.75);  // 3 / 4
  EXPECT_FALSE(attainment.has_previous());
  EXPECT_FALSE(attainment.has_delta());
  const KpiDelta& exited = Find(p, "lead", "exited");  // 4 vs 0: off zero
  EXPECT_TRUE(exited.flagged());
  EXPECT_FALSE(exited.has_relative_delta());

  // Lead breached (1 exit over SLA, 1 case over it now); demo did not.
  ASSERT_EQ(p.sla_breaches_size(), 1);
  EXPECT_EQ(p.sla_breaches(0).stage(), "lead");
  EXPECT_EQ(p.sla_breaches(0).missed(), 1u);  // 4 - 3
  EXPECT_EQ(p.sla_breaches(0).backlog_over_sla(), 1);
  EXPECT_EQ(p.sla_breaches(0).sla_attainment(), 0.75);
  EXPECT_EQ(p.sla_breaches(0).sla().seconds(), 3600);

  ASSERT_EQ(r->top_breaching_cases_size(), 1);
  EXPECT_EQ(r->breaching_cases_total(), 7u);
  EXPECT_EQ(r->as_of().seconds(), 1773619200);
}

TEST(WeeklyReportTest, BreachingCasesUnavailableIsReported) {
  const v1::Snapshot s = Week(0, 0, 0, 0, 0, 0);
  WeeklyInputs in;
  in.current = &s;
  in.previous = &s;
  in.breaching_unavailable = "not in this build";
  absl::StatusOr<WeeklyReport> r = BuildWeeklyReport(in);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->breaching_cases_unavailable(), "not in this build");
  EXPECT_EQ(r->processes(0).sla_breaches_size(), 0);
}

TEST(WeeklyReportTest, SnapshotsThatDoNotPairUpAreRefused) {
  const v1::Snapshot a = Week(0, 0, 0, 0, 0, 0);
  v1::Snapshot b = a;
  b.mutable_processes(0)->set_process("support");
  WeeklyInputs in;
  in.current = &a;
  in.previous = &b;
  EXPECT_EQ(BuildWeeklyReport(in).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace kpid::kpictl
