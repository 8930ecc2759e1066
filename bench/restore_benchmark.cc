// Restoring one partition's state on assign (EngineRegistry::Open): from its
// state file (the fast path) against from the state topic (kafka.state_topic:
// the tail look, the whole partition read, chunks assembled and checked),
// in the same run. The topic lives on librdkafka's in-process mock cluster,
// so this measures kpid's side and loopback, not a real broker's disk; the
// mock keeps only a few MiB per partition, which bounds the states tried.
//
//   build/bench/restore_benchmark --benchmark_repetitions=5
//       --benchmark_report_aggregates_only=true
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/engine_fixture.h"
#include "benchmark/benchmark.h"
#include "daemon/cases/clock.h"
#include "daemon/engine/engine_registry.h"
#include "daemon/engine/state_topic.h"
#include "daemon/ingest/embedded_broker.h"

namespace kpid::bench {
namespace {

constexpr int32_t kPartition = 0;

// A checkpoint of partition 0 after `events` simulated events, written to a
// state_dir and to a state topic on a mock cluster of its own.
struct Stored {
  std::string dir;
  std::unique_ptr<ingest::EmbeddedBroker> broker;
  std::unique_ptr<engine::StateTopic> topic;
  size_t open_cases = 0;
  size_t state_bytes = 0;
};

std::unique_ptr<Stored> Store(int64_t events) {
  auto stored = std::make_unique<Stored>();
  stored->dir = absl::StrCat(std::filesystem::temp_directory_path().string(), "/restore_benchmark_",
                             getpid(), "_", events);
  std::filesystem::remove_all(stored->dir);
  stored->broker = *ingest::EmbeddedBroker::Start({{"events", 1}, {"kpid-state", 1}});
  stored->topic = *engine::StateTopic::Start({.brokers = stored->broker->bootstrap(),
                                              .topic = "kpid-state",
                                              .input_topic = "events",
                                              .partitions_fallback = 1,
                                              .properties = {}});
  const model::Config& config = EngineConfig();
  cases::WatermarkBoard board;
  engine::EngineRegistry registry({.config = &config,
                                   .board = &board,
                                   .state_dir = stored->dir,
                                   .state_topic = stored->topic.get()});
  ingest::PartitionHandlers::Opened opened = registry.Open(kPartition, 1);
  for (const ingest::DecodedEvent& event : SimulateEvents(config, 7, events)) {
    opened.handler->Handle(event);
  }
  auto& engine = static_cast<engine::PartitionEngine&>(*opened.handler);
  stored->open_cases = engine.tracker().open_cases();
  stored->state_bytes = engine.Serialize(events).size();
  engine.Checkpoint(events);
  registry.Flush();
  return stored;
}

void Restore(benchmark::State& state, bool from_topic) {
  const std::unique_ptr<Stored> stored = Store(state.range(0));
  const model::Config& config = EngineConfig();
  for (auto _ : state) {
    cases::WatermarkBoard board;
    // From the topic: a replica without files.
    engine::EngineRegistry registry({.config = &config,
                                     .board = &board,
                                     .state_dir = from_topic ? "" : stored->dir,
                                     .state_topic = from_topic ? stored->topic.get() : nullptr});
    ingest::PartitionHandlers::Opened opened = registry.Open(kPartition, 1);
    if (opened.next_offset != state.range(0)) state.SkipWithError("not restored");
    state.PauseTiming();
    opened.handler.reset();  // freed outside the timing
    registry.Close(kPartition, /*keep=*/false);
    state.ResumeTiming();
  }
  state.counters["open_cases"] = static_cast<double>(stored->open_cases);
  state.counters["state_bytes"] = static_cast<double>(stored->state_bytes);
  std::filesystem::remove_all(stored->dir);
}

void BM_RestoreFromFile(benchmark::State& state) { Restore(state, /*from_topic=*/false); }
void BM_RestoreFromTopic(benchmark::State& state) { Restore(state, /*from_topic=*/true); }

BENCHMARK(BM_RestoreFromFile)
    ->Arg(20'000)
    ->Arg(100'000)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_RestoreFromTopic)
    ->Arg(20'000)
    ->Arg(100'000)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

}  // namespace
}  // namespace kpid::bench

BENCHMARK_MAIN();
