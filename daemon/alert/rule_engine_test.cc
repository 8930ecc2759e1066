#include "daemon/alert/rule_engine.h"

#include <stdlib.h>

#include <cstdlib>
#include <functional>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "daemon/common/file_util.h"
#include "daemon/ingest/event_view_testing.h"
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

ingest::OwnedAttributes Region(const std::string& r) {
  return ingest::MakeAttributes({{"region", r}});
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
    engine_ = MakeEngine(&rules_, &sink_);
  }

  // An engine over `shard` (default: the fixture's data) sending to `sink`.
  std::unique_ptr<RuleEngine> MakeEngine(const RuleSet* rules, AlertSink* sink,
                                         const aggregate::AggregateShard* shard = nullptr,
                                         const cases::DimensionTable* dims = nullptr,
                                         std::string state_path = "") {
    return std::make_unique<RuleEngine>(RuleEngine::Options{
        .config = &config_,
        .rules = rules,
        .shard_source = aggregate::FixedShards({shard != nullptr ? shard : &shard_},
                                               {dims != nullptr ? dims : &dims_}),
        .window_clock = &clock_,
        .sink = sink,
        .resend_interval = absl::Minutes(1),
        .generator_url = "http://kpid:9464/",
        .state_path = std::move(state_path)});
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

// ---- Restarts: SaveState in one engine, RestoreState in a new one over the
// same data (the aggregates a restarted kpid restores or rebuilds), as kpid
// does across a restart.

void ExpectSameAlerts(const std::vector<AlertView>& a, const std::vector<AlertView>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].labels, b[i].labels);
    EXPECT_EQ(a[i].annotations, b[i].annotations);
    EXPECT_EQ(a[i].phase, b[i].phase);
    EXPECT_EQ(a[i].value, b[i].value);
    EXPECT_EQ(a[i].active_at, b[i].active_at);
  }
}

double Counter(const RuleEngine& engine, const std::string& name, const std::string& result = "") {
  for (const auto& family : engine.Collect()) {
    if (family.name != name) continue;
    for (const auto& m : family.metric) {
      if (result.empty() || (!m.label.empty() && m.label[0].value == result)) {
        return m.counter.value;
      }
    }
  }
  return -1;
}

TEST_F(RuleEngineTest, StateRoundTripsThroughAnotherEngine) {
  clock_.Set(absl::FromUnixSeconds(kT0) + absl::Minutes(50));
  // As in FiresResendsAndResolvesWithHandComputedValues: LeadSla fires
  // (0.8333), LeadConversionByRegion fires for amer, OverSla(quote) pending.
  for (int i = 0; i < 3; ++i) LeadExit(emea_, true, true);
  LeadExit(emea_, true, false);
  LeadExit(amer_, false, true);
  LeadExit(amer_, false, true);
  shard_.BacklogChanged(0, 1, emea_, 2, 2);
  engine_->EvaluateAll(Wall(0));
  ASSERT_EQ(sink_.Take().size(), 2u);
  const std::string state = engine_->SaveState(Wall(10));

  RecordingSink sink;
  auto restarted = MakeEngine(&rules_, &sink);
  absl::StatusOr<AlertStateRestore> r =
      restarted->RestoreState(kAlertStateVersion, state, Wall(10));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->restored, 3u);
  EXPECT_EQ(r->dropped, 0u);
  EXPECT_EQ(r->downtime, absl::ZeroDuration());
  ExpectSameAlerts(restarted->Alerts(), engine_->Alerts());
  // Byte for byte: nothing lost, nothing moved (no downtime).
  EXPECT_EQ(restarted->SaveState(Wall(10)), state);
  EXPECT_TRUE(sink.Take().empty());  // sends wait for the first evaluation
}

// The `for` clock stops while kpid is down (Prometheus moves activeAt by the
// downtime too): the rest of `for` must be seen holding after the restart.
TEST_F(RuleEngineTest, APendingAlertKeepsItsForProgressAcrossARestart) {
  clock_.Set(absl::FromUnixSeconds(kT0) + absl::Minutes(50));
  shard_.BacklogChanged(0, 1, emea_, 2, 2);  // OverSla(quote): 2 > 1, for 30s
  engine_->EvaluateAll(Wall(0));
  engine_->EvaluateAll(Wall(10));  // held 10 s
  ASSERT_EQ(PhaseOf("OverSla"), AlertPhase::kPending);
  const std::string state = engine_->SaveState(Wall(10));

  // Down from 10 s to 100 s: 90 s that count for nothing.
  RecordingSink sink;
  auto restarted = MakeEngine(&rules_, &sink);
  ASSERT_EQ(restarted->RestoreState(kAlertStateVersion, state, Wall(100))->downtime,
            absl::Seconds(90));
  // Held 10 s before + 19 s after = 29 s < 30 s: still pending.
  restarted->EvaluateAll(Wall(110));
  restarted->EvaluateAll(Wall(119));
  EXPECT_TRUE(sink.Take().empty());
  ASSERT_EQ(restarted->Alerts().size(), 1u);
  EXPECT_EQ(restarted->Alerts()[0].phase, AlertPhase::kPending);
  // 10 + 20 = 30 s: fires, its episode starting where it started.
  restarted->EvaluateAll(Wall(120));
  std::vector<AlertNotification> sent = sink.Take();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].labels.at("alertname"), "OverSla");
  EXPECT_EQ(sent[0].starts_at, Wall(0));
}

// Prometheus #15175: there a firing alert goes back to pending for its
// `for` after a restart. Here it stays firing; the first evaluation re-sends
// it with its labels and startsAt, which Alertmanager merges into the alert
// it holds: a refresh, not a new page.
TEST_F(RuleEngineTest, AFiringAlertStaysFiringAndIsOnlyResentAcrossARestart) {
  clock_.Set(absl::FromUnixSeconds(kT0) + absl::Minutes(50));
  shard_.BacklogChanged(0, 1, emea_, 2, 2);  // OverSla(quote), for 30s
  engine_->EvaluateAll(Wall(0));
  engine_->EvaluateAll(Wall(30));  // held 30 s: fires
  std::vector<AlertNotification> sent = sink_.Take();
  ASSERT_EQ(sent.size(), 1u);
  const AlertNotification page = sent[0];
  const std::string state = engine_->SaveState(Wall(40));

  RecordingSink sink;
  auto restarted = MakeEngine(&rules_, &sink);
  ASSERT_TRUE(restarted->RestoreState(kAlertStateVersion, state, Wall(70)).ok());
  EXPECT_EQ(PhaseOf("OverSla"), AlertPhase::kFiring);  // the old engine's view
  ASSERT_EQ(restarted->Alerts().size(), 1u);
  EXPECT_EQ(restarted->Alerts()[0].phase, AlertPhase::kFiring);  // not pending again

  restarted->EvaluateAll(Wall(70));
  sent = sink.Take();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].labels, page.labels);
  EXPECT_EQ(sent[0].starts_at, Wall(0));  // the same episode
  EXPECT_EQ(sent[0].ends_at, Wall(70 + 240));
  // Then the usual resends, a minute apart.
  restarted->EvaluateAll(Wall(100));
  EXPECT_TRUE(sink.Take().empty());
  restarted->EvaluateAll(Wall(130));
  EXPECT_EQ(sink.Take().size(), 1u);
}

// The condition cleared while kpid was down: kpid cannot know when, so the
// first evaluation after the restart resolves it (one resolve, endsAt then).
TEST_F(RuleEngineTest, AnAlertThatClearedDuringTheDowntimeResolvesAtTheFirstEvaluation) {
  clock_.Set(absl::FromUnixSeconds(kT0) + absl::Minutes(50));
  for (int i = 0; i < 4; ++i) LeadExit(emea_, true, false);  // LeadSla: 0 of 4 met
  engine_->EvaluateAll(Wall(0));
  ASSERT_EQ(sink_.Take().size(), 1u);
  const std::string state = engine_->SaveState(Wall(10));

  // While down, 36 exits within SLA: 36 of 40 = 0.9, not < 0.9.
  for (int i = 0; i < 36; ++i) LeadExit(emea_, true, true);
  RecordingSink sink;
  auto restarted = MakeEngine(&rules_, &sink);
  ASSERT_TRUE(restarted->RestoreState(kAlertStateVersion, state, Wall(100)).ok());
  restarted->EvaluateAll(Wall(100));
  std::vector<AlertNotification> sent = sink.Take();
  ASSERT_EQ(sent.size(), 1u);  // the resolve alone, no re-send before it
  EXPECT_EQ(sent[0].labels.at("alertname"), "LeadSla");
  EXPECT_EQ(sent[0].starts_at, Wall(0));
  EXPECT_EQ(sent[0].ends_at, Wall(100));
  EXPECT_EQ(sent[0].annotations.at("summary"), "lead attainment 0.9");
  restarted->EvaluateAll(Wall(200));
  EXPECT_TRUE(sink.Take().empty());
}

// keep_firing_for's clock stops too: cleared 20 s before going down with a
// 1m keep_firing_for, the alert keeps firing 40 s after the restart.
TEST_F(RuleEngineTest, KeepFiringForProgressSurvivesARestart) {
  RuleSet rules = Rules(R"(groups:
  - name: g
    rules:
      - {alert: QuoteOverSla, process: sales, stage: quote, kpi: backlog_over_sla, op: ">",
         threshold: 1, keep_firing_for: 1m}
)");
  RecordingSink before;
  auto engine = MakeEngine(&rules, &before);
  clock_.Set(absl::FromUnixSeconds(kT0) + absl::Minutes(50));
  shard_.BacklogChanged(0, 1, emea_, 2, 2);
  engine->EvaluateAll(Wall(0));  // 2 > 1: fires
  ASSERT_EQ(before.Take().size(), 1u);
  shard_.BacklogChanged(0, 1, emea_, -2, -2);
  engine->EvaluateAll(Wall(10));  // cleared; last true at 0
  engine->EvaluateAll(Wall(20));
  EXPECT_TRUE(before.Take().empty());
  const std::string state = engine->SaveState(Wall(20));

  // Down 1000 s. Cleared for 20 s before + 39 s after < 60 s: firing.
  RecordingSink sink;
  auto restarted = MakeEngine(&rules, &sink);
  ASSERT_TRUE(restarted->RestoreState(kAlertStateVersion, state, Wall(1020)).ok());
  restarted->EvaluateAll(Wall(1020));
  std::vector<AlertNotification> sent = sink.Take();
  ASSERT_EQ(sent.size(), 1u);  // the re-send
  EXPECT_EQ(sent[0].ends_at, Wall(1020 + 240));
  restarted->EvaluateAll(Wall(1059));
  EXPECT_TRUE(sink.Take().empty());
  // 20 + 40 = 60 s: resolves.
  restarted->EvaluateAll(Wall(1060));
  sent = sink.Take();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].starts_at, Wall(0));
  EXPECT_EQ(sent[0].ends_at, Wall(1060));
}

// A restored firing alert whose series has no data yet (the aggregates not
// back) is not evaluated, but is re-sent all the same so that Alertmanager
// does not time it out.
TEST_F(RuleEngineTest, ARestoredFiringAlertIsResentBeforeItsDataIsBack) {
  clock_.Set(absl::FromUnixSeconds(kT0) + absl::Minutes(50));
  LeadExit(amer_, false, true);
  LeadExit(amer_, false, true);  // LeadConversionByRegion(amer): 0 of 2 < 0.5
  engine_->EvaluateAll(Wall(0));
  ASSERT_EQ(sink_.Take().size(), 1u);
  const std::string state = engine_->SaveState(Wall(10));

  cases::DimensionTable empty_dims(config_);
  aggregate::AggregateShard empty_shard(config_);
  RecordingSink sink;
  auto restarted = MakeEngine(&rules_, &sink, &empty_shard, &empty_dims);
  ASSERT_TRUE(restarted->RestoreState(kAlertStateVersion, state, Wall(20)).ok());
  restarted->EvaluateAll(Wall(20));
  std::vector<AlertNotification> sent = sink.Take();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].labels.at("region"), "amer");
  EXPECT_EQ(sent[0].starts_at, Wall(0));
  // And every minute after, from the 10 ms poll as well.
  restarted->EvaluateDue(Wall(79));
  EXPECT_TRUE(sink.Take().empty());
  restarted->EvaluateDue(Wall(80));
  EXPECT_EQ(sink.Take().size(), 1u);
}

// Like a reload: the alerts of a rule that is gone are dropped, and a firing
// one is resolved rather than left to time out in Alertmanager.
TEST_F(RuleEngineTest, RestoringUnderChangedRulesDropsTheAlertsOfRemovedRules) {
  clock_.Set(absl::FromUnixSeconds(kT0) + absl::Minutes(50));
  for (int i = 0; i < 4; ++i) LeadExit(emea_, true, false);  // LeadSla fires
  shard_.BacklogChanged(0, 1, emea_, 2, 2);                  // OverSla pending
  engine_->EvaluateAll(Wall(0));
  ASSERT_EQ(sink_.Take().size(), 1u);
  const std::string state = engine_->SaveState(Wall(10));

  // OverSla retuned (same identity); LeadSla relabelled (a new identity).
  RuleSet changed = Rules(RulesWith(R"(        op: ">"
        threshold: 0
        for: 1m
)",
                                    "{severity: ticket}"));
  RecordingSink sink;
  auto restarted = MakeEngine(&changed, &sink);
  absl::StatusOr<AlertStateRestore> r =
      restarted->RestoreState(kAlertStateVersion, state, Wall(20));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->restored, 1u);
  EXPECT_EQ(r->dropped, 1u);
  EXPECT_EQ(r->resolved, 1u);
  std::vector<AlertNotification> sent = sink.Take();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].labels.at("severity"), "page");
  EXPECT_EQ(sent[0].ends_at, Wall(20));
  ASSERT_EQ(restarted->Alerts().size(), 1u);
  EXPECT_EQ(restarted->Alerts()[0].labels.at("alertname"), "OverSla");
  EXPECT_EQ(restarted->Alerts()[0].phase, AlertPhase::kPending);
}

TEST_F(RuleEngineTest, CorruptStateIsAnErrorNeverACrashAndChangesNothing) {
  clock_.Set(absl::FromUnixSeconds(kT0) + absl::Minutes(50));
  for (int i = 0; i < 4; ++i) LeadExit(emea_, true, false);
  LeadExit(amer_, false, true);
  LeadExit(amer_, false, true);
  shard_.BacklogChanged(0, 1, emea_, 2, 2);
  engine_->EvaluateAll(Wall(0));
  const std::string state = engine_->SaveState(Wall(10));
  RecordingSink sink;
  auto restarted = MakeEngine(&rules_, &sink);
  ASSERT_TRUE(restarted->RestoreState(kAlertStateVersion, state, Wall(10)).ok());
  const std::vector<AlertView> good = restarted->Alerts();
  ASSERT_EQ(good.size(), 3u);  // LeadSla, LeadConversionByRegion(amer), OverSla(quote)
  auto expect_unchanged = [&] { ExpectSameAlerts(restarted->Alerts(), good); };

  // Every truncation is malformed.
  for (size_t n = 0; n < state.size(); ++n) {
    absl::StatusOr<AlertStateRestore> r =
        restarted->RestoreState(kAlertStateVersion, state.substr(0, n), Wall(10));
    EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << n;
  }
  expect_unchanged();
  EXPECT_FALSE(restarted->RestoreState(kAlertStateVersion, state + "x", Wall(10)).ok());
  EXPECT_FALSE(restarted->RestoreState(kAlertStateVersion + 1, state, Wall(10)).ok());
  expect_unchanged();
  // Flipped bytes: an error, or a state that decodes (a changed value or
  // time) and that every reader can use.
  for (size_t i = 0; i < state.size(); ++i) {
    for (const char mask : {'\x01', '\x80', '\xff'}) {
      std::string bad = state;
      bad[i] = static_cast<char>(bad[i] ^ mask);
      absl::StatusOr<AlertStateRestore> r =
          restarted->RestoreState(kAlertStateVersion, bad, Wall(10));
      if (!r.ok()) {
        EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
        continue;
      }
      (void)restarted->Collect();
      (void)restarted->SaveState(Wall(10));
      restarted->EvaluateAll(Wall(20));
      ASSERT_TRUE(restarted->RestoreState(kAlertStateVersion, state, Wall(10)).ok());
    }
  }
  expect_unchanged();
}

// For tests of the engine thread (wall time): polls for up to 10 s.
bool WaitUntilFiring(const RuleEngine& engine, const std::string& alertname) {
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (absl::Now() < deadline) {
    for (const AlertView& a : engine.Alerts()) {
      if (a.labels.at("alertname") == alertname && a.phase == AlertPhase::kFiring) return true;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  return false;
}

class AlertStateFileTest : public RuleEngineTest {
 protected:
  void SetUp() override {
    std::string pattern = absl::StrCat(::testing::TempDir(), "/alert_state_XXXXXX");
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    path_ = dir_ + "/state/alerts.state";  // the folder is created on start
  }
  void TearDown() override { (void)std::system(absl::StrCat("rm -rf '", dir_, "'").c_str()); }

  // LeadSla firing since Wall(0), checkpointed at Wall(10) and, as the
  // current file, at Wall(20).
  void CheckpointTwice(RuleEngine* engine) {
    clock_.Set(absl::FromUnixSeconds(kT0) + absl::Minutes(50));
    for (int i = 0; i < 4; ++i) LeadExit(emea_, true, false);
    engine->EvaluateAll(Wall(0));
    engine->Checkpoint(Wall(10));
    engine->Checkpoint(Wall(20));
  }
  static void FlipByte(const std::string& path, size_t at) {
    std::string bytes = *ReadFile(path);
    bytes[at] = static_cast<char>(bytes[at] ^ 0x20);
    ASSERT_TRUE(WriteFileAtomically(path, bytes).ok());
  }

  std::string dir_;
  std::string path_;
};

TEST_F(AlertStateFileTest, StartRestoresStopCheckpoints) {
  clock_.Set(absl::FromUnixSeconds(kT0) + absl::Minutes(50));
  for (int i = 0; i < 4; ++i) LeadExit(emea_, true, false);  // LeadSla fires
  RecordingSink sink;
  auto first = MakeEngine(&rules_, &sink, nullptr, nullptr, path_);
  first->Start();  // no file yet: the first start
  EXPECT_EQ(Counter(*first, "kpid_alert_state_restores_total", "missing"), 1);
  ASSERT_TRUE(WaitUntilFiring(*first, "LeadSla"));
  first->Stop();
  EXPECT_GE(Counter(*first, "kpid_alert_state_checkpoints_total", "ok"), 1);
  EXPECT_EQ(Counter(*first, "kpid_alert_state_checkpoints_total", "failed"), 0);

  RecordingSink after;
  auto second = MakeEngine(&rules_, &after, nullptr, nullptr, path_);
  second->Start();
  ASSERT_EQ(second->Alerts().size(), 1u);  // before its first evaluation
  EXPECT_EQ(second->Alerts()[0].phase, AlertPhase::kFiring);
  EXPECT_EQ(second->Alerts()[0].active_at, first->Alerts()[0].active_at);
  EXPECT_EQ(Counter(*second, "kpid_alert_state_restores_total", "restored"), 1);
  EXPECT_EQ(Counter(*second, "kpid_alert_state_restores_total", "corrupt"), 0);
  second->Stop();
}

TEST_F(AlertStateFileTest, ACorruptFileFallsBackToThePreviousCheckpoint) {
  auto engine = MakeEngine(&rules_, &sink_, nullptr, nullptr, path_);
  engine->RestoreStateFile(Wall(0));  // creates the folder
  CheckpointTwice(engine.get());
  FlipByte(path_, 40);

  RecordingSink sink;
  auto restarted = MakeEngine(&rules_, &sink, nullptr, nullptr, path_);
  restarted->RestoreStateFile(Wall(30));
  EXPECT_EQ(Counter(*restarted, "kpid_alert_state_restores_total", "corrupt"), 1);
  EXPECT_EQ(Counter(*restarted, "kpid_alert_state_restores_total", "restored"), 1);
  ASSERT_EQ(restarted->Alerts().size(), 1u);
  EXPECT_EQ(restarted->Alerts()[0].phase, AlertPhase::kFiring);
  EXPECT_EQ(restarted->Alerts()[0].active_at, Wall(0));
}

TEST_F(AlertStateFileTest, WithBothFilesCorruptItStartsEmpty) {
  auto engine = MakeEngine(&rules_, &sink_, nullptr, nullptr, path_);
  engine->RestoreStateFile(Wall(0));
  CheckpointTwice(engine.get());
  FlipByte(path_, 40);
  FlipByte(path_ + ".prev", 40);

  RecordingSink sink;
  auto restarted = MakeEngine(&rules_, &sink, nullptr, nullptr, path_);
  restarted->RestoreStateFile(Wall(30));
  EXPECT_EQ(Counter(*restarted, "kpid_alert_state_restores_total", "corrupt"), 2);
  EXPECT_EQ(Counter(*restarted, "kpid_alert_state_restores_total", "restored"), 0);
  EXPECT_EQ(Counter(*restarted, "kpid_alert_state_restores_total", "missing"), 0);
  EXPECT_TRUE(restarted->Alerts().empty());
}

TEST_F(AlertStateFileTest, AnUnwritableFolderCountsFailedCheckpoints) {
  // The state path names a file under a regular file: every write fails.
  ASSERT_TRUE(WriteFileAtomically(dir_ + "/file", "x").ok());
  auto engine = MakeEngine(&rules_, &sink_, nullptr, nullptr, dir_ + "/file/alerts.state");
  engine->Checkpoint(Wall(0));
  engine->Checkpoint(Wall(10));
  EXPECT_EQ(Counter(*engine, "kpid_alert_state_checkpoints_total", "failed"), 2);
  EXPECT_EQ(Counter(*engine, "kpid_alert_state_checkpoints_total", "ok"), 0);
}

TEST(RuleIdentityTest, TuningIsNotPartOfIt) {
  const model::Config config = *model::ParseConfig(kConfig, "kpid.yaml");
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
  EXPECT_EQ(RuleIdentity(config, group, a), RuleIdentity(config, group, tuned));
  for (auto change : std::vector<std::function<void(AlertRule*)>>{
           [](AlertRule* r) { r->stage.reset(); },
           [](AlertRule* r) { r->stage = 0; },
           [](AlertRule* r) { r->kpi = "backlog_over_sla"; },
           [](AlertRule* r) { r->window = 0; },
           [](AlertRule* r) { r->by = {"region"}; },
           [](AlertRule* r) { r->labels["severity"] = {"ticket"}; },
           [](AlertRule* r) { r->name = "B"; },
       }) {
    AlertRule changed = a;
    change(&changed);
    EXPECT_NE(RuleIdentity(config, group, a), RuleIdentity(config, group, changed));
  }
  EXPECT_NE(RuleIdentity(config, group, a),
            RuleIdentity(config, RuleGroup{"h", absl::Seconds(1), {}}, a));
}

// State files outlive configs: a process added in front of `sales` moves
// its index, not its identity.
TEST(RuleIdentityTest, NamesNotIndexes) {
  const model::Config config = *model::ParseConfig(kConfig, "kpid.yaml");
  const absl::StatusOr<model::Config> grown = model::ParseConfig(R"(
windows: [5m, 1h]
dimensions: {names: [region]}
processes:
  - id: support
    stages: [{id: triage, sla: 1h}]
  - id: sales
    stages: [{id: lead, sla: 1h}, {id: quote, sla: 1d}]
)",
                                                                 "kpid.yaml");
  ASSERT_TRUE(grown.ok()) << grown.status();
  RuleGroup group{"g", absl::Seconds(1), {}};
  AlertRule a;
  a.name = "A";
  a.process = 0;
  a.stage = 0;
  a.window = 0;
  a.kpi = "sla_attainment";
  AlertRule moved = a;
  moved.process = 1;
  moved.window = 1;
  EXPECT_EQ(RuleIdentity(config, group, a), RuleIdentity(*grown, group, moved));
  EXPECT_NE(RuleIdentity(config, group, a), RuleIdentity(*grown, group, a));  // support, triage
}

}  // namespace
}  // namespace kpid::alert
