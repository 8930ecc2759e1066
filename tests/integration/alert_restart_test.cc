// Alert state across a kpid restart, against a real Alertmanager: kpid pages
// once for an SLA breach, is stopped (SIGTERM, or SIGKILL after a
// checkpoint) and started again on the same state_dir. The alert comes back
// firing (not pending again, as Prometheus #15175 has it), with its startsAt,
// the restarted kpid keeps it alive in Alertmanager, and the receiver has
// had one page, not two.
//
// The restarted kpid has no events (its embedded broker starts empty), so its
// condition is false from the start: keep_firing_for (1m, its clock stopped
// while kpid was down) holds the alert. Without the restored state the
// restarted kpid would send nothing, Alertmanager would resolve the alert
// once the endsAt of kpid's last send before the restart had passed (4
// resend intervals, 8 s here) and the receiver would get a second
// notification; the test waits past that point.
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <signal.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
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
constexpr absl::Duration kResendInterval = absl::Seconds(2);
constexpr absl::Duration kGroupInterval = absl::Seconds(1);  // tests/testing/alertmanager.cc

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
state_dir: state
checkpoint_interval: 1s
processes:
  - id: sales
    stages: [{id: lead, sla: 1h}, {id: quote, sla: 1d}]
rules: ["rules.yaml"]
alertmanagers: ["$ALERTMANAGER"]
alerting: {resend_interval: 2s}
)";

// `for` makes a restart without kept state visible: the alert would be
// pending again.
constexpr char kRules[] = R"(groups:
  - name: sla
    rules:
      - alert: LeadOverSla
        process: sales
        stage: lead
        kpi: backlog_over_sla
        op: ">"
        threshold: 0
        for: 2s
        keep_firing_for: 1m
        labels: {severity: page}
)";

const std::map<std::string, std::string> kLabels = {
    {"alertname", "LeadOverSla"}, {"process", "sales"}, {"stage", "lead"}, {"severity", "page"}};
constexpr char kFiring[] =
    "kpid_alerts{alertname=\"LeadOverSla\",process=\"sales\",severity=\"page\",stage=\"lead\","
    "state=\"firing\"}";

std::string Event(const std::string& id, const std::string& case_id, int minute) {
  ProcessEvent e;
  e.set_event_id(id);
  e.set_process("sales");
  e.set_case_id(case_id);
  e.set_kind(ProcessEvent::STAGE_ENTERED);
  e.set_stage("lead");
  e.mutable_occurred_at()->set_seconds(kT0 + int64_t{minute} * 60);
  return e.SerializeAsString();
}

absl::Time ParseRfc3339(const std::string& text) {
  absl::Time t;
  std::string error;
  EXPECT_TRUE(absl::ParseTime(absl::RFC3339_full, text, &t, &error)) << text << ": " << error;
  return t;
}

class AlertRestartTest : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("alert-restart");
    alertmanager_ = std::make_unique<AlertmanagerProcess>(dir_, webhook_.port());
    std::string why;
    ASSERT_TRUE(alertmanager_->Start(&why)) << why;
    WriteFileOrDie(dir_ + "/rules.yaml", kRules);
  }

  void TearDown() override {
    if (kpid_ != nullptr && kpid_->running()) {
      EXPECT_TRUE(kpid_->Stop()) << Log();
    }
  }

  // Starts (or restarts) kpid on dir_'s config and state_dir; ready on return.
  void StartKpid() {
    if (kpid_ == nullptr) {
      kpid_ = std::make_unique<KpidProcess>(KPID_BINARY, dir_, kConfig,
                                            std::vector<std::pair<std::string, std::string>>{
                                                {"$ALERTMANAGER", alertmanager_->url()}});
    }
    ASSERT_TRUE(kpid_->Start(kWait)) << "kpid did not become ready\n" << Log();
  }

  std::string Log() { return kpid_ == nullptr ? "" : kpid_->Log(); }
  double Metric(const std::string& series) { return Sample(kpid_->Metrics(), series); }
  std::string Sent() {
    return absl::StrCat("kpid_notifications_total{receiver=\"", alertmanager_->url(),
                        "\",result=\"sent\"}");
  }

  // The alerts Alertmanager holds (GET /api/v2/alerts) with kLabels.
  std::vector<google::protobuf::Struct> AlertmanagerAlerts() {
    google::protobuf::ListValue list;
    const HttpResponse r = HttpGet(alertmanager_->port(), "/api/v2/alerts");
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(r.body, &list).ok()) << r.body;
    std::vector<google::protobuf::Struct> out;
    for (const auto& v : list.values()) {
      if (StringMap(v.struct_value().fields().at("labels")) == kLabels) {
        out.push_back(v.struct_value());
      }
    }
    return out;
  }

  Webhook webhook_;
  std::string dir_;
  std::unique_ptr<AlertmanagerProcess> alertmanager_;
  std::unique_ptr<KpidProcess> kpid_;
};

TEST_P(AlertRestartTest, AFiringAlertStaysFiringWithOnePage) {
  const int signal = GetParam();
  ASSERT_NO_FATAL_FAILURE(StartKpid());
  EXPECT_EQ(Metric("kpid_alert_state_restores_total{result=\"missing\"}"), 1) << Log();

  // C1 enters lead at minute 0 (SLA deadline minute 60); C2 at minute 61
  // moves event time past it: backlog_over_sla(lead) = 1 > 0, firing after
  // `for` (2 s).
  {
    TestProducer producer(kpid_->EmbeddedBrokers());
    producer.Send("events", {"C1", Event("e1", "C1", 0), {}, -1});
    producer.Send("events", {"C2", Event("e2", "C2", 61), {}, -1});
    ASSERT_EQ(producer.Flush(kWait), 0);
  }
  std::unique_ptr<google::protobuf::Struct> page;
  ASSERT_TRUE(WaitFor([&] { return (page = webhook_.Find("firing", kLabels)) != nullptr; }, kWait))
      << Log() << alertmanager_->Log();
  const std::string starts_at = page->fields().at("startsAt").string_value();

  if (signal == SIGKILL) {
    // A checkpoint taken after the alert fired; then no goodbye at all.
    const double checkpoints = Metric("kpid_alert_state_checkpoints_total{result=\"ok\"}");
    ASSERT_TRUE(WaitFor(
        [&] { return Metric("kpid_alert_state_checkpoints_total{result=\"ok\"}") > checkpoints; },
        kWait));
  }
  kpid_->process().Signal(signal);
  EXPECT_EQ(kpid_->process().Wait(absl::Seconds(10)), signal == SIGKILL ? 128 + SIGKILL : 0)
      << Log();
  const absl::Time stopped = absl::Now();

  ASSERT_NO_FATAL_FAILURE(StartKpid());
  // Restored before the first evaluation: firing at once, not pending.
  EXPECT_EQ(Metric("kpid_alert_state_restores_total{result=\"restored\"}"), 1) << Log();
  EXPECT_EQ(Metric("kpid_alert_state_restores_total{result=\"corrupt\"}"), 0) << Log();
  EXPECT_EQ(Metric(kFiring), 1) << Log();
  // Its re-sends reach Alertmanager.
  EXPECT_TRUE(WaitFor([&] { return Metric(Sent()) >= 2; }, kWait)) << Log();

  // Past the endsAt of every send before the restart (4 resend intervals),
  // and a group interval more for Alertmanager to notify if it would.
  const absl::Time horizon = stopped + 4 * kResendInterval + 2 * kGroupInterval;
  absl::SleepFor(horizon - absl::Now());
  EXPECT_EQ(Metric(kFiring), 1) << Log();
  EXPECT_EQ(webhook_.Count("firing", kLabels), 1) << alertmanager_->Log();
  EXPECT_EQ(webhook_.Count("resolved", kLabels), 0) << alertmanager_->Log();
  std::vector<google::protobuf::Struct> held = AlertmanagerAlerts();
  ASSERT_EQ(held.size(), 1u);
  EXPECT_EQ(held[0].fields().at("status").struct_value().fields().at("state").string_value(),
            "active");
  // The same instant; not the same text: the webhook's times are Go's
  // RFC 3339 with trailing zeros trimmed ("18.55Z"), the API's keep three
  // digits ("18.550Z").
  EXPECT_EQ(ParseRfc3339(held[0].fields().at("startsAt").string_value()), ParseRfc3339(starts_at));
}

INSTANTIATE_TEST_SUITE_P(Signals, AlertRestartTest, ::testing::Values(SIGTERM, SIGKILL),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return std::string(info.param == SIGKILL ? "Sigkill" : "Sigterm");
                         });

}  // namespace
}  // namespace kpid::testing
