#include "daemon/alert/rule_engine.h"

#include <functional>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kpid::alert {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;

constexpr char kConfig[] = R"(
windows: [1h]
dimensions: {names: [region]}
processes:
  - id: sales
    stages: [{id: lead, sla: 1h}, {id: quote, sla: 1d}]
)";

// Group interval 1h: after the first evaluation only changes re-evaluate.
constexpr char kRules[] = R"(groups:
  - name: g
    interval: 1h
    rules:
      - alert: LeadSla
        process: sales
        stage: lead
        kpi: sla_attainment
        window: 1h
        op: "<"
        threshold: 0.9
        min_events: 4
        labels: {severity: page}
        annotations: {summary: "{{ $labels.stage }} attainment {{ $value }}"}
      - alert: OverSla
        process: sales
        kpi: backlog_over_sla
        op: ">"
        threshold: 1
        for: 30s
      - alert: LeadConversionByRegion
        process: sales
        stage: lead
        kpi: conversion
        window: 1h
        op: "<"
        threshold: 0.5
        min_events: 2
        by: [region]
)";

class RecordingSink : public AlertSink {
 public:
  void Send(std::vector<AlertNotification> alerts) override {
    for (auto& a : alerts) sent.push_back(std::move(a));
  }
  std::vector<AlertNotification> Take() { return std::exchange(sent, {}); }
  std::vector<AlertNotification> sent;
};

google::protobuf::Map<std::string, std::string> Region(const std::string& r) {
  google::protobuf::Map<std::string, std::string> m;
  m["region"] = r;
  return m;
}

class RuleEngineTest : public ::testing::Test {
 protected:
  RuleEngineTest()
      : config_(*model::ParseConfig(kConfig, "kpid.yaml")),
        dims_(config_),
        shard_(config_),
        clock_(absl::FromUnixSeconds(kT0)) {
    rules_.groups = *ParseRules(kRules, "r.yaml", &config_);
    emea_ = dims_.Resolve(0, Region("emea"));
    amer_ = dims_.Resolve(0, Region("amer"));
    engine_ = std::make_unique<RuleEngine>(
        RuleEngine::Options{.config = &config_,
                            .rules = &rules_,
                            .shard_source = aggregate::FixedShards({&shard_}, {&dims_}),
                            .window_clock = &clock_,
                            .sink = &sink_,
                            .resend_interval = absl::Minutes(1),
                            .generator_url = "http://kpid:9464/"});
  }

  // A lead exit, minutes after kT0 (inside the 1h window ending at kT0 + 50m).
  void LeadExit(cases::DimsId dims, bool advanced, bool met) {
    shard_.StageExited(0, 0, dims, absl::FromUnixSeconds(kT0) + absl::Minutes(10),
                       advanced ? cases::ExitOutcome::kAdvanced : cases::ExitOutcome::kFallout,
                       absl::Minutes(met ? 30 : 90), met);
  }
  static absl::Time Wall(int seconds) { return absl::FromUnixSeconds(kWall + seconds); }
  RuleSet Rules(const std::string& yaml) {
    absl::StatusOr<std::vector<RuleGroup>> groups = ParseRules(yaml, "new.yaml", &config_);
    if (!groups.ok()) {
      ADD_FAILURE() << groups.status();
      return {};
    }
    return RuleSet{*std::move(groups)};
  }
  AlertPhase PhaseOf(const std::string& alertname) {
    for (const AlertView& a : engine_->Alerts()) {
      if (a.labels.at("alertname") == alertname) return a.phase;
    }
    return AlertPhase::kInactive;
  }
  absl::Time ActiveAtOf(const std::string& alertname) {
    for (const AlertView& a : engine_->Alerts()) {
      if (a.labels.at("alertname") == alertname) return a.active_at;
    }
    return absl::InfinitePast();
  }

  static constexpr int64_t kT0 = 1772409600;    // event time
  static constexpr int64_t kWall = 1800000000;  // evaluation (wall) time

  model::Config config_;
  cases::DimensionTable dims_;
  aggregate::AggregateShard shard_;
  cases::ManualClock clock_;
  RuleSet rules_;
  RecordingSink sink_;
  std::unique_ptr<RuleEngine> engine_;
  cases::DimsId emea_ = 0, amer_ = 0;
};

TEST_F(RuleEngineTest, FiresResendsAndResolvesWithHandComputedValues) {
  clock_.Set(absl::FromUnixSeconds(kT0) + absl::Minutes(50));
  // emea: 4 lead exits, 3 within SLA; amer: 2 exits, both fallouts, within SLA.
  LeadExit(emea_, true, true);
  LeadExit(emea_, true, true);
  LeadExit(emea_, true, true);
  LeadExit(emea_, true, false);
  LeadExit(amer_, false, true);
  LeadExit(amer_, false, true);
  // Two open cases past their deadline in quote.
  shard_.BacklogChanged(0, 1, emea_, 1, 1);
  shard_.BacklogChanged(0, 1, amer_, 1, 1);

  engine_->EvaluateDue(Wall(0));
  // LeadSla: 5 met of 6 exits = 0.8333 < 0.9 with 6 >= 4 events: fires (for 0).
  // LeadConversionByRegion: emea 4/4 = 1 (no), amer 0/2 = 0 < 0.5: fires.
  // OverSla: quote 2 > 1: pending for 30 s; lead 0: nothing.
  std::vector<AlertNotification> sent = sink_.Take();
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_THAT(sent[0].labels,
              ElementsAre(Pair("alertname", "LeadSla"), Pair("process", "sales"),
                          Pair("severity", "page"), Pair("stage", "lead"), Pair("window", "1h")));
  EXPECT_EQ(sent[0].annotations.at("summary"), "lead attainment 0.833333");
  EXPECT_EQ(sent[0].starts_at, Wall(0));
  EXPECT_EQ(sent[0].ends_at, Wall(240));  // 4 resend intervals ahead
  EXPECT_EQ(sent[0].generator_url, "http://kpid:9464/");
  EXPECT_EQ(sent[1].labels.at("alertname"), "LeadConversionByRegion");
  EXPECT_EQ(sent[1].labels.at("region"), "amer");

  std::vector<AlertView> alerts = engine_->Alerts();
  ASSERT_EQ(alerts.size(), 3u);
  int pending = 0;
  for (const AlertView& a : alerts) pending += a.phase == AlertPhase::kPending;
  EXPECT_EQ(pending, 1);

  // Nothing changed, the group is not due: no evaluation, OverSla stays pending.
  engine_->EvaluateDue(Wall(40));
  EXPECT_TRUE(sink_.Take().empty());
  // A full evaluation 40 s in: OverSla has been true for 30 s -> fires.
  engine_->EvaluateAll(Wall(40));
  sent = sink_.Take();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].labels.at("alertname"), "OverSla");
  EXPECT_EQ(sent[0].labels.at("stage"), "quote");
  EXPECT_EQ(sent[0].starts_at, Wall(0));  // active since the first evaluation
  // 60 s after they fired, the first two are re-sent.
  engine_->EvaluateAll(Wall(60));
  EXPECT_EQ(sink_.Take().size(), 2u);

  // Ten more met emea exits: 15 of 16 = 0.9375 >= 0.9. The change alone
  // triggers the evaluation (the group is not due for an hour).
  for (int i = 0; i < 10; ++i) LeadExit(emea_, true, true);
  engine_->EvaluateDue(Wall(61));
  sent = sink_.Take();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].labels.at("alertname"), "LeadSla");
  EXPECT_EQ(sent[0].ends_at, Wall(61));  // resolved now
  EXPECT_EQ(sent[0].annotations.at("summary"), "lead attainment 0.9375");
}

TEST_F(RuleEngineTest, TooFewEventsGiveNoVerdict) {
  clock_.Set(absl::FromUnixSeconds(kT0) + absl::Minutes(50));
  // 3 exits, all missed: attainment 0 but 3 < min_events 4.
  LeadExit(emea_, true, false);
  LeadExit(emea_, true, false);
  LeadExit(emea_, true, false);
  engine_->EvaluateAll(Wall(0));
  for (const auto& n : sink_.Take()) EXPECT_NE(n.labels.at("alertname"), "LeadSla");
}

TEST_F(RuleEngineTest, AnEmptyWindowHoldsAFiringAlert) {
  clock_.Set(absl::FromUnixSeconds(kT0) + absl::Minutes(50));
  for (int i = 0; i < 4; ++i) LeadExit(emea_, true, false);  // attainment 0
  engine_->EvaluateAll(Wall(0));
  ASSERT_EQ(sink_.Take().size(), 1u);
  // Two hours later the exits at kT0 + 10m have left the 1h window: no
  // verdict (no exits), so the alert keeps firing rather than flapping.
  clock_.Set(absl::FromUnixSeconds(kT0) + absl::Hours(2));
  engine_->EvaluateAll(Wall(10));
  EXPECT_TRUE(sink_.Take().empty());
  ASSERT_EQ(engine_->Alerts().size(), 1u);
  EXPECT_EQ(engine_->Alerts()[0].phase, AlertPhase::kFiring);
}

TEST_F(RuleEngineTest, CollectShowsPendingAndFiringLikeAlerts) {
  clock_.Set(absl::FromUnixSeconds(kT0) + absl::Minutes(50));
  shard_.BacklogChanged(0, 1, emea_, 2, 2);
  engine_->EvaluateAll(Wall(0));
  std::vector<prometheus::MetricFamily> families = engine_->Collect();
  ASSERT_EQ(families.size(), 1u);
  EXPECT_EQ(families[0].name, "kpid_alerts");
  ASSERT_EQ(families[0].metric.size(), 1u);
  std::map<std::string, std::string> labels;
  for (const auto& l : families[0].metric[0].label) labels[l.name] = l.value;
  EXPECT_EQ(labels.at("alertname"), "OverSla");
  EXPECT_EQ(labels.at("state"), "pending");
  EXPECT_EQ(labels.at("stage"), "quote");
  EXPECT_EQ(families[0].metric[0].gauge.value, 1);
}

// The rules of kRules minus LeadConversionByRegion, with OverSla written
// `over_sla` (its `for`, threshold and so on), LeadSla's labels `lead_labels`,
// and `extra` appended: the rule sets a reload would bring.
std::string RulesWith(const std::string& over_sla,
                      const std::string& lead_labels = "{severity: page}",
                      const std::string& extra = "") {
  return absl::StrCat(R"(groups:
  - name: g
    interval: 1h
    rules:
      - alert: LeadSla
        process: sales
        stage: lead
        kpi: sla_attainment
        window: 1h
        op: "<"
        threshold: 0.9
        min_events: 4
        labels: )",
                      lead_labels, R"(
      - alert: OverSla
        process: sales
        kpi: backlog_over_sla
)",
                      over_sla, extra);
}

constexpr char kOverSlaFor30s[] = R"(        op: ">"
        threshold: 1
        for: 30s
)";

TEST_F(RuleEngineTest, ReplacingRulesKeepsPendingProgressOfUnchangedRules) {
  clock_.Set(absl::FromUnixSeconds(kT0) + absl::Minutes(50));
  shard_.BacklogChanged(0, 1, emea_, 2, 2);  // quote: 2 over SLA > 1
  engine_->EvaluateAll(Wall(0));
  ASSERT_EQ(PhaseOf("OverSla"), AlertPhase::kPending);

  // 10 s in, a reload brings the same OverSla (moved to another line, which
  // changes nothing) and a new rule that holds as well.
  const std::string added = R"(      - alert: QuoteBacklog
        process: sales
        stage: quote
        kpi: backlog
        op: ">"
        threshold: 1
        for: 30s
)";
  RuleReplacement r =
      engine_->ReplaceRules(Rules(RulesWith(kOverSlaFor30s, "{severity: page}", added)), Wall(10));
  EXPECT_EQ(r.added, 1u);    // QuoteBacklog
  EXPECT_EQ(r.removed, 1u);  // LeadConversionByRegion
  EXPECT_EQ(r.kept, 2u);     // LeadSla, OverSla
  EXPECT_EQ(r.resolved, 0u);
  EXPECT_TRUE(sink_.Take().empty());
  EXPECT_EQ(PhaseOf("OverSla"), AlertPhase::kPending);

  // At 40 s OverSla has been true for 40 s >= 30 s since Wall(0): it fires,
  // active since before the reload. QuoteBacklog (backlog 2 > 1) starts now:
  // pending since 40 s, due to fire at 70 s.
  engine_->EvaluateAll(Wall(40));
  std::vector<AlertNotification> sent = sink_.Take();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].labels.at("alertname"), "OverSla");
  EXPECT_EQ(sent[0].starts_at, Wall(0));
  EXPECT_EQ(PhaseOf("QuoteBacklog"), AlertPhase::kPending);
  EXPECT_EQ(ActiveAtOf("QuoteBacklog"), Wall(40));
  engine_->EvaluateAll(Wall(70));
  sent = sink_.Take();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].labels.at("alertname"), "QuoteBacklog");
}

TEST_F(RuleEngineTest, ARemovedRulesFiringAlertIsResolvedAndDropped) {
  clock_.Set(absl::FromUnixSeconds(kT0) + absl::Minutes(50));
  for (int i = 0; i < 4; ++i) LeadExit(emea_, true, false);  // LeadSla: attainment 0 < 0.9
  engine_->EvaluateAll(Wall(0));
  ASSERT_EQ(sink_.Take().size(), 1u);
  ASSERT_EQ(PhaseOf("LeadSla"), AlertPhase::kFiring);

  // The reload keeps OverSla only.
  RuleSet only_over_sla = Rules(R"(groups:
  - name: g
    rules:
      - {alert: OverSla, process: sales, kpi: backlog_over_sla, op: ">", threshold: 1, for: 30s}
)");
  RuleReplacement r = engine_->ReplaceRules(std::move(only_over_sla), Wall(5));
  EXPECT_EQ(r.removed, 2u);
  EXPECT_EQ(r.kept, 1u);
  EXPECT_EQ(r.resolved, 1u);
  std::vector<AlertNotification> sent = sink_.Take();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].labels.at("alertname"), "LeadSla");
  EXPECT_EQ(sent[0].starts_at, Wall(0));
  EXPECT_EQ(sent[0].ends_at, Wall(5));  // resolved at the reload
  EXPECT_TRUE(engine_->Alerts().empty());
  // Nothing evaluates it any more: no re-send a minute later.
  engine_->EvaluateAll(Wall(65));
  EXPECT_TRUE(sink_.Take().empty());
}

// Like Prometheus, which carries active alerts over by rule name and labels
// whatever the expression: a new threshold (or `for`, op, min_events...)
// keeps the alert's state, and the next evaluation judges it by the new one.
TEST_F(RuleEngineTest, ARetunedRuleKeepsItsStateAndIsJudgedByTheNewTuning) {
  clock_.Set(absl::FromUnixSeconds(kT0) + absl::Minutes(50));
  shard_.BacklogChanged(0, 1, emea_, 2, 2);  // quote: 2 over SLA
  engine_->EvaluateAll(Wall(0));
  ASSERT_EQ(PhaseOf("OverSla"), AlertPhase::kPending);

  // Threshold 1 -> 0 and for 30s -> 20s: 2 > 0 still holds; pending since 0.
  RuleReplacement r = engine_->ReplaceRules(Rules(RulesWith(R"(        op: ">"
        threshold: 0
        for: 20s
)")),
                                            Wall(10));
  EXPECT_EQ(r.kept, 2u);
  EXPECT_EQ(ActiveAtOf("OverSla"), Wall(0));
  // 20 s after Wall(0) with the new `for`: fires, starting at Wall(0).
  engine_->EvaluateAll(Wall(20));
  std::vector<AlertNotification> sent = sink_.Take();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].labels.at("alertname"), "OverSla");
  EXPECT_EQ(sent[0].starts_at, Wall(0));

  // Threshold 5: 2 > 5 is false, so the firing alert resolves at once
  // (keep_firing_for 0).
  engine_->ReplaceRules(Rules(RulesWith(R"(        op: ">"
        threshold: 5
)")),
                        Wall(30));
  EXPECT_TRUE(sink_.Take().empty());  // kept, so nothing resolved by the swap itself
  engine_->EvaluateAll(Wall(31));
  sent = sink_.Take();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].ends_at, Wall(31));
}

// Labels (like process, stage, kpi, window, by) are the rule's identity:
// changing them makes a new rule, whose alerts start over.
TEST_F(RuleEngineTest, ARelabelledRuleIsANewRuleAndStartsOver) {
  clock_.Set(absl::FromUnixSeconds(kT0) + absl::Minutes(50));
  for (int i = 0; i < 4; ++i) LeadExit(emea_, true, false);  // LeadSla fires
  engine_->EvaluateAll(Wall(0));
  ASSERT_EQ(sink_.Take().size(), 1u);

  RuleReplacement r =
      engine_->ReplaceRules(Rules(RulesWith(kOverSlaFor30s, "{severity: ticket}")), Wall(5));
  EXPECT_EQ(r.added, 1u);
  EXPECT_EQ(r.removed, 2u);  // LeadSla with severity page, LeadConversionByRegion
  EXPECT_EQ(r.resolved, 1u);
  std::vector<AlertNotification> sent = sink_.Take();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].labels.at("severity"), "page");
  EXPECT_EQ(sent[0].ends_at, Wall(5));
  // The new LeadSla fires on its own evaluation, a new episode.
  engine_->EvaluateAll(Wall(6));
  sent = sink_.Take();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].labels.at("severity"), "ticket");
  EXPECT_EQ(sent[0].starts_at, Wall(6));
}

TEST_F(RuleEngineTest, RedeliverFiringResendsAtOnceThenAtTheNewInterval) {
  clock_.Set(absl::FromUnixSeconds(kT0) + absl::Minutes(50));
  for (int i = 0; i < 4; ++i) LeadExit(emea_, true, false);  // LeadSla fires
  engine_->EvaluateAll(Wall(0));
  ASSERT_EQ(sink_.Take().size(), 1u);

  // A new delivery with a 5 minute resend interval: re-sent now.
  engine_->RedeliverFiring(absl::Minutes(5), Wall(10));
  std::vector<AlertNotification> sent = sink_.Take();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].labels.at("alertname"), "LeadSla");
  EXPECT_EQ(sent[0].starts_at, Wall(0));
  EXPECT_EQ(sent[0].ends_at, Wall(10 + 4 * 300));
  // 60 s later (the old interval): nothing; 300 s after the redelivery: again.
  engine_->EvaluateAll(Wall(70));
  EXPECT_TRUE(sink_.Take().empty());
  engine_->EvaluateAll(Wall(310));
  EXPECT_EQ(sink_.Take().size(), 1u);
}

TEST(RuleIdentityTest, TuningIsNotPartOfIt) {
  RuleGroup group{"g", absl::Seconds(1), {}};
  AlertRule a;
  a.name = "A";
  a.process = 0;
  a.stage = 1;
  a.kpi = "backlog";
  a.labels["severity"] = {"page"};
  AlertRule tuned = a;
  tuned.threshold = 3;
  tuned.for_duration = absl::Minutes(5);
  tuned.annotations["summary"] = {"x"};
  tuned.location = "other.yaml:9:7";
  EXPECT_EQ(RuleIdentity(group, a), RuleIdentity(group, tuned));
  for (auto change : std::vector<std::function<void(AlertRule*)>>{
           [](AlertRule* r) { r->stage.reset(); },
           [](AlertRule* r) { r->kpi = "backlog_over_sla"; },
           [](AlertRule* r) { r->window = 0; },
           [](AlertRule* r) { r->by = {"region"}; },
           [](AlertRule* r) { r->labels["severity"] = {"ticket"}; },
           [](AlertRule* r) { r->name = "B"; },
       }) {
    AlertRule changed = a;
    change(&changed);
    EXPECT_NE(RuleIdentity(group, a), RuleIdentity(group, changed));
  }
  EXPECT_NE(RuleIdentity(group, a), RuleIdentity(RuleGroup{"h", absl::Seconds(1), {}}, a));
}

}  // namespace
}  // namespace kpid::alert
