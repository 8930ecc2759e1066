// State follows partitions (issue 8, kafka.state_topic) end to end: two
// real kpid processes in one consumer group, each with its OWN state_dir,
// on a `kpid dev-broker`. Replica A reads batch A and checkpoints to the
// state topic; it leaves (SIGTERM: revoke and shutdown checkpoints; or
// SIGKILL: only its interval checkpoints survive) and replica B, whose
// state_dir is empty, takes every partition, restores it from the topic and
// reads on. B's totals equal the hand-computed ones for both batches: open
// cases and remembered event ids came with the state (a completion of a
// case A opened counts, an event id A read is a duplicate), and a partition
// restored at its checkpointed offset is not re-read from its beginning
// (that would count A's events again as duplicates).
//
// The mock cluster keeps only a few MiB per partition and never compacts:
// the states here are a few hundred bytes.
#include <signal.h>

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "kpid/v1/event.pb.h"
#include "tests/testing/kafka_client.h"
#include "tests/testing/process.h"
#include "tests/testing/sales_restart_scenario.h"

namespace kpid::testing {
namespace {

using kpid::v1::ProcessEvent;

constexpr int kPartitions = 3;

// The dev broker makes the state topic too (one partition per event-topic
// partition), as the embedded broker does.
constexpr char kBrokerConfig[] = R"(
kafka:
  brokers: embedded
  topic: events
  partitions: 3
  state_topic: kpid-state
  bootstrap_file: $DIR/bootstrap
processes:
  - id: sales
    stages:
      - {id: lead, sla: 1h}
)";

// Short sessions: the mock broker lets a group rebalance away from a killed
// member only when that member's session has timed out.
constexpr char kConfig[] = R"(
kafka:
  brokers: "$BROKERS"
  topic: events
  group_id: kpid-state-topic
  state_topic: kpid-state
  workers: 2
  properties: {session.timeout.ms: "6000", heartbeat.interval.ms: "1000"}
http: {listen: "127.0.0.1:$PORT"}
grpc: {listen: "127.0.0.1:0"}
clock: event
state_dir: $STATE
checkpoint_interval: $INTERVAL
processes:
  - id: sales
    stages:
      - {id: lead, sla: 1h}
      - {id: quote, sla: 2d}
)";

// 6 messages: 5 accepted, 1 duplicate of batch A.
std::vector<KafkaRecord> BatchB() {
  using K = ProcessEvent;
  return {
      // Opened by A: these count only if B restored the cases.
      SalesEvent("b-done-0", "c0", K::CASE_COMPLETED, "", 1000, 100),
      SalesEvent("b-done-1", "c1", K::CASE_COMPLETED, "", 1001, 200),
      SalesEvent("b-quote-4", "c4", K::STAGE_ENTERED, "quote", 1200),
      // Read by A: a duplicate only if B restored the event ids.
      SalesEvent("a-quote-1", "c1", K::STAGE_ENTERED, "quote", 601),
      SalesEvent("b-lead-6", "c6", K::STAGE_ENTERED, "lead", 1400),
      SalesEvent("b-quote-6", "c6", K::STAGE_ENTERED, "quote", 1500),
  };
}

class Replica {
 public:
  Replica(const std::string& dir, const std::string& name, const std::string& brokers,
          const std::string& interval)
      : dir_(dir), name_(name), port_(FreePort()), state_dir_(absl::StrCat(dir, "/state-", name)) {
    WriteFileOrDie(config(), absl::StrReplaceAll(kConfig, {{"$BROKERS", brokers},
                                                           {"$PORT", absl::StrCat(port_)},
                                                           {"$STATE", state_dir_},
                                                           {"$INTERVAL", interval}}));
  }
  void Start() {
    process_ = std::make_unique<Subprocess>(
        std::vector<std::string>{KPID_BINARY, "--config", config()}, log());
  }
  bool Ready() { return HttpGet(port_, "/readyz").status == 200; }
  MetricSamples Scrape() { return ParseMetrics(HttpGet(port_, "/metrics").body); }
  Subprocess& process() { return *process_; }
  std::string Log() const { return ReadFileOrEmpty(log()); }
  // Partitions this replica has a state file of.
  int StateFiles() const {
    int n = 0;
    for (int p = 0; p < kPartitions; ++p) {
      n += std::filesystem::exists(absl::StrCat(state_dir_, "/events-", p, ".state"));
    }
    return n;
  }

 private:
  std::string config() const { return absl::StrCat(dir_, "/", name_, ".yaml"); }
  std::string log() const { return absl::StrCat(dir_, "/", name_, ".log"); }

  std::string dir_;
  std::string name_;
  int port_;
  std::string state_dir_;
  std::unique_ptr<Subprocess> process_;
};

double Messages(const MetricSamples& m) {
  double n = Sample(m, "kpid_events_consumed_total") + Sample(m, "kpid_events_duplicate_total");
  for (const auto& [series, value] : m) {
    if (series.rfind("kpid_events_rejected_total{", 0) == 0) n += value;
  }
  return n;
}

double SumOf(const MetricSamples& m, const std::string& name) {
  double sum = 0;
  for (const auto& [series, value] : m) {
    if (series == name || series.rfind(name + "{", 0) == 0) sum += value;
  }
  return sum;
}

class StateTopicTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("state_topic");
    WriteFileOrDie(dir_ + "/broker.yaml", absl::StrReplaceAll(kBrokerConfig, {{"$DIR", dir_}}));
    broker_ = std::make_unique<Subprocess>(
        std::vector<std::string>{KPID_BINARY, "dev-broker", "--config", dir_ + "/broker.yaml"},
        dir_ + "/broker.log");
    ASSERT_TRUE(
        WaitFor([&] { return !ReadFileOrEmpty(dir_ + "/bootstrap").empty(); }, absl::Seconds(10)))
        << ReadFileOrEmpty(dir_ + "/broker.log");
    brokers_ = std::string(absl::StripSuffix(ReadFileOrEmpty(dir_ + "/bootstrap"), "\n"));
  }
  void TearDown() override {
    broker_->Signal(SIGTERM);
    broker_->Wait(absl::Seconds(10));
  }

  void Produce(const std::vector<KafkaRecord>& records) {
    TestProducer producer(brokers_);
    for (const KafkaRecord& r : records) producer.Send("events", r);
    ASSERT_EQ(producer.Flush(absl::Seconds(10)), 0);
  }
  // Waits until `replica` counted `messages`; then, when `settle`, a little
  // longer, so a message counted twice would show.
  static MetricSamples Drained(Replica& replica, double messages, bool settle = true) {
    EXPECT_TRUE(WaitFor([&] { return Messages(replica.Scrape()) >= messages; }, absl::Seconds(60)))
        << Messages(replica.Scrape()) << "\n"
        << replica.Log();
    if (settle) absl::SleepFor(absl::Seconds(2));
    return replica.Scrape();
  }

  // Both batches, by hand: see SalesBatchA and BatchB.
  static void ExpectTotalsOfBothBatches(const MetricSamples& m) {
    // Messages: 11 (A) + 6 (B) = 17 = 15 accepted + 2 duplicates.
    EXPECT_EQ(Messages(m), 17);
    // Accepted: A 6 lead + 3 quote + 1 fallout = 10; B 2 completions + c4 quote + c6 lead
    // and quote = 5.
    EXPECT_EQ(Sample(m, "kpid_events_consumed_total"), 15);
    // a-lead-0 again in A; a-quote-1 again in B (read by A). A partition re-read from
    // its beginning on top of its restored state would add A's events here.
    EXPECT_EQ(Sample(m, "kpid_events_duplicate_total"), 2);
    // Completions of cases A opened are not unknown to B.
    EXPECT_EQ(SumOf(m, "kpid_events_rejected_total"), 0);
    // c0..c5 and c6.
    EXPECT_EQ(Sample(m, "kpid_process_cases_started_total{process=\"sales\"}"), 7);
    EXPECT_EQ(Sample(m, "kpid_process_cases_completed_total{process=\"sales\"}"), 2);
    EXPECT_EQ(Sample(m, "kpid_process_cases_fallout_total{process=\"sales\"}"), 1);  // c3
    // c0 100 + c1 200.
    EXPECT_EQ(Sample(m, "kpid_process_revenue_total{process=\"sales\"}"), 300);
    // lead: c0..c5 + c6 = 7; quote: c0 c1 c2 (A) + c4 c6 (B) = 5.
    EXPECT_EQ(Sample(m, "kpid_stage_entered_total{process=\"sales\",stage=\"lead\"}"), 7);
    EXPECT_EQ(Sample(m, "kpid_stage_entered_total{process=\"sales\",stage=\"quote\"}"), 5);
    // Open: c2 c4 c6 in quote, c5 in lead (c0 c1 completed, c3 fell out).
    EXPECT_EQ(Sample(m, "kpid_process_open_cases{process=\"sales\"}"), 4);
    EXPECT_EQ(Sample(m, "kpid_stage_backlog{process=\"sales\",stage=\"quote\"}"), 3);
    EXPECT_EQ(Sample(m, "kpid_stage_backlog{process=\"sales\",stage=\"lead\"}"), 1);
    // The latest event: c6 into quote at 1500.
    EXPECT_EQ(Sample(m, "kpid_watermark_timestamp_seconds"), kSalesT0 + 1500);
    // Everything read, nothing restoring; no partition counted as unread.
    EXPECT_EQ(SumOf(m, "kpid_consumer_lag_messages"), 0);
    EXPECT_EQ(Sample(m, "kpid_state_restore_partitions{state=\"restoring\"}"), 0);
  }
  // B's restores: one per partition, from the topic for each partition A
  // had read (and so checkpointed: `checkpointed`), from nothing otherwise.
  static void ExpectRestoredFromTheTopic(const MetricSamples& m, int checkpointed) {
    EXPECT_EQ(Sample(m, "kpid_state_restores_total{result=\"restored\",source=\"topic\"}"),
              checkpointed);
    EXPECT_EQ(Sample(m, "kpid_state_restores_total{result=\"none\",source=\"none\"}"),
              kPartitions - checkpointed);
    EXPECT_EQ(Sample(m, "kpid_state_restores_total{result=\"restored\",source=\"file\"}"), 0);
    EXPECT_GT(Sample(m, "kpid_state_restore_bytes_total{source=\"topic\"}"), 0);
    EXPECT_EQ(Sample(m, "kpid_state_restore_duration_seconds_count"), kPartitions);
  }

  std::string dir_;
  std::string brokers_;
  std::unique_ptr<Subprocess> broker_;
};

TEST_F(StateTopicTest, ASecondReplicaTakesThePartitionsWithTheirStateAfterASigterm) {
  // Checkpoints on revoke and at shutdown only.
  Replica a(dir_, "a", brokers_, "1h");
  Replica b(dir_, "b", brokers_, "1h");
  a.Start();
  ASSERT_TRUE(WaitFor([&] { return a.Ready(); }, absl::Seconds(60))) << a.Log();
  Produce(SalesBatchA());
  EXPECT_EQ(Sample(Drained(a, 11), "kpid_events_consumed_total"), 10);

  // B joins: the group rebalances, A checkpoints what it is revoked to the
  // topic and B restores what it is given from there.
  b.Start();
  ASSERT_TRUE(WaitFor([&] { return b.Ready(); }, absl::Seconds(60))) << b.Log();
  // A leaves: its shutdown checkpoints go to the topic, B takes the rest.
  a.process().Signal(SIGTERM);
  ASSERT_EQ(a.process().Wait(absl::Seconds(20)), 0) << a.Log();
  const int checkpointed = a.StateFiles();  // the partitions A read, each written
  ASSERT_GT(checkpointed, 0);

  Produce(BatchB());
  const MetricSamples m = Drained(b, 17);
  ExpectTotalsOfBothBatches(m);
  ExpectRestoredFromTheTopic(m, checkpointed);
  b.process().Signal(SIGTERM);
  EXPECT_EQ(b.process().Wait(absl::Seconds(20)), 0) << b.Log();
}

TEST_F(StateTopicTest, AfterASigkillTheLastIntervalCheckpointIsRestoredAndReadOn) {
  Replica a(dir_, "a", brokers_, "1s");
  Replica b(dir_, "b", brokers_, "1h");
  a.Start();
  ASSERT_TRUE(WaitFor([&] { return a.Ready(); }, absl::Seconds(60))) << a.Log();
  Produce(SalesBatchA());
  Drained(a, 11);
  // Interval checkpoints of every partition A read are in the topic.
  ASSERT_TRUE(WaitFor(
      [&] {
        return a.StateFiles() > 0 &&
               Sample(a.Scrape(), "kpid_state_topic_checkpoints_total{result=\"ok\"}") >=
                   a.StateFiles();
      },
      absl::Seconds(20)))
      << a.Log();
  absl::SleepFor(absl::Seconds(2));  // a write of the file may precede its topic write
  const int checkpointed = a.StateFiles();
  // Part of batch B reaches A, which is killed as soon as it has counted it:
  // whatever its last interval checkpoint missed, B reads again.
  std::vector<KafkaRecord> batch_b = BatchB();
  const std::vector<KafkaRecord> early(batch_b.begin(), batch_b.begin() + 3);
  Produce(early);
  Drained(a, 14, /*settle=*/false);
  a.process().Signal(SIGKILL);
  a.process().Wait(absl::Seconds(10));

  b.Start();
  ASSERT_TRUE(WaitFor([&] { return b.Ready(); }, absl::Seconds(60))) << b.Log();
  Produce(std::vector<KafkaRecord>(batch_b.begin() + 3, batch_b.end()));
  const MetricSamples m = Drained(b, 17);
  ExpectTotalsOfBothBatches(m);
  // Batch B's first three may have reached partitions A had not read, in
  // which case their states were checkpointed too: at least those A read.
  EXPECT_GE(Sample(m, "kpid_state_restores_total{result=\"restored\",source=\"topic\"}"),
            checkpointed);
  EXPECT_EQ(Sample(m, "kpid_state_restores_total{result=\"restored\",source=\"topic\"}") +
                Sample(m, "kpid_state_restores_total{result=\"none\",source=\"none\"}"),
            kPartitions);
  b.process().Signal(SIGTERM);
  EXPECT_EQ(b.process().Wait(absl::Seconds(20)), 0) << b.Log();
}

}  // namespace
}  // namespace kpid::testing
