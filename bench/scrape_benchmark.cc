// What one /metrics scrape of the engine costs, now, before session 3 and
// before the direct text path, in the same run: two worker shards each holding the same 2
// processes x N dimension combinations (2 x 5 x N stage series once merged:
// `dims:1000` is 10 000 stage series), with facts in every window.
//
//   build/bench/scrape_benchmark --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
//   ...
//   same-run ratios (median CPU time per scrape):
//     /metrics, legacy / new, dims:1000                 1236 ms / 140 ms = 8.8
//     /metrics, before session 3 / new, dims:1000      133.21 ms / 80.28 ms = 1.66
//
// BM_Scrape: /metrics as daemon/http renders it now (exporter::RenderText:
// EngineMetrics writes the text directly, into the previous body's memory);
// BM_PreviousScrape: the same before session 3's changes to the renderer
// (bench/scrape_benchmark_previous.{h,cc}, frozen; it reads the shards through
// today's MergedReader, so it shares the read path's changes).
// BM_ScrapeFresh: the same into a new string each time. BM_LegacyScrape: as it rendered
// it before (bench/scrape_benchmark_baseline.{h,cc}, a frozen copy of the
// old EngineMetrics::Collect, then prometheus-cpp's TextSerializer).
// BM_Collect / BM_LegacyCollect: the MetricFamily objects alone (Collect()
// is still the API for code that wants them). BM_Walk: reading the shards
// and walking every sample into a writer that discards them (the part that
// is not formatting). Counters: samples (lines that are not comments) and
// bytes of the text.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/engine_fixture.h"
#include "bench/median_reporter.h"
#include "bench/scrape_benchmark_baseline.h"
#include "bench/scrape_benchmark_previous.h"
#include "benchmark/benchmark.h"
#include "daemon/cases/clock.h"
#include "daemon/export/engine_metrics.h"
#include "daemon/export/text_writer.h"
#include "prometheus/text_serializer.h"

namespace kpid::bench {
namespace {

constexpr int kWorkers = 2;

struct Fixture {
  // `shard_count` engines (workers, or Kafka partitions since session 3), each
  // holding every series: a reader merges one shard per engine for each.
  explicit Fixture(int series_per_process, int shard_count = kWorkers)
      : clock(absl::FromUnixSeconds(1767225600 + 30 * 86400)) {
    std::vector<const aggregate::AggregateShard*> shard_ptrs;
    std::vector<const cases::DimensionTable*> dims_ptrs;
    for (int w = 0; w < shard_count; ++w) {
      dims.push_back(std::make_unique<cases::DimensionTable>(EngineConfig()));
      shards.push_back(std::make_unique<aggregate::AggregateShard>(EngineConfig()));
      FillSeries(EngineConfig(), series_per_process, clock.Now(), dims.back().get(),
                 shards.back().get());
      shard_ptrs.push_back(shards.back().get());
      dims_ptrs.push_back(dims.back().get());
    }
    metrics =
        std::make_shared<exporter::EngineMetrics>(&EngineConfig(), shard_ptrs, dims_ptrs, &clock);
    uncached =
        std::make_shared<exporter::EngineMetrics>(&EngineConfig(), shard_ptrs, dims_ptrs, &clock);
    uncached->set_cache_window_reads(false);
    reads_cached =
        std::make_shared<exporter::EngineMetrics>(&EngineConfig(), shard_ptrs, dims_ptrs, &clock);
    reads_cached->set_cache_text(false);
    legacy = std::make_unique<bench_legacy::LegacyEngineMetrics>(&EngineConfig(), shard_ptrs,
                                                                 dims_ptrs, &clock);
    previous = std::make_unique<bench_previous::PreviousEngineMetrics>(&EngineConfig(), shard_ptrs,
                                                                       dims_ptrs, &clock);
  }

  cases::ManualClock clock;
  std::vector<std::unique_ptr<cases::DimensionTable>> dims;
  std::vector<std::unique_ptr<aggregate::AggregateShard>> shards;
  std::shared_ptr<exporter::EngineMetrics> metrics;
  // The same without the window read cache (session 4): every scrape reads
  // every series of every shard.
  std::shared_ptr<exporter::EngineMetrics> uncached;
  // With the read cache but not the text cache (session 5): every line
  // formatted each scrape, as in session 4.
  std::shared_ptr<exporter::EngineMetrics> reads_cached;
  std::unique_ptr<bench_legacy::LegacyEngineMetrics> legacy;
  std::unique_ptr<bench_previous::PreviousEngineMetrics> previous;
};

// Built once per size, kept for the whole run. The renderer before session
// 3 and now must write the same bytes: otherwise the comparison means nothing.
Fixture& GetFixture(int series_per_process) {
  static std::map<int, std::unique_ptr<Fixture>>* fixtures =
      new std::map<int, std::unique_ptr<Fixture>>;
  std::unique_ptr<Fixture>& f = (*fixtures)[series_per_process];
  if (f == nullptr) {
    f = std::make_unique<Fixture>(series_per_process);
    const std::string previous = bench_previous::PreviousRenderText(*f->previous, {});
    // The second render reads from the window cache the first filled.
    for (int pass = 0; pass < 2; ++pass) {
      if (exporter::RenderText({f->metrics}) != previous) {
        std::fprintf(stderr,
                     "dims:%d: /metrics (pass %d) differs from the renderer before session 3\n",
                     series_per_process, pass);
        std::abort();
      }
    }
    // KPID_SCRAPE_DUMP=<dir>: the bodies, for `promtool check metrics`.
    if (const char* dir = std::getenv("KPID_SCRAPE_DUMP")) {
      std::ofstream(absl::StrFormat("%s/dims-%d.txt", dir, series_per_process))
          << exporter::RenderText({f->metrics});
    }
  }
  return *f;
}

// One partition fixture at a time (16 partitions of 2000 records hold ~1.8
// GB): a new size frees the previous one.
Fixture& GetPartitionFixture(int series_per_process, int partitions) {
  static std::pair<int, int> key;
  static std::unique_ptr<Fixture>* fixture = new std::unique_ptr<Fixture>;
  if (*fixture == nullptr || key != std::make_pair(series_per_process, partitions)) {
    fixture->reset();
    *fixture = std::make_unique<Fixture>(series_per_process, partitions);
    key = {series_per_process, partitions};
    const std::string uncached = exporter::RenderText({(*fixture)->uncached});
    for (int pass = 0; pass < 2; ++pass) {
      for (const auto& cached : {(*fixture)->reads_cached, (*fixture)->metrics}) {
        if (exporter::RenderText({cached}) != uncached) {
          std::fprintf(stderr, "partitions:%d: /metrics (pass %d) differs from the uncached read\n",
                       partitions, pass);
          std::abort();
        }
      }
    }
  }
  return **fixture;
}

// A case started now, entering a stage, into every `touched_pct`th % of the
// dimension combinations of every shard, different ones each call: the
// series a scrape must re-read, and whose lines change (the process series
// and one of its stage series). (Before session 5 only the case start: the
// stage series did not change.)
void Touch(Fixture& f, int touched_pct, int round) {
  if (touched_pct == 0) return;
  const int every = 100 / touched_pct;
  for (const auto& shard : f.shards) {
    for (int p = 0; p < shard->process_count(); ++p) {
      for (cases::DimsId d : shard->ListDims(p)) {
        if ((static_cast<int>(d) + round) % every != 0) continue;
        shard->CaseStarted(p, d, f.clock.Now());
        shard->StageEntered(p, round % shard->stage_count(p), d, f.clock.Now(), false);
      }
    }
  }
}

void Count(benchmark::State& state, const std::string& text) {
  size_t samples = 0;
  size_t line = 0;
  while (line < text.size()) {
    if (text[line] != '#') ++samples;
    const size_t end = text.find('\n', line);
    line = end == std::string::npos ? text.size() : end + 1;
  }
  state.SetItemsProcessed(state.iterations());  // scrapes: lets MedianReporter see the run
  state.counters["samples"] = static_cast<double>(samples);
  state.counters["text_bytes"] = static_cast<double>(text.size());
}

std::string LegacyText(const Fixture& f) {
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, f.legacy->Collect());
  return out.str();
}

// HttpServer renders into the previous body's memory; so here.
// (exporter::RenderBody: its own text in the last body's memory, the
// families' lines kept between scrapes shared, not copied).
void BM_Scrape(benchmark::State& state) {
  Fixture& f = GetFixture(static_cast<int>(state.range(0)));
  const std::vector<std::shared_ptr<prometheus::Collectable>> collectables = {f.metrics};
  exporter::TextBody body = exporter::RenderBody(collectables);
  for (auto _ : state) {
    body = exporter::RenderBody(collectables, std::move(body).TakeText());
    benchmark::DoNotOptimize(body.size());
  }
  Count(state, std::move(body).Flatten());
}

// The renderer before session 3, frozen, the same way.
void BM_PreviousScrape(benchmark::State& state) {
  Fixture& f = GetFixture(static_cast<int>(state.range(0)));
  std::string text = bench_previous::PreviousRenderText(*f.previous, {});
  for (auto _ : state) {
    text = bench_previous::PreviousRenderText(*f.previous, std::move(text));
    benchmark::DoNotOptimize(text.data());
  }
  Count(state, text);
}

// The same into a fresh string each time: what reusing the memory saves.
void BM_ScrapeFresh(benchmark::State& state) {
  Fixture& f = GetFixture(static_cast<int>(state.range(0)));
  const std::vector<std::shared_ptr<prometheus::Collectable>> collectables = {f.metrics};
  std::string text;
  for (auto _ : state) {
    text = exporter::RenderText(collectables);
    benchmark::DoNotOptimize(text.data());
  }
  Count(state, text);
}

void BM_LegacyScrape(benchmark::State& state) {
  Fixture& f = GetFixture(static_cast<int>(state.range(0)));
  std::string text;
  for (auto _ : state) {
    text = LegacyText(f);
    benchmark::DoNotOptimize(text.data());
  }
  Count(state, text);
}

void BM_Collect(benchmark::State& state) {
  Fixture& f = GetFixture(static_cast<int>(state.range(0)));
  for (auto _ : state) benchmark::DoNotOptimize(f.metrics->Collect().data());
  Count(state, exporter::RenderText({f.metrics}));
}

void BM_LegacyCollect(benchmark::State& state) {
  Fixture& f = GetFixture(static_cast<int>(state.range(0)));
  for (auto _ : state) benchmark::DoNotOptimize(f.legacy->Collect().data());
  Count(state, LegacyText(f));
}

// Takes every sample and keeps nothing.
class NullWriter final : public exporter::MetricWriter {
 public:
  void Family(absl::string_view, absl::string_view, prometheus::MetricType) override {}
  void Sample(exporter::LabelsRef labels, double value) override {
    benchmark::DoNotOptimize(&labels);
    benchmark::DoNotOptimize(value);
  }
  void Sample(exporter::LabelsRef labels, exporter::ExtraLabel, double value) override {
    Sample(labels, value);
  }
  void Histogram(exporter::LabelsRef labels, uint64_t, double sum,
                 absl::Span<const prometheus::ClientMetric::Bucket>) override {
    Sample(labels, sum);
  }
  void Summary(exporter::LabelsRef labels, uint64_t, double sum,
               absl::Span<const prometheus::ClientMetric::Quantile>) override {
    Sample(labels, sum);
  }
};

void BM_Walk(benchmark::State& state) {
  Fixture& f = GetFixture(static_cast<int>(state.range(0)));
  NullWriter writer;
  for (auto _ : state) f.metrics->WriteMetrics(&writer);
  Count(state, exporter::RenderText({f.metrics}));
}

// /metrics with one engine per Kafka partition: every series in every
// partition's shard (cases spread over the partitions by key), so a series'
// window read merges `partitions` shards.
// `cache:0` without the window read cache (every series of every shard
// read, as before session 4), `cache:1` with it but without the text cache
// (every line formatted, as before session 5), `cache:2` with both;
// `touched:N` a fact into N% of every shard's series before each scrape
// (untimed).
const std::shared_ptr<exporter::EngineMetrics>& MetricsWithCache(const Fixture& f, int64_t cache) {
  return cache == 0 ? f.uncached : cache == 1 ? f.reads_cached : f.metrics;
}

void BM_ScrapePartitions(benchmark::State& state) {
  Fixture& f =
      GetPartitionFixture(static_cast<int>(state.range(0)), static_cast<int>(state.range(1)));
  const auto& metrics = MetricsWithCache(f, state.range(2));
  const std::vector<std::shared_ptr<prometheus::Collectable>> collectables = {metrics};
  exporter::TextBody body = exporter::RenderBody(collectables);
  int round = 0;
  for (auto _ : state) {
    state.PauseTiming();
    Touch(f, static_cast<int>(state.range(3)), ++round);
    state.ResumeTiming();
    body = exporter::RenderBody(collectables, std::move(body).TakeText());
    benchmark::DoNotOptimize(body.size());
  }
  // What it rendered last is what a scrape from scratch renders now.
  const std::string fresh = exporter::RenderText({f.uncached});
  if (std::move(body).Flatten() != fresh) {
    std::fprintf(stderr,
                 "partitions:%d/cache:%d/touched:%d: the last /metrics differs from the "
                 "uncached read\n",
                 static_cast<int>(state.range(1)), static_cast<int>(state.range(2)),
                 static_cast<int>(state.range(3)));
    std::abort();
  }
  Count(state, fresh);
}

void BM_WalkPartitions(benchmark::State& state) {
  Fixture& f =
      GetPartitionFixture(static_cast<int>(state.range(0)), static_cast<int>(state.range(1)));
  const auto& metrics = MetricsWithCache(f, state.range(2));
  NullWriter writer;
  int round = 0;
  for (auto _ : state) {
    state.PauseTiming();
    Touch(f, static_cast<int>(state.range(3)), ++round);
    state.ResumeTiming();
    metrics->WriteMetrics(&writer);
  }
  Count(state, exporter::RenderText({metrics}));
}

#define PARTITION_SIZES(b, max_cache)                                                        \
  b->ArgNames({"dims", "partitions", "cache", "touched"})                                    \
      ->ArgsProduct(                                                                         \
          {{1000}, {1, 4, 8, 16}, benchmark::CreateDenseRange(0, max_cache, 1), {0, 1, 10}}) \
      ->Unit(benchmark::kMillisecond)
PARTITION_SIZES(BENCHMARK(BM_ScrapePartitions), 2);
// The walk writes no text: cache:2 is cache:1 there.
PARTITION_SIZES(BENCHMARK(BM_WalkPartitions), 1);

// dims:9 is e2e_ingest.py's config (3 regions x 3 channels): what its
// scrapes cost.
#define SCRAPE_SIZES(b) \
  b->ArgName("dims")->Arg(9)->Arg(100)->Arg(1000)->Unit(benchmark::kMillisecond)
SCRAPE_SIZES(BENCHMARK(BM_Scrape));
SCRAPE_SIZES(BENCHMARK(BM_PreviousScrape));
SCRAPE_SIZES(BENCHMARK(BM_ScrapeFresh));
SCRAPE_SIZES(BENCHMARK(BM_LegacyScrape));
SCRAPE_SIZES(BENCHMARK(BM_Collect));
SCRAPE_SIZES(BENCHMARK(BM_LegacyCollect));
SCRAPE_SIZES(BENCHMARK(BM_Walk));

class RatioReporter : public MedianReporter {
 private:
  void PrintRatios() override {
    std::printf("\nsame-run ratios (median CPU time per scrape):\n");
    for (const char* dims : {"dims:9", "dims:100", "dims:1000"}) {
      CpuRatio(absl::StrFormat("/metrics, legacy / new, %s", dims), "BM_LegacyScrape", "BM_Scrape",
               dims);
      CpuRatio(absl::StrFormat("/metrics, before session 3 / new, %s", dims), "BM_PreviousScrape",
               "BM_Scrape", dims);
      CpuRatio(absl::StrFormat("/metrics new, fresh string / reused, %s", dims), "BM_ScrapeFresh",
               "BM_Scrape", dims);
      CpuRatio(absl::StrFormat("Collect(), legacy / new, %s", dims), "BM_LegacyCollect",
               "BM_Collect", dims);
      CpuRatio(absl::StrFormat("/metrics new, its walk (no formatting) / all, %s", dims), "BM_Walk",
               "BM_Scrape", dims);
    }
    for (const char* touched : {"0", "1", "10"}) {
      for (const char* partitions : {"1", "4", "8", "16"}) {
        const std::string args = absl::StrCat("dims:1000/partitions:", partitions, "/cache:");
        CpuRatio(absl::StrFormat("ScrapePartitions no text cache / text cache, %sp, %s%% touched",
                                 partitions, touched),
                 "BM_ScrapePartitions", "BM_ScrapePartitions",
                 absl::StrCat(args, "1/touched:", touched),
                 absl::StrCat(args, "2/touched:", touched));
        CpuRatio(absl::StrFormat("ScrapePartitions no cache / both caches, %sp, %s%% touched",
                                 partitions, touched),
                 "BM_ScrapePartitions", "BM_ScrapePartitions",
                 absl::StrCat(args, "0/touched:", touched),
                 absl::StrCat(args, "2/touched:", touched));
      }
    }
    for (const char* fn : {"BM_ScrapePartitions", "BM_WalkPartitions"}) {
      for (const char* touched : {"0", "10"}) {
        for (const char* partitions : {"1", "4", "8", "16"}) {
          const std::string args =
              absl::StrCat("dims:1000/partitions:", partitions, "/cache:0/touched:", touched);
          const std::string cached =
              absl::StrCat("dims:1000/partitions:", partitions, "/cache:1/touched:", touched);
          CpuRatio(absl::StrFormat("%s uncached / cached, %sp, %s%% touched", fn + 3, partitions,
                                   touched),
                   fn, fn, args, cached);
          if (std::string(partitions) != "1") {
            CpuRatio(
                absl::StrFormat("%s uncached, %sp / 1p, %s%% touched", fn + 3, partitions, touched),
                fn, fn, args, absl::StrCat("dims:1000/partitions:1/cache:0/touched:", touched));
            CpuRatio(
                absl::StrFormat("%s cached, %sp / 1p, %s%% touched", fn + 3, partitions, touched),
                fn, fn, cached, absl::StrCat("dims:1000/partitions:1/cache:1/touched:", touched));
          }
        }
      }
    }
  }

  void CpuRatio(const std::string& label, const char* a, const char* b, const std::string& args,
                const std::string& b_args = "") {
    const double x = Cpu(absl::StrFormat("%s/%s/1", a, args));
    const double y = Cpu(absl::StrFormat("%s/%s/1", b, b_args.empty() ? args : b_args));
    if (x <= 0 || y <= 0) return;
    // In the benchmarks' unit, ms.
    std::printf("  %-62s %9.2f ms / %8.2f ms = %.2f\n", label.c_str(), x, y, x / y);
  }
};

}  // namespace
}  // namespace kpid::bench

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  kpid::bench::RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
