// Events per second through one worker's engine (CaseTracker + DimensionTable
// + AggregateShard), without Kafka or decoding, against the same engine as it
// was before the hot-path work (bench/baseline/, a frozen copy) in the same
// run; with one and two worker threads; and with /metrics scraped every
// 100 ms meanwhile.
//
//   build/bench/engine_benchmark --benchmark_repetitions=5
//       --benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=true
//   ...
//   same-run ratios (medians of items/s):
//     new / legacy, 1 thread   ...
//
// Input: the seeded kpi-loadgen simulation of bench/engine_fixture.cc's two
// processes, decoded once up front (shared read-only by every thread). Each
// worker thread builds its own engine, feeds it kWarmEvents untimed (so the
// timed part runs against a steady-state open-case table, ~90k open cases),
// then is timed on the next kTimedEvents, calling Tick every 100 ms of wall
// time as the ingest loop does. Two threads = two workers, each with its own
// engine over the same events: items/s counts both.
//
// BM_EngineNewBatch hands the engine kBatch events per HandleBatch call, as
// pointers into that stream (each event cold in the cache);
// BM_EngineNewWarmBatch through kBatch reused events refilled before each
// call, as the daemon's worker decodes into its reused events (see Feed).
// BM_EngineNew/scrape_ms:100: a scraper thread renders /metrics
// (exporter::RenderText, as HttpServer does) every 100 ms over the
// first worker's live shard plus a shard holding 2 x 1000 dimension series
// (10 000 stage series), as the HTTP thread would;
// BM_EngineNewPreviousScrape/scrape_ms:100 the same with the renderer as it
// was before session 3 (bench/scrape_benchmark_previous.{h,cc});
// BM_EngineNewUncachedScrape/scrape_ms:100 with today's renderer reading
// every series afresh each scrape (no SeriesReadCache, as before session 4);
// BM_EngineNewNoTextCacheScrape/scrape_ms:100 with the SeriesReadCache but
// every line formatted each scrape (no text cache, as before session 5).
// BM_EngineNewSmallScrape: 2 x 13 dimension series instead (130 stage
// series, ~10k sample lines: 10k series as Prometheus counts them).
// BM_EngineNew{,Small}WarmScrape: as BM_EngineNew{,Small}Scrape with the
// scraper's first two scrapes (the first formats every line and reads every
// series: ~0.3-1 s of CPU at 10k stage series; the second cuts each
// family's lines into chunks: ~0.1 s; what a daemon does once) done before
// the timed part: the steady state of a scrape every 100 ms. Without them,
// a timed part (~0.5 s on an idle machine) is mostly those two scrapes.
// Counters: scrapes (timed), scrape_ms (their mean wall time),
// first_scrape_ms (the first timed one), later_scrape_ms and
// later_scrape_cpu_ms (mean wall and scraper-thread CPU time of the others).
#include <malloc.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/types/span.h"
#include "bench/baseline/legacy_aggregate_shard.h"
#include "bench/baseline/legacy_case_tracker.h"
#include "bench/engine_fixture.h"
#include "bench/median_reporter.h"
#include "bench/scrape_benchmark_previous.h"
#include "benchmark/benchmark.h"
#include "daemon/cases/case_tracker.h"
#include "daemon/cases/clock.h"
#include "daemon/common/lag_ring.h"
#include "daemon/export/engine_metrics.h"
#include "daemon/export/text_writer.h"

namespace kpid::bench {
namespace {

constexpr int64_t kTimedEvents = 500'000;
constexpr absl::Duration kTickInterval = absl::Milliseconds(100);

struct Stream {
  Stream(const model::Config& config, int64_t warm)
      : config(&config),
        warm(warm),
        events(SimulateEvents(config, /*seed=*/7, warm + kTimedEvents)),
        wire(events),
        end(events.back().occurred_at) {}

  const model::Config* config;
  int64_t warm;                              // events before the timed part
  std::vector<ingest::DecodedEvent> events;  // warm, then kTimedEvents
  WireEvents wire;                           // the events' bytes (Feed::kWarmBatch)
  absl::Time end;                            // time of the last event
};

const Stream* MakeStream(const model::Config& config, int64_t warm) {
  return new Stream(config, warm);
}

// 0: EngineConfig, ~320k cases open; 1: ShortCasesConfig, ~6k open; 2
// (the benchmarks' "short_cases:2"): ManyDimsConfig, as 0 with ~1800 dims
// records instead of ~20. The warm-up reaches the steady number of open
// cases. Built on first use (thread-safe: function statics), then only read.
const Stream& GetStream(int which) {
  if (which == 0) {
    static const Stream* stream = MakeStream(EngineConfig(), 1'500'000);
    return *stream;
  }
  if (which == 2) {
    static const Stream* stream = MakeStream(ManyDimsConfig(), 1'500'000);
    return *stream;
  }
  static const Stream* stream = MakeStream(ShortCasesConfig(), 300'000);
  return *stream;
}

// One worker's engine, as daemon/main.cc wires it with `clock: event`; with
// NullSink instead of the shard as sink when `null_sink`.
template <typename Tracker, typename Dims, typename Shard>
struct Engine {
  Engine(const model::Config& config, bool null_sink)
      : dims(config),
        shard(config),
        board(1),
        clock(&board, 0),
        tracker(typename Tracker::Options{
            .config = &config,
            .clock = &clock,
            .sink = null_sink ? static_cast<cases::CaseSink*>(&null) : &shard,
            .dimensions = &dims}) {}

  Dims dims;
  Shard shard;
  NullSink null;
  cases::WatermarkBoard board;
  cases::EventTimeClock clock;
  Tracker tracker;
};

// How the scraper renders /metrics: as now; as before session 3
// (scrape_benchmark_previous); as now but reading every series afresh each
// scrape (before session 4's SeriesReadCache); as now but formatting every
// line (before session 5's text cache).
enum class Renderer { kNow, kPrevious, kUncached, kNoTextCache };

// Renders /metrics every `interval` on its own thread until destroyed.
class Scraper {
 public:
  // `warm`: the first two scrapes here (on the caller's thread, the
  // worker's, before it is timed), not counted.
  Scraper(const aggregate::AggregateShard* live, const cases::DimensionTable* live_dims,
          absl::Duration interval, absl::Time now, Renderer renderer, int filled_series, bool warm)
      : clock_(now), filled_dims_(EngineConfig()), filled_(EngineConfig()) {
    FillSeries(EngineConfig(), filled_series, now, &filled_dims_, &filled_);
    const std::vector<const aggregate::AggregateShard*> shards = {live, &filled_};
    const std::vector<const cases::DimensionTable*> dims = {live_dims, &filled_dims_};
    if (renderer == Renderer::kPrevious) {
      previous_ = std::make_unique<bench_previous::PreviousEngineMetrics>(&EngineConfig(), shards,
                                                                          dims, &clock_);
    } else {
      metrics_ = std::make_shared<exporter::EngineMetrics>(&EngineConfig(), shards, dims, &clock_);
      metrics_->set_cache_window_reads(renderer != Renderer::kUncached);
      metrics_->set_cache_text(renderer != Renderer::kNoTextCache);
    }
    if (warm) {
      // Twice: the first rendering keeps each family's lines in one chunk,
      // which the second cuts into chunks (a copy of the whole body, ~0.1 s).
      for (int i = 0; i < 2; ++i) body_ = Render(std::move(body_));
      CountSamples();
    }
    thread_ = std::thread([this, interval] { Run(interval); });
  }
  ~Scraper() { Stop(); }
  void Stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  // After Stop().
  int scrapes() const { return scrapes_; }
  double mean_ms() const { return scrapes_ ? total_ms_ / scrapes_ : 0; }
  double first_ms() const { return first_ms_; }
  double later_mean_ms() const {
    return scrapes_ > 1 ? (total_ms_ - first_ms_) / (scrapes_ - 1) : 0;
  }
  double later_mean_cpu_ms() const {
    return scrapes_ > 1 ? (total_cpu_ms_ - first_cpu_ms_) / (scrapes_ - 1) : 0;
  }
  // Sample lines of the first scrape.
  int samples() const { return samples_; }

 private:
  // As HttpServer renders: its own text reused, the rest shared.
  exporter::TextBody Render(exporter::TextBody body) {
    std::string text = std::move(body).TakeText();
    if (previous_ != nullptr) {
      text = bench_previous::PreviousRenderText(*previous_, std::move(text));
      return exporter::RenderBody({}, std::move(text));  // the text as a body, not copied
    }
    return exporter::RenderBody({metrics_}, std::move(text));
  }

  void CountSamples() {
    samples_ = 0;
    body_.Write(0, [&](absl::string_view part) {
      for (size_t line = 0; line < part.size();) {
        if (part[line] != '#') ++samples_;
        const size_t end = part.find('\n', line);
        line = end == absl::string_view::npos ? part.size() : end + 1;
      }
      return true;
    });
  }

  static double ThreadCpuMs() {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
  }

  void Run(absl::Duration interval) {
    const bool warmed = samples_ > 0;
    std::unique_lock<std::mutex> lock(mu_);
    while (!stop_) {
      const auto deadline = std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(interval);
      const absl::Time start = absl::Now();
      const double cpu_start = ThreadCpuMs();
      body_ = Render(std::move(body_));
      benchmark::DoNotOptimize(body_.size());
      const double ms = absl::ToDoubleMilliseconds(absl::Now() - start);
      const double cpu_ms = ThreadCpuMs() - cpu_start;
      total_ms_ += ms;
      total_cpu_ms_ += cpu_ms;
      if (scrapes_++ == 0) {
        first_ms_ = ms;
        first_cpu_ms_ = cpu_ms;
        if (!warmed) CountSamples();
      }
      // Every `interval` from start to start; back to back if a scrape takes longer.
      cv_.wait_until(lock, deadline, [this] { return stop_; });
    }
  }

  cases::ManualClock clock_;
  cases::DimensionTable filled_dims_;
  aggregate::AggregateShard filled_;
  std::shared_ptr<exporter::EngineMetrics> metrics_;
  std::unique_ptr<bench_previous::PreviousEngineMetrics> previous_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  exporter::TextBody body_;
  int scrapes_ = 0;
  int samples_ = 0;
  double total_ms_ = 0;
  double total_cpu_ms_ = 0;
  double first_ms_ = 0;
  double first_cpu_ms_ = 0;
  std::thread thread_;
};

// With KPID_PERF_FIFO=<path>, tells `perf record -D -1 --control fifo:<path>`
// to sample only the timed loops (not the simulation and warm-up).
void PerfControl(const char* command) {
  static const char* fifo = std::getenv("KPID_PERF_FIFO");
  if (fifo == nullptr) return;
  if (FILE* f = std::fopen(fifo, "w")) {
    std::fprintf(f, "%s\n", command);
    std::fclose(f);
  }
}

// Events per HandleBatch call in BM_EngineNewBatch: what KafkaIngest hands
// the engine at a time (kafka_ingest.cc, kHandleChunk).
constexpr size_t kBatch = 128;

// How the engine gets its events:
// kOne: Handle, one by one, straight from the pre-decoded stream;
// kBatch: HandleBatch, kBatch at a time, pointing into the stream: every
//   event object and id string is cold (the stream is ~1.5 GB);
// kWarmBatch: HandleBatch on the same kBatch reused DecodedEvents, decoded
//   from the stream's bytes before each call (RefillDecoded), as the
//   daemon's worker decodes each run of messages into its reused events
//   (kafka_ingest.cc): the engine finds them in the cache. The refill is the
//   decoder's work: timed with the engine when the last argument
//   (timed_refill) is 1, else not (PauseTiming around it; BM_Refill says
//   what the refill and the pause each cost).
enum class Feed { kOne, kBatch, kWarmBatch };

template <typename Tracker, typename Dims, typename Shard, Renderer kRenderer = Renderer::kNow,
          int kScrapedSeries = 1000, Feed kFeed = Feed::kOne, bool kWarmScraper = false>
void BM_Engine(benchmark::State& state) {
  const Stream& stream = GetStream(static_cast<int>(state.range(1)));
  auto engine = std::make_unique<Engine<Tracker, Dims, Shard>>(*stream.config, state.range(2) != 0);
  // Through the interface, as the ingest worker calls it.
  ingest::EventHandler& handler = engine->tracker;
  absl::Time next_tick = absl::Now();
  auto maybe_tick = [&] {
    const absl::Time now = absl::Now();
    if (now >= next_tick) {
      handler.Tick(now);
      next_tick = now + kTickInterval;
    }
  };
  for (int64_t i = 0; i < stream.warm; ++i) {
    handler.Handle(stream.events[static_cast<size_t>(i)]);
    if ((i & 1023) == 0) maybe_tick();
  }
  std::unique_ptr<Scraper> scraper;
  if (state.range(0) > 0 && state.thread_index() == 0) {
    if constexpr (std::is_same_v<Dims, cases::DimensionTable> &&
                  std::is_same_v<Shard, aggregate::AggregateShard>) {
      scraper = std::make_unique<Scraper>(&engine->shard, &engine->dims,
                                          absl::Milliseconds(state.range(0)), stream.end, kRenderer,
                                          kScrapedSeries, kWarmScraper);
    }
  }
  const uint64_t open_before = engine->tracker.open_cases();
  size_t i = static_cast<size_t>(stream.warm);
  if (state.thread_index() == 0) PerfControl("enable");
  if constexpr (kFeed != Feed::kOne) {
    // Each iteration is one event, as below: the first of a batch handles
    // the whole batch, so the time per iteration is the time per event.
    std::vector<const ingest::DecodedEvent*> batch(kBatch);
    std::vector<ingest::Verdict> verdicts(kBatch);
    // kWarmBatch: allocated and filled once before the timed part, so the
    // strings have grown to their size, as a worker's after its first runs.
    std::vector<ingest::DecodedEvent> reused(kFeed == Feed::kWarmBatch ? kBatch : 0);
    ingest::EventDecoder decoder(*stream.config);
    for (size_t j = 0; j < reused.size(); ++j) {
      RefillDecoded(decoder, stream.wire[i - reused.size() + j], &reused[j]);
      batch[j] = &reused[j];
    }
    const bool timed_refill = kFeed == Feed::kWarmBatch && state.range(3) != 0;
    size_t left = 0;
    for (auto _ : state) {
      if (left == 0) {
        left = std::min(kBatch, stream.events.size() - i);
        if constexpr (kFeed == Feed::kWarmBatch) {
          if (!timed_refill) state.PauseTiming();
          for (size_t j = 0; j < left; ++j) RefillDecoded(decoder, stream.wire[i + j], &reused[j]);
          if (!timed_refill) state.ResumeTiming();
        } else {
          for (size_t j = 0; j < left; ++j) batch[j] = &stream.events[i + j];
        }
        handler.HandleBatch(absl::MakeConstSpan(batch.data(), left), verdicts.data());
        benchmark::DoNotOptimize(verdicts.data());
      }
      --left;
      // Ticks fall between batches: kBatch divides 1024.
      if ((++i & 1023) == 0) maybe_tick();
    }
  } else {
    for (auto _ : state) {
      benchmark::DoNotOptimize(handler.Handle(stream.events[i]));
      if ((++i & 1023) == 0) maybe_tick();
    }
  }
  if (state.thread_index() == 0) PerfControl("disable");
  state.SetItemsProcessed(state.iterations());
  state.counters["open_cases"] =
      static_cast<double>(open_before + engine->tracker.open_cases()) / 2;
  if (scraper != nullptr) {
    scraper->Stop();
    state.counters["scrapes"] = scraper->scrapes();
    state.counters["scrape_ms"] = scraper->mean_ms();
    state.counters["scrape_samples"] = scraper->samples();
    state.counters["first_scrape_ms"] = scraper->first_ms();
    state.counters["later_scrape_ms"] = scraper->later_mean_ms();
    state.counters["later_scrape_cpu_ms"] = scraper->later_mean_cpu_ms();
  }
}

BENCHMARK_TEMPLATE(BM_Engine, cases::CaseTracker, cases::DimensionTable, aggregate::AggregateShard)
    ->Name("BM_EngineNew")
    ->ArgNames({"scrape_ms", "short_cases", "null_sink"})
    ->Args({0, 0, 0})
    ->Args({100, 0, 0})
    ->Args({0, 1, 0})
    ->Args({0, 0, 1})
    ->Args({0, 1, 1})
    ->Iterations(kTimedEvents)
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();
// The same, kBatch events per HandleBatch call (pipelined prefetching).
BENCHMARK_TEMPLATE(BM_Engine, cases::CaseTracker, cases::DimensionTable, aggregate::AggregateShard,
                   Renderer::kNow, /*kScrapedSeries=*/1000, Feed::kBatch)
    ->Name("BM_EngineNewBatch")
    ->ArgNames({"scrape_ms", "short_cases", "null_sink"})
    ->Args({0, 0, 0})
    ->Args({0, 2, 0})
    ->Args({0, 1, 0})
    ->Args({0, 0, 1})
    ->Args({0, 1, 1})
    ->Iterations(kTimedEvents)
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();
// The same through kBatch reused events refilled before each call, as the
// daemon feeds the engine; the refill timed (timed_refill:1) or not.
BENCHMARK_TEMPLATE(BM_Engine, cases::CaseTracker, cases::DimensionTable, aggregate::AggregateShard,
                   Renderer::kNow, /*kScrapedSeries=*/1000, Feed::kWarmBatch)
    ->Name("BM_EngineNewWarmBatch")
    ->ArgNames({"scrape_ms", "short_cases", "null_sink", "timed_refill"})
    ->ArgsProduct({{0}, {0, 1, 2}, {0, 1}, {0, 1}})
    ->Iterations(kTimedEvents)
    ->Threads(1)
    ->UseRealTime();
// Scraped by the renderer before session 3: what its cheaper scrapes give
// the worker, in the same run.
BENCHMARK_TEMPLATE(BM_Engine, cases::CaseTracker, cases::DimensionTable, aggregate::AggregateShard,
                   Renderer::kPrevious)
    ->Name("BM_EngineNewPreviousScrape")
    ->ArgNames({"scrape_ms", "short_cases", "null_sink"})
    ->Args({100, 0, 0})
    ->Iterations(kTimedEvents)
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();
// Scraped without the series read cache (every series read each scrape, as
// before session 4), in the same run.
BENCHMARK_TEMPLATE(BM_Engine, cases::CaseTracker, cases::DimensionTable, aggregate::AggregateShard,
                   Renderer::kUncached)
    ->Name("BM_EngineNewUncachedScrape")
    ->ArgNames({"scrape_ms", "short_cases", "null_sink"})
    ->Args({100, 0, 0})
    ->Iterations(kTimedEvents)
    ->Threads(1)
    ->UseRealTime();
// Scraped with the SeriesReadCache but no text cache (every line formatted,
// as before session 5), in the same run.
BENCHMARK_TEMPLATE(BM_Engine, cases::CaseTracker, cases::DimensionTable, aggregate::AggregateShard,
                   Renderer::kNoTextCache)
    ->Name("BM_EngineNewNoTextCacheScrape")
    ->ArgNames({"scrape_ms", "short_cases", "null_sink"})
    ->Args({100, 0, 0})
    ->Iterations(kTimedEvents)
    ->Threads(1)
    ->UseRealTime();
// 10k series as Prometheus counts them (sample lines): 2 x 13 dimension
// series, 130 stage series.
BENCHMARK_TEMPLATE(BM_Engine, cases::CaseTracker, cases::DimensionTable, aggregate::AggregateShard,
                   Renderer::kNow, 13)
    ->Name("BM_EngineNewSmallScrape")
    ->ArgNames({"scrape_ms", "short_cases", "null_sink"})
    ->Args({0, 0, 0})
    ->Args({100, 0, 0})
    ->Iterations(kTimedEvents)
    ->Threads(1)
    ->UseRealTime();
// The steady state of both: the scraper's first scrape before the timed part.
BENCHMARK_TEMPLATE(BM_Engine, cases::CaseTracker, cases::DimensionTable, aggregate::AggregateShard,
                   Renderer::kNow, 1000, Feed::kOne, /*kWarmScraper=*/true)
    ->Name("BM_EngineNewWarmScrape")
    ->ArgNames({"scrape_ms", "short_cases", "null_sink"})
    ->Args({100, 0, 0})
    ->Iterations(kTimedEvents)
    ->Threads(1)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_Engine, cases::CaseTracker, cases::DimensionTable, aggregate::AggregateShard,
                   Renderer::kNow, 13, Feed::kOne, /*kWarmScraper=*/true)
    ->Name("BM_EngineNewSmallWarmScrape")
    ->ArgNames({"scrape_ms", "short_cases", "null_sink"})
    ->Args({100, 0, 0})
    ->Iterations(kTimedEvents)
    ->Threads(1)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_Engine, bench_legacy::CaseTracker, bench_legacy::DimensionTable,
                   bench_legacy::AggregateShard)
    ->Name("BM_EngineLegacy")
    ->ArgNames({"scrape_ms", "short_cases", "null_sink"})
    ->Args({0, 0, 0})
    ->Args({0, 1, 0})
    ->Args({0, 0, 1})
    ->Args({0, 1, 1})
    ->Iterations(kTimedEvents)
    ->Threads(1)
    ->Threads(2)
    ->UseRealTime();

// The current tracker with the frozen aggregator: the engine before the
// aggregator's write-path work, to isolate what that work changed.
BENCHMARK_TEMPLATE(BM_Engine, cases::CaseTracker, cases::DimensionTable,
                   bench_legacy::AggregateShard)
    ->Name("BM_EngineLegacyAgg")
    ->ArgNames({"scrape_ms", "short_cases", "null_sink"})
    ->Args({0, 0, 0})
    ->Args({0, 1, 0})
    ->Iterations(kTimedEvents)
    ->Threads(1)
    ->UseRealTime();

// bench/e2e_ingest.py's stream as one of kpid's two workers sees it: the
// topic's kE2EEvents events (E2EConfig: ~42 h of event time) in
// kE2EPartitions partitions by case id (as kpi-loadgen keys them), and the
// worker's share of them (the even partitions: kafka_ingest.cc gives
// partition p to worker p % workers), each partition with its own engine
// (tracker + dims + shard, built empty: kpid starts on an empty state and
// replays the topic). So each engine walks the stream's whole event time
// with a sixteenth of its events: most facts open a fresh 5 s bucket, as
// end to end. With live:1 the same event mix compressed 150,000 times in
// event time (E2ELiveConfig, e2e_ingest.py --compress-time 150000): the
// density of a live stream.
constexpr int kE2EPartitions = 16;
constexpr int kE2EWorkers = 2;
constexpr int64_t kE2EEvents = 400'000;

struct PartitionedStream {
  explicit PartitionedStream(const model::Config& config)
      : config(&config), events(SimulateEvents(config, /*seed=*/1, kE2EEvents)) {
    partitions.resize(kE2EPartitions / kE2EWorkers);
    for (const ingest::DecodedEvent& e : events) {
      // FNV-1a: the same partitions in every run (absl::Hash is salted per
      // process).
      uint64_t hash = 14695981039346656037ull;
      for (const char c : e.proto.case_id()) {
        hash = (hash ^ static_cast<unsigned char>(c)) * 1099511628211ull;
      }
      const size_t partition = hash % kE2EPartitions;
      if (partition % kE2EWorkers == 0) partitions[partition / kE2EWorkers].push_back(&e);
    }
    for (const auto& p : partitions) share += p.size();
    // As the worker takes them: runs of up to kBatch events of one
    // partition, the partitions in turn (each fetch holds many of each).
    std::vector<size_t> next(partitions.size(), 0);
    for (size_t left = share; left > 0;) {
      for (size_t p = 0; p < partitions.size(); ++p) {
        const size_t n = std::min(kBatch, partitions[p].size() - next[p]);
        if (n == 0) continue;
        runs.push_back({p, next[p], n});
        next[p] += n;
        left -= n;
      }
    }
  }

  struct Run {
    size_t partition;
    size_t first;
    size_t size;
  };
  const model::Config* config;
  std::vector<ingest::DecodedEvent> events;                          // the whole topic
  std::vector<std::vector<const ingest::DecodedEvent*>> partitions;  // the worker's
  size_t share = 0;                                                  // events in them
  std::vector<Run> runs;
};

// kpid builds its shards once, at start-up: their distributions' calloc
// (~7 MB each) is a fresh mapping whose pages fault in as history fills. In
// a benchmark process that has freed such a block before, glibc's dynamic
// mmap threshold would have grown past it and calloc would hand out (and
// zero) heap memory instead: a fixed threshold keeps the daemon's case for
// every repetition (process-wide; rows run after these map their large
// blocks too).
void FixMmapThreshold() {
  static const bool done = mallopt(M_MMAP_THRESHOLD, 128 * 1024) == 1;
  if (!done) std::abort();
}

const PartitionedStream& GetPartitionedStream(bool live) {
  FixMmapThreshold();
  if (live) {
    static const PartitionedStream* stream = new PartitionedStream(E2ELiveConfig());
    return *stream;
  }
  static const PartitionedStream* stream = new PartitionedStream(E2EConfig());
  return *stream;
}

double ThreadCpuNs() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

double ThreadMinorFaults() {
  rusage usage;
  getrusage(RUSAGE_THREAD, &usage);
  return static_cast<double>(usage.ru_minflt);
}

// The CPU time and minor page faults of this thread in the timed parts of a
// benchmark's iterations (perf, when attached, counts only those), and the
// per-event counters they give.
struct ThreadCost {
  double cpu_ns = 0;
  double faults = 0;

  template <typename Fn>
  void Measure(Fn&& timed) {
    PerfControl("enable");
    const double cpu_before = ThreadCpuNs();
    const double faults_before = ThreadMinorFaults();
    timed();
    cpu_ns += ThreadCpuNs() - cpu_before;
    faults += ThreadMinorFaults() - faults_before;
    PerfControl("disable");
  }

  void Report(benchmark::State& state, double events) const {
    state.SetItemsProcessed(static_cast<int64_t>(events));
    state.counters["cpu_ns_per_event"] = cpu_ns / events;
    state.counters["faults_per_event"] = faults / events;
  }
};

// One iteration is the worker's whole share (~200k events) into fresh
// engines, built before it is timed. Counters: cpu_ns_per_event and
// faults_per_event (the thread's minor page faults) of the timed part.
void BM_EnginePartitions(benchmark::State& state) {
  const PartitionedStream& stream = GetPartitionedStream(state.range(0) != 0);
  const bool null_sink = state.range(1) != 0;
  std::vector<ingest::Verdict> verdicts(kBatch);
  ThreadCost cost;
  for (auto _ : state) {
    state.PauseTiming();
    std::vector<std::unique_ptr<
        Engine<cases::CaseTracker, cases::DimensionTable, aggregate::AggregateShard>>>
        engines;
    for (size_t p = 0; p < stream.partitions.size(); ++p) {
      engines.push_back(
          std::make_unique<
              Engine<cases::CaseTracker, cases::DimensionTable, aggregate::AggregateShard>>(
              *stream.config, null_sink));
    }
    state.ResumeTiming();
    cost.Measure([&] {
      absl::Time next_tick = absl::Now();
      size_t handled = 0;
      for (const PartitionedStream::Run& run : stream.runs) {
        ingest::EventHandler& handler = engines[run.partition]->tracker;
        handler.HandleBatch(
            absl::MakeConstSpan(stream.partitions[run.partition].data() + run.first, run.size),
            verdicts.data());
        benchmark::DoNotOptimize(verdicts.data());
        // As the worker ticks every engine of its partitions.
        if (((handled += run.size) & 1023) < run.size && absl::Now() >= next_tick) {
          const absl::Time now = absl::Now();
          for (auto& e : engines) e->tracker.Tick(now);
          next_tick = now + kTickInterval;
        }
      }
    });
    state.PauseTiming();
    engines.clear();
    state.ResumeTiming();
  }
  cost.Report(state, static_cast<double>(state.iterations() * stream.share));
  state.counters["events"] = static_cast<double>(stream.share);
}
BENCHMARK(BM_EnginePartitions)
    ->ArgNames({"live", "null_sink"})
    ->ArgsProduct({{0, 1}, {0, 1}})
    ->Iterations(1)
    ->UseRealTime();

// The aggregator alone on BM_EnginePartitions' streams: what each
// partition's tracker told its sink, replayed into fresh shards in the same
// order (runs of the partitions in turn).
struct PartitionedFacts {
  std::vector<Fact> facts;
  struct Run {
    size_t partition;
    size_t end;  // one past the run's last fact
  };
  std::vector<Run> runs;
  size_t partitions = 0;
  size_t events = 0;
};

const PartitionedFacts* RecordPartitionedFacts(const PartitionedStream& stream) {
  auto* out = new PartitionedFacts;
  out->partitions = stream.partitions.size();
  out->events = stream.share;
  FactRecorder sink(&out->facts);
  sink.set_recording(true);
  std::vector<std::unique_ptr<cases::DimensionTable>> dims;
  std::vector<std::unique_ptr<cases::WatermarkBoard>> boards;
  std::vector<std::unique_ptr<cases::EventTimeClock>> clocks;
  std::vector<std::unique_ptr<cases::CaseTracker>> trackers;
  for (size_t p = 0; p < stream.partitions.size(); ++p) {
    dims.push_back(std::make_unique<cases::DimensionTable>(*stream.config));
    boards.push_back(std::make_unique<cases::WatermarkBoard>(1));
    clocks.push_back(std::make_unique<cases::EventTimeClock>(boards.back().get(), 0));
    trackers.push_back(std::make_unique<cases::CaseTracker>(
        cases::CaseTracker::Options{.config = stream.config,
                                    .clock = clocks.back().get(),
                                    .sink = &sink,
                                    .dimensions = dims.back().get()}));
  }
  std::vector<ingest::Verdict> verdicts(kBatch);
  for (const PartitionedStream::Run& run : stream.runs) {
    trackers[run.partition]->HandleBatch(
        absl::MakeConstSpan(stream.partitions[run.partition].data() + run.first, run.size),
        verdicts.data());
    out->runs.push_back({run.partition, out->facts.size()});
  }
  return out;
}

const PartitionedFacts& GetPartitionedFacts(bool live) {
  if (live) {
    static const PartitionedFacts* facts = RecordPartitionedFacts(GetPartitionedStream(true));
    return *facts;
  }
  static const PartitionedFacts* facts = RecordPartitionedFacts(GetPartitionedStream(false));
  return *facts;
}

void BM_AggregatePartitions(benchmark::State& state) {
  const PartitionedFacts& stream = GetPartitionedFacts(state.range(0) != 0);
  const model::Config& config = *GetPartitionedStream(state.range(0) != 0).config;
  ThreadCost cost;
  for (auto _ : state) {
    state.PauseTiming();
    std::vector<std::unique_ptr<aggregate::AggregateShard>> shards;
    for (size_t p = 0; p < stream.partitions; ++p) {
      shards.push_back(std::make_unique<aggregate::AggregateShard>(config));
    }
    state.ResumeTiming();
    cost.Measure([&] {
      size_t fact = 0;
      for (const PartitionedFacts::Run& run : stream.runs) {
        cases::CaseSink& sink = *shards[run.partition];
        for (; fact < run.end; ++fact) Replay(stream.facts[fact], sink);
      }
    });
    state.PauseTiming();
    shards.clear();
    state.ResumeTiming();
  }
  cost.Report(state, static_cast<double>(state.iterations() * stream.events));
  state.counters["facts_per_event"] =
      static_cast<double>(stream.facts.size()) / static_cast<double>(stream.events);
}
BENCHMARK(BM_AggregatePartitions)->ArgNames({"live"})->Arg(0)->Arg(1)->Iterations(1)->UseRealTime();

// What the current tracker told its sink over a stream's last kFactWarmEvents
// warm-up events and its timed events, grouped by event (a Tick's facts go
// with the event after it).
struct FactStream {
  std::vector<Fact> facts;
  std::vector<size_t> ends;  // per event: one past its last fact
  size_t warm_events = 0;    // events before the timed ones
};

constexpr int64_t kFactWarmEvents = 200'000;

const FactStream* RecordFacts(const Stream& stream) {
  auto* out = new FactStream;
  FactRecorder sink(&out->facts);
  cases::DimensionTable dims(*stream.config);
  cases::WatermarkBoard board(1);
  cases::EventTimeClock clock(&board, 0);
  cases::CaseTracker tracker(
      {.config = stream.config, .clock = &clock, .sink = &sink, .dimensions = &dims});
  const int64_t first = std::max<int64_t>(0, stream.warm - kFactWarmEvents);
  absl::Time next_tick = absl::Now();
  for (size_t i = 0; i < stream.events.size(); ++i) {
    sink.set_recording(static_cast<int64_t>(i) >= first);
    tracker.Handle(stream.events[i]);
    if ((i & 1023) == 0 && absl::Now() >= next_tick) {
      tracker.Tick(absl::Now());
      next_tick = absl::Now() + kTickInterval;
    }
    if (static_cast<int64_t>(i) >= first) out->ends.push_back(out->facts.size());
  }
  out->warm_events = static_cast<size_t>(stream.warm - first);
  return out;
}

const FactStream& GetFacts(int which) {
  if (which == 0) {
    static const FactStream* facts = RecordFacts(GetStream(0));
    return *facts;
  }
  if (which == 2) {
    static const FactStream* facts = RecordFacts(GetStream(2));
    return *facts;
  }
  static const FactStream* facts = RecordFacts(GetStream(1));
  return *facts;
}

// The aggregator alone: the facts the tracker produced for each event,
// replayed into a shard through the CaseSink interface. items = events, so
// the figures compare with BM_Engine*'s.
// kHinted: each step goes to the sink's PrefetchStep first and is replayed
// kStepLag steps later (sooner when another fact comes), as
// CaseTracker::HandleBatch reports steps.
template <typename Shard, bool kHinted = false>
void BM_Aggregate(benchmark::State& state) {
  const FactStream& stream = GetFacts(static_cast<int>(state.range(0)));
  const model::Config& config = *GetStream(static_cast<int>(state.range(0))).config;
  auto shard = std::make_unique<Shard>(config);
  cases::CaseSink& sink = *shard;
  size_t fact = 0;
  for (size_t e = 0; e < stream.warm_events; ++e) {
    for (; fact < stream.ends[e]; ++fact) Replay(stream.facts[fact], sink);
  }
  LagRing<const Fact*, /*N=*/4> held;  // as the tracker's kStepLag
  auto replay_held = [&](const Fact* f) { Replay(*f, sink); };
  auto replay = [&](const Fact& f) {
    if constexpr (kHinted) {
      if (f.kind == Fact::Kind::kStep) {
        cases::CaseStep step = f.step;
        step.at = f.at;
        sink.PrefetchStep(step);
        held.Push(&f, replay_held);
        return;
      }
      held.Flush(replay_held);
    }
    Replay(f, sink);
  };
  size_t e = stream.warm_events;
  if (state.thread_index() == 0) PerfControl("enable");
  for (auto _ : state) {
    for (const size_t end = stream.ends[e++]; fact < end; ++fact) replay(stream.facts[fact]);
  }
  if (state.thread_index() == 0) PerfControl("disable");
  state.SetItemsProcessed(state.iterations());
  state.counters["facts_per_event"] =
      static_cast<double>(stream.ends[e - 1] - stream.ends[stream.warm_events - 1]) /
      static_cast<double>(state.iterations());
}
BENCHMARK_TEMPLATE(BM_Aggregate, aggregate::AggregateShard)
    ->Name("BM_AggregateNew")
    ->ArgNames({"short_cases"})
    ->Arg(0)
    ->Arg(1)
    ->Arg(2)
    ->Iterations(kTimedEvents)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_Aggregate, aggregate::AggregateShard, /*kHinted=*/true)
    ->Name("BM_AggregateNewHinted")
    ->ArgNames({"short_cases"})
    ->Arg(0)
    ->Arg(1)
    ->Arg(2)
    ->Iterations(kTimedEvents)
    ->UseRealTime();
BENCHMARK_TEMPLATE(BM_Aggregate, bench_legacy::AggregateShard)
    ->Name("BM_AggregateLegacy")
    ->ArgNames({"short_cases"})
    ->Arg(0)
    ->Arg(1)
    ->Iterations(kTimedEvents)
    ->UseRealTime();

// What BM_EngineNewWarmBatch's refill of the reused events costs per event,
// alone (paused:0; the events as that benchmark's timed part refills them),
// and what its PauseTiming/ResumeTiming around the refill cost (paused:1:
// the refill not timed, as in timed_refill:0, so only the pause is left).
void BM_Refill(benchmark::State& state) {
  const Stream& stream = GetStream(static_cast<int>(state.range(0)));
  const bool paused = state.range(1) != 0;
  std::vector<ingest::DecodedEvent> reused(kBatch);
  ingest::EventDecoder decoder(*stream.config);
  size_t i = static_cast<size_t>(stream.warm);
  for (size_t j = 0; j < kBatch; ++j)
    RefillDecoded(decoder, stream.wire[i - kBatch + j], &reused[j]);
  size_t left = 0;
  for (auto _ : state) {
    if (left == 0) {
      left = std::min(kBatch, stream.events.size() - i);
      if (paused) state.PauseTiming();
      for (size_t j = 0; j < left; ++j) RefillDecoded(decoder, stream.wire[i + j], &reused[j]);
      if (paused) state.ResumeTiming();
      benchmark::DoNotOptimize(reused.data());
    }
    --left;
    ++i;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Refill)
    ->ArgNames({"short_cases", "paused"})
    ->ArgsProduct({{0, 1, 2}, {0, 1}})
    ->Iterations(kTimedEvents)
    ->UseRealTime();

// The floor under BM_Engine*: reading what the tracker reads of each event
// (the ids, hashed; kind, stage and time) from the same pre-decoded stream.
// The stream (~0.6 KB per event over ~1.5 GB) is cold in the cache, unlike
// the daemon's one reused DecodedEvent that the decoder has just written, so
// part of every engine figure is this benchmark's own input.
void BM_TouchEvents(benchmark::State& state) {
  const Stream& stream = GetStream(0);
  size_t i = static_cast<size_t>(stream.warm);
  uint64_t sum = 0;
  for (auto _ : state) {
    const ingest::DecodedEvent& e = stream.events[i++];
    sum += absl::HashOf(absl::string_view(e.proto.event_id())) ^
           absl::HashOf(absl::string_view(e.proto.case_id())) ^
           static_cast<uint64_t>(e.proto.kind() + e.stage_index) ^
           static_cast<uint64_t>(absl::ToUnixMicros(e.occurred_at)) ^ e.proto.attributes().size();
  }
  benchmark::DoNotOptimize(sum);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_TouchEvents)->Iterations(kTimedEvents)->Threads(1)->Threads(2)->UseRealTime();

// Calibration for the thread-scaling ratios: what two threads get from this
// machine at the same moment. BM_Spin is pure arithmetic (no memory);
// BM_Chase follows a random cycle through 64 MiB per thread (every step a
// cache miss, as the engine's table lookups are). Scaling below theirs is
// the engine's own; scaling like theirs is the machine.
void BM_Spin(benchmark::State& state) {
  uint64_t x = 88172645463325252ULL + static_cast<uint64_t>(state.thread_index());
  for (auto _ : state) {
    for (int i = 0; i < 64; ++i) {  // xorshift64: a dependent chain of ALU ops
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
    }
    benchmark::DoNotOptimize(x);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Spin)->Iterations(2'000'000)->Threads(1)->Threads(2)->UseRealTime();

void BM_Chase(benchmark::State& state) {
  constexpr size_t kN = (64u << 20) / sizeof(uint32_t);
  std::vector<uint32_t> next(kN);
  // Sattolo's algorithm: one cycle through every element.
  for (size_t i = 0; i < kN; ++i) next[i] = static_cast<uint32_t>(i);
  uint64_t r = 0x9e3779b97f4a7c15ULL + static_cast<uint64_t>(state.thread_index());
  for (size_t i = kN - 1; i > 0; --i) {
    r ^= r << 13;
    r ^= r >> 7;
    r ^= r << 17;
    std::swap(next[i], next[r % i]);
  }
  uint32_t at = 0;
  for (auto _ : state) {
    at = next[at];
    benchmark::DoNotOptimize(at);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Chase)->Iterations(5'000'000)->Threads(1)->Threads(2)->UseRealTime();

// The console output plus same-run ratios of median items/s at the end.
class RatioReporter : public MedianReporter {
 private:
  void PrintRatios() override {
    std::printf("\nsame-run ratios (medians of items/s):\n");
    for (const char* cases : {"0", "1"}) {
      for (const char* null_sink : {"0", "1"}) {
        const std::string what =
            absl::StrCat(cases[0] == '0' ? "~300k open" : "~7k open",
                         null_sink[0] == '0' ? "" : ", tracker only (null sink)");
        const std::string args =
            absl::StrCat("scrape_ms:0/short_cases:", cases, "/null_sink:", null_sink);
        for (int threads : {1, 2}) {
          Ratio(absl::StrFormat("new / legacy, %s, %d thread(s)", what, threads),
                absl::StrFormat("BM_EngineNew/%s/%d", args, threads),
                absl::StrFormat("BM_EngineLegacy/%s/%d", args, threads));
        }
        for (const char* impl : {"New", "Legacy"}) {
          const std::string one = absl::StrFormat("BM_Engine%s/%s/1", impl, args);
          const std::string two = absl::StrFormat("BM_Engine%s/%s/2", impl, args);
          Ratio(absl::StrFormat("%s, 2 threads / 1, %s", impl, what), two, one);
          CpuRatio(absl::StrFormat("%s, CPU per event 1 thread / 2 threads, %s", impl, what), one,
                   two);
        }
      }
    }
    for (const char* cases : {"0", "1"}) {
      const char* what = cases[0] == '0' ? "~300k open" : "~7k open";
      Ratio(absl::StrFormat("aggregator new / legacy, engine, %s", what),
            absl::StrFormat("BM_EngineNew/scrape_ms:0/short_cases:%s/null_sink:0/1", cases),
            absl::StrFormat("BM_EngineLegacyAgg/scrape_ms:0/short_cases:%s/null_sink:0/1", cases));
      Ratio(absl::StrFormat("aggregator new / legacy, aggregator only, %s", what),
            absl::StrFormat("BM_AggregateNew/short_cases:%s/1", cases),
            absl::StrFormat("BM_AggregateLegacy/short_cases:%s/1", cases));
      // CPU per event, less sensitive than items/s to what other tenants
      // leave of the core.
      CpuRatio(
          absl::StrFormat("aggregator CPU per event legacy / new, engine, %s", what),
          absl::StrFormat("BM_EngineLegacyAgg/scrape_ms:0/short_cases:%s/null_sink:0/1", cases),
          absl::StrFormat("BM_EngineNew/scrape_ms:0/short_cases:%s/null_sink:0/1", cases));
      CpuRatio(absl::StrFormat("aggregator CPU per event legacy / new, aggregator only, %s", what),
               absl::StrFormat("BM_AggregateLegacy/short_cases:%s/1", cases),
               absl::StrFormat("BM_AggregateNew/short_cases:%s/1", cases));
    }
    for (const char* cases : {"0", "1", "2"}) {
      for (const char* null_sink : {"0", "1"}) {
        const std::string what = absl::StrCat(cases[0] == '0'   ? "~300k open"
                                              : cases[0] == '1' ? "~7k open"
                                                                : "many dims",
                                              null_sink[0] == '0' ? "" : ", tracker only");
        const std::string args =
            absl::StrCat("scrape_ms:0/short_cases:", cases, "/null_sink:", null_sink);
        const std::string cold = absl::StrCat("BM_EngineNewBatch/", args, "/1");
        for (const char* timed : {"0", "1"}) {
          CpuRatio(absl::StrFormat("CPU per event cold array / warm batch (refill %s), %s",
                                   timed[0] == '0' ? "not timed" : "timed", what),
                   cold,
                   absl::StrCat("BM_EngineNewWarmBatch/", args, "/timed_refill:", timed, "/1"));
        }
      }
      CpuRatio(absl::StrFormat("CPU per event: refill / its pause, %s", cases),
               absl::StrCat("BM_Refill/short_cases:", cases, "/paused:0/1"),
               absl::StrCat("BM_Refill/short_cases:", cases, "/paused:1/1"));
    }
    Ratio("calibration: arithmetic, 2 threads / 1 thread", "BM_Spin//2", "BM_Spin//1");
    CpuRatio("calibration: arithmetic, CPU per step 1 thread / 2", "BM_Spin//1", "BM_Spin//2");
    Ratio("calibration: cache misses, 2 threads / 1 thread", "BM_Chase//2", "BM_Chase//1");
    CpuRatio("calibration: cache misses, CPU per step 1 thread / 2", "BM_Chase//1", "BM_Chase//2");
    Ratio("calibration: reading the input, 2 threads / 1", "BM_TouchEvents//2",
          "BM_TouchEvents//1");
    for (int threads : {1, 2}) {
      Ratio(absl::StrFormat("new, scraped every 100 ms / not, %d thread(s)", threads),
            absl::StrFormat("BM_EngineNew/scrape_ms:100/short_cases:0/null_sink:0/%d", threads),
            absl::StrFormat("BM_EngineNew/scrape_ms:0/short_cases:0/null_sink:0/%d", threads));
      Ratio(absl::StrFormat("new, scraped every 100 ms as before session 3 / not, %d thread(s)",
                            threads),
            absl::StrFormat("BM_EngineNewPreviousScrape/scrape_ms:100/short_cases:0/null_sink:0/%d",
                            threads),
            absl::StrFormat("BM_EngineNew/scrape_ms:0/short_cases:0/null_sink:0/%d", threads));
    }
    Ratio("new, scraped every 100 ms without the series read cache / not, 1 thread",
          "BM_EngineNewUncachedScrape/scrape_ms:100/short_cases:0/null_sink:0/1",
          "BM_EngineNew/scrape_ms:0/short_cases:0/null_sink:0/1");
    Ratio("new, scraped every 100 ms after a first scrape / not, 1 thread",
          "BM_EngineNewWarmScrape/scrape_ms:100/short_cases:0/null_sink:0/1",
          "BM_EngineNew/scrape_ms:0/short_cases:0/null_sink:0/1");
    Ratio("new, 2 x 13 series scraped every 100 ms after a first scrape / not, 1 thread",
          "BM_EngineNewSmallWarmScrape/scrape_ms:100/short_cases:0/null_sink:0/1",
          "BM_EngineNewSmallScrape/scrape_ms:0/short_cases:0/null_sink:0/1");
  }

  // Per-event CPU time of a over b: 1.0 when a second thread costs each
  // event no more CPU (no contention in the engine); unlike items/s, it does
  // not depend on how many cores the machine's other tenants leave free.
  void CpuRatio(const std::string& label, const std::string& a, const std::string& b) {
    const double x = Cpu(a), y = Cpu(b);
    if (x <= 0 || y <= 0) return;
    std::printf("  %-70s %7.0f ns  / %7.0f ns  = %.2f\n", label.c_str(), x, y, x / y);
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
