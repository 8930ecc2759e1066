// A Kafka outage, end to end: kpid consumes from a broker that the test owns
// (librdkafka's mock cluster, in this process), the broker goes down and
// comes back. kpid must say so (/readyz, kpid_kafka_connected) and, once the
// broker is back, consume what was produced meanwhile: nothing lost, nothing
// counted twice.

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "daemon/ingest/embedded_broker.h"
#include "gtest/gtest.h"
#include "kpid/v1/event.pb.h"
#include "tests/testing/kafka_client.h"
#include "tests/testing/kpid_process.h"
#include "tests/testing/process.h"

namespace kpid::testing {
namespace {

using kpid::v1::ProcessEvent;

constexpr char kConfig[] = R"(
kafka:
  brokers: "$BROKERS"
  topic: events
  group_id: kpid-outage
http: {listen: "127.0.0.1:$PORT"}
grpc: {listen: "127.0.0.1:0"}
processes:
  - id: onboarding
    stages:
      - {id: signup, sla: 1h}
)";

std::string CaseStarted(int n) {
  ProcessEvent e;
  e.set_event_id(absl::StrCat("e", n));
  e.set_process("onboarding");
  e.set_case_id(absl::StrCat("c", n));
  e.set_kind(ProcessEvent::STAGE_ENTERED);
  e.set_stage("signup");
  e.mutable_occurred_at()->set_seconds(absl::ToUnixSeconds(absl::Now()));
  return e.SerializeAsString();
}

double Metric(int port, const std::string& series) {
  return Sample(ParseMetrics(HttpGet(port, "/metrics").body), series);
}

TEST(OutageTest, BrokerDownThenUpLosesNothing) {
  auto broker = ingest::EmbeddedBroker::Start({{"events", 2}});
  ASSERT_TRUE(broker.ok()) << broker.status();
  KpidProcess kpid(KPID_BINARY, MakeTempDir("outage"), kConfig,
                   {{"$BROKERS", (*broker)->bootstrap()}});
  ASSERT_TRUE(kpid.Start()) << kpid.Log();
  const int port = kpid.http_port();
  auto log = [&] { return kpid.Log(); };
  EXPECT_EQ(Metric(port, "kpid_kafka_connected"), 1);

  TestProducer producer((*broker)->bootstrap());
  for (int n = 0; n < 100; ++n) producer.Send("events", {absl::StrCat(n), CaseStarted(n), {}, -1});
  ASSERT_EQ(producer.Flush(absl::Seconds(10)), 0);
  ASSERT_TRUE(
      WaitFor([&] { return Metric(port, "kpid_events_consumed_total") == 100; }, absl::Seconds(20)))
      << log();

  ASSERT_TRUE((*broker)->SetBrokerUp(1, false).ok());
  // The probe runs every second and gives up after two.
  ASSERT_TRUE(WaitFor([&] { return HttpGet(port, "/readyz").status == 503; }, absl::Seconds(15)))
      << log();
  EXPECT_EQ(Metric(port, "kpid_kafka_connected"), 0);
  EXPECT_NE(HttpGet(port, "/readyz").body.find("kafka cluster unreachable"), std::string::npos);
  // Produced during the outage: the producer holds them until the broker is back.
  for (int n = 100; n < 150; ++n) {
    producer.Send("events", {absl::StrCat(n), CaseStarted(n), {}, -1});
  }

  ASSERT_TRUE((*broker)->SetBrokerUp(1, true).ok());
  ASSERT_EQ(producer.Flush(absl::Seconds(30)), 0);
  ASSERT_TRUE(WaitFor([&] { return HttpGet(port, "/readyz").status == 200; }, absl::Seconds(30)))
      << log();
  EXPECT_EQ(Metric(port, "kpid_kafka_connected"), 1);
  ASSERT_TRUE(
      WaitFor([&] { return Metric(port, "kpid_events_consumed_total") >= 150; }, absl::Seconds(30)))
      << log();
  // Exactly once: no message consumed twice after the reconnect, none rejected.
  const MetricSamples m = ParseMetrics(HttpGet(port, "/metrics").body);
  EXPECT_EQ(Sample(m, "kpid_events_consumed_total"), 150);
  EXPECT_EQ(Sample(m, "kpid_events_duplicate_total"), 0);
  EXPECT_EQ(Sample(m, "kpid_process_cases_started_total{process=\"onboarding\"}"), 150);
  EXPECT_EQ(Sample(m, "kpid_stage_backlog{process=\"onboarding\",stage=\"signup\"}"), 150);

  EXPECT_TRUE(kpid.Stop()) << log();
}

}  // namespace
}  // namespace kpid::testing
