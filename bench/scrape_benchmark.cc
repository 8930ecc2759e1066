// What one /metrics scrape of the engine costs at 10k series: two worker
// shards each holding the same 2 processes x 1000 dimension combinations
// (2 x 5 x 1000 = 10 000 stage series once merged, `dims:1000`), with facts
// in every window; BM_Scrape also at 9 and 100 combinations.
//
//   build/bench/scrape_benchmark --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
//
// BM_Collect: EngineMetrics::Collect alone (reading and merging the shards
// into prometheus MetricFamily objects). BM_Serialize: prometheus-cpp's
// TextSerializer alone over the families of one Collect (the library's
// floor). BM_Scrape: both, as the HTTP handler runs them. Counters: samples
// and bytes of the rendered text.
#include <map>
#include <memory>
#include <sstream>
#include <vector>

#include "bench/engine_fixture.h"
#include "benchmark/benchmark.h"
#include "daemon/cases/clock.h"
#include "daemon/export/engine_metrics.h"
#include "prometheus/text_serializer.h"

namespace kpid::bench {
namespace {

constexpr int kWorkers = 2;

struct Fixture {
  explicit Fixture(int series_per_process) : clock(absl::FromUnixSeconds(1767225600 + 30 * 86400)) {
    std::vector<const aggregate::AggregateShard*> shard_ptrs;
    std::vector<const cases::DimensionTable*> dims_ptrs;
    for (int w = 0; w < kWorkers; ++w) {
      dims.push_back(std::make_unique<cases::DimensionTable>(EngineConfig()));
      shards.push_back(std::make_unique<aggregate::AggregateShard>(EngineConfig()));
      FillSeries(EngineConfig(), series_per_process, clock.Now(), dims.back().get(),
                 shards.back().get());
      shard_ptrs.push_back(shards.back().get());
      dims_ptrs.push_back(dims.back().get());
    }
    metrics =
        std::make_unique<exporter::EngineMetrics>(&EngineConfig(), shard_ptrs, dims_ptrs, &clock);
  }

  cases::ManualClock clock;
  std::vector<std::unique_ptr<cases::DimensionTable>> dims;
  std::vector<std::unique_ptr<aggregate::AggregateShard>> shards;
  std::unique_ptr<exporter::EngineMetrics> metrics;
};

// Built once per size, kept for the whole run.
Fixture& GetFixture(int series_per_process) {
  static std::map<int, std::unique_ptr<Fixture>>* fixtures =
      new std::map<int, std::unique_ptr<Fixture>>;
  std::unique_ptr<Fixture>& f = (*fixtures)[series_per_process];
  if (f == nullptr) f = std::make_unique<Fixture>(series_per_process);
  return *f;
}

void Count(benchmark::State& state, const std::vector<prometheus::MetricFamily>& families,
           size_t bytes) {
  size_t samples = 0;
  for (const prometheus::MetricFamily& f : families) samples += f.metric.size();
  state.counters["metrics"] = static_cast<double>(samples);
  state.counters["text_bytes"] = static_cast<double>(bytes);
}

void BM_Collect(benchmark::State& state) {
  Fixture& f = GetFixture(static_cast<int>(state.range(0)));
  std::vector<prometheus::MetricFamily> families;
  for (auto _ : state) {
    families = f.metrics->Collect();
    benchmark::DoNotOptimize(families.data());
  }
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, families);
  Count(state, families, out.str().size());
}
BENCHMARK(BM_Collect)->ArgName("dims")->Arg(1000)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_Serialize(benchmark::State& state) {
  Fixture& f = GetFixture(static_cast<int>(state.range(0)));
  const std::vector<prometheus::MetricFamily> families = f.metrics->Collect();
  prometheus::TextSerializer serializer;
  size_t bytes = 0;
  for (auto _ : state) {
    std::ostringstream out;
    serializer.Serialize(out, families);
    bytes = out.str().size();
  }
  Count(state, families, bytes);
}
BENCHMARK(BM_Serialize)->ArgName("dims")->Arg(1000)->Unit(benchmark::kMillisecond)->UseRealTime();

void BM_Scrape(benchmark::State& state) {
  Fixture& f = GetFixture(static_cast<int>(state.range(0)));
  prometheus::TextSerializer serializer;
  size_t bytes = 0;
  std::vector<prometheus::MetricFamily> families;
  for (auto _ : state) {
    families = f.metrics->Collect();
    std::ostringstream out;
    serializer.Serialize(out, families);
    bytes = out.str().size();
  }
  Count(state, families, bytes);
}
// dims:9 is e2e_ingest.py's config (3 regions x 3 channels): what its
// scrapes cost.
BENCHMARK(BM_Scrape)
    ->ArgName("dims")
    ->Arg(9)
    ->Arg(100)
    ->Arg(1000)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace kpid::bench

BENCHMARK_MAIN();
