// Engines written by their workers while readers take the registry's set
// and render /metrics from it, and partitions are assigned and revoked
// meanwhile: no race (run under ThreadSanitizer), no engine freed under a
// reader, the written partitions' counts exact at the end, and the
// combinations of the engines revoked (freed by whichever thread let go
// last) all given back to the series admission. With durable state,
// restores on the registry's threads race revokes and readers.
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "daemon/aggregate/merged_reader.h"
#include "daemon/engine/engine_registry.h"
#include "daemon/export/engine_metrics.h"
#include "daemon/export/text_writer.h"
#include "daemon/ingest/event_decoder.h"
#include "gtest/gtest.h"

namespace kpid::engine {
namespace {

constexpr char kConfig[] = R"(
clock: event
kafka: {topic: events}
dimensions: {names: [region], max_series_per_process: 3}
processes:
  - id: sales
    stages:
      - {id: lead, sla: 1h}
      - {id: quote, sla: 2d}
)";

constexpr int kEventsPerWorker = 20000;

ingest::DecodedEvent Entered(ingest::EventDecoder& decoder, const std::string& id,
                             const std::string& case_id, const std::string& stage, int64_t seconds,
                             const std::string& region) {
  v1::ProcessEvent e;
  e.set_event_id(id);
  e.set_process("sales");
  e.set_case_id(case_id);
  e.set_kind(v1::ProcessEvent::STAGE_ENTERED);
  e.set_stage(stage);
  e.mutable_occurred_at()->set_seconds(seconds);
  (*e.mutable_attributes())["region"] = region;
  ingest::DecodedEvent decoded;
  EXPECT_FALSE(decoder.Decode(e.SerializeAsString(), false, &decoded).has_value());
  return decoded;
}

TEST(EngineRegistryStressTest, WritersReadersAndRebalancesTogether) {
  const model::Config config = *model::ParseConfig(kConfig, "t.yaml");
  cases::WatermarkBoard board;
  EngineRegistry registry({.config = &config, .board = &board, .state_dir = ""});
  cases::ManualClock reader_clock(absl::FromUnixSeconds(1793491200));
  auto metrics =
      std::make_shared<exporter::EngineMetrics>(&config, registry.Source(), &reader_clock);

  // Partitions 0 and 1 stay assigned, each written by its own worker.
  std::vector<std::shared_ptr<ingest::PartitionHandler>> engines = {registry.Open(0, 3).handler,
                                                                    registry.Open(1, 3).handler};
  std::atomic<bool> done{false};
  std::vector<std::thread> workers;
  for (int w = 0; w < 2; ++w) {
    workers.emplace_back([&, w] {
      ingest::EventDecoder decoder(config);
      ingest::PartitionHandler& engine = *engines[static_cast<size_t>(w)];
      for (int i = 0; i < kEventsPerWorker; ++i) {
        const ingest::DecodedEvent decoded =
            Entered(decoder, absl::StrCat("w", w, "-", i), absl::StrCat("w", w, "-c", i / 2),
                    i % 2 == 0 ? "lead" : "quote", 1793491200 + i, i % 3 == 0 ? "emea" : "amer");
        if (engine.Handle(decoded).kind == ingest::Verdict::Kind::kAccepted) {
          engine.stats().consumed.Add();
        }
        if (i % 500 == 0) engine.Tick(absl::Now());
      }
    });
  }
  std::thread reader([&] {
    while (!done.load()) {
      const std::string text = exporter::RenderText({metrics});
      EXPECT_FALSE(text.empty());
      uint64_t consumed = 0;
      for (const auto& stats : registry.Stats()) consumed += stats->consumed.Get();
      EXPECT_LE(consumed, 2u * kEventsPerWorker);
    }
  });
  // Partition 2 comes and goes, as rebalances would move it, each time with
  // a case of a region of its own (admitted, or folded while a reader still
  // holds an earlier engine of it).
  std::thread rebalancer([&] {
    ingest::EventDecoder decoder(config);
    for (int round = 0; !done.load(); ++round) {
      std::shared_ptr<ingest::PartitionHandler> engine = registry.Open(2, 3).handler;
      engine->Handle(Entered(decoder, absl::StrCat("p2-", round), absl::StrCat("p2-c", round),
                             "lead", 1793491200 + round, absl::StrCat("p2-region-", round)));
      engine->Checkpoint(round);
      registry.Close(2, /*keep=*/round % 2 == 0);
      registry.DropKept();
    }
  });
  for (std::thread& t : workers) t.join();
  done.store(true);
  reader.join();
  rebalancer.join();

  uint64_t consumed = 0;
  for (const auto& stats : registry.Stats()) consumed += stats->consumed.Get();
  EXPECT_EQ(consumed, 2u * kEventsPerWorker);  // every event accepted: a new id each
  // Each worker started kEventsPerWorker / 2 cases (one per two events);
  // partition 2's engines never saw an event.
  {
    const aggregate::ShardSet set = registry.Shards();
    EXPECT_EQ(aggregate::MergedReader(set.shards).ReadAllDimsTotals(0).process.started,
              static_cast<uint64_t>(kEventsPerWorker));
  }

  // Every engine of partition 2 is freed; partitions 0 and 1 hold at most
  // emea and amer: 2 of 3, so a new combination is admitted, not folded.
  ingest::EventDecoder decoder(config);
  std::shared_ptr<ingest::PartitionHandler> last = registry.Open(2, 3).handler;
  last->Handle(Entered(decoder, "last", "last-case", "lead", 1793491200, "last-region"));
  const cases::DimensionTable& table = static_cast<const PartitionEngine&>(*last).table();
  EXPECT_EQ(table.Folded(0), 0u);
  ASSERT_EQ(table.Size(0), 3u);  // empty, __other__, last-region
  EXPECT_EQ(table.Values(0, 2), std::vector<std::string>{"last-region"});
}

TEST(EngineRegistryStressTest, RestoresRaceRevokesAndReaders) {
  const model::Config config = *model::ParseConfig(kConfig, "t.yaml");
  cases::WatermarkBoard board;
  const std::string dir =
      absl::StrCat(::testing::TempDir(), "/engine_registry_stress_test_", getpid());
  std::filesystem::remove_all(dir);
  {
    // Something to restore: partitions 0 and 1 checkpointed with 7 and 9
    // messages counted.
    EngineRegistry first({.config = &config, .board = &board, .state_dir = dir});
    std::vector<ingest::PartitionHandlers::Opened> opened = first.OpenAll({0, 1}, 2);
    opened[0].handler->stats().consumed.Add(7);
    opened[0].handler->Checkpoint(70);
    opened[1].handler->stats().consumed.Add(9);
    opened[1].handler->Checkpoint(90);
  }
  EngineRegistry registry({.config = &config, .board = &board, .state_dir = dir});
  cases::ManualClock reader_clock(absl::FromUnixSeconds(1793491200));
  auto metrics =
      std::make_shared<exporter::EngineMetrics>(&config, registry.Source(), &reader_clock);
  std::atomic<bool> done{false};
  std::thread reader([&] {
    while (!done.load()) {
      EXPECT_FALSE(exporter::RenderText({metrics}).empty());
      for (const auto& stats : registry.Stats()) {
        const uint64_t consumed = stats->consumed.Get();
        EXPECT_TRUE(consumed == 7 || consumed == 9) << consumed;  // restored whole, or absent
      }
    }
  });
  // Assigned and revoked again and again: revoked while restoring, or once
  // restored; a restore is handed over before its revoke, never after.
  std::atomic<int> late{0};
  for (int round = 0; round < 300; ++round) {
    // Outlives the round: a late hand-over must be seen, not crash.
    auto closed = std::make_shared<std::atomic<bool>>(false);
    auto handed_over = std::make_shared<std::atomic<int>>(0);
    registry.OpenAsync(
        {0, 1}, 2,
        [&late, closed, handed_over](int32_t partition, ingest::PartitionHandlers::Opened o) {
          if (closed->load()) late.fetch_add(1);
          EXPECT_EQ(o.next_offset, partition == 0 ? 70 : 90);
          handed_over->fetch_add(1);
        });
    // Every third round revoked once restored; the others at once.
    if (round % 3 == 0) {
      while (handed_over->load() < 2) absl::SleepFor(absl::Microseconds(100));
    }
    registry.Close(0, /*keep=*/round % 2 == 0);
    registry.Close(1, /*keep=*/false);
    closed->store(true);
    registry.DropKept();
  }
  done.store(true);
  reader.join();
  EXPECT_EQ(late.load(), 0);
  EXPECT_EQ(registry.restoring(), 0);
  EXPECT_TRUE(registry.Stats().empty());
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kpid::engine
