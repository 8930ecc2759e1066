// Reloads reshaping the engines while workers write and readers scrape:
// the registry's Reshape runs with the workers paused between batches (as
// ingest::KafkaIngest::SwapHandlers pauses them), the readers take shard
// sets throughout. Run under ThreadSanitizer: no race; and no scrape ever
// reads shards of one shape with the config of the other.
//
// The two shapes alternate. A: sales [lead, quote], support [open].
// B: sales [lead, won, quote]. Workers send sales events to lead, and to
// won when their shape has it; quote never gets an event. Read with the
// wrong config, B's won (index 1) would show as A's quote (index 1): so
// quote must read 0 in every scrape, and no scrape has both won and support.
#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "daemon/aggregate/merged_reader.h"
#include "daemon/engine/engine_registry.h"
#include "daemon/export/engine_metrics.h"
#include "daemon/export/open_cases_metrics.h"
#include "daemon/export/text_writer.h"
#include "daemon/ingest/event_decoder.h"
#include "gtest/gtest.h"
#include "tests/testing/process.h"

namespace kpid::engine {
namespace {

constexpr char kShapeA[] = R"(
clock: event
kafka: {topic: events}
dimensions: {names: [region]}
processes:
  - id: sales
    stages: [{id: lead, sla: 1h}, {id: quote, sla: 2d}]
  - id: support
    stages: [{id: open, sla: 1h}]
)";
constexpr char kShapeB[] = R"(
clock: event
kafka: {topic: events}
dimensions: {names: [region]}
processes:
  - id: sales
    stages: [{id: lead, sla: 1h}, {id: won, sla: 1h}, {id: quote, sla: 2d}]
)";

constexpr int kWorkers = 2;
constexpr int kBatches = 200;
constexpr int kBatchSize = 50;
// Each reshape serializes every open case (none closes here): bounded, so
// the test stays short under ThreadSanitizer on a loaded machine.
constexpr int kMaxReshapes = 30;

// What a worker owns, changed only while it is paused (ingest's Owned).
struct Worker {
  std::shared_ptr<ingest::PartitionHandler> handler;
  std::shared_ptr<const model::Config> config;
  std::unique_ptr<ingest::EventDecoder> decoder;
  int64_t next_offset = 0;
  uint64_t sales_accepted = 0;
};

// Pauses every worker between batches while a reshape runs.
class Pauser {
 public:
  // Worker side, between batches.
  void MaybePause() {
    std::unique_lock<std::mutex> lock(mu_);
    if (!pause_requested_) return;
    ++paused_;
    cv_.notify_all();
    cv_.wait(lock, [this] { return !pause_requested_; });
    --paused_;
  }
  // Worker side, when it is done: it will never pause again.
  void Leave() {
    std::lock_guard<std::mutex> lock(mu_);
    ++left_;
    cv_.notify_all();
  }
  // Reshaper side: returns with every worker paused (or gone).
  void PauseAll() {
    std::unique_lock<std::mutex> lock(mu_);
    pause_requested_ = true;
    cv_.wait(lock, [this] { return paused_ + left_ == kWorkers; });
  }
  void ResumeAll() {
    std::lock_guard<std::mutex> lock(mu_);
    pause_requested_ = false;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool pause_requested_ = false;
  int paused_ = 0;
  int left_ = 0;
};

TEST(EngineReshapeStressTest, ReshapesWhileWorkersWriteAndReadersScrape) {
  const auto shape_a = std::make_shared<const model::Config>(*model::ParseConfig(kShapeA, "a"));
  const auto shape_b = std::make_shared<const model::Config>(*model::ParseConfig(kShapeB, "b"));
  cases::WatermarkBoard board;
  EngineRegistry registry({.config = shape_a.get(), .board = &board, .state_dir = ""});
  cases::ManualClock reader_clock(absl::FromUnixSeconds(1793491200));
  auto engine_metrics =
      std::make_shared<exporter::EngineMetrics>(shape_a.get(), registry.Source(), &reader_clock);
  auto open_cases_metrics =
      std::make_shared<exporter::OpenCasesMetrics>(shape_a.get(), registry.Source(), &reader_clock);

  std::vector<Worker> workers(kWorkers);
  for (int w = 0; w < kWorkers; ++w) {
    workers[w].handler = registry.Open(w, kWorkers).handler;
    workers[w].config = shape_a;
    workers[w].decoder = std::make_unique<ingest::EventDecoder>(*shape_a);
  }
  Pauser pauser;
  std::atomic<bool> done{false};
  // Workers write at least kBatches, and on until every reshape is done.
  std::atomic<bool> reshapes_done{false};
  std::vector<std::thread> threads;
  for (int w = 0; w < kWorkers; ++w) {
    threads.emplace_back([&, w] {
      Worker& worker = workers[static_cast<size_t>(w)];
      for (int b = 0; b < kBatches || !reshapes_done.load(); ++b) {
        pauser.MaybePause();
        const bool has_won = worker.config->processes[0].StageIndex("won") >= 0;
        const bool has_support = worker.config->FindProcess("support") != nullptr;
        for (int i = 0; i < kBatchSize; ++i) {
          const int n = b * kBatchSize + i;
          v1::ProcessEvent e;
          e.set_event_id(absl::StrCat("w", w, "-", n));
          e.set_kind(v1::ProcessEvent::STAGE_ENTERED);
          e.set_case_id(absl::StrCat("w", w, "-c", n));
          e.mutable_occurred_at()->set_seconds(1793491200 + n);
          (*e.mutable_attributes())["region"] = n % 3 == 0 ? "emea" : "amer";
          const bool to_support = has_support && n % 4 == 3;
          e.set_process(to_support ? "support" : "sales");
          e.set_stage(to_support ? "open" : (has_won && n % 2 == 1 ? "won" : "lead"));
          ingest::DecodedEvent decoded;
          ASSERT_FALSE(worker.decoder->Decode(e.SerializeAsString(), false, &decoded).has_value());
          if (worker.handler->Handle(decoded).kind == ingest::Verdict::Kind::kAccepted) {
            worker.handler->stats().consumed.Add();
            if (!to_support) ++worker.sales_accepted;
          }
          ++worker.next_offset;
        }
        worker.handler->Tick(absl::Now());
      }
      pauser.Leave();
    });
  }
  std::atomic<int> scrapes{0};
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&] {
      while (!done.load()) {
        // Each collectable takes its own set: within one scrape two of them
        // may straddle a reshape (as a rebalance); each must be of one shape.
        const std::string text = exporter::RenderText({engine_metrics});
        const std::string open_cases_text = exporter::RenderText({open_cases_metrics});
        EXPECT_FALSE(absl::StrContains(open_cases_text, "stage=\"won\"") &&
                     absl::StrContains(open_cases_text, "process=\"support\""))
            << open_cases_text;
        const testing::MetricSamples m = testing::ParseMetrics(text);
        double quote_entered = 0;
        for (const char* region : {"emea", "amer"}) {
          quote_entered += std::max(
              0.0, testing::Sample(m, absl::StrCat("kpid_stage_entered_total{process=\"sales\","
                                                   "region=\"",
                                                   region, "\",stage=\"quote\"}")));
        }
        EXPECT_EQ(quote_entered, 0) << text;
        EXPECT_FALSE(absl::StrContains(text, "stage=\"won\"") &&
                     absl::StrContains(text, "process=\"support\""))
            << text;
        scrapes.fetch_add(1);
      }
    });
  }
  int reshapes = 0;
  std::thread reshaper([&] {
    for (int round = 0; round < kMaxReshapes; ++round) {
      const std::shared_ptr<const model::Config>& next = round % 2 == 0 ? shape_b : shape_a;
      pauser.PauseAll();
      std::map<int32_t, int64_t> next_offsets;
      for (int w = 0; w < kWorkers; ++w) next_offsets[w] = workers[w].next_offset;
      auto handlers = registry.Reshape(next, next_offsets);
      EXPECT_TRUE(handlers.ok()) << handlers.status();
      if (handlers.ok()) {
        for (auto& [partition, handler] : *handlers) {
          Worker& worker = workers[static_cast<size_t>(partition)];
          worker.handler = handler;
          worker.decoder = std::make_unique<ingest::EventDecoder>(*next);
          worker.config = next;
        }
        ++reshapes;
      }
      pauser.ResumeAll();
      absl::SleepFor(absl::Milliseconds(5));
    }
    reshapes_done.store(true);
  });
  for (int w = 0; w < kWorkers; ++w) threads[static_cast<size_t>(w)].join();
  done.store(true);
  for (std::thread& t : threads) {
    if (t.joinable()) t.join();
  }
  reshaper.join();
  EXPECT_EQ(reshapes, kMaxReshapes);
  EXPECT_GT(scrapes.load(), 2);

  // Every sales event started its own case (a new case id each), and sales
  // is never removed: the final engines hold them all, whatever the shapes
  // in between.
  uint64_t sales_accepted = 0;
  for (const Worker& worker : workers) sales_accepted += worker.sales_accepted;
  const aggregate::ShardSet set = registry.Shards();
  ASSERT_NE(set.config, nullptr);
  EXPECT_EQ(aggregate::MergedReader(set.shards).ReadAllDimsTotals(0).process.started,
            sales_accepted);
  EXPECT_GT(sales_accepted, 0u);
}

}  // namespace
}  // namespace kpid::engine
