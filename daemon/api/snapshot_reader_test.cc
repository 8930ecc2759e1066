#include "daemon/api/snapshot_reader.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "daemon/aggregate/aggregate_shard.h"
#include "daemon/api/proto_time.h"
#include "daemon/api/snapshot_window.h"
#include "daemon/ingest/event_view_testing.h"
#include "gmock/gmock.h"
#include "google/protobuf/map.h"
#include "gtest/gtest.h"

namespace kpid::api {
namespace {

using cases::ExitOutcome;
using ::testing::HasSubstr;

// A day boundary (1008028800 = 11667 x 86400), so every bucket width of the
// layout (60 s, 1440 s) divides it and spans are easy to work out.
constexpr int64_t kT0 = 1008028800;
const absl::Time kNow = absl::FromUnixSeconds(kT0 + 2 * 86400);  // T0 + 2d
absl::Time Ago(absl::Duration d) { return kNow - d; }

constexpr char kYaml[] = R"(
windows: [1h, 1d]
retention: 3d
dimensions: {names: [region], max_series_per_process: 10}
processes:
  - id: sales
    stages:
      - {id: lead, sla: 1h}
      - {id: demo, sla: 4h}
  - id: support
    stages:
      - {id: triage, sla: 30m}
)";
constexpr int kSales = 0, kLead = 0, kDemo = 1;

google::protobuf::Duration D(absl::Duration d) {
  google::protobuf::Duration p;
  ToProto(d, &p);
  return p;
}

cases::DimsId Region(cases::DimensionTable& table, const std::string& region) {
  return table.Resolve(kSales, ingest::MakeAttributes({{"region", region}}));
}

// Two workers. Their tables intern the regions in opposite orders, so the
// same DimsId means emea in one and amer in the other: a filter must group by
// values, not ids.
class SnapshotReaderTest : public ::testing::Test {
 protected:
  SnapshotReaderTest()
      : config_(*model::ParseConfig(kYaml, "t.yaml")),
        shard_a_(config_),
        shard_b_(config_),
        table_a_(config_),
        table_b_(config_),
        clock_(kNow) {
    const cases::DimsId a_emea = Region(table_a_, "emea");
    const cases::DimsId a_amer = Region(table_a_, "amer");
    const cases::DimsId b_amer = Region(table_b_, "amer");
    const cases::DimsId b_emea = Region(table_b_, "emea");
    EXPECT_EQ(a_emea, b_amer);

    // Worker A, emea: a case starts at -30m in lead, moves to demo at -10m
    // (20m in lead, within 1h), completes at -5m (5m in demo) for 1000 after
    // a 25m lead time; lead SLA breach of another case at -15m; 2 open in
    // lead, 1 of them over SLA.
    shard_a_.CaseStarted(kSales, a_emea, Ago(absl::Minutes(30)));
    shard_a_.StageEntered(kSales, kLead, a_emea, Ago(absl::Minutes(30)), false);
    shard_a_.StageExited(kSales, kLead, a_emea, Ago(absl::Minutes(10)), ExitOutcome::kAdvanced,
                         absl::Minutes(20), true);
    shard_a_.StageEntered(kSales, kDemo, a_emea, Ago(absl::Minutes(10)), false);
    shard_a_.StageExited(kSales, kDemo, a_emea, Ago(absl::Minutes(5)), ExitOutcome::kAdvanced,
                         absl::Minutes(5), true);
    shard_a_.CaseCompleted(kSales, a_emea, Ago(absl::Minutes(5)), 1000, absl::Minutes(25));
    shard_a_.SlaBreached(kSales, kLead, a_emea, Ago(absl::Minutes(15)));
    shard_a_.BacklogChanged(kSales, kLead, a_emea, +2, +1);
    // Worker A, amer: falls out of lead at -20m after 2h (SLA missed).
    shard_a_.StageExited(kSales, kLead, a_amer, Ago(absl::Minutes(20)), ExitOutcome::kFallout,
                         absl::Hours(2), false);
    shard_a_.CaseFallout(kSales, a_amer, Ago(absl::Minutes(20)));
    // Worker B, emea: advances out of lead at -50m after 30m, completes at
    // once for 3000 after a 1h lead time.
    shard_b_.StageExited(kSales, kLead, b_emea, Ago(absl::Minutes(50)), ExitOutcome::kAdvanced,
                         absl::Minutes(30), true);
    shard_b_.CaseCompleted(kSales, b_emea, Ago(absl::Minutes(50)), 3000, absl::Hours(1));
    // Worker B, amer: cost 200 and a feedback score of 8 at -40m; one open in demo.
    shard_b_.Cost(kSales, b_amer, Ago(absl::Minutes(40)), 200);
    shard_b_.Feedback(kSales, b_amer, Ago(absl::Minutes(40)), 8);
    shard_b_.BacklogChanged(kSales, kDemo, b_amer, +1, 0);
    // A day earlier, worker B, emea: falls out of lead at -1d-10m after 50m.
    shard_b_.StageExited(kSales, kLead, b_emea, Ago(absl::Hours(24) + absl::Minutes(10)),
                         ExitOutcome::kFallout, absl::Minutes(50), true);
    shard_b_.CaseFallout(kSales, b_emea, Ago(absl::Hours(24) + absl::Minutes(10)));
  }

  SnapshotReader::Options Options() {
    SnapshotReader::Options options;
    options.config = &config_;
    options.shards = {&shard_a_, &shard_b_};
    options.dimensions = {&table_a_, &table_b_};
    options.clock = &clock_;
    options.watermark = [] { return absl::optional<absl::Time>(kNow - absl::Minutes(5)); };
    return options;
  }

  v1::Snapshot Read(const v1::GetSnapshotRequest& request) {
    SnapshotReader reader(Options());
    absl::StatusOr<v1::Snapshot> s = reader.Read(request);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *s : v1::Snapshot();
  }

  static v1::GetSnapshotRequest Request(absl::Duration window,
                                        absl::Duration offset = absl::ZeroDuration()) {
    v1::GetSnapshotRequest r;
    r.set_process("sales");
    *r.add_windows() = D(window);
    *r.mutable_offset() = D(offset);
    return r;
  }

  model::Config config_;
  aggregate::AggregateShard shard_a_;
  aggregate::AggregateShard shard_b_;
  cases::DimensionTable table_a_;
  cases::DimensionTable table_b_;
  cases::ManualClock clock_;
};

// Within 1% (the distribution's relative accuracy) of `expected`.
void ExpectAbout(const google::protobuf::Duration& got, absl::Duration expected) {
  EXPECT_NEAR(absl::ToDoubleSeconds(FromProto(got)), absl::ToDoubleSeconds(expected),
              absl::ToDoubleSeconds(expected) * 0.01);
}

TEST_F(SnapshotReaderTest, LastHourAllDimensions) {
  const v1::Snapshot s = Read(Request(absl::Hours(1)));
  EXPECT_EQ(FromProto(s.as_of()), kNow);
  EXPECT_EQ(FromProto(s.watermark()), kNow - absl::Minutes(5));
  ASSERT_EQ(s.processes_size(), 1);
  const v1::ProcessSnapshot& p = s.processes(0);
  EXPECT_EQ(p.process(), "sales");
  ASSERT_EQ(p.windows_size(), 1);
  const v1::ProcessWindow& w = p.windows(0);
  // 1h reads 60 s buckets [E - 60, E], E the bucket of now: [now - 1h, now + 1m).
  EXPECT_EQ(FromProto(w.coverage().window()), absl::Hours(1));
  EXPECT_EQ(FromProto(w.coverage().end()), kNow);
  EXPECT_EQ(FromProto(w.coverage().from()), kNow - absl::Hours(1));
  EXPECT_EQ(FromProto(w.coverage().to()), kNow + absl::Minutes(1));

  // Started: A's case (1). Completed: A 1000 + B 3000. Fallout: A amer.
  EXPECT_EQ(w.started(), 1u);
  EXPECT_EQ(w.completed(), 2u);
  EXPECT_EQ(w.fallout(), 1u);
  EXPECT_EQ(w.revenue(), 4000);
  EXPECT_EQ(w.cost(), 200);
  EXPECT_EQ(w.feedback_count(), 1u);
  EXPECT_DOUBLE_EQ(w.win_ratio(), 2.0 / 3);  // 2 / (2 + 1)
  EXPECT_EQ(w.avg_deal(), 2000);             // 4000 / 2
  EXPECT_EQ(w.cost_to_serve(), 100);         // 200 / 2
  EXPECT_EQ(w.feedback_score(), 8);
  // Lead times 25m and 1h: nearest rank p50 = 1st = 25m, p90/p99 = 2nd = 1h.
  EXPECT_EQ(w.lead_time().count(), 2u);
  ExpectAbout(w.lead_time().p50(), absl::Minutes(25));
  ExpectAbout(w.lead_time().p99(), absl::Hours(1));

  ASSERT_EQ(w.stages_size(), 2);
  const v1::StageWindow& lead = w.stages(kLead);
  EXPECT_EQ(lead.stage(), "lead");
  // Exits: A emea advanced (20m, met), A amer fallout (2h, missed), B emea
  // advanced (30m, met): 3 exits, 2 advanced, 1 fallout, 2 within SLA.
  EXPECT_EQ(lead.entered(), 1u);
  EXPECT_EQ(lead.exited(), 3u);
  EXPECT_EQ(lead.advanced(), 2u);
  EXPECT_EQ(lead.fallout(), 1u);
  EXPECT_EQ(lead.sla_met(), 2u);
  EXPECT_EQ(lead.sla_breaches(), 1u);
  EXPECT_DOUBLE_EQ(lead.conversion(), 2.0 / 3);
  EXPECT_DOUBLE_EQ(lead.fallout_ratio(), 1.0 / 3);
  EXPECT_DOUBLE_EQ(lead.sla_attainment(), 2.0 / 3);
  ASSERT_TRUE(lead.has_rework_ratio());  // 0 reworks / 1 entered: present, 0
  EXPECT_EQ(lead.rework_ratio(), 0);
  // Cycle times 20m, 30m, 2h: p50 = 2nd = 30m, p99 = 3rd = 2h.
  EXPECT_EQ(lead.cycle_time().count(), 3u);
  ExpectAbout(lead.cycle_time().p50(), absl::Minutes(30));
  ExpectAbout(lead.cycle_time().p99(), absl::Hours(2));

  // Backlog now: A emea 2 in lead (1 over SLA), B amer 1 in demo.
  EXPECT_EQ(p.open_cases(), 3);
  ASSERT_EQ(p.backlog_size(), 2);
  EXPECT_EQ(p.backlog(kLead).backlog(), 2);
  EXPECT_EQ(p.backlog(kLead).backlog_over_sla(), 1);
  EXPECT_EQ(p.backlog(kLead).sla_breaches_total(), 1u);
  EXPECT_EQ(FromProto(p.backlog(kLead).sla()), absl::Hours(1));
  EXPECT_EQ(p.backlog(kDemo).backlog(), 1);
}

TEST_F(SnapshotReaderTest, RatiosWithZeroDenominatorAreAbsent) {
  const v1::Snapshot s = Read(Request(absl::Hours(1)));
  const v1::StageWindow& demo = s.processes(0).windows(0).stages(kDemo);
  EXPECT_EQ(demo.exited(), 1u);
  EXPECT_EQ(demo.conversion(), 1);
  // support has no data at all: every ratio and quantile unset.
  v1::GetSnapshotRequest r = Request(absl::Hours(1));
  r.set_process("support");
  const v1::ProcessWindow w = Read(r).processes(0).windows(0);
  EXPECT_FALSE(w.has_win_ratio());
  EXPECT_FALSE(w.has_avg_deal());
  EXPECT_FALSE(w.has_cost_to_serve());
  EXPECT_FALSE(w.has_feedback_score());
  EXPECT_EQ(w.lead_time().count(), 0u);
  EXPECT_FALSE(w.lead_time().has_p50());
  const v1::StageWindow& triage = w.stages(0);
  EXPECT_FALSE(triage.has_conversion());
  EXPECT_FALSE(triage.has_fallout_ratio());
  EXPECT_FALSE(triage.has_sla_attainment());
  EXPECT_FALSE(triage.has_rework_ratio());
  EXPECT_FALSE(triage.cycle_time().has_p90());
}

TEST_F(SnapshotReaderTest, OffsetReadsTheDayBefore) {
  // 1d at offset 1d: end = now - 1d, on the 1440 s history level: buckets
  // [E - 60, E] = [now - 2d, now - 1d + 24m). Holds only B's fallout at
  // -1d-10m (50m in lead, within SLA).
  const v1::ProcessWindow w =
      Read(Request(absl::Hours(24), absl::Hours(24))).processes(0).windows(0);
  EXPECT_EQ(FromProto(w.coverage().end()), kNow - absl::Hours(24));
  EXPECT_EQ(FromProto(w.coverage().from()), kNow - absl::Hours(48));
  EXPECT_EQ(FromProto(w.coverage().to()), kNow - absl::Hours(24) + absl::Minutes(24));
  EXPECT_EQ(w.completed(), 0u);
  EXPECT_EQ(w.fallout(), 1u);
  ASSERT_TRUE(w.has_win_ratio());  // 0 / (0 + 1): present and 0
  EXPECT_EQ(w.win_ratio(), 0);
  EXPECT_FALSE(w.has_avg_deal());  // revenue / 0 completed
  const v1::StageWindow& lead = w.stages(kLead);
  EXPECT_EQ(lead.exited(), 1u);
  EXPECT_EQ(lead.conversion(), 0);
  EXPECT_EQ(lead.sla_attainment(), 1);
  ExpectAbout(lead.cycle_time().p50(), absl::Minutes(50));
}

TEST_F(SnapshotReaderTest, ShortWindowFarBackComesFromTheHistoryLevel) {
  // 1h ending now - 1d: the 60 s level keeps only the last 61 minutes, so
  // the 1440 s level is read: first = floor((now - 1d - 1h) / 1440 s), i.e.
  // T0 + 23h = 57.5 buckets into the day -> bucket 57 = T0 + 22h48m; last =
  // the bucket of T0 + 1d -> to T0 + 1d + 24m. B's fallout at T0 + 23h50m is in.
  const v1::ProcessWindow w =
      Read(Request(absl::Hours(1), absl::Hours(24))).processes(0).windows(0);
  EXPECT_EQ(FromProto(w.coverage().from()),
            absl::FromUnixSeconds(kT0) + absl::Minutes(22 * 60 + 48));
  EXPECT_EQ(FromProto(w.coverage().to()), absl::FromUnixSeconds(kT0 + 86400) + absl::Minutes(24));
  EXPECT_EQ(w.fallout(), 1u);
}

TEST_F(SnapshotReaderTest, DimensionFilterGroupsWorkersByValue) {
  v1::GetSnapshotRequest r = Request(absl::Hours(1));
  (*r.mutable_dimensions())["region"] = "emea";
  const v1::Snapshot s = Read(r);
  EXPECT_EQ(s.dimensions().at("region"), "emea");
  const v1::ProcessSnapshot& p = s.processes(0);
  const v1::ProcessWindow& w = p.windows(0);
  // emea: A's case (lead 20m, demo, completed 1000) and B's (lead 30m, 3000).
  EXPECT_EQ(w.completed(), 2u);
  EXPECT_EQ(w.revenue(), 4000);
  EXPECT_EQ(w.fallout(), 0u);
  ASSERT_TRUE(w.has_cost_to_serve());  // 0 cost / 2 completed
  EXPECT_EQ(w.cost_to_serve(), 0);
  EXPECT_FALSE(w.has_feedback_score());
  EXPECT_EQ(w.stages(kLead).exited(), 2u);
  EXPECT_EQ(w.stages(kLead).conversion(), 1);
  // No per-dimension distributions: quantiles left out rather than wrong.
  EXPECT_FALSE(w.has_lead_time());
  EXPECT_FALSE(w.stages(kLead).has_cycle_time());
  EXPECT_EQ(p.open_cases(), 2);
  EXPECT_EQ(p.backlog(kLead).backlog(), 2);
  EXPECT_EQ(p.backlog(kDemo).backlog(), 0);

  (*r.mutable_dimensions())["region"] = "amer";
  const v1::ProcessWindow amer = Read(r).processes(0).windows(0);
  // amer: A's fallout (2h, missed), B's cost 200 and score 8.
  EXPECT_EQ(amer.fallout(), 1u);
  EXPECT_EQ(amer.cost(), 200);
  EXPECT_FALSE(amer.has_cost_to_serve());  // 200 / 0 completed
  EXPECT_EQ(amer.feedback_score(), 8);
  EXPECT_EQ(amer.stages(kLead).sla_attainment(), 0);

  (*r.mutable_dimensions())["region"] = "apac";  // no such series: all zero
  const v1::ProcessWindow none = Read(r).processes(0).windows(0);
  EXPECT_EQ(none.stages(kLead).exited(), 0u);
  EXPECT_FALSE(none.has_win_ratio());
}

TEST_F(SnapshotReaderTest, EmptyRequestReadsEveryProcessAndWindow) {
  const v1::Snapshot s = Read(v1::GetSnapshotRequest());
  ASSERT_EQ(s.processes_size(), 2);
  EXPECT_EQ(s.processes(1).process(), "support");
  ASSERT_EQ(s.processes(0).windows_size(), 2);
  EXPECT_EQ(FromProto(s.processes(0).windows(1).coverage().window()), absl::Hours(24));
  // 1d at now: [now - 1d, now + 24m) holds the same exits as the last hour.
  EXPECT_EQ(s.processes(0).windows(1).stages(kLead).exited(), 3u);
}

// A KPI tree for sales: the closed cases (a count) over the median lead
// time (a quantile, which a filtered window has none of).
constexpr char kSalesTree[] = R"(    kpi_tree:
      - {id: pace, ratio: [closed, lead_time]}
      - {id: closed, sum: [won, lost]}
      - {id: won, kpi: completed}
      - {id: lost, kpi: fallout}
      - {id: lead_time, kpi: lead_time_p50}
)";

TEST_F(SnapshotReaderTest, KpiTreeOfEachWindowFilteredOrNot) {
  const std::string yaml_with_tree = absl::StrReplaceAll(
      kYaml, {{"  - id: support", absl::StrCat(kSalesTree, "  - id: support")}});
  const model::Config with_tree = *model::ParseConfig(yaml_with_tree, "t.yaml");
  const kpitree::KpiTreeEvaluator trees(with_tree);
  SnapshotReader::Options options = Options();
  options.kpi_tree = [&](const model::Config& config, int process,
                         const kpitree::KpiTreeEvaluator::WindowValues& window) {
    EXPECT_EQ(&config, &config_);  // the config the shards are shaped by
    return trees.Evaluate(process, window);
  };
  SnapshotReader reader(options);
  auto tree_of = [&](const std::string& region) {
    v1::GetSnapshotRequest r = Request(absl::Hours(1));
    if (!region.empty()) (*r.mutable_dimensions())["region"] = region;
    absl::StatusOr<v1::Snapshot> s = reader.Read(r);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? s->processes(0).windows(0) : v1::ProcessWindow();
  };
  enum { kPace, kClosed, kWon, kLost, kLeadTime };

  // The last hour, every region: completed at -5m (A emea, lead time 25m)
  // and -50m (B emea, 1h), fallout at -20m (A amer): closed = 2 + 1 = 3; the
  // median of {25m, 1h} by nearest rank (ceil(0.5 x 2) = 1st) is 25m = 1500 s;
  // pace = 3 / 1500 = 0.002.
  const v1::ProcessWindow all = tree_of("");
  ASSERT_EQ(all.kpi_tree_size(), 5);
  EXPECT_EQ(all.kpi_tree(kClosed).parent(), "pace");
  EXPECT_EQ(all.kpi_tree(kWon).value(), 2);
  EXPECT_EQ(all.kpi_tree(kLost).value(), 1);
  EXPECT_EQ(all.kpi_tree(kClosed).value(), 3);
  EXPECT_NEAR(all.kpi_tree(kLeadTime).value(), 1500, 15);
  EXPECT_NEAR(all.kpi_tree(kPace).value(), 0.002, 0.002 * 0.01);
  EXPECT_TRUE(all.kpi_tree(kWon).has_sensitivity());

  // emea: the two completions, no fallout: closed = 2. No distributions per
  // region: lead_time unset, and so is pace above it (never 0 or NaN).
  const v1::ProcessWindow emea = tree_of("emea");
  ASSERT_EQ(emea.kpi_tree_size(), 5);
  EXPECT_EQ(emea.kpi_tree(kWon).value(), 2);
  EXPECT_EQ(emea.kpi_tree(kLost).value(), 0);
  EXPECT_EQ(emea.kpi_tree(kClosed).value(), 2);
  EXPECT_FALSE(emea.kpi_tree(kLeadTime).has_value());
  EXPECT_FALSE(emea.kpi_tree(kPace).has_value());
  EXPECT_FALSE(emea.kpi_tree(kWon).has_sensitivity());  // the root is absent

  // amer: the fallout only: closed = 0 + 1 = 1.
  const v1::ProcessWindow amer = tree_of("amer");
  ASSERT_EQ(amer.kpi_tree_size(), 5);
  EXPECT_EQ(amer.kpi_tree(kWon).value(), 0);
  EXPECT_EQ(amer.kpi_tree(kClosed).value(), 1);
}

TEST_F(SnapshotReaderTest, NoKpiTreeWithoutEvaluator) {
  EXPECT_EQ(Read(Request(absl::Hours(1))).processes(0).windows(0).kpi_tree_size(), 0);
}

TEST_F(SnapshotReaderTest, CancelledReadGivesUp) {
  SnapshotReader reader(Options());
  absl::StatusOr<v1::Snapshot> s = reader.Read(v1::GetSnapshotRequest(), [] { return true; });
  EXPECT_TRUE(absl::IsCancelled(s.status())) << s.status();
}

TEST_F(SnapshotReaderTest, PartitionsStillRestoringMakeTheAnswerPartial) {
  SnapshotReader::Options options = Options();
  options.replica = "kpid-0";
  // Partitions 0 and 2 are live (shards a and b); 1 and 3 restore their state.
  options.shard_source = [this] {
    aggregate::ShardSet set;
    set.shards = {&shard_a_, &shard_b_};
    set.tables = {&table_a_, &table_b_};
    set.partitions = {0, 2};
    set.restoring = {1, 3};
    return set;
  };
  SnapshotReader reader(std::move(options));
  absl::StatusOr<v1::Snapshot> s = reader.Read(Request(absl::Hours(1)));
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_TRUE(s->partial());
  ASSERT_EQ(s->replicas_size(), 1);
  EXPECT_EQ(s->replicas(0).replica(), "kpid-0");
  EXPECT_THAT(s->replicas(0).partitions(), ::testing::ElementsAre(0, 2));
  EXPECT_THAT(s->replicas(0).restoring_partitions(), ::testing::ElementsAre(1, 3));

  // Once restored: complete.
  SnapshotReader::Options done = Options();
  done.shard_source = [this] {
    aggregate::ShardSet set;
    set.shards = {&shard_a_, &shard_b_};
    set.tables = {&table_a_, &table_b_};
    set.partitions = {0, 1, 2, 3};
    return set;
  };
  absl::StatusOr<v1::Snapshot> complete =
      SnapshotReader(std::move(done)).Read(Request(absl::Hours(1)));
  ASSERT_TRUE(complete.ok()) << complete.status();
  EXPECT_FALSE(complete->partial());
  EXPECT_TRUE(complete->replicas(0).restoring_partitions().empty());
}

class ValidationTest : public SnapshotReaderTest {
 protected:
  absl::Status Check(const v1::GetSnapshotRequest& r) {
    return SnapshotReader(Options()).Validate(r);
  }
};

TEST_F(ValidationTest, AcceptsWhatIsConfigured) {
  EXPECT_TRUE(Check(v1::GetSnapshotRequest()).ok());
  // 2d + 1d = 3d: exactly the retention.
  EXPECT_TRUE(Check(Request(absl::Hours(24), absl::Hours(48))).ok());
}

TEST_F(ValidationTest, UnknownProcess) {
  v1::GetSnapshotRequest r;
  r.set_process("billing");
  const absl::Status s = Check(r);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "unknown process \"billing\" (processes: sales, support)");
}

TEST_F(ValidationTest, WindowNotConfigured) {
  const absl::Status s = Check(Request(absl::Hours(2)));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "window 2h is not configured (windows: 1h, 1d)");
}

TEST_F(ValidationTest, OffsetBeyondRetention) {
  const absl::Status s = Check(Request(absl::Hours(24), absl::Hours(48) + absl::Minutes(1)));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "offset 2d1m + window 1d reaches beyond retention 3d");
}

TEST_F(ValidationTest, NegativeOrMalformedDurations) {
  EXPECT_THAT(Check(Request(absl::Hours(1), -absl::Hours(1))).message(), HasSubstr("negative"));
  v1::GetSnapshotRequest r = Request(absl::Hours(1));
  r.mutable_windows(0)->set_nanos(-5);
  EXPECT_EQ(Check(r).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Check(r).message(), HasSubstr("malformed window"));
}

TEST_F(ValidationTest, UnknownDimension) {
  v1::GetSnapshotRequest r;
  (*r.mutable_dimensions())["channel"] = "web";
  const absl::Status s = Check(r);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "unknown dimension \"channel\" (dimensions: region)");
}

// What a global snapshot's coordinator asks peers for (issue 8).
TEST_F(SnapshotReaderTest, MergeInputsPinnedAsOfAndClockOnly) {
  SnapshotReader::Options options = Options();
  options.replica = "r1";
  SnapshotReader reader(std::move(options));

  v1::GetSnapshotRequest request = Request(absl::Hours(1));
  absl::StatusOr<v1::Snapshot> plain = reader.Read(request);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_FALSE(plain->processes(0).windows(0).has_merge_inputs());  // only when asked
  ASSERT_EQ(plain->replicas_size(), 1);
  EXPECT_EQ(plain->replicas(0).replica(), "r1");

  request.set_include_merge_inputs(true);
  absl::StatusOr<v1::Snapshot> s = reader.Read(request);
  ASSERT_TRUE(s.ok()) << s.status();
  const v1::MergeInputs& m = s->processes(0).windows(0).merge_inputs();
  // Last hour: one score (8) and one COST (B amer, -40m); lead times 25m
  // (A, -5m) and 1h (B, -50m); lead exits at -10m, -20m (A) and -50m (B),
  // demo exit at -5m (A).
  EXPECT_EQ(m.feedback_score_sum(), 8);
  EXPECT_EQ(m.cost_count(), 1u);
  uint64_t lead_times = 0;
  for (uint64_t c : m.lead_time().count()) lead_times += c;
  EXPECT_EQ(lead_times, 2u);
  ASSERT_EQ(m.cycle_time_size(), 2);
  uint64_t lead_exits = 0;
  for (uint64_t c : m.cycle_time(kLead).count()) lead_exits += c;
  EXPECT_EQ(lead_exits, 3u);
  EXPECT_EQ(m.cycle_time(kDemo).count_size(), 1);  // one bin: 5m
  // The bins are the sketch: lead times 25m and 1h, so p90 = the 2nd = 1h.
  EXPECT_NEAR(*FromProto(m.lead_time()).Quantile(0.9), 3600, 36);

  // A pinned as_of two hours ahead: the 1h window ends there and holds
  // nothing of the scenario (its last fact is at -5m).
  ToProto(kNow + absl::Hours(2), request.mutable_as_of());
  s = reader.Read(request);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(FromProto(s->as_of()), kNow + absl::Hours(2));
  EXPECT_EQ(s->processes(0).windows(0).started(), 0u);
  EXPECT_EQ(s->processes(0).windows(0).completed(), 0u);

  // clock_only: as_of, watermark and who, no processes.
  v1::GetSnapshotRequest clock;
  clock.set_clock_only(true);
  s = reader.Read(clock);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(FromProto(s->as_of()), kNow);
  EXPECT_EQ(FromProto(s->watermark()), kNow - absl::Minutes(5));
  EXPECT_EQ(s->processes_size(), 0);
  EXPECT_EQ(s->replicas(0).replica(), "r1");
}

}  // namespace
}  // namespace kpid::api
