// The aggregator's costs: facts per second on one shard (the worker's side)
// and the cost of the reads a scrape makes (the exporter's side).
//
//   build/daemon/aggregate/aggregate_shard_benchmark
#include <cstdint>

#include "benchmark/benchmark.h"
#include "daemon/aggregate/aggregate_shard.h"

namespace kpid::aggregate {
namespace {

using cases::ExitOutcome;

constexpr int64_t kT0 = 1'008'000'000;
constexpr int kStages = 5;

// DESIGN §5's example: windows 5m, 1h, 24h, 7d; retention 15d; 5 stages.
model::Config BenchConfig() {
  model::Config c;
  c.windows = {absl::Minutes(5), absl::Hours(1), absl::Hours(24), absl::Hours(24 * 7)};
  c.retention = absl::Hours(24 * 15);
  model::ProcessConfig p;
  p.id = "lead_to_cash";
  for (const char* id : {"lead", "mql", "sql", "demo", "quote"}) {
    p.stages.push_back({id, absl::Hours(24), {}});
  }
  c.processes.push_back(p);
  return c;
}

// A case moving on: StageExited of one stage and StageEntered of the next,
// 100 ms of event time apart (so the 5 s buckets turn every 50 pairs), over
// `dims` series.
void Write(AggregateShard& shard, int64_t i, int dims) {
  const absl::Time at = absl::FromUnixSeconds(kT0) + absl::Milliseconds(100) * i;
  const DimsId d = static_cast<DimsId>(i % dims);
  const int stage = static_cast<int>(i % (kStages - 1));
  shard.StageExited(0, stage, d, at, i % 10 == 0 ? ExitOutcome::kFallout : ExitOutcome::kAdvanced,
                    absl::Seconds(60 + i % 86400), i % 7 != 0);
  shard.StageEntered(0, stage + 1, d, at, false);
}

void BM_ExitEnterPair(benchmark::State& state) {
  const int dims = static_cast<int>(state.range(0));
  AggregateShard shard(BenchConfig());
  int64_t i = 0;
  for (int d = 0; d < dims; ++d) Write(shard, i++, dims);  // records exist
  for (auto _ : state) Write(shard, i++, dims);
  state.SetItemsProcessed(2 * state.iterations());  // facts
}
BENCHMARK(BM_ExitEnterPair)->Arg(1)->Arg(16)->Arg(1000);

// A shard with a day of facts over 16 dims.
AggregateShard& Populated() {
  static AggregateShard* shard = [] {
    auto* s = new AggregateShard(BenchConfig());
    for (int64_t i = 0; i < 864000; ++i) Write(*s, i, 16);
    return s;
  }();
  return *shard;
}

absl::Time End() { return absl::FromUnixSeconds(kT0 + 86400); }

// One series (process + 5 stages) of one dims, per window.
void BM_ReadSeriesWindow(benchmark::State& state) {
  const AggregateShard& shard = Populated();
  const WindowSpan span = shard.Resolve(static_cast<int>(state.range(0)), End());
  for (auto _ : state) benchmark::DoNotOptimize(shard.ReadSeriesWindow(0, 3, span));
}
BENCHMARK(BM_ReadSeriesWindow)->DenseRange(0, 3);

// All 16 dims summed.
void BM_ReadAllDimsWindow(benchmark::State& state) {
  const AggregateShard& shard = Populated();
  const WindowSpan span = shard.Resolve(static_cast<int>(state.range(0)), End());
  for (auto _ : state) benchmark::DoNotOptimize(shard.ReadAllDimsWindow(0, span));
}
BENCHMARK(BM_ReadAllDimsWindow)->DenseRange(0, 3);

// Cycle-time distribution of one stage, and its p50/p90/p99.
void BM_ReadCycleTimeQuantiles(benchmark::State& state) {
  const AggregateShard& shard = Populated();
  const WindowSpan span = shard.Resolve(static_cast<int>(state.range(0)), End());
  for (auto _ : state) {
    const Distribution d = shard.ReadCycleTimes(0, 1, span);
    benchmark::DoNotOptimize(d.Quantile(0.5));
    benchmark::DoNotOptimize(d.Quantile(0.9));
    benchmark::DoNotOptimize(d.Quantile(0.99));
  }
}
BENCHMARK(BM_ReadCycleTimeQuantiles)->DenseRange(0, 3);

void BM_Serialize(benchmark::State& state) {
  const AggregateShard& shard = Populated();
  size_t bytes = 0;
  for (auto _ : state) bytes = shard.Serialize().size();
  state.counters["bytes"] = static_cast<double>(bytes);
  state.counters["allocated"] = static_cast<double>(shard.AllocatedBytes());
}
BENCHMARK(BM_Serialize)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace kpid::aggregate

BENCHMARK_MAIN();
