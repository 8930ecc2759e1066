// kpid end to end with a real Alertmanager: an open case passes its stage
// SLA (clock: event, so the breach happens when later events move the
// watermark past the deadline), the breach alert reaches Alertmanager's
// webhook with kpid's labels and rendered annotations, and once the case
// leaves the stage the resolve arrives too. One page, not two.
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kpid/v1/event.pb.h"
#include "tests/testing/alertmanager.h"
#include "tests/testing/kafka_client.h"
#include "tests/testing/kpid_process.h"
#include "tests/testing/process.h"

namespace kpid::testing {
namespace {

using kpid::v1::ProcessEvent;

constexpr int64_t kT0 = 1772409600;  // 2026-03-02T00:00:00Z
constexpr absl::Duration kWait = absl::Seconds(30);

constexpr char kConfig[] = R"(
kafka:
  brokers: embedded
  topic: events
  partitions: 1
  bootstrap_file: $DIR/bootstrap
http: {listen: "127.0.0.1:$PORT"}
grpc: {listen: "127.0.0.1:0"}
clock: event
windows: [1h]
retention: 1d
processes:
  - id: sales
    stages: [{id: lead, sla: 1h}, {id: quote, sla: 1d}]
rules: ["rules.yaml"]
alertmanagers: ["$ALERTMANAGER"]
)";

constexpr char kRules[] = R"(groups:
  - name: sla
    rules:
      - alert: LeadOverSla
        process: sales
        stage: lead
        kpi: backlog_over_sla
        op: ">"
        threshold: 0
        labels: {severity: page}
        annotations: {summary: "{{ $value }} case(s) past the {{ $labels.stage }} SLA"}
)";

std::string Event(const std::string& id, const std::string& case_id, const std::string& stage,
                  int minute) {
  ProcessEvent e;
  e.set_event_id(id);
  e.set_process("sales");
  e.set_case_id(case_id);
  e.set_kind(ProcessEvent::STAGE_ENTERED);
  e.set_stage(stage);
  e.mutable_occurred_at()->set_seconds(kT0 + int64_t{minute} * 60);
  return e.SerializeAsString();
}

const std::map<std::string, std::string> kLabels = {
    {"alertname", "LeadOverSla"}, {"process", "sales"}, {"stage", "lead"}, {"severity", "page"}};

// kpid on its embedded broker with kRules, notifying a real Alertmanager.
class AlertingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string dir = MakeTempDir("alerting");
    alertmanager_ = std::make_unique<AlertmanagerProcess>(dir, webhook_.port());
    std::string why;
    ASSERT_TRUE(alertmanager_->Start(&why)) << why;
    WriteFileOrDie(dir + "/rules.yaml", kRules);
    kpid_ = std::make_unique<KpidProcess>(
        KPID_BINARY, dir, kConfig,
        std::vector<std::pair<std::string, std::string>>{{"$ALERTMANAGER", alertmanager_->url()}});
    ASSERT_TRUE(kpid_->Start(kWait)) << kpid_->Log();
    producer_ = std::make_unique<TestProducer>(kpid_->EmbeddedBrokers());
  }

  void TearDown() override {
    producer_.reset();
    if (kpid_ != nullptr && kpid_->running()) {
      EXPECT_TRUE(kpid_->Stop()) << kpid_->Log();
    }
  }

  void Send(const std::string& id, const std::string& case_id, const std::string& stage,
            int minute) {
    producer_->Send("events", {case_id, Event(id, case_id, stage, minute), {}, -1});
    ASSERT_EQ(producer_->Flush(kWait), 0);
  }

  std::string Logs() { return kpid_->Log() + alertmanager_->Log(); }
  std::string Notifications(const std::string& result) {
    return absl::StrCat("kpid_notifications_total{receiver=\"", alertmanager_->url(),
                        "\",result=\"", result, "\"}");
  }

  Webhook webhook_;
  std::unique_ptr<AlertmanagerProcess> alertmanager_;
  std::unique_ptr<KpidProcess> kpid_;
  std::unique_ptr<TestProducer> producer_;
};

TEST_F(AlertingTest, SlaBreachPagesThroughAlertmanagerAndResolves) {
  // C1 enters lead at minute 0 (deadline minute 60). C2 at minute 61 moves
  // event time past it: C1 is breached and still open.
  Send("e1", "C1", "lead", 0);
  Send("e2", "C2", "lead", 61);

  std::unique_ptr<google::protobuf::Struct> firing;
  ASSERT_TRUE(
      WaitFor([&] { return (firing = webhook_.Find("firing", kLabels)) != nullptr; }, kWait))
      << Logs();
  // backlog_over_sla(lead) = 1: C1 (C2's deadline, minute 121, has not passed).
  EXPECT_EQ(StringMap(firing->fields().at("annotations")).at("summary"),
            "1 case(s) past the lead SLA");
  MetricSamples m = kpid_->Metrics();
  EXPECT_EQ(Sample(m,
                   "kpid_alerts{alertname=\"LeadOverSla\",process=\"sales\",severity=\"page\","
                   "stage=\"lead\",state=\"firing\"}"),
            1);
  EXPECT_EQ(Sample(m, "kpid_stage_sla_breaches_total{process=\"sales\",stage=\"lead\"}"), 1);

  // C1 moves on to quote: nobody is over the lead SLA any more.
  Send("e3", "C1", "quote", 62);
  ASSERT_TRUE(WaitFor([&] { return webhook_.Find("resolved", kLabels) != nullptr; }, kWait))
      << Logs();
  EXPECT_EQ(webhook_.Count("firing", kLabels), 1);  // paged once
  EXPECT_EQ(Sample(kpid_->Metrics(), Notifications("sent")), 2);
}

TEST_F(AlertingTest, ABreachDuringAnAlertmanagerOutageArrivesWhenItIsBack) {
  // Alertmanager goes away; then C1 breaches the lead SLA.
  ASSERT_TRUE(alertmanager_->Stop());
  Send("e1", "C1", "lead", 0);
  Send("e2", "C2", "lead", 61);
  ASSERT_TRUE(
      WaitFor([&] { return Sample(kpid_->Metrics(), Notifications("failed")) >= 1; }, kWait))
      << kpid_->Log();

  // Back on the same port: kpid's retries deliver the page.
  std::string why;
  ASSERT_TRUE(alertmanager_->Start(&why)) << why;
  ASSERT_TRUE(WaitFor([&] { return webhook_.Find("firing", kLabels) != nullptr; }, kWait))
      << Logs();
  EXPECT_EQ(webhook_.Count("firing", kLabels), 1);
}

}  // namespace
}  // namespace kpid::testing
