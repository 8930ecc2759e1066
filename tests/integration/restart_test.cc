// Durable state end to end: a real kpid with state_dir, consuming from a
// `kpid dev-broker` process, stopped with SIGTERM and started again between
// two batches of events. Every total after the restart is the hand-computed
// one for both batches together: open cases, closed cases and remembered
// event ids survive (a completion of a case opened before the restart
// counts, a duplicate of an event read before it is recognized), and no
// message is counted twice or lost. Then a damaged checkpoint: the partition
// is restored from its .prev, re-reads what came after it, and the totals are
// still exact (kpid_state_restores_total{result="previous"} 1).
#include <signal.h>

#include <filesystem>
#include <fstream>
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

constexpr char kBrokerConfig[] = R"(
kafka:
  brokers: embedded
  topic: events
  partitions: 3
  bootstrap_file: $DIR/bootstrap
processes:
  - id: sales
    stages:
      - {id: lead, sla: 1h}
)";

// Two workers for three partitions: one worker owns two engines. Checkpoints
// only at shutdown (the interval is never reached), so a partition's .prev is
// the previous run's. The mock
// broker lets a group rejoin only when the last member's session has timed
// out, so the session is short (librdkafka's least).
constexpr char kConfig[] = R"(
kafka:
  brokers: "$BROKERS"
  topic: events
  group_id: kpid-restart
  workers: 2
  properties: {session.timeout.ms: "6000", heartbeat.interval.ms: "1000"}
http: {listen: "127.0.0.1:$PORT"}
grpc: {listen: "127.0.0.1:0"}
clock: event
state_dir: $DIR/state
checkpoint_interval: 1h
processes:
  - id: sales
    stages:
      - {id: lead, sla: 1h}
      - {id: quote, sla: 2d}
)";

// 12 messages: SalesBatchA's 11 (10 accepted, 1 duplicate), then 1 malformed.
std::vector<KafkaRecord> BatchA() {
  std::vector<KafkaRecord> records = SalesBatchA();
  KafkaRecord bad;
  bad.key = "bad";
  bad.value = "\xff\xfe not a protobuf";
  records.push_back(bad);
  return records;
}

// 9 messages: 7 accepted, 1 duplicate of batch A, 1 case_closed.
std::vector<KafkaRecord> BatchB() {
  using K = ProcessEvent;
  return {
      // Opened before the restart: these count only if the cases were restored.
      SalesEvent("b-done-0", "c0", K::CASE_COMPLETED, "", 1000, 100),
      SalesEvent("b-done-1", "c1", K::CASE_COMPLETED, "", 1001, 200),
      SalesEvent("b-fall-2", "c2", K::CASE_FALLOUT, "", 1100),
      SalesEvent("b-quote-4", "c4", K::STAGE_ENTERED, "quote", 1200),
      SalesEvent("b-quote-5", "c5", K::STAGE_ENTERED, "quote", 1201),
      // Read before the restart: a duplicate only if the event ids were restored.
      SalesEvent("a-quote-1", "c1", K::STAGE_ENTERED, "quote", 601),
      // c3 fell out at 700, within dedup_horizon (1h): case_closed.
      SalesEvent("b-lead-3", "c3", K::STAGE_ENTERED, "lead", 1300),
      SalesEvent("b-lead-6", "c6", K::STAGE_ENTERED, "lead", 1400),
      SalesEvent("b-quote-6", "c6", K::STAGE_ENTERED, "quote", 1500),
  };
}

class RestartTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("restart");
    port_ = FreePort();
    WriteFileOrDie(dir_ + "/broker.yaml", absl::StrReplaceAll(kBrokerConfig, {{"$DIR", dir_}}));
    broker_ = std::make_unique<Subprocess>(
        std::vector<std::string>{KPID_BINARY, "dev-broker", "--config", dir_ + "/broker.yaml"},
        dir_ + "/broker.log");
    ASSERT_TRUE(
        WaitFor([&] { return !ReadFileOrEmpty(dir_ + "/bootstrap").empty(); }, absl::Seconds(10)))
        << ReadFileOrEmpty(dir_ + "/broker.log");
    brokers_ = std::string(absl::StripSuffix(ReadFileOrEmpty(dir_ + "/bootstrap"), "\n"));
    WriteFileOrDie(
        dir_ + "/kpid.yaml",
        absl::StrReplaceAll(
            kConfig, {{"$DIR", dir_}, {"$BROKERS", brokers_}, {"$PORT", absl::StrCat(port_)}}));
  }

  void StartKpid() {
    kpid_ = std::make_unique<Subprocess>(
        std::vector<std::string>{KPID_BINARY, "--config", dir_ + "/kpid.yaml"},
        absl::StrCat(dir_, "/kpid-", ++runs_, ".log"));
    ASSERT_TRUE(WaitFor([&] { return HttpGet(port_, "/readyz").status == 200; }, absl::Seconds(60)))
        << ReadFileOrEmpty(absl::StrCat(dir_, "/kpid-", runs_, ".log"));
  }
  void StopKpid() {
    kpid_->Signal(SIGTERM);
    EXPECT_EQ(kpid_->Wait(absl::Seconds(10)), 0);
  }
  void Produce(const std::vector<KafkaRecord>& records) {
    TestProducer producer(brokers_);
    for (const KafkaRecord& r : records) producer.Send("events", r);
    ASSERT_EQ(producer.Flush(absl::Seconds(10)), 0);
  }
  MetricSamples Scrape() { return ParseMetrics(HttpGet(port_, "/metrics").body); }
  static double Messages(const MetricSamples& m) {
    double n = Sample(m, "kpid_events_consumed_total") + Sample(m, "kpid_events_duplicate_total");
    for (const auto& [series, value] : m) {
      if (series.rfind("kpid_events_rejected_total{", 0) == 0) n += value;
    }
    return n;
  }
  // Waits until every one of `messages` is counted, then a little longer,
  // so a message counted twice would show.
  MetricSamples Drained(double messages) {
    EXPECT_TRUE(WaitFor([&] { return Messages(Scrape()) >= messages; }, absl::Seconds(30)))
        << Messages(Scrape());
    absl::SleepFor(absl::Seconds(2));
    return Scrape();
  }
  int StateFiles() {
    int n = 0;
    for (int p = 0; p < kPartitions; ++p) {
      n += std::filesystem::exists(absl::StrCat(dir_, "/state/events-", p, ".state"));
    }
    return n;
  }
  // Both batches, by hand: see BatchA and BatchB.
  static void ExpectTotalsOfBothBatches(const MetricSamples& m) {
    // Messages: 12 (A) + 9 (B) = 21 = 17 accepted + 2 duplicates + 2 rejected.
    EXPECT_EQ(Messages(m), 21);
    // Accepted: A 6 lead + 3 quote + 1 fallout = 10; B 2 completions + 1 fallout + 2 quote
    // + c6 lead and quote = 7.
    EXPECT_EQ(Sample(m, "kpid_events_consumed_total"), 17);
    // a-lead-0 again in A; a-quote-1 again in B (read before the restart).
    EXPECT_EQ(Sample(m, "kpid_events_duplicate_total"), 2);
    EXPECT_EQ(Sample(m, "kpid_events_rejected_total{reason=\"malformed_protobuf\"}"), 1);
    EXPECT_EQ(Sample(m, "kpid_events_rejected_total{reason=\"case_closed\"}"), 1);
    // Completions of cases opened before the restart are not unknown.
    EXPECT_EQ(Sample(m, "kpid_events_rejected_total{reason=\"unknown_case\"}"), 0);
    // c0..c5 and c6.
    EXPECT_EQ(Sample(m, "kpid_process_cases_started_total{process=\"sales\"}"), 7);
    EXPECT_EQ(Sample(m, "kpid_process_cases_completed_total{process=\"sales\"}"), 2);
    // c3 (A), c2 (B).
    EXPECT_EQ(Sample(m, "kpid_process_cases_fallout_total{process=\"sales\"}"), 2);
    // c0 100 + c1 200.
    EXPECT_EQ(Sample(m, "kpid_process_revenue_total{process=\"sales\"}"), 300);
    // lead: c0..c5 + c6 = 7; quote: c0 c1 c2 (A) + c4 c5 c6 (B) = 6.
    EXPECT_EQ(Sample(m, "kpid_stage_entered_total{process=\"sales\",stage=\"lead\"}"), 7);
    EXPECT_EQ(Sample(m, "kpid_stage_entered_total{process=\"sales\",stage=\"quote\"}"), 6);
    // Open: c4 c5 c6, all in quote.
    EXPECT_EQ(Sample(m, "kpid_process_open_cases{process=\"sales\"}"), 3);
    EXPECT_EQ(Sample(m, "kpid_stage_backlog{process=\"sales\",stage=\"quote\"}"), 3);
    EXPECT_EQ(Sample(m, "kpid_stage_backlog{process=\"sales\",stage=\"lead\"}"), 0);
    // The latest event: c6 into quote at 1500.
    EXPECT_EQ(Sample(m, "kpid_watermark_timestamp_seconds"), kSalesT0 + 1500);
  }

  std::string dir_;
  int port_ = 0;
  int runs_ = 0;
  std::string brokers_;
  std::unique_ptr<Subprocess> broker_;
  std::unique_ptr<Subprocess> kpid_;
};

TEST_F(RestartTest, CountsAreExactAcrossASigtermRestartAndADamagedCheckpoint) {
  StartKpid();
  Produce(BatchA());
  const MetricSamples a = Drained(12);
  EXPECT_EQ(Sample(a, "kpid_events_consumed_total"), 10);
  EXPECT_EQ(Sample(a, "kpid_state_restores_total{result=\"none\",source=\"none\"}"), kPartitions);
  StopKpid();
  const int files_a = StateFiles();
  ASSERT_GT(files_a, 0);  // the partitions that had messages were checkpointed at shutdown

  StartKpid();
  Produce(BatchB());
  ExpectTotalsOfBothBatches(Drained(21));
  const MetricSamples b = Scrape();
  EXPECT_EQ(Sample(b, "kpid_state_restores_total{result=\"restored\",source=\"file\"}"), files_a);
  // The restored partitions are sought past batch A; what is delivered
  // below that anyway is skipped (the totals above) and counted here.
  EXPECT_GE(Sample(b, "kpid_state_reread_messages_total"), 0);
  StopKpid();

  // Damage the current checkpoint of a partition that read batch B: its
  // .prev (the first run's, at the offset after batch A) is restored and the
  // partition's messages of batch B are read again, on top of a state that
  // had not counted them.
  std::string damaged;
  for (int p = 0; p < kPartitions && damaged.empty(); ++p) {
    const std::string path = absl::StrCat(dir_, "/state/events-", p, ".state");
    const std::string prev = ReadFileOrEmpty(path + ".prev");
    if (!prev.empty() && prev != ReadFileOrEmpty(path)) damaged = path;
  }
  ASSERT_FALSE(damaged.empty());
  std::string bytes = ReadFileOrEmpty(damaged);
  bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 0x40);
  WriteFileOrDie(damaged, bytes);
  StartKpid();
  const MetricSamples c = Drained(21);
  ExpectTotalsOfBothBatches(c);
  EXPECT_EQ(Sample(c, "kpid_state_restores_total{result=\"previous\",source=\"file\"}"), 1);
  StopKpid();
  broker_->Signal(SIGTERM);
  broker_->Wait(absl::Seconds(10));
}

}  // namespace
}  // namespace kpid::testing
