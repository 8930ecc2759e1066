// kpid end to end with a real Alertmanager: an open case passes its stage
// SLA (clock: event, so the breach happens when later events move the
// watermark past the deadline), the breach alert reaches Alertmanager's
// webhook with kpid's labels and rendered annotations, and once the case
// leaves the stage the resolve arrives too. One page, not two.
#include <signal.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "gtest/gtest.h"
#include "kpid/v1/event.pb.h"
#include "tests/testing/alertmanager.h"
#include "tests/testing/kafka_client.h"
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

TEST(AlertingTest, SlaBreachPagesThroughAlertmanagerAndResolves) {
  const std::string dir = MakeTempDir("alerting");
  Webhook webhook;
  AlertmanagerProcess alertmanager(dir, webhook.port());
  std::string why;
  ASSERT_TRUE(alertmanager.Start(&why)) << why;

  const int port = FreePort();
  WriteFileOrDie(dir + "/rules.yaml", kRules);
  WriteFileOrDie(dir + "/kpid.yaml",
                 absl::StrReplaceAll(kConfig, {{"$DIR", dir},
                                               {"$PORT", absl::StrCat(port)},
                                               {"$ALERTMANAGER", alertmanager.url()}}));
  Subprocess kpid({KPID_BINARY, "--config", dir + "/kpid.yaml"}, dir + "/kpid.log");
  ASSERT_TRUE(WaitFor([&] { return HttpGet(port, "/readyz").status == 200; }, kWait))
      << ReadFileOrEmpty(dir + "/kpid.log");
  const std::string brokers(absl::StripSuffix(ReadFileOrEmpty(dir + "/bootstrap"), "\n"));
  auto producer = std::make_unique<TestProducer>(brokers);

  // C1 enters lead at minute 0 (deadline minute 60). C2 at minute 61 moves
  // event time past it: C1 is breached and still open.
  producer->Send("events", {"C1", Event("e1", "C1", "lead", 0), {}, -1});
  producer->Send("events", {"C2", Event("e2", "C2", "lead", 61), {}, -1});
  ASSERT_EQ(producer->Flush(kWait), 0);

  const std::map<std::string, std::string> labels = {
      {"alertname", "LeadOverSla"}, {"process", "sales"}, {"stage", "lead"}, {"severity", "page"}};
  std::unique_ptr<google::protobuf::Struct> firing;
  ASSERT_TRUE(WaitFor([&] { return (firing = webhook.Find("firing", labels)) != nullptr; }, kWait))
      << ReadFileOrEmpty(dir + "/kpid.log") << alertmanager.Log();
  // backlog_over_sla(lead) = 1: C1 (C2's deadline, minute 121, has not passed).
  EXPECT_EQ(StringMap(firing->fields().at("annotations")).at("summary"),
            "1 case(s) past the lead SLA");
  MetricSamples m = ParseMetrics(HttpGet(port, "/metrics").body);
  EXPECT_EQ(Sample(m,
                   "kpid_alerts{alertname=\"LeadOverSla\",process=\"sales\",severity=\"page\","
                   "stage=\"lead\",state=\"firing\"}"),
            1);
  EXPECT_EQ(Sample(m, "kpid_stage_sla_breaches_total{process=\"sales\",stage=\"lead\"}"), 1);

  // C1 moves on to quote: nobody is over the lead SLA any more.
  producer->Send("events", {"C1", Event("e3", "C1", "quote", 62), {}, -1});
  ASSERT_EQ(producer->Flush(kWait), 0);
  ASSERT_TRUE(WaitFor([&] { return webhook.Find("resolved", labels) != nullptr; }, kWait))
      << ReadFileOrEmpty(dir + "/kpid.log") << alertmanager.Log();
  EXPECT_EQ(webhook.Count("firing", labels), 1);  // paged once
  m = ParseMetrics(HttpGet(port, "/metrics").body);
  EXPECT_EQ(Sample(m, "kpid_notifications_total{receiver=\"" + alertmanager.url() +
                          "\",result=\"sent\"}"),
            2);

  producer.reset();
  kpid.Signal(SIGTERM);
  EXPECT_EQ(kpid.Wait(absl::Seconds(10)), 0);
}

TEST(AlertingTest, ABreachDuringAnAlertmanagerOutageArrivesWhenItIsBack) {
  const std::string dir = MakeTempDir("alerting-outage");
  Webhook webhook;
  AlertmanagerProcess alertmanager(dir, webhook.port());
  std::string why;
  ASSERT_TRUE(alertmanager.Start(&why)) << why;
  const int port = FreePort();
  WriteFileOrDie(dir + "/rules.yaml", kRules);
  WriteFileOrDie(dir + "/kpid.yaml",
                 absl::StrReplaceAll(kConfig, {{"$DIR", dir},
                                               {"$PORT", absl::StrCat(port)},
                                               {"$ALERTMANAGER", alertmanager.url()}}));
  Subprocess kpid({KPID_BINARY, "--config", dir + "/kpid.yaml"}, dir + "/kpid.log");
  ASSERT_TRUE(WaitFor([&] { return HttpGet(port, "/readyz").status == 200; }, kWait))
      << ReadFileOrEmpty(dir + "/kpid.log");
  const std::string brokers(absl::StripSuffix(ReadFileOrEmpty(dir + "/bootstrap"), "\n"));
  auto producer = std::make_unique<TestProducer>(brokers);

  // Alertmanager goes away; then C1 breaches the lead SLA.
  ASSERT_TRUE(alertmanager.Stop());
  producer->Send("events", {"C1", Event("e1", "C1", "lead", 0), {}, -1});
  producer->Send("events", {"C2", Event("e2", "C2", "lead", 61), {}, -1});
  ASSERT_EQ(producer->Flush(kWait), 0);
  const std::string failed =
      "kpid_notifications_total{receiver=\"" + alertmanager.url() + "\",result=\"failed\"}";
  ASSERT_TRUE(WaitFor(
      [&] { return Sample(ParseMetrics(HttpGet(port, "/metrics").body), failed) >= 1; }, kWait))
      << ReadFileOrEmpty(dir + "/kpid.log");

  // Back on the same port: kpid's retries deliver the page.
  ASSERT_TRUE(alertmanager.Start(&why)) << why;
  const std::map<std::string, std::string> labels = {
      {"alertname", "LeadOverSla"}, {"process", "sales"}, {"stage", "lead"}, {"severity", "page"}};
  ASSERT_TRUE(WaitFor([&] { return webhook.Find("firing", labels) != nullptr; }, kWait))
      << ReadFileOrEmpty(dir + "/kpid.log") << alertmanager.Log();
  EXPECT_EQ(webhook.Count("firing", labels), 1);

  producer.reset();
  kpid.Signal(SIGTERM);
  EXPECT_EQ(kpid.Wait(absl::Seconds(10)), 0);
}

}  // namespace
}  // namespace kpid::testing
