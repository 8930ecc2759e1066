// DESIGN §3 end to end: a hand-written scenario of two processes with
// dimensions, fed through the real consumer on kpid's embedded broker with
// `clock: event`, checked on /metrics against values worked out by hand
// below (never copied from kpid's output).
//
// One partition, so events are handled in exactly the order written. Times
// are minutes after T0 = 2026-03-02T00:00:00Z. The hand calculations are in
// the comments next to each expectation.
#include <signal.h>

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "kpid/v1/event.pb.h"
#include "tests/testing/kafka_client.h"
#include "tests/testing/process.h"

namespace kpid::testing {
namespace {

using kpid::v1::ProcessEvent;

constexpr int64_t kT0 = 1772409600;  // 2026-03-02T00:00:00Z

constexpr char kConfig[] = R"(
kafka:
  brokers: embedded
  topic: events
  group_id: scenario
  partitions: 1
  bootstrap_file: $DIR/bootstrap
http: {listen: "127.0.0.1:$PORT"}
grpc: {listen: "127.0.0.1:0"}
clock: event
windows: [1h, 1d]
retention: 2d
dedup_horizon: 1h
dimensions: {names: [region], max_series_per_process: 2}
processes:
  - id: sales
    stages:
      - {id: lead, sla: 1h}
      - {id: demo, sla: 4h}
      - {id: quote, sla: 1d}
  - id: support
    stages:
      - {id: triage, sla: 30m}
      - {id: fix, sla: 8h}
)";

struct Step {
  const char* process;
  const char* case_id;
  ProcessEvent::Kind kind;
  const char* stage;
  int minute;
  double value;  // amount or score
  const char* region;
  const char* event_id;  // default: e<index>
};

constexpr auto kEntered = ProcessEvent::STAGE_ENTERED;
constexpr auto kCompleted = ProcessEvent::CASE_COMPLETED;
constexpr auto kFallout = ProcessEvent::CASE_FALLOUT;
constexpr auto kCost = ProcessEvent::COST;
constexpr auto kFeedback = ProcessEvent::FEEDBACK;

// Sales regions: emea and amer are the first two combinations; S4's apac
// comes third and folds into __other__ (max_series_per_process: 2). Same in
// support for T5.
const std::vector<Step> kSteps = {
    {"sales", "S1", kEntered, "lead", 0, 0, "emea", nullptr},       // 1
    {"support", "T1", kEntered, "triage", 5, 0, "emea", nullptr},   // 2
    {"sales", "S2", kEntered, "lead", 10, 0, "emea", nullptr},      // 3
    {"support", "T2", kEntered, "triage", 15, 0, "emea", nullptr},  // 4
    {"sales", "S3", kEntered, "lead", 20, 0, "amer", nullptr},      // 5
    {"support", "T1", kEntered, "fix", 25, 0, "emea", nullptr},     // 6
    {"sales", "S1", kEntered, "demo", 30, 0, "emea", "s1-demo"},    // 7
    {"sales", "S4", kEntered, "lead", 40, 0, "apac", nullptr},      // 8
    // #7 again, 10 minutes later (now = 40): within dedup_horizon, a duplicate.
    // (Sent after minute 90 it would be a new event again: same_stage.)
    {"sales", "S1", kEntered, "demo", 30, 0, "emea", "s1-demo"},  // 9
    {"sales", "S3", kFallout, "", 50, 0, "amer", nullptr},        // 10 (T2 breaches at 45 first)
    {"support", "T2", kFallout, "", 60, 0, "emea", nullptr},      // 11
    {"sales", "S4", kEntered, "demo", 60, 0, "apac", nullptr},    // 12
    {"sales", "S3", kEntered, "demo", 70, 0, "amer", nullptr},    // 13 case_closed
    {"sales", "S99", kCompleted, "", 80, 10, "emea",
     nullptr},  // 14 unknown_case (S2 breaches at 70 first)
    {"sales", "S2", kEntered, "demo", 100, 0, "emea", nullptr},      // 15
    {"support", "T3", kEntered, "triage", 100, 0, "amer", nullptr},  // 16
    {"sales", "S4", kEntered, "quote", 120, 0, "apac", nullptr},     // 17
    {"sales", "S4", kEntered, "demo", 180, 0, "apac",
     nullptr},  // 18 rework (T3 breaches at 130 first)
    {"sales", "S1", kEntered, "quote", 200, 0, "emea", nullptr},     // 19
    {"support", "T4", kEntered, "triage", 200, 0, "amer", nullptr},  // 20
    {"support", "T4", kEntered, "fix", 210, 0, "amer", nullptr},     // 21
    {"sales", "S5", kEntered, "lead", 300, 0, "emea", nullptr},      // 22
    {"sales", "S6", kEntered, "lead", 310, 0, "amer", nullptr},      // 23
    {"sales", "S6", kEntered, "demo", 320, 0, "amer", nullptr},      // 24
    {"sales", "S6", kEntered, "demo", 330, 0, "amer", nullptr},      // 25 same_stage
    {"sales", "S4", kEntered, "quote", 400, 0, "apac",
     nullptr},  // 26 rework (S2 demo 340, S5 lead 360 breach)
    {"support", "T1", kCompleted, "", 500, 0, "emea", nullptr},      // 27
    {"support", "T1", kCost, "", 510, 20, "emea", nullptr},          // 28
    {"sales", "S4", kCompleted, "", 600, 500, "apac", nullptr},      // 29 (S6 demo breaches at 560)
    {"sales", "S4", kFeedback, "", 620, 7, "apac", nullptr},         // 30
    {"support", "T5", kEntered, "triage", 700, 0, "apac", nullptr},  // 31 (T4 fix breaches at 690)
    {"support", "T5", kEntered, "fix", 720, 0, "apac", nullptr},     // 32
    {"support", "T5", kFallout, "", 800, 0, "apac", nullptr},        // 33
    {"sales", "S1", kCompleted, "", 1000, 1000, "emea", nullptr},    // 34
    {"sales", "S1", kCost, "", 1010, 50, "emea", nullptr},           // 35
    {"sales", "S1", kFeedback, "", 1020, 9, "emea", nullptr},        // 36
    {"sales", "S1", kEntered, "negotiation", 1030, 0, "emea", nullptr},  // 37 unknown_stage
    {"sales", "S7", kEntered, "lead", 1530, 0, "emea", nullptr},         // 38
    {"sales", "S9", kEntered, "lead", 1540, 0, "emea", nullptr},         // 39
    {"sales", "S9", kFallout, "", 1545, 0, "emea", nullptr},             // 40
    {"sales", "S7", kEntered, "demo", 1550, 0, "emea", nullptr},         // 41
    {"sales", "S8", kEntered, "lead", 1560, 0, "amer", nullptr},         // 42 : watermark T0 + 26h
};

std::string Encode(const Step& s, size_t index) {
  ProcessEvent e;
  e.set_event_id(s.event_id ? s.event_id : absl::StrCat("e", index));
  e.set_process(s.process);
  e.set_case_id(s.case_id);
  e.set_kind(s.kind);
  e.set_stage(s.stage);
  if (s.kind == kFeedback) {
    e.set_score(s.value);
  } else {
    e.set_amount(s.value);
  }
  e.mutable_occurred_at()->set_seconds(kT0 + int64_t{s.minute} * 60);
  (*e.mutable_attributes())["region"] = s.region;
  return e.SerializeAsString();
}

class ScenarioTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(MakeTempDir("scenario"));
    port_ = FreePort();
    const std::string config = *dir_ + "/kpid.yaml";
    WriteFileOrDie(config,
                   absl::StrReplaceAll(kConfig, {{"$DIR", *dir_}, {"$PORT", absl::StrCat(port_)}}));
    kpid_ = new Subprocess({KPID_BINARY, "--config", config}, *dir_ + "/kpid.log");
    ASSERT_TRUE(
        WaitFor([] { return !ReadFileOrEmpty(*dir_ + "/bootstrap").empty(); }, absl::Seconds(10)));
    const std::string brokers(absl::StripSuffix(ReadFileOrEmpty(*dir_ + "/bootstrap"), "\n"));
    {
      TestProducer producer(brokers);
      for (size_t i = 0; i < kSteps.size(); ++i) {
        producer.Send("events", {kSteps[i].case_id, Encode(kSteps[i], i + 1), {}, -1});
      }
      ASSERT_EQ(producer.Flush(absl::Seconds(30)), 0);
    }
    // Every message accounted for: consumed + rejected + duplicate = 42.
    ASSERT_TRUE(WaitFor(
        [] {
          MetricSamples m = ParseMetrics(HttpGet(port_, "/metrics").body);
          double rejected = 0;
          for (const auto& [series, value] : m) {
            if (series.rfind("kpid_events_rejected_total{", 0) == 0) rejected += value;
          }
          return Sample(m, "kpid_events_consumed_total") + rejected +
                     Sample(m, "kpid_events_duplicate_total") >=
                 static_cast<double>(kSteps.size());
        },
        absl::Seconds(60)))
        << ReadFileOrEmpty(*dir_ + "/kpid.log");
    scrape_ = new std::string(HttpGet(port_, "/metrics").body);
    metrics_ = new MetricSamples(ParseMetrics(*scrape_));
  }

  static void TearDownTestSuite() {
    kpid_->Signal(SIGTERM);
    EXPECT_EQ(kpid_->Wait(absl::Seconds(10)), 0);
    delete kpid_;
  }

  // The value of a series, labels in any order; -1 when absent.
  static double V(const std::string& series) { return Sample(*metrics_, series); }
  static bool Absent(const std::string& series) { return metrics_->count(series) == 0; }

  static std::string* dir_;
  static std::string* scrape_;
  static int port_;
  static Subprocess* kpid_;
  static MetricSamples* metrics_;
};

std::string* ScenarioTest::dir_ = nullptr;
std::string* ScenarioTest::scrape_ = nullptr;
int ScenarioTest::port_ = 0;
Subprocess* ScenarioTest::kpid_ = nullptr;
MetricSamples* ScenarioTest::metrics_ = nullptr;

std::string S(const std::string& name, const std::string& process, const std::string& region,
              const std::string& stage, const std::string& extra = "") {
  // Labels sorted by name, as ParseMetrics normalizes them.
  std::string labels = absl::StrCat("process=\"", process, "\",region=\"", region, "\"");
  if (!stage.empty()) absl::StrAppend(&labels, ",stage=\"", stage, "\"");
  if (!extra.empty()) {
    // extra is e.g. outcome="advanced" or window="1h": insert in order.
    std::vector<std::string> parts = {absl::StrCat("process=\"", process, "\""),
                                      absl::StrCat("region=\"", region, "\"")};
    if (!stage.empty()) parts.push_back(absl::StrCat("stage=\"", stage, "\""));
    parts.push_back(extra);
    std::sort(parts.begin(), parts.end());
    labels = absl::StrJoin(parts, ",");
  }
  return absl::StrCat(name, "{", labels, "}");
}

TEST_F(ScenarioTest, PromtoolFindsNothingToReport) {
  const std::string file = *dir_ + "/scrape.txt";
  WriteFileOrDie(file, *scrape_);
  std::string out;
  EXPECT_EQ(RunCommand({"/bin/sh", "-c", "promtool check metrics < " + file}, &out), 0) << out;
  EXPECT_EQ(out, "");
}

TEST_F(ScenarioTest, EveryMessageIsCountedOnceByOutcome) {
  EXPECT_EQ(V("kpid_events_consumed_total"), 37);  // 42 - 4 rejected - 1 duplicate
  EXPECT_EQ(V("kpid_events_duplicate_total"), 1);  // #9, a repeat of #7
  EXPECT_EQ(V("kpid_events_rejected_total{reason=\"case_closed\"}"), 1);   // #13, S3 closed at 50
  EXPECT_EQ(V("kpid_events_rejected_total{reason=\"unknown_case\"}"), 1);  // #14, S99
  EXPECT_EQ(V("kpid_events_rejected_total{reason=\"same_stage\"}"), 1);  // #25, S6 already in demo
  EXPECT_EQ(V("kpid_events_rejected_total{reason=\"unknown_stage\"}"), 1);  // #37, "negotiation"
  EXPECT_EQ(V("kpid_events_late_total"), 0);
  EXPECT_EQ(V("kpid_watermark_timestamp_seconds"), kT0 + 1560 * 60);
  EXPECT_EQ(V("kpid_series_folded_total{process=\"sales\"}"), 1);    // S4
  EXPECT_EQ(V("kpid_series_folded_total{process=\"support\"}"), 1);  // T5
}

TEST_F(ScenarioTest, ProcessCounters) {
  // sales emea: S1 S2 S5 S7 S9 started; S1 completed (1000); S9 fell out; cost 50 (S1).
  EXPECT_EQ(V(S("kpid_process_cases_started_total", "sales", "emea", "")), 5);
  EXPECT_EQ(V(S("kpid_process_cases_completed_total", "sales", "emea", "")), 1);
  EXPECT_EQ(V(S("kpid_process_cases_fallout_total", "sales", "emea", "")), 1);
  EXPECT_EQ(V(S("kpid_process_revenue_total", "sales", "emea", "")), 1000);
  EXPECT_EQ(V(S("kpid_process_cost_total", "sales", "emea", "")), 50);
  EXPECT_EQ(V(S("kpid_process_open_cases", "sales", "emea", "")), 3);  // S2 S5 S7
  // sales amer: S3 S6 S8; S3 fell out; S6 S8 open.
  EXPECT_EQ(V(S("kpid_process_cases_started_total", "sales", "amer", "")), 3);
  EXPECT_EQ(V(S("kpid_process_cases_fallout_total", "sales", "amer", "")), 1);
  EXPECT_EQ(V(S("kpid_process_cases_completed_total", "sales", "amer", "")), 0);
  EXPECT_EQ(V(S("kpid_process_open_cases", "sales", "amer", "")), 2);
  // sales __other__: S4 completed with 500.
  EXPECT_EQ(V(S("kpid_process_cases_started_total", "sales", "__other__", "")), 1);
  EXPECT_EQ(V(S("kpid_process_cases_completed_total", "sales", "__other__", "")), 1);
  EXPECT_EQ(V(S("kpid_process_revenue_total", "sales", "__other__", "")), 500);
  EXPECT_EQ(V(S("kpid_process_open_cases", "sales", "__other__", "")), 0);
  // support emea: T1 completed (0), T2 fell out, cost 20.
  EXPECT_EQ(V(S("kpid_process_cases_started_total", "support", "emea", "")), 2);
  EXPECT_EQ(V(S("kpid_process_cases_completed_total", "support", "emea", "")), 1);
  EXPECT_EQ(V(S("kpid_process_cases_fallout_total", "support", "emea", "")), 1);
  EXPECT_EQ(V(S("kpid_process_cost_total", "support", "emea", "")), 20);
  // support amer: T3 T4 open; __other__: T5 fell out.
  EXPECT_EQ(V(S("kpid_process_open_cases", "support", "amer", "")), 2);
  EXPECT_EQ(V(S("kpid_process_cases_fallout_total", "support", "__other__", "")), 1);
  EXPECT_EQ(V(S("kpid_process_cases_expired_total", "support", "__other__", "")), 0);
}

TEST_F(ScenarioTest, OldestOpenCaseAgePerStage) {
  // Open at the end (now = the watermark, minute 1560), by stage and entry:
  //   sales lead: S5@300, S8@1560 -> 1560 - 300 = 1260 min = 75600 s
  //   sales demo: S2@100, S6@320, S7@1550 -> 1460 min = 87600 s
  //   sales quote: none (S1 and S4 completed) -> no sample
  //   support triage: T3@100 -> 87600 s; support fix: T4@210 -> 1350 min = 81000 s
  // The trackers publish their view at each Tick (~100 ms), so wait for the
  // view that follows the last event.
  const std::map<std::string, double> expected = {
      {"kpid_stage_oldest_case_age_seconds{process=\"sales\",stage=\"demo\"}", 87600},
      {"kpid_stage_oldest_case_age_seconds{process=\"sales\",stage=\"lead\"}", 75600},
      {"kpid_stage_oldest_case_age_seconds{process=\"support\",stage=\"fix\"}", 81000},
      {"kpid_stage_oldest_case_age_seconds{process=\"support\",stage=\"triage\"}", 87600},
  };
  std::map<std::string, double> ages;
  EXPECT_TRUE(WaitFor(
      [&] {
        ages.clear();
        for (const auto& [series, value] : ParseMetrics(HttpGet(port_, "/metrics").body)) {
          if (series.rfind("kpid_stage_oldest_case_age_seconds{", 0) == 0) ages[series] = value;
        }
        return ages == expected;
      },
      absl::Seconds(5)));
  EXPECT_EQ(ages, expected);
}

TEST_F(ScenarioTest, StageCountersAndGauges) {
  const std::string adv = "outcome=\"advanced\"", fo = "outcome=\"fallout\"";
  // sales emea lead: entered S1 S2 S5 S7 S9; exits S1@30 (30m met), S2@100 (90m missed),
  // S9@1545 fallout (5m met), S7@1550 (20m met); S5 open past 360; S2 breached at 70.
  EXPECT_EQ(V(S("kpid_stage_entered_total", "sales", "emea", "lead")), 5);
  EXPECT_EQ(V(S("kpid_stage_exited_total", "sales", "emea", "lead", adv)), 3);
  EXPECT_EQ(V(S("kpid_stage_exited_total", "sales", "emea", "lead", fo)), 1);
  EXPECT_EQ(V(S("kpid_stage_sla_met_total", "sales", "emea", "lead")), 3);
  EXPECT_EQ(V(S("kpid_stage_sla_missed_total", "sales", "emea", "lead")), 1);
  EXPECT_EQ(V(S("kpid_stage_sla_breaches_total", "sales", "emea", "lead")), 2);
  EXPECT_EQ(V(S("kpid_stage_backlog", "sales", "emea", "lead")), 1);
  EXPECT_EQ(V(S("kpid_stage_backlog_over_sla", "sales", "emea", "lead")), 1);
  EXPECT_EQ(V(S("kpid_stage_rework_total", "sales", "emea", "lead")), 0);
  // Cycle times 1800, 5400, 300, 1200 s.
  EXPECT_EQ(V(S("kpid_stage_cycle_time_seconds_bucket", "sales", "emea", "lead", "le=\"300\"")), 1);
  EXPECT_EQ(V(S("kpid_stage_cycle_time_seconds_bucket", "sales", "emea", "lead", "le=\"1800\"")),
            3);
  EXPECT_EQ(V(S("kpid_stage_cycle_time_seconds_bucket", "sales", "emea", "lead", "le=\"3600\"")),
            3);
  EXPECT_EQ(V(S("kpid_stage_cycle_time_seconds_bucket", "sales", "emea", "lead", "le=\"7200\"")),
            4);
  EXPECT_EQ(V(S("kpid_stage_cycle_time_seconds_bucket", "sales", "emea", "lead", "le=\"+Inf\"")),
            4);
  EXPECT_EQ(V(S("kpid_stage_cycle_time_seconds_sum", "sales", "emea", "lead")), 8700);
  EXPECT_EQ(V(S("kpid_stage_cycle_time_seconds_count", "sales", "emea", "lead")), 4);
  // sales emea demo: entered S1@30 S2@100 S7@1550; exit S1@200 (170m met); S2 open, breached at
  // 340.
  EXPECT_EQ(V(S("kpid_stage_entered_total", "sales", "emea", "demo")), 3);
  EXPECT_EQ(V(S("kpid_stage_exited_total", "sales", "emea", "demo", adv)), 1);
  EXPECT_EQ(V(S("kpid_stage_sla_breaches_total", "sales", "emea", "demo")), 1);
  EXPECT_EQ(V(S("kpid_stage_backlog", "sales", "emea", "demo")), 2);
  EXPECT_EQ(V(S("kpid_stage_backlog_over_sla", "sales", "emea", "demo")), 1);
  // sales emea quote: S1 200 -> completed 1000 (48000 s, met: SLA 1d).
  EXPECT_EQ(V(S("kpid_stage_sla_met_total", "sales", "emea", "quote")), 1);
  EXPECT_EQ(V(S("kpid_stage_cycle_time_seconds_bucket", "sales", "emea", "quote", "le=\"43200\"")),
            0);
  EXPECT_EQ(V(S("kpid_stage_cycle_time_seconds_bucket", "sales", "emea", "quote", "le=\"86400\"")),
            1);
  // sales amer: S3 lead fallout (met), S6 lead->demo (met); S6 open in demo, breached at 560;
  // S8 in lead since 1560 (deadline 1620 not passed).
  EXPECT_EQ(V(S("kpid_stage_exited_total", "sales", "amer", "lead", fo)), 1);
  EXPECT_EQ(V(S("kpid_stage_exited_total", "sales", "amer", "lead", adv)), 1);
  EXPECT_EQ(V(S("kpid_stage_backlog", "sales", "amer", "lead")), 1);
  EXPECT_EQ(V(S("kpid_stage_backlog_over_sla", "sales", "amer", "lead")), 0);
  EXPECT_EQ(V(S("kpid_stage_sla_breaches_total", "sales", "amer", "demo")), 1);
  EXPECT_EQ(V(S("kpid_stage_backlog_over_sla", "sales", "amer", "demo")), 1);
  // sales __other__ (S4): demo entered twice (rework once), quote entered twice (rework once).
  EXPECT_EQ(V(S("kpid_stage_entered_total", "sales", "__other__", "demo")), 2);
  EXPECT_EQ(V(S("kpid_stage_rework_total", "sales", "__other__", "demo")), 1);
  EXPECT_EQ(V(S("kpid_stage_entered_total", "sales", "__other__", "quote")), 2);
  EXPECT_EQ(V(S("kpid_stage_rework_total", "sales", "__other__", "quote")), 1);
  EXPECT_EQ(V(S("kpid_stage_exited_total", "sales", "__other__", "quote", adv)), 2);
  EXPECT_EQ(V(S("kpid_stage_cycle_time_seconds_sum", "sales", "__other__", "quote")), 15600);
  // support emea triage: T1 met (20m), T2 fell out at 45m, missed, breached at 45.
  EXPECT_EQ(V(S("kpid_stage_sla_met_total", "support", "emea", "triage")), 1);
  EXPECT_EQ(V(S("kpid_stage_sla_missed_total", "support", "emea", "triage")), 1);
  EXPECT_EQ(V(S("kpid_stage_sla_breaches_total", "support", "emea", "triage")), 1);
  EXPECT_EQ(V(S("kpid_stage_backlog_over_sla", "support", "emea", "triage")), 0);
  // support emea fix: T1 25 -> 500 = 28500 s <= 8h: met, in le="28800".
  EXPECT_EQ(V(S("kpid_stage_cycle_time_seconds_bucket", "support", "emea", "fix", "le=\"14400\"")),
            0);
  EXPECT_EQ(V(S("kpid_stage_cycle_time_seconds_bucket", "support", "emea", "fix", "le=\"28800\"")),
            1);
  // support amer: T3 open in triage (breached 130); T4 open in fix (breached 690).
  EXPECT_EQ(V(S("kpid_stage_backlog_over_sla", "support", "amer", "triage")), 1);
  EXPECT_EQ(V(S("kpid_stage_backlog_over_sla", "support", "amer", "fix")), 1);
  EXPECT_EQ(V(S("kpid_stage_sla_breaches_total", "support", "amer", "fix")), 1);
  // support __other__ (T5): fix exit as fallout after 80m, met.
  EXPECT_EQ(V(S("kpid_stage_exited_total", "support", "__other__", "fix", fo)), 1);
  EXPECT_EQ(V(S("kpid_stage_sla_met_total", "support", "__other__", "fix")), 1);
}

TEST_F(ScenarioTest, LeadTimesAndTransitions) {
  // S1: 0 -> 1000 min = 60000 s; S4: 40 -> 600 = 33600 s; T1: 5 -> 500 = 29700 s.
  EXPECT_EQ(V(S("kpid_process_lead_time_seconds_sum", "sales", "emea", "")), 60000);
  EXPECT_EQ(V(S("kpid_process_lead_time_seconds_bucket", "sales", "emea", "", "le=\"43200\"")), 0);
  EXPECT_EQ(V(S("kpid_process_lead_time_seconds_bucket", "sales", "emea", "", "le=\"86400\"")), 1);
  EXPECT_EQ(V(S("kpid_process_lead_time_seconds_sum", "sales", "__other__", "")), 33600);
  EXPECT_EQ(V(S("kpid_process_lead_time_seconds_sum", "support", "emea", "")), 29700);
  EXPECT_EQ(V(S("kpid_process_lead_time_seconds_count", "sales", "amer", "")), 0);
  // lead->demo: S1 S2 S4 S6 S7; demo->quote: S1 S4 S4; quote->demo: S4; triage->fix: T1 T4 T5.
  EXPECT_EQ(V("kpid_transitions_total{from=\"lead\",process=\"sales\",to=\"demo\"}"), 5);
  EXPECT_EQ(V("kpid_transitions_total{from=\"demo\",process=\"sales\",to=\"quote\"}"), 3);
  EXPECT_EQ(V("kpid_transitions_total{from=\"quote\",process=\"sales\",to=\"demo\"}"), 1);
  EXPECT_EQ(V("kpid_transitions_total{from=\"triage\",process=\"support\",to=\"fix\"}"), 3);
  EXPECT_TRUE(Absent("kpid_transitions_total{from=\"lead\",process=\"sales\",to=\"quote\"}"));
}

// Windows end at the watermark, minute 1560. The 1h window reads 1-minute
// buckets [1500, 1560]; the 1d window 24-minute buckets [5, 65], i.e.
// minutes [120, 1584): facts before minute 120 have slid out of it.
TEST_F(ScenarioTest, OneHourWindow) {
  const std::string w = "window=\"1h\"";
  // sales emea: S7 and S9 started; S9 fell out (lead, 5m met); S7 lead -> demo (20m met).
  EXPECT_EQ(V(S("kpid_window_process_started", "sales", "emea", "", w)), 2);
  EXPECT_EQ(V(S("kpid_window_process_fallout", "sales", "emea", "", w)), 1);
  EXPECT_EQ(V(S("kpid_window_process_completed", "sales", "emea", "", w)), 0);
  EXPECT_EQ(V(S("kpid_window_process_win_ratio", "sales", "emea", "", w)), 0);     // 0 / (0 + 1)
  EXPECT_TRUE(Absent(S("kpid_window_process_avg_deal", "sales", "emea", "", w)));  // 0 completed
  EXPECT_TRUE(Absent(S("kpid_window_process_feedback_score", "sales", "emea", "", w)));
  EXPECT_EQ(V(S("kpid_window_stage_entered", "sales", "emea", "lead", w)), 2);
  EXPECT_EQ(V(S("kpid_window_stage_exited", "sales", "emea", "lead", w)), 2);
  EXPECT_EQ(V(S("kpid_window_stage_advanced", "sales", "emea", "lead", w)), 1);
  EXPECT_EQ(V(S("kpid_window_stage_fallout", "sales", "emea", "lead", w)), 1);
  EXPECT_EQ(V(S("kpid_window_stage_conversion_ratio", "sales", "emea", "lead", w)), 0.5);
  EXPECT_EQ(V(S("kpid_window_stage_fallout_ratio", "sales", "emea", "lead", w)), 0.5);
  EXPECT_EQ(V(S("kpid_window_stage_sla_attainment_ratio", "sales", "emea", "lead", w)), 1);
  EXPECT_EQ(V(S("kpid_window_stage_rework_ratio", "sales", "emea", "lead", w)), 0);
  // demo: S7 entered, nobody left: exit ratios absent, rework ratio 0 / 1.
  EXPECT_EQ(V(S("kpid_window_stage_entered", "sales", "emea", "demo", w)), 1);
  EXPECT_TRUE(Absent(S("kpid_window_stage_conversion_ratio", "sales", "emea", "demo", w)));
  EXPECT_TRUE(Absent(S("kpid_window_stage_sla_attainment_ratio", "sales", "emea", "demo", w)));
  EXPECT_EQ(V(S("kpid_window_stage_rework_ratio", "sales", "emea", "demo", w)), 0);
  // quote: nothing at all, not even a rework ratio.
  EXPECT_EQ(V(S("kpid_window_stage_entered", "sales", "emea", "quote", w)), 0);
  EXPECT_TRUE(Absent(S("kpid_window_stage_rework_ratio", "sales", "emea", "quote", w)));
  // sales amer: S8 started at 1560, the window's last minute.
  EXPECT_EQ(V(S("kpid_window_process_started", "sales", "amer", "", w)), 1);
  EXPECT_TRUE(Absent(S("kpid_window_process_win_ratio", "sales", "amer", "", w)));
  // support: nothing in the last hour.
  EXPECT_EQ(V(S("kpid_window_process_started", "support", "emea", "", w)), 0);
  EXPECT_EQ(V(S("kpid_window_stage_exited", "support", "amer", "fix", w)), 0);
}

TEST_F(ScenarioTest, OneDayWindow) {
  const std::string w = "window=\"1d\"";
  // sales emea: started S5 S7 S9 (S1 at 0, S2 at 10 slid out); S1 completed at 1000 (1000),
  // S9 fell out; cost 50; feedback 9.
  EXPECT_EQ(V(S("kpid_window_process_started", "sales", "emea", "", w)), 3);
  EXPECT_EQ(V(S("kpid_window_process_completed", "sales", "emea", "", w)), 1);
  EXPECT_EQ(V(S("kpid_window_process_fallout", "sales", "emea", "", w)), 1);
  EXPECT_EQ(V(S("kpid_window_process_revenue", "sales", "emea", "", w)), 1000);
  EXPECT_EQ(V(S("kpid_window_process_cost", "sales", "emea", "", w)), 50);
  EXPECT_EQ(V(S("kpid_window_process_win_ratio", "sales", "emea", "", w)), 0.5);
  EXPECT_EQ(V(S("kpid_window_process_avg_deal", "sales", "emea", "", w)), 1000);
  EXPECT_EQ(V(S("kpid_window_process_cost_to_serve", "sales", "emea", "", w)), 50);
  EXPECT_EQ(V(S("kpid_window_process_feedback_score", "sales", "emea", "", w)), 9);
  // lead: entered S5 S7 S9; exits S9 (fallout) and S7 (S1 at 30, S2 at 100 slid out).
  EXPECT_EQ(V(S("kpid_window_stage_entered", "sales", "emea", "lead", w)), 3);
  EXPECT_EQ(V(S("kpid_window_stage_exited", "sales", "emea", "lead", w)), 2);
  EXPECT_EQ(V(S("kpid_window_stage_sla_met", "sales", "emea", "lead", w)), 2);
  EXPECT_EQ(V(S("kpid_window_stage_sla_attainment_ratio", "sales", "emea", "lead", w)), 1);
  // demo: entered S7 (S1 30, S2 100 slid out); exit S1 at 200.
  EXPECT_EQ(V(S("kpid_window_stage_entered", "sales", "emea", "demo", w)), 1);
  EXPECT_EQ(V(S("kpid_window_stage_exited", "sales", "emea", "demo", w)), 1);
  EXPECT_EQ(V(S("kpid_window_stage_conversion_ratio", "sales", "emea", "demo", w)), 1);
  // sales __other__ (S4): started at 40 slid out; completed 500 at 600; feedback 7; no cost.
  EXPECT_EQ(V(S("kpid_window_process_started", "sales", "__other__", "", w)), 0);
  EXPECT_EQ(V(S("kpid_window_process_win_ratio", "sales", "__other__", "", w)), 1);
  EXPECT_EQ(V(S("kpid_window_process_avg_deal", "sales", "__other__", "", w)), 500);
  EXPECT_EQ(V(S("kpid_window_process_cost_to_serve", "sales", "__other__", "", w)), 0);
  EXPECT_EQ(V(S("kpid_window_process_feedback_score", "sales", "__other__", "", w)), 7);
  // S4 demo: entered at 180 (rework; 60 slid out), exits at 120 and 400: rework ratio 1/1.
  EXPECT_EQ(V(S("kpid_window_stage_entered", "sales", "__other__", "demo", w)), 1);
  EXPECT_EQ(V(S("kpid_window_stage_rework", "sales", "__other__", "demo", w)), 1);
  EXPECT_EQ(V(S("kpid_window_stage_rework_ratio", "sales", "__other__", "demo", w)), 1);
  EXPECT_EQ(V(S("kpid_window_stage_exited", "sales", "__other__", "demo", w)), 2);
  // S4 quote: entered 120 and 400 (rework), exits 180 and 600: rework ratio 1/2.
  EXPECT_EQ(V(S("kpid_window_stage_rework_ratio", "sales", "__other__", "quote", w)), 0.5);
  // S4 lead: everything before minute 120: no exits, no entries -> all ratios absent.
  EXPECT_EQ(V(S("kpid_window_stage_exited", "sales", "__other__", "lead", w)), 0);
  EXPECT_TRUE(Absent(S("kpid_window_stage_conversion_ratio", "sales", "__other__", "lead", w)));
  EXPECT_TRUE(Absent(S("kpid_window_stage_rework_ratio", "sales", "__other__", "lead", w)));
  // support emea: T1 completed at 500 (amount 0), cost 20; starts at 5 and 15 slid out.
  EXPECT_EQ(V(S("kpid_window_process_completed", "support", "emea", "", w)), 1);
  EXPECT_EQ(V(S("kpid_window_process_avg_deal", "support", "emea", "", w)), 0);
  EXPECT_EQ(V(S("kpid_window_process_cost_to_serve", "support", "emea", "", w)), 20);
  EXPECT_EQ(V(S("kpid_window_stage_exited", "support", "emea", "triage", w)), 0);
  // support __other__ (T5): triage met; fix fell out: conversion 0, fallout ratio 1.
  EXPECT_EQ(V(S("kpid_window_process_win_ratio", "support", "__other__", "", w)), 0);
  EXPECT_EQ(V(S("kpid_window_stage_conversion_ratio", "support", "__other__", "fix", w)), 0);
  EXPECT_EQ(V(S("kpid_window_stage_fallout_ratio", "support", "__other__", "fix", w)), 1);
}

TEST_F(ScenarioTest, WindowQuantiles) {
  // sales demo exits in the 1d window: S4 at 120 (3600 s), S1 at 200 (10200 s),
  // S4 at 400 (13200 s). Nearest rank, the smallest value with at least q*n
  // observations at or below it: p50 -> 2nd = 10200, p90 and p99 -> 3rd = 13200.
  const std::string base = "kpid_window_stage_cycle_time_seconds";
  const std::string labels = "process=\"sales\",quantile=\"%s\",stage=\"demo\",window=\"1d\"";
  auto q = [&](const char* quantile) {
    return V(absl::StrCat(base, "{", absl::StrReplaceAll(labels, {{"%s", quantile}}), "}"));
  };
  EXPECT_NEAR(q("0.5"), 10200, 10200 * 0.02);
  EXPECT_NEAR(q("0.9"), 13200, 13200 * 0.02);
  EXPECT_NEAR(q("0.99"), 13200, 13200 * 0.02);
  EXPECT_EQ(V(base + "_count{process=\"sales\",stage=\"demo\",window=\"1d\"}"), 3);
  // No quote exits in the last hour: no quantiles, a zero count.
  EXPECT_TRUE(Absent(base + "{process=\"sales\",quantile=\"0.5\",stage=\"quote\",window=\"1h\"}"));
  EXPECT_EQ(V(base + "_count{process=\"sales\",stage=\"quote\",window=\"1h\"}"), 0);
}

}  // namespace
}  // namespace kpid::testing
