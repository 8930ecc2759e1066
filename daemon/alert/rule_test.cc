#include "daemon/alert/rule.h"

#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kpid::alert {
namespace {

using ::testing::HasSubstr;

constexpr char kConfig[] = R"(
windows: [5m, 1h]
dimensions: {names: [region]}
processes:
  - id: sales
    stages: [{id: lead, sla: 1h}, {id: quote, sla: 1d}]
)";

class RuleTest : public ::testing::Test {
 protected:
  RuleTest() : config_(*model::ParseConfig(kConfig, "kpid.yaml")) {}

  absl::StatusOr<std::vector<RuleGroup>> Parse(const std::string& yaml) {
    return ParseRules(yaml, "r.yaml", &config_);
  }
  // The error text of a file that must not load.
  std::string Error(const std::string& yaml) {
    auto groups = Parse(yaml);
    EXPECT_FALSE(groups.ok()) << yaml;
    return groups.ok() ? "" : std::string(groups.status().message());
  }

  model::Config config_;
};

constexpr char kGood[] = R"(groups:
  - name: g
    interval: 2s
    rules:
      - alert: QuoteSla
        process: sales
        stage: quote
        kpi: sla_attainment
        window: 1h
        op: "<="
        threshold: 0.95
        min_events: 20
        for: 5m
        keep_firing_for: 10m
        by: [region]
        labels: {severity: page}
        annotations: {summary: "{{ $labels.stage }} at {{$value}} in {{ $labels.region }}"}
      - alert: Backlog
        process: sales
        kpi: backlog_over_sla
        op: ">"
        threshold: 3
      - alert: Lost
        process: sales
        kpi: fallout
        window: 5m
        op: ">="
        threshold: 10
)";

TEST_F(RuleTest, ParsesEveryField) {
  auto groups = Parse(kGood);
  ASSERT_TRUE(groups.ok()) << groups.status();
  ASSERT_EQ(groups->size(), 1u);
  const RuleGroup& g = (*groups)[0];
  EXPECT_EQ(g.name, "g");
  EXPECT_EQ(g.interval, absl::Seconds(2));
  ASSERT_EQ(g.rules.size(), 3u);
  const AlertRule& r = g.rules[0];
  EXPECT_EQ(r.name, "QuoteSla");
  EXPECT_EQ(r.location, "r.yaml:5:9");
  EXPECT_EQ(r.process, 0);
  EXPECT_EQ(r.stage, 1);
  EXPECT_EQ(r.scope, model::KpiScope::kStage);
  EXPECT_EQ(r.window, 1);  // 1h is the second configured window
  EXPECT_EQ(r.op, CompareOp::kLessEqual);
  EXPECT_EQ(r.threshold, 0.95);
  EXPECT_EQ(r.min_events, 20);
  EXPECT_EQ(r.for_duration, absl::Minutes(5));
  EXPECT_EQ(r.keep_firing_for, absl::Minutes(10));
  EXPECT_EQ(r.by, std::vector<std::string>{"region"});
  EXPECT_EQ(r.labels.at("severity").text, "page");
  // Without a stage: a stage KPI applies to every stage; a backlog has no window.
  EXPECT_EQ(g.rules[1].stage, std::nullopt);
  EXPECT_EQ(g.rules[1].scope, model::KpiScope::kStage);
  EXPECT_EQ(g.rules[1].window, std::nullopt);
  // "fallout" without a stage is the process's count.
  EXPECT_EQ(g.rules[2].scope, model::KpiScope::kProcess);
}

TEST_F(RuleTest, DefaultIntervalIsOneSecond) {
  auto groups = Parse(
      "groups:\n  - name: g\n    rules:\n      - {alert: A, process: sales, kpi: started, "
      "window: 5m, op: '<', threshold: 1}\n");
  ASSERT_TRUE(groups.ok()) << groups.status();
  EXPECT_EQ((*groups)[0].interval, absl::Seconds(1));
  EXPECT_EQ((*groups)[0].rules[0].for_duration, absl::ZeroDuration());
}

// Each bad rule below sits at line 4, the rule's keys at column 9.
std::string OneRule(const std::string& body) {
  return "groups:\n  - name: g\n    rules:\n      - " + body + "\n";
}

TEST_F(RuleTest, UnknownProcessStageKpiAndWindow) {
  EXPECT_EQ(Error(OneRule("{alert: A, process: salez, kpi: started, window: 5m, op: '<', "
                          "threshold: 1}")),
            "r.yaml:4:29: alert A: unknown process \"salez\"; did you mean \"sales\"?");
  EXPECT_EQ(Error(OneRule("{alert: A, process: sales, stage: qoute, kpi: conversion, window: 5m, "
                          "op: '<', threshold: 1}")),
            "r.yaml:4:43: alert A: unknown stage \"qoute\" of process sales; did you mean "
            "\"quote\"?");
  EXPECT_EQ(Error(OneRule("{alert: A, process: sales, stage: quote, kpi: convertion, window: 5m, "
                          "op: '<', threshold: 1}")),
            "r.yaml:4:55: alert A: unknown stage KPI \"convertion\"; did you mean \"conversion\"?");
  EXPECT_EQ(Error(OneRule("{alert: A, process: sales, kpi: started, window: 2h, op: '<', "
                          "threshold: 1}")),
            "r.yaml:4:58: alert A: window 2h is not one of the configured windows (5m, 1h)");
  EXPECT_EQ(Error(OneRule("{alert: A, process: sales, kpi: started, op: '<', threshold: 1}")),
            "r.yaml:4:9: alert A: missing required key \"window\"");
  EXPECT_EQ(Error(OneRule("{alert: A, process: sales, kpi: backlog, window: 5m, op: '>', "
                          "threshold: 1}")),
            "r.yaml:4:58: alert A: backlog is a current value; window does not apply");
}

TEST_F(RuleTest, BadOpDurationsAndNumbers) {
  EXPECT_EQ(Error(OneRule("{alert: A, process: sales, kpi: started, window: 5m, op: '=<', "
                          "threshold: 1}")),
            "r.yaml:4:66: alert A: op \"=<\" is not one of < <= > >= == !=");
  EXPECT_EQ(Error(OneRule("{alert: A, process: sales, kpi: started, window: 5m, op: '<', "
                          "threshold: 1, for: 5 min}")),
            "r.yaml:4:90: alert A.for: invalid duration \"5 min\": missing or unknown unit "
            "(expected e.g. 90s, 5m, 1h30m, 7d)");
  EXPECT_EQ(Error(OneRule("{alert: A, process: sales, kpi: started, window: 5m, op: '<', "
                          "threshold: high}")),
            "r.yaml:4:82: alert A: threshold: expected a finite number, got \"high\"");
  EXPECT_EQ(Error(OneRule("{alert: A, process: sales, kpi: started, window: 5m, op: '<', "
                          "threshold: 1, min_events: -2}")),
            "r.yaml:4:97: alert A.min_events: -2 is out of range [0, 1099511627776]");
}

TEST_F(RuleTest, MissingKeysUnknownKeysAndBadNames) {
  EXPECT_EQ(Error(OneRule("{alert: A, process: sales, kpi: started, window: 5m, op: '<'}")),
            "r.yaml:4:9: missing required key \"alert A.threshold\"");
  EXPECT_THAT(Error(OneRule("{alert: A, process: sales, kpi: started, window: 5m, op: '<', "
                            "threshold: 1, treshold: 2}")),
              HasSubstr("r.yaml:4:85: unknown key \"alert A.treshold\"; did you mean "
                        "\"threshold\"?"));
  EXPECT_THAT(Error(OneRule("{alert: Bad-Name, process: sales, kpi: started, window: 5m, "
                            "op: '<', threshold: 1}")),
              HasSubstr("r.yaml:4:17: alert Bad-Name.alert: \"Bad-Name\" must be a valid "
                        "name"));
  EXPECT_EQ(Error("groups:\n  - rules: []\n"),
            "r.yaml:2:5: missing required key \"groups[0].name\"");
  EXPECT_EQ(Error("rules: []\n"),
            "r.yaml:1:1: missing required key \"groups\"\nr.yaml:1:1: unknown key \"rules\"");
  EXPECT_EQ(Error("groups: [\n"), "r.yaml:2:1: end of sequence flow not found");
}

TEST_F(RuleTest, ByLabelsAndTemplates) {
  const std::string base =
      "{alert: A, process: sales, kpi: started, window: 5m, op: '<', threshold: 1, ";
  EXPECT_EQ(Error(OneRule(base + "by: [channel]}")),
            "r.yaml:4:90: alert A: by: \"channel\" is not a configured dimension");
  EXPECT_EQ(Error(OneRule(base + "annotations: {s: '{{ $labels.region }}'}}")),
            "r.yaml:4:102: alert A: annotations.s: unknown placeholder {{ $labels.region }} (use "
            "$value or $labels.alertname|$labels.process|$labels.stage|$labels.window)");
  EXPECT_EQ(Error(OneRule(base + "annotations: {s: 'at {{ $value'}}")),
            "r.yaml:4:102: alert A: annotations.s: \"{{\" without a closing \"}}\"");
  EXPECT_EQ(Error(OneRule(base + "labels: {process: x}}")),
            "r.yaml:4:94: alert A: labels: \"process\" is set by kpid");
  EXPECT_EQ(
      Error(OneRule("{alert: A, process: sales, stage: lead, kpi: cycle_time_p90, window: 5m, "
                    "op: '>', threshold: 1, by: [region]}")),
      "r.yaml:4:109: alert A: cycle_time_p90 has no breakdown by dimension (quantiles are "
      "kept per stage and process); drop \"by\"");
  // With by: [region] the placeholder is known.
  EXPECT_TRUE(
      Parse(OneRule(base + "by: [region], annotations: {s: '{{ $labels.region }}'}}")).ok());
}

// kpid_alerts carries alertname and state (DESIGN §4): a rule label or a
// dimension of those names would put a label on it twice, and Prometheus
// drops such a scrape whole.
TEST_F(RuleTest, NoLabelTwiceOnAnAlert) {
  const std::string base =
      "{alert: A, process: sales, kpi: started, window: 5m, op: '<', threshold: 1, ";
  EXPECT_EQ(Error(OneRule(base + "labels: {state: x}}")),
            "r.yaml:4:94: alert A: labels: \"state\" is set by kpid");
  EXPECT_EQ(Error(OneRule(base + "by: [region], labels: {region: x}}")),
            "r.yaml:4:108: alert A: labels: \"region\" is set by kpid");

  std::string with_state_dimension = kConfig;
  absl::StrReplaceAll({{"names: [region]", "names: [region, state]"}}, &with_state_dimension);
  ASSERT_NE(with_state_dimension, kConfig);
  config_ = *model::ParseConfig(with_state_dimension, "kpid.yaml");
  EXPECT_EQ(Error(OneRule(base + "by: [state]}")),
            "r.yaml:4:90: alert A: by: dimension \"state\" has the name of a label kpid sets on "
            "every alert");
}

TEST_F(RuleTest, DuplicateNamesAcrossFilesAndGroups) {
  const std::string dir = ::testing::TempDir();
  const std::string rule =
      "{alert: Same, process: sales, kpi: started, window: 5m, op: '<', threshold: 1}";
  for (const char* name : {"a.yaml", "b.yaml"}) {
    FILE* f = std::fopen((dir + name).c_str(), "w");
    std::fputs(OneRule(rule).c_str(), f);
    std::fclose(f);
  }
  absl::StatusOr<RuleSet> set = LoadRuleFiles({dir + "a.yaml", dir + "b.yaml"}, &config_);
  ASSERT_FALSE(set.ok());
  EXPECT_EQ(set.status().message(),
            dir + "b.yaml:4:9: duplicate alert name \"Same\" (first at " + dir + "a.yaml:4:9)");
  EXPECT_EQ(Error("groups:\n  - {name: g, rules: []}\n  - {name: g, rules: []}\n"),
            "r.yaml:3:5: duplicate group name \"g\"");
  absl::StatusOr<RuleSet> missing = LoadRuleFiles({dir + "none.yaml"}, &config_);
  EXPECT_FALSE(missing.ok());
}

TEST_F(RuleTest, WithoutAConfigOnlyTheShapeIsChecked) {
  const std::string rule = OneRule(
      "{alert: A, process: anything, stage: any, kpi: conversion, window: 3h, op: '<', "
      "threshold: 1}");
  EXPECT_TRUE(ParseRules(rule, "r.yaml", nullptr).ok());
  // Still checked: KPI names, ops, durations, templates.
  absl::StatusOr<std::vector<RuleGroup>> bad = ParseRules(
      OneRule("{alert: A, process: p, kpi: conversions, window: 3h, op: '<', threshold: 1}"),
      "r.yaml", nullptr);
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("unknown stage KPI \"conversions\""));
}

TEST(Render, FillsValueAndLabels) {
  Template t{"{{ $labels.stage }} at {{$value}} ({{ $labels.nope }}) {{ $value }}"};
  EXPECT_EQ(Render(t, 0.875, {{"stage", "quote"}}), "quote at 0.875 () 0.875");
  EXPECT_EQ(Render(Template{"no placeholders"}, 1, {}), "no placeholders");
}

TEST(Compare, EveryOp) {
  EXPECT_TRUE(Compare(CompareOp::kLess, 1, 2));
  EXPECT_FALSE(Compare(CompareOp::kLess, 2, 2));
  EXPECT_TRUE(Compare(CompareOp::kLessEqual, 2, 2));
  EXPECT_TRUE(Compare(CompareOp::kGreater, 3, 2));
  EXPECT_FALSE(Compare(CompareOp::kGreaterEqual, 1, 2));
  EXPECT_TRUE(Compare(CompareOp::kEqual, 2, 2));
  EXPECT_TRUE(Compare(CompareOp::kNotEqual, 1, 2));
  EXPECT_EQ(CompareOpName(CompareOp::kGreaterEqual), ">=");
}

TEST(ExampleRules, LoadAgainstTheExampleConfig) {
  absl::StatusOr<model::Config> config =
      model::LoadConfigFile(std::string(KPID_SOURCE_DIR) + "/examples/lead_to_cash.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  absl::StatusOr<std::vector<std::string>> paths = ExpandRuleGlobs(*config);
  ASSERT_TRUE(paths.ok()) << paths.status();
  ASSERT_FALSE(paths->empty());
  absl::StatusOr<RuleSet> set = LoadRuleFiles(*paths, &*config);
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(set->rule_count(), 6u);  // 3 + 2 + 1 in its three groups
}

}  // namespace
}  // namespace kpid::alert
