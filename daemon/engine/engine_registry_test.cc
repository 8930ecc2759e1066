// The registry's side of rebalances and restarts: engines restored from
// their state files at the offset they were checkpointed at, .prev used when
// the current file is damaged, eager-rebalance engines kept, readers' sets.
#include "daemon/engine/engine_registry.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "daemon/common/file_util.h"
#include "daemon/common/mutex.h"
#include "daemon/engine/state_topic.h"
#include "daemon/export/text_writer.h"
#include "daemon/ingest/embedded_broker.h"
#include "daemon/ingest/event_decoder.h"
#include "daemon/ingest/kafka_ingest.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/events.h"
#include "tests/testing/kafka_client.h"
#include "tests/testing/process.h"

namespace kpid::engine {
namespace {

constexpr char kConfig[] = R"(
clock: event
kafka: {topic: events}
processes:
  - id: sales
    stages:
      - {id: lead, sla: 1h}
)";

// Holds restores (Options::before_restore) of the partitions it names until
// opened; counts every restore begun.
class RestoreGate {
 public:
  explicit RestoreGate(std::set<int32_t> held) : held_(std::move(held)) {}
  std::function<void(int32_t)> Hook() {
    return [this](int32_t partition) {
      kpid::MutexLock lock(&mu_);
      ++begun_;
      while (!open_ && held_.contains(partition)) cv_.Wait(&mu_);
    };
  }
  void Open() {
    kpid::MutexLock lock(&mu_);
    open_ = true;
    cv_.SignalAll();
  }
  int begun() {
    kpid::MutexLock lock(&mu_);
    return begun_;
  }

 private:
  const std::set<int32_t> held_;
  kpid::Mutex mu_;
  kpid::CondVar cv_;
  bool open_ ABSL_GUARDED_BY(mu_) = false;
  int begun_ ABSL_GUARDED_BY(mu_) = 0;
};

// True once `done` holds, polled until `timeout`.
bool WaitFor(const std::function<bool()>& done, absl::Duration timeout = absl::Seconds(20)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!done()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return true;
}

class EngineRegistryTest : public ::testing::Test {
 protected:
  EngineRegistryTest()
      : config_(*model::ParseConfig(kConfig, "t.yaml")),
        dir_(absl::StrCat(::testing::TempDir(), "/engine_registry_test_", getpid(), "_",
                          ::testing::UnitTest::GetInstance()->current_test_info()->name())) {
    std::filesystem::remove_all(dir_);
  }
  ~EngineRegistryTest() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<EngineRegistry> Registry(bool durable = true,
                                           std::function<void(int32_t)> before_restore = {}) {
    return std::make_unique<EngineRegistry>(
        EngineRegistry::Options{.config = &config_,
                                .board = &board_,
                                .state_dir = durable ? dir_ : "",
                                .before_restore = std::move(before_restore)});
  }
  // kpid_state_restores_total{result,source}; the source a result comes
  // from without a state topic unless given.
  static double Restores(const EngineRegistry& registry, const std::string& result,
                         std::string source = "") {
    if (source.empty()) source = result == "restored" || result == "previous" ? "file" : "none";
    return testing::Sample(
        testing::ParseMetrics(exporter::RenderText({std::shared_ptr<prometheus::Collectable>(
            std::shared_ptr<void>(), const_cast<EngineRegistry*>(&registry))})),
        absl::StrCat("kpid_state_restores_total{result=\"", result, "\",source=\"", source, "\"}"));
  }
  // The registry's /metrics samples by series.
  static testing::MetricSamples Metrics(const EngineRegistry& registry) {
    return testing::ParseMetrics(exporter::RenderText({std::shared_ptr<prometheus::Collectable>(
        std::shared_ptr<void>(), const_cast<EngineRegistry*>(&registry))}));
  }
  // Checkpoints `consumed` counted messages at `next_offset`, written.
  static void Checkpoint(EngineRegistry& registry, ingest::PartitionHandler& engine,
                         uint64_t consumed, int64_t next_offset) {
    engine.stats().consumed.Add(consumed);
    engine.Checkpoint(next_offset);
    registry.Flush();
  }

  model::Config config_;
  cases::WatermarkBoard board_;
  std::string dir_;
};

TEST_F(EngineRegistryTest, ARestartResumesEachPartitionAtItsCheckpointedOffset) {
  {
    auto registry = Registry();
    ingest::PartitionHandlers::Opened opened = registry->Open(3, 4);
    EXPECT_EQ(opened.next_offset, ingest::kFromBeginning);  // first start: the whole log
    EXPECT_EQ(Restores(*registry, "none"), 1);
    Checkpoint(*registry, *opened.handler, 5, 17);
    registry->Close(3, /*keep=*/false);
  }
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/events-3.state"));
  auto registry = Registry();
  ingest::PartitionHandlers::Opened opened = registry->Open(3, 4);
  EXPECT_EQ(opened.next_offset, 17);
  EXPECT_EQ(opened.handler->stats().consumed.Get(), 5u);
  EXPECT_EQ(Restores(*registry, "restored"), 1);
}

TEST_F(EngineRegistryTest, ADamagedCurrentFileFallsBackToThePreviousOne) {
  {
    auto registry = Registry();
    ingest::PartitionHandlers::Opened opened = registry->Open(1, 4);
    Checkpoint(*registry, *opened.handler, 2, 10);  // becomes .prev
    Checkpoint(*registry, *opened.handler, 3, 20);  // 5 consumed at 20
  }
  const std::string path = dir_ + "/events-1.state";
  std::string bytes = *ReadFile(path);
  bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 1);
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;

  auto registry = Registry();
  ingest::PartitionHandlers::Opened opened = registry->Open(1, 4);
  EXPECT_EQ(opened.next_offset, 10);  // the previous checkpoint, with its own counts
  EXPECT_EQ(opened.handler->stats().consumed.Get(), 2u);
  EXPECT_EQ(Restores(*registry, "previous"), 1);
  EXPECT_EQ(Restores(*registry, "restored"), 0);
}

TEST_F(EngineRegistryTest, NoUsableFileStartsEmptyFromTheBeginningCounted) {
  std::filesystem::create_directories(dir_);
  std::ofstream(dir_ + "/events-0.state") << "garbage";
  std::ofstream(dir_ + "/events-0.state.prev") << "more garbage";
  auto registry = Registry();
  ingest::PartitionHandlers::Opened opened = registry->Open(0, 4);
  EXPECT_EQ(opened.next_offset, ingest::kFromBeginning);
  EXPECT_EQ(opened.handler->stats().consumed.Get(), 0u);
  EXPECT_EQ(Restores(*registry, "corrupt"), 1);
}

TEST_F(EngineRegistryTest, AnEagerRevokeKeepsTheEngineForTheNextAssignment) {
  auto registry = Registry(/*durable=*/false);
  ingest::PartitionHandlers::Opened first = registry->Open(2, 4);
  first.handler->stats().consumed.Add(4);
  first.handler->Checkpoint(9);  // what the worker does when it lets go
  registry->Close(2, /*keep=*/true);
  // Still read while kept: totals do not dip between revoke and assign.
  EXPECT_EQ(registry->Stats().size(), 1u);
  ingest::PartitionHandlers::Opened again = registry->Open(2, 4);
  EXPECT_EQ(again.handler, first.handler);
  EXPECT_EQ(again.next_offset, 9);
  registry->DropKept();
  EXPECT_EQ(registry->Stats().size(), 1u);

  registry->Close(2, /*keep=*/true);
  registry->DropKept();  // given to another consumer
  EXPECT_TRUE(registry->Stats().empty());
}

TEST_F(EngineRegistryTest, RestoresRunOffTheCallerAndARevokeDiscardsOneUnderWay) {
  {
    auto registry = Registry();
    std::vector<ingest::PartitionHandlers::Opened> opened = registry->OpenAll({0, 1}, 2);
    Checkpoint(*registry, *opened[0].handler, 3, 30);
    Checkpoint(*registry, *opened[1].handler, 4, 40);
  }
  RestoreGate gate({0});
  auto registry = Registry(/*durable=*/true, gate.Hook());
  kpid::Mutex mu;
  std::map<int32_t, ingest::PartitionHandlers::Opened> restored;
  std::vector<ingest::PartitionHandlers::Opened> opened =
      registry->OpenAsync({0, 1}, 2, [&](int32_t partition, ingest::PartitionHandlers::Opened o) {
        kpid::MutexLock lock(&mu);
        restored[partition] = std::move(o);
      });
  // Both restore elsewhere; partition 1 is handed over while 0 is held.
  EXPECT_EQ(opened[0].handler, nullptr);
  EXPECT_EQ(opened[1].handler, nullptr);
  ASSERT_TRUE(WaitFor([&] {
    kpid::MutexLock lock(&mu);
    return restored.contains(1);
  }));
  {
    kpid::MutexLock lock(&mu);
    EXPECT_EQ(restored[1].next_offset, 40);
    EXPECT_EQ(restored[1].handler->stats().consumed.Get(), 4u);
  }
  aggregate::ShardSet set = registry->Shards();
  EXPECT_EQ(set.partitions, std::vector<int32_t>{1});
  EXPECT_EQ(set.restoring, std::vector<int32_t>{0});
  EXPECT_EQ(registry->restoring(), 1);

  registry->Close(0, /*keep=*/false);  // revoked while restoring
  EXPECT_EQ(registry->restoring(), 0);
  EXPECT_TRUE(registry->Shards().restoring.empty());
  gate.Open();
  registry.reset();                    // waits for the restore under way
  EXPECT_FALSE(restored.contains(0));  // never handed over
  EXPECT_EQ(gate.begun(), 2);

  // Nothing of the discarded restore was written: partition 0's state is
  // still the one checkpointed above.
  auto again = Registry();
  ingest::PartitionHandlers::Opened zero = again->Open(0, 2);
  EXPECT_EQ(zero.next_offset, 30);
  EXPECT_EQ(zero.handler->stats().consumed.Get(), 3u);
}

TEST_F(EngineRegistryTest, AReshapeDuringARestoreRestoresAgainForTheNewConfig) {
  {
    auto registry = Registry();
    Checkpoint(*registry, *registry->Open(0, 1).handler, 3, 30);
  }
  RestoreGate gate({0});
  auto registry = Registry(/*durable=*/true, gate.Hook());
  kpid::Mutex mu;
  std::vector<ingest::PartitionHandlers::Opened> restored;
  registry->OpenAsync({0}, 1, [&](int32_t, ingest::PartitionHandlers::Opened o) {
    kpid::MutexLock lock(&mu);
    restored.push_back(std::move(o));
  });
  ASSERT_TRUE(WaitFor([&] { return gate.begun() == 1; }));  // restoring for kConfig
  auto next = std::make_shared<const model::Config>(*model::ParseConfig(R"(
clock: event
kafka: {topic: events}
processes:
  - id: sales
    stages:
      - {id: lead, sla: 1h}
      - {id: quote, sla: 2d}
)",
                                                                        "t.yaml"));
  ASSERT_TRUE(registry->Reshape(next, {}).ok());
  gate.Open();
  ASSERT_TRUE(WaitFor([&] {
    kpid::MutexLock lock(&mu);
    return !restored.empty();
  }));
  // The restore for kConfig was discarded and one for `next` handed over.
  EXPECT_EQ(gate.begun(), 2);
  EXPECT_EQ(registry->Shards().config, next);
  kpid::MutexLock lock(&mu);
  ASSERT_EQ(restored.size(), 1u);
  EXPECT_EQ(restored[0].next_offset, 30);
  EXPECT_EQ(restored[0].handler->stats().consumed.Get(), 3u);
}

TEST_F(EngineRegistryTest, ReadersKeepARevokedEngineAliveAndNeverSeeAnEmptySet) {
  auto registry = Registry(/*durable=*/false);
  const aggregate::ShardSet none = registry->Shards();
  EXPECT_EQ(none.shards.size(), 1u);  // the empty placeholder
  ingest::PartitionHandlers::Opened opened = registry->Open(0, 2);
  registry->Open(1, 2);
  const aggregate::ShardSet two = registry->Shards();
  EXPECT_EQ(two.shards.size(), 2u);
  EXPECT_EQ(two.tables.size(), 2u);
  EXPECT_EQ(two.open_cases.size(), 2u);
  EXPECT_NE(two.generation, none.generation);
  std::weak_ptr<ingest::PartitionHandler> weak = opened.handler;
  opened.handler.reset();
  registry->Close(0, /*keep=*/false);
  EXPECT_FALSE(weak.expired());  // `two` still reads it
  EXPECT_EQ(registry->Shards().shards.size(), 1u);
}

// With kafka.state_topic: an in-process mock cluster holds the topic;
// chunks of 64 bytes, so every state spans several chunks and each
// checkpoint tombstones the previous generation's.
class StateTopicRegistryTest : public EngineRegistryTest {
 protected:
  void SetUp() override {
    auto broker = ingest::EmbeddedBroker::Start({{"events", 4}, {"kpid-state", 4}});
    ASSERT_TRUE(broker.ok()) << broker.status();
    broker_ = *std::move(broker);
    auto topic = StateTopic::Start({.brokers = broker_->bootstrap(),
                                    .topic = "kpid-state",
                                    .input_topic = "events",
                                    .properties = {},
                                    .chunk_bytes = 64});
    ASSERT_TRUE(topic.ok()) << topic.status();
    topic_ = *std::move(topic);
  }
  // A replica: its own state_dir (empty: none) and the shared topic.
  std::unique_ptr<EngineRegistry> Replica(const std::string& dir, bool with_topic = true) {
    return std::make_unique<EngineRegistry>(
        EngineRegistry::Options{.config = &config_,
                                .board = &board_,
                                .state_dir = dir,
                                .state_topic = with_topic ? topic_.get() : nullptr});
  }

  std::unique_ptr<ingest::EmbeddedBroker> broker_;
  std::unique_ptr<StateTopic> topic_;
};

TEST_F(StateTopicRegistryTest, StateFollowsThePartitionToAReplicaWithoutFiles) {
  {
    auto a = Replica(dir_ + "/a");
    ingest::PartitionHandlers::Opened opened = a->Open(3, 4);
    EXPECT_EQ(opened.next_offset, ingest::kFromBeginning);
    Checkpoint(*a, *opened.handler, 4, 12);
    Checkpoint(*a, *opened.handler, 1, 17);  // the newest: 5 consumed at 17
    a->Close(3, /*keep=*/false);
  }
  auto b = Replica("");  // no state_dir at all
  ingest::PartitionHandlers::Opened opened = b->Open(3, 4);
  EXPECT_EQ(opened.next_offset, 17);
  EXPECT_EQ(opened.handler->stats().consumed.Get(), 5u);
  EXPECT_EQ(Restores(*b, "restored", "topic"), 1);
  // Another partition has nothing in the topic: read from its beginning.
  EXPECT_EQ(b->Open(2, 4).next_offset, ingest::kFromBeginning);
  EXPECT_EQ(Restores(*b, "none"), 1);
}

TEST_F(StateTopicRegistryTest, ANewerLocalFileWins) {
  {
    auto first = Replica(dir_);
    Checkpoint(*first, *first->Open(1, 4).handler, 2, 10);  // file and topic at 10
  }
  {
    auto offline = Replica(dir_, /*with_topic=*/false);
    Checkpoint(*offline, *offline->Open(1, 4).handler, 3, 20);  // the file alone at 20
  }
  auto again = Replica(dir_);
  ingest::PartitionHandlers::Opened opened = again->Open(1, 4);
  EXPECT_EQ(opened.next_offset, 20);
  EXPECT_EQ(opened.handler->stats().consumed.Get(), 5u);
  EXPECT_EQ(Restores(*again, "restored", "file"), 1);
  EXPECT_EQ(Restores(*again, "restored", "topic"), 0);
}

TEST_F(StateTopicRegistryTest, AnOlderLocalFileLosesToTheTopic) {
  {
    auto a = Replica(dir_ + "/a");
    Checkpoint(*a, *a->Open(0, 4).handler, 2, 10);  // a's file and the topic at 10
  }
  {
    auto b = Replica(dir_ + "/b");  // the partition moved to b, which read on
    ingest::PartitionHandlers::Opened opened = b->Open(0, 4);
    EXPECT_EQ(opened.next_offset, 10);
    Checkpoint(*b, *opened.handler, 7, 30);  // 9 consumed at 30
  }
  auto a = Replica(dir_ + "/a");  // back to a, whose file is stale
  ingest::PartitionHandlers::Opened opened = a->Open(0, 4);
  EXPECT_EQ(opened.next_offset, 30);
  EXPECT_EQ(opened.handler->stats().consumed.Get(), 9u);
  EXPECT_EQ(Restores(*a, "restored", "topic"), 1);
  EXPECT_EQ(Restores(*a, "restored", "file"), 0);
}

TEST_F(StateTopicRegistryTest, AProducerThatFailedFatallyIsReplacedAndNoCheckpointIsLost) {
  auto a = Replica("");
  ingest::PartitionHandlers::Opened opened = a->Open(0, 4);
  Checkpoint(*a, *opened.handler, 2, 10);
  topic_->RaiseFatalErrorForTest();        // librdkafka now refuses every message of this producer
  Checkpoint(*a, *opened.handler, 3, 20);  // 5 consumed at 20
  const testing::MetricSamples metrics = Metrics(*a);
  EXPECT_EQ(testing::Sample(metrics, "kpid_state_topic_checkpoints_total{result=\"ok\"}"), 2);
  EXPECT_EQ(testing::Sample(metrics, "kpid_state_topic_checkpoints_total{result=\"failed\"}"), 0);
  EXPECT_EQ(testing::Sample(metrics, "kpid_state_topic_producers_recreated_total"), 1);
  auto b = Replica("");
  opened = b->Open(0, 4);
  EXPECT_EQ(opened.next_offset, 20);
  EXPECT_EQ(opened.handler->stats().consumed.Get(), 5u);
}

TEST_F(StateTopicRegistryTest, AnOlderGenerationRestoredHasTheTornAndIncompleteOnesTombstoned) {
  {
    auto a = Replica("");
    Checkpoint(*a, *a->Open(1, 4).handler, 2, 10);
  }
  const uint64_t g = topic_->Read(1, 0)->newest_manifest->generation;
  // What crashes left after generation g: g + 1's manifest with its chunk 0
  // lost, and g + 2's chunks without their manifest. 200 bytes: 4 chunks.
  const std::string state(200, 'x');
  std::vector<ChangelogRecord> incomplete = EncodeGeneration(1, g + 1, 30, state, 64);
  incomplete.erase(incomplete.begin());
  std::vector<ChangelogRecord> torn = EncodeGeneration(1, g + 2, 40, state, 64);
  torn.pop_back();
  {
    kpid::testing::TestProducer producer(broker_->bootstrap());
    for (const auto* records : {&incomplete, &torn}) {
      for (const ChangelogRecord& r : *records) {
        producer.Send("kpid-state",
                      {.key = r.key, .value = *r.value, .headers = {}, .partition = 1});
      }
    }
    ASSERT_EQ(producer.Flush(absl::Seconds(10)), 0);
  }
  // g + 1 lacks a chunk and g + 2 its manifest: g it is.
  auto b = Replica("");
  ingest::PartitionHandlers::Opened opened = b->Open(1, 4);
  EXPECT_EQ(opened.next_offset, 10);
  EXPECT_EQ(opened.handler->stats().consumed.Get(), 2u);
  Checkpoint(*b, *opened.handler, 1, 15);
  // Once b's generation is acknowledged, the only chunks left untombstoned
  // are its own: compaction keeps one generation.
  absl::StatusOr<StateTopic::Scan> scan = topic_->Read(1, 0);
  ASSERT_TRUE(scan.ok()) << scan.status();
  ASSERT_TRUE(scan->state.has_value());
  const ChangelogManifest& newest = scan->state->manifest;
  EXPECT_EQ(newest.next_offset, 15);
  EXPECT_GT(newest.generation, g + 2);
  std::vector<std::string> expected;
  for (uint32_t i = 0; i < newest.chunk_count; ++i)
    expected.push_back(ChunkKey(1, newest.generation, i));
  EXPECT_EQ(scan->chunk_keys, expected);
}

TEST_F(StateTopicRegistryTest, OpenAllOpensEveryPartitionAndLeavesNoneRestoring) {
  auto registry = Replica("");
  std::vector<ingest::PartitionHandlers::Opened> opened = registry->OpenAll({0, 1, 2, 3}, 4);
  ASSERT_EQ(opened.size(), 4u);
  const aggregate::ShardSet set = registry->Shards();
  EXPECT_EQ(set.partitions, (std::vector<int32_t>{0, 1, 2, 3}));
  EXPECT_TRUE(set.restoring.empty());
  EXPECT_EQ(registry->restoring(), 0);
}

// KafkaIngest with a durable registry on an in-process mock cluster: a
// partition's restore held longer than max.poll.interval.ms does not stall
// the others nor get the replica evicted, and no message of it is lost or
// read twice; revoked while restoring, nothing of it is kept or written.
class RestoreIngestTest : public EngineRegistryTest {
 protected:
  static constexpr char kIngestConfig[] = R"(
clock: event
kafka:
  topic: events
  group_id: restore-test
  # A rebalance callback that blocked for longer would get the member
  # evicted from the group (librdkafka leaves it: max poll exceeded). The
  # mock broker's first join takes 3 s: sessions shorter than that time out.
  properties: {session.timeout.ms: "6000", heartbeat.interval.ms: "1000",
               max.poll.interval.ms: "6000"}
processes:
  - id: sales
    stages:
      - {id: lead, sla: 1h}
)";

  void SetUp() override {
    config_ = *model::ParseConfig(kIngestConfig, "t.yaml");
    auto broker = ingest::EmbeddedBroker::Start({{"events", 2}});
    ASSERT_TRUE(broker.ok()) << broker.status();
    broker_ = *std::move(broker);
  }

  // `count` events entering stage lead, each a new case, to `partition`.
  void Produce(int32_t partition, int count) {
    kpid::testing::TestProducer producer(broker_->bootstrap());
    for (int i = 0; i < count; ++i) {
      ++produced_;
      kpid::testing::KafkaRecord record = kpid::testing::EventRecord(
          {.process = "sales",
           .event_id = absl::StrCat("e", produced_),
           .case_id = absl::StrCat("c", produced_),
           .stage = "lead",
           .occurred_at = absl::FromUnixSeconds(1793491200 + produced_)});
      record.partition = partition;
      producer.Send("events", record);
    }
    ASSERT_EQ(producer.Flush(absl::Seconds(10)), 0);
  }

  std::unique_ptr<ingest::KafkaIngest> Ingest(EngineRegistry& registry) {
    auto ingest = ingest::KafkaIngest::Start({.config = &config_,
                                              .brokers = broker_->bootstrap(),
                                              .workers = 2,
                                              .partitions = &registry});
    EXPECT_TRUE(ingest.ok()) << ingest.status();
    return ingest.ok() ? *std::move(ingest) : nullptr;
  }

  // Messages taken by the registry's engines, live or kept.
  static uint64_t Messages(const EngineRegistry& registry) {
    uint64_t messages = 0;
    for (const auto& stats : registry.Stats()) messages += stats->messages.Get();
    return messages;
  }

  std::unique_ptr<ingest::EmbeddedBroker> broker_;
  int produced_ = 0;
};

TEST_F(RestoreIngestTest, ASlowRestoreStallsNothingAndARevokeDiscardsIt) {
  // First run: 3 events on partition 0, 2 on partition 1, read and
  // checkpointed at the stop (next offsets 3 and 2).
  Produce(0, 3);
  Produce(1, 2);
  {
    auto registry = Registry();
    auto ingest = Ingest(*registry);
    ASSERT_NE(ingest, nullptr);
    ASSERT_TRUE(WaitFor([&] { return Messages(*registry) == 5; }));
    ingest->Stop();
  }

  // Second run: 2 more on partition 0, 4 more on partition 1; partition 0's
  // restore is held for longer than max.poll.interval.ms.
  Produce(0, 2);
  Produce(1, 4);
  {
    RestoreGate gate({0});
    auto registry = Registry(/*durable=*/true, gate.Hook());
    auto ingest = Ingest(*registry);
    ASSERT_NE(ingest, nullptr);
    // Partition 1 alone is live: its 2 restored + 4 new messages.
    EXPECT_TRUE(WaitFor([&] { return Messages(*registry) == 2 + 4; }));
    EXPECT_EQ(registry->Shards().restoring, std::vector<int32_t>{0});
    absl::SleepFor(absl::Milliseconds(8000));
    gate.Open();
    // Partition 0 from its checkpoint at 3: 3 restored + 2 read; the first
    // 3 read again would be 3 more messages (duplicates).
    EXPECT_TRUE(WaitFor([&] { return Messages(*registry) == 3 + 2 + 2 + 4; }));
    absl::SleepFor(absl::Milliseconds(300));  // a message read twice would show now
    EXPECT_EQ(Messages(*registry), 3u + 2 + 2 + 4);
    EXPECT_EQ(registry->restoring(), 0);
    // One restore per partition: never evicted, so never assigned again.
    EXPECT_EQ(gate.begun(), 2);
    ingest->Stop();
  }

  // Third run: stopped (every partition revoked) while partition 0 restores.
  {
    RestoreGate gate({0});
    auto registry = Registry(/*durable=*/true, gate.Hook());
    auto ingest = Ingest(*registry);
    ASSERT_NE(ingest, nullptr);
    EXPECT_TRUE(WaitFor([&] { return Messages(*registry) == 2 + 4; }));
    EXPECT_EQ(registry->restoring(), 1);
    ingest->Stop();
    EXPECT_EQ(registry->restoring(), 0);
    gate.Open();
  }  // the registry waits for the discarded restore
  auto registry = Registry();
  std::vector<ingest::PartitionHandlers::Opened> opened = registry->OpenAll({0, 1}, 2);
  EXPECT_EQ(opened[0].next_offset, 5);
  EXPECT_EQ(opened[0].handler->stats().messages.Get(), 3u + 2);
  EXPECT_EQ(opened[1].next_offset, 6);
  EXPECT_EQ(opened[1].handler->stats().messages.Get(), 2u + 4);
}

// One process, sales, with a lead stage; cases by region, at most two
// region series per process.
constexpr char kSeriesConfig[] = R"(
clock: event
kafka: {topic: events}
dimensions: {names: [region], max_series_per_process: 2}
processes:
  - id: sales
    stages:
      - {id: lead, sla: 1h}
)";

// New cases of process `sales`, each entering stage `lead` with a region,
// one second apart, through the decoder as the daemon's workers do.
class NewCases {
 public:
  explicit NewCases(const model::Config& config) : decoder_(config) {}

  void EnterLead(ingest::PartitionHandler& partition, const std::string& region) {
    kpid::v1::ProcessEvent e;
    e.set_event_id(absl::StrCat("e", ++n_));
    e.set_process("sales");
    e.set_case_id(absl::StrCat("c", n_));
    e.set_kind(kpid::v1::ProcessEvent::STAGE_ENTERED);
    e.set_stage("lead");
    e.mutable_occurred_at()->set_seconds(1772323200 + n_);
    (*e.mutable_attributes())["region"] = region;
    ingest::DecodedEvent decoded;
    ASSERT_FALSE(decoder_.Decode(e.SerializeAsString(), false, &decoded).has_value());
    EXPECT_EQ(partition.Handle(decoded).kind, ingest::Verdict::Kind::kAccepted);
  }

 private:
  ingest::EventDecoder decoder_;
  int n_ = 0;
};

// DESIGN §4: max_series_per_process bounds the replica, not each partition.
TEST(EngineRegistrySeriesTest, TheSeriesLimitHoldsAcrossPartitions) {
  const model::Config config = *model::ParseConfig(kSeriesConfig, "t.yaml");
  cases::WatermarkBoard board;
  EngineRegistry registry({.config = &config, .board = &board, .state_dir = ""});
  std::shared_ptr<ingest::PartitionHandler> p0 = registry.Open(0, 2).handler;
  std::shared_ptr<ingest::PartitionHandler> p1 = registry.Open(1, 2).handler;
  NewCases new_cases(config);
  new_cases.EnterLead(*p0, "emea");  // admitted, 1 of 2
  new_cases.EnterLead(*p1, "amer");  // admitted, 2 of 2
  new_cases.EnterLead(*p1, "apac");  // folds in partition 1 (each partition alone had room)
  new_cases.EnterLead(*p0, "apac");  // and in partition 0
  new_cases.EnterLead(*p0, "amer");  // admitted by partition 1: a series in partition 0 too
  const aggregate::ShardSet set = registry.Shards();
  ASSERT_EQ(set.tables.size(), 2u);
  // Each table: the empty combination, __other__, and its own admitted ones:
  // partition 0 emea + amer = 4, partition 1 amer = 3; apac folded once in each.
  uint64_t folded = 0;
  size_t sizes = 0;
  for (const cases::DimensionTable* table : set.tables) {
    EXPECT_EQ(table->Folded(0), 1u);
    folded += table->Folded(0);
    sizes += table->Size(0);
  }
  EXPECT_EQ(folded, 2u);
  EXPECT_EQ(sizes, 4u + 3u);
}

// The limit counts the combinations of the partitions the replica holds: a
// revoked partition's (once no partition still uses them) make room for new
// ones elsewhere; a kept engine holds its own until dropped; a reshape
// registers what the reshaped engines keep in the new config's admission.
TEST(EngineRegistrySeriesTest, ARevokedPartitionsCombinationsMakeRoom) {
  const model::Config config = *model::ParseConfig(kSeriesConfig, "t.yaml");
  cases::WatermarkBoard board;
  EngineRegistry registry({.config = &config, .board = &board, .state_dir = ""});
  std::shared_ptr<ingest::PartitionHandler> p0 = registry.Open(0, 3).handler;
  std::shared_ptr<ingest::PartitionHandler> p1 = registry.Open(1, 3).handler;
  std::shared_ptr<ingest::PartitionHandler> p2 = registry.Open(2, 3).handler;
  NewCases new_cases(config);
  new_cases.EnterLead(*p0, "emea");  // admitted, 1 of 2
  new_cases.EnterLead(*p1, "amer");  // admitted, 2 of 2
  new_cases.EnterLead(*p1, "emea");  // admitted already: partition 1 uses it too
  new_cases.EnterLead(*p2, "apac");  // folds (1)
  // Partition 0 revoked (and let go by its worker): emea is still partition
  // 1's, so still 2 of 2.
  registry.Close(0, /*keep=*/false);
  p0.reset();
  new_cases.EnterLead(*p2, "apac");  // folds (2)
  // Partition 1 revoked by an eager rebalance: kept, still read, still
  // holding emea and amer.
  registry.Close(1, /*keep=*/true);
  p1.reset();
  new_cases.EnterLead(*p2, "apac");  // folds (3)
  // Given to another replica: nothing holds emea or amer, 0 of 2.
  registry.DropKept();
  new_cases.EnterLead(*p2, "apac");                // admitted, 1 of 2
  new_cases.EnterLead(*p2, "latam");               // admitted, 2 of 2
  new_cases.EnterLead(*p2, "nordics");             // folds (4)
  EXPECT_EQ(registry.Shards().tables.size(), 1u);  // partition 2 alone
  {
    const cases::DimensionTable& table = static_cast<const PartitionEngine&>(*p2).table();
    // Empty, __other__, apac, latam; the 3 apac cases and 1 nordics folded.
    EXPECT_EQ(table.Size(0), 4u);
    EXPECT_EQ(table.Values(0, 2), std::vector<std::string>{"apac"});
    EXPECT_EQ(table.Values(0, 3), std::vector<std::string>{"latam"});
    EXPECT_EQ(table.Folded(0), 4u);
  }

  // A reload raising the limit to 3: the reshaped engine registers apac and
  // latam (2 of 3) in the new admission, and nordics gets the room left.
  auto next = std::make_shared<const model::Config>(*model::ParseConfig(
      absl::StrReplaceAll(kSeriesConfig,
                          {{"max_series_per_process: 2", "max_series_per_process: 3"}}),
      "t.yaml"));
  auto handlers = registry.Reshape(next, {});
  ASSERT_TRUE(handlers.ok()) << handlers.status();
  p2 = handlers->at(2);
  new_cases.EnterLead(*p2, "nordics");  // admitted, 3 of 3
  new_cases.EnterLead(*p2, "baltics");  // folds (5)
  const cases::DimensionTable& table = static_cast<const PartitionEngine&>(*p2).table();
  EXPECT_EQ(table.Size(0), 5u);
  EXPECT_EQ(table.Values(0, 4), std::vector<std::string>{"nordics"});
  EXPECT_EQ(table.Folded(0), 5u);
}

}  // namespace
}  // namespace kpid::engine
