// The whole engine on real threads: two workers, each with its own case
// tracker, dimension table and aggregator shard, fed simulated lead-to-cash
// traffic split by case, while two readers render /metrics continuously.
// Run under ThreadSanitizer in CI (label "tsan").
//
// What must hold: readers never see a counter go down; and once the workers
// are done, the scrape of the two-worker engine is byte for byte the scrape
// of one worker that handled every event alone, with totals equal to what
// the event stream itself says.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "daemon/aggregate/aggregate_shard.h"
#include "daemon/cases/case_tracker.h"
#include "daemon/cases/clock.h"
#include "daemon/cases/dimension_table.h"
#include "daemon/export/engine_metrics.h"
#include "daemon/ingest/event_decoder.h"
#include "gtest/gtest.h"
#include "prometheus/text_serializer.h"
#include "tests/testing/process.h"
#include "tools/loadgen/simulator.h"

namespace kpid {
namespace {

using kpid::v1::ProcessEvent;

constexpr char kConfig[] = R"(
clock: event
windows: [5m, 1h, 1d]
retention: 2d
dimensions: {names: [region, channel], max_series_per_process: 50}
processes:
  - id: lead_to_cash
    stages:
      - {id: lead, sla: 1h, simulate: {median: 20m, fallout: 0.2}}
      - {id: demo, sla: 8h, simulate: {median: 4h, fallout: 0.2, rework: 0.1}}
      - {id: quote, sla: 1d, simulate: {median: 10h, fallout: 0.3, rework: 0.1}}
    simulate:
      arrivals_per_hour: 2000
      cost_per_case: 100
      feedback_odds: 0.5
      attributes: {region: [emea, amer, apac], channel: [web, partner]}
)";

// One engine of `workers` workers.
struct Engine {
  Engine(const model::Config& config, int workers) : board(workers) {
    for (int i = 0; i < workers; ++i) {
      dimensions.push_back(std::make_unique<cases::DimensionTable>(config));
      shards.push_back(std::make_unique<aggregate::AggregateShard>(config));
      clocks.push_back(std::make_unique<cases::EventTimeClock>(&board, i));
      trackers.push_back(std::make_unique<cases::CaseTracker>(
          cases::CaseTracker::Options{.config = &config,
                                      .clock = clocks.back().get(),
                                      .sink = shards.back().get(),
                                      .dimensions = dimensions.back().get()}));
    }
    std::vector<const aggregate::AggregateShard*> s;
    std::vector<const cases::DimensionTable*> d;
    for (int i = 0; i < workers; ++i) {
      s.push_back(shards[static_cast<size_t>(i)].get());
      d.push_back(dimensions[static_cast<size_t>(i)].get());
    }
    reader_clock = std::make_unique<cases::LatestEventClock>(&board);
    metrics = std::make_unique<exporter::EngineMetrics>(&config, s, d, reader_clock.get());
  }

  // After the last event: let every deadline up to the latest event time
  // anywhere fire (the workers go idle, so their now joins the latest).
  void Settle() {
    const absl::Time wall = absl::Now();
    for (auto& t : trackers) t->Tick(wall);
    for (auto& t : trackers) t->Tick(wall + absl::Seconds(5));
  }

  std::string Scrape() const { return prometheus::TextSerializer().Serialize(metrics->Collect()); }

  cases::WatermarkBoard board;
  std::vector<std::unique_ptr<cases::DimensionTable>> dimensions;
  std::vector<std::unique_ptr<aggregate::AggregateShard>> shards;
  std::vector<std::unique_ptr<cases::EventTimeClock>> clocks;
  std::vector<std::unique_ptr<cases::CaseTracker>> trackers;
  std::unique_ptr<cases::Clock> reader_clock;
  std::unique_ptr<exporter::EngineMetrics> metrics;
};

TEST(EngineStressTest, ConcurrentWorkersAndScrapesAddUpExactly) {
  const model::Config config = *model::ParseConfig(kConfig, "stress.yaml");
  ingest::EventDecoder decoder(config);

  // 100k simulated events, decoded once, split by case as partitions would.
  std::vector<ingest::DecodedEvent> events;
  loadgen::SimulatorOptions options;
  options.seed = 7;
  options.max_events = 100000;
  loadgen::Simulator sim(config, options);
  ProcessEvent e;
  int64_t entered = 0, completed = 0, fallout = 0;
  while (sim.Next(&e)) {
    ingest::DecodedEvent decoded;
    ASSERT_FALSE(decoder.Decode(e.SerializeAsString(), false, &decoded).has_value());
    entered += e.kind() == ProcessEvent::STAGE_ENTERED;
    completed += e.kind() == ProcessEvent::CASE_COMPLETED;
    fallout += e.kind() == ProcessEvent::CASE_FALLOUT;
    events.push_back(std::move(decoded));
  }
  std::vector<std::vector<const ingest::DecodedEvent*>> by_worker(2);
  for (const auto& d : events) {
    by_worker[std::hash<std::string>{}(d.proto.case_id()) % 2].push_back(&d);
  }

  Engine engine(config, 2);
  std::atomic<bool> done{false};
  std::atomic<int> regressions{0};
  std::atomic<int> scrapes{0};
  std::vector<std::thread> readers;
  for (int r = 0; r < 2; ++r) {
    readers.emplace_back([&] {
      double last_entered = 0;
      while (!done.load(std::memory_order_acquire)) {
        testing::MetricSamples m = testing::ParseMetrics(engine.Scrape());
        double total = 0;
        for (const auto& [series, value] : m) {
          if (series.rfind("kpid_stage_entered_total{", 0) == 0) total += value;
        }
        if (total < last_entered) regressions.fetch_add(1);
        last_entered = total;
        scrapes.fetch_add(1);
      }
    });
  }
  std::vector<std::thread> workers;
  std::atomic<int> rejected{0};
  for (int w = 0; w < 2; ++w) {
    workers.emplace_back([&, w] {
      for (const ingest::DecodedEvent* d : by_worker[static_cast<size_t>(w)]) {
        if (engine.trackers[static_cast<size_t>(w)]->Handle(*d).kind !=
            ingest::Verdict::Kind::kAccepted) {
          rejected.fetch_add(1);
        }
      }
    });
  }
  for (auto& t : workers) t.join();
  done.store(true, std::memory_order_release);
  for (auto& t : readers) t.join();
  engine.Settle();

  EXPECT_EQ(rejected.load(), 0);
  EXPECT_EQ(regressions.load(), 0);
  EXPECT_GT(scrapes.load(), 0);

  // The same events through one worker, in stream order.
  Engine alone(config, 1);
  for (const auto& d : events) {
    ASSERT_EQ(alone.trackers[0]->Handle(d).kind, ingest::Verdict::Kind::kAccepted);
  }
  alone.Settle();
  // Same series, same values; sums of money may differ in the last bits, as
  // floating-point addition depends on the order the workers' sums are added.
  const testing::MetricSamples m = testing::ParseMetrics(engine.Scrape());
  const testing::MetricSamples reference = testing::ParseMetrics(alone.Scrape());
  ASSERT_EQ(m.size(), reference.size());
  for (const auto& [series, value] : reference) {
    auto it = m.find(series);
    ASSERT_NE(it, m.end()) << series;
    EXPECT_NEAR(it->second, value, 1e-9 * std::max(1.0, std::abs(value))) << series;
  }

  // And the totals are what the stream says.
  double sum_entered = 0, sum_completed = 0, sum_fallout = 0;
  for (const auto& [series, value] : m) {
    if (series.rfind("kpid_stage_entered_total{", 0) == 0) sum_entered += value;
    if (series.rfind("kpid_process_cases_completed_total{", 0) == 0) sum_completed += value;
    if (series.rfind("kpid_process_cases_fallout_total{", 0) == 0) sum_fallout += value;
  }
  EXPECT_EQ(sum_entered, entered);
  EXPECT_EQ(sum_completed, completed);
  EXPECT_EQ(sum_fallout, fallout);
  EXPECT_GT(completed, 0);
}

}  // namespace
}  // namespace kpid
