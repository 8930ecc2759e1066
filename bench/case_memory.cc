// Bytes of memory per open case: the growth of the process's resident set
// while a worker's case tracker (CaseTracker + DimensionTable) takes on
// cases, divided by the cases open at the end.
//
//   build/bench/kpid-bench-case-memory [--impl new|legacy] [--mode burst|steady] [--cases N]
//   {"impl":"new","mode":"burst","open_cases":1000000,"rss_delta_bytes":...,"bytes_per_case":...}
//
// burst (default): N cases (default 1M) open one millisecond of event time
// apart (1000 s for 1M, within the 1h dedup horizon and the first SLA), one
// STAGE_ENTERED each, ids shaped as kpi-loadgen's. Everything a new case
// costs is in the figure: its record, its table entries, its timer, and its
// event id remembered for dedup.
// steady: the seeded simulation of bench/engine_fixture.cc's processes
// until N events (default 2M; ~300k cases open by then). Per open case it
// also carries what a running worker keeps besides: closed cases and event
// ids of the last hour, timer entries of cases that moved on.
//
// Events are built in one reused DecodedEvent, so the input costs nothing.
// The baseline RSS is taken after the tracker is built and has seen a
// thousand cases (its fixed costs: dimension table, first table sizes).
// --impl legacy measures the frozen pre-optimization tracker
// (bench/baseline/). Run each in its own process.
#include <malloc.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/baseline/legacy_case_tracker.h"
#include "bench/engine_fixture.h"
#include "daemon/cases/case_tracker.h"
#include "daemon/cases/clock.h"
#include "tools/loadgen/simulator.h"

namespace kpid::bench {
namespace {

using kpid::v1::ProcessEvent;

int64_t ResidentBytes() {
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) std::abort();
  long pages = 0, resident = 0;
  if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2) std::abort();
  std::fclose(f);
  return static_cast<int64_t>(resident) * sysconf(_SC_PAGESIZE);
}

template <typename Tracker, typename Dims>
struct Engine {
  explicit Engine(const model::Config& config)
      : dims(config),
        tracker(typename Tracker::Options{
            .config = &config, .clock = &clock, .sink = &sink, .dimensions = &dims}) {}
  Dims dims;
  // Facts are dropped: the aggregator's memory grows with series and time
  // (buckets fill as event time moves), not with cases, and would blur the
  // figure.
  NullSink sink;
  cases::ManualClock clock;
  Tracker tracker;
};

struct Result {
  uint64_t open_cases;
  int64_t rss_delta;
};

template <typename Tracker, typename Dims>
Result Burst(int64_t cases) {
  const model::Config& config = EngineConfig();
  auto engine = std::make_unique<Engine<Tracker, Dims>>(config);
  ingest::DecodedEvent e;
  e.process_index = 0;  // lead_to_cash
  e.stage_index = 0;    // lead
  e.proto.set_process("lead_to_cash");
  e.proto.set_stage("lead");
  e.proto.set_kind(ProcessEvent::STAGE_ENTERED);
  const std::string region_key = "region", channel_key = "channel";
  std::string region, channel;
  e.attributes = {{&region_key, &region}, {&channel_key, &channel}};
  const char* regions[] = {"emea", "amer", "apac"};
  const char* channels[] = {"web", "partner", "outbound"};
  const absl::Time start = loadgen::DefaultStart();
  int64_t rss_before = 0;
  for (int64_t i = 0; i < cases + 1000; ++i) {
    if (i == 1000) rss_before = ResidentBytes();
    e.proto.set_event_id(absl::StrCat("1-1767225600-", i));
    e.proto.set_case_id(absl::StrFormat("lead_to_cash-%08d", 20000000 + i));
    region = regions[i % 3];
    channel = channels[(i / 3) % 3];
    e.occurred_at = start + absl::Milliseconds(i);
    e.proto.mutable_occurred_at()->set_seconds(absl::ToUnixSeconds(e.occurred_at));
    engine->clock.Set(e.occurred_at);
    if (engine->tracker.Handle(e).kind != ingest::Verdict::Kind::kAccepted) std::abort();
  }
  return {engine->tracker.open_cases() - 1000, ResidentBytes() - rss_before};
}

template <typename Tracker, typename Dims>
Result Steady(int64_t events) {
  const model::Config& config = EngineConfig();
  // The simulation first, serialized: the simulator's own per-case state must
  // not count, so it is gone before the baseline is taken.
  std::vector<std::string> serialized;
  {
    loadgen::SimulatorOptions options;
    options.seed = 7;
    loadgen::Simulator sim(config, options);
    ProcessEvent event;
    serialized.reserve(static_cast<size_t>(events));
    for (int64_t i = 0; i < events; ++i) {
      if (!sim.Next(&event)) std::abort();
      serialized.push_back(event.SerializeAsString());
    }
  }
  // Freed memory goes back to the system, or the tracker would reuse it
  // without the resident set growing.
  malloc_trim(0);
  auto engine = std::make_unique<Engine<Tracker, Dims>>(config);
  ingest::EventDecoder decoder(config);
  ingest::DecodedEvent e;
  int64_t rss_before = 0;
  uint64_t open_before = 0;
  for (const std::string& bytes : serialized) {
    if (engine->tracker.open_cases() >= 1000 && rss_before == 0) {
      rss_before = ResidentBytes();
      open_before = engine->tracker.open_cases();
    }
    RefillDecoded(decoder, bytes, &e);
    if (e.occurred_at > engine->clock.Now()) engine->clock.Set(e.occurred_at);
    engine->tracker.Handle(e);
  }
  return {engine->tracker.open_cases() - open_before, ResidentBytes() - rss_before};
}

}  // namespace
}  // namespace kpid::bench

int main(int argc, char** argv) {
  std::string impl = "new", mode = "burst";
  int64_t n = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--impl") {
      impl = argv[i + 1];
    } else if (flag == "--mode") {
      mode = argv[i + 1];
    } else if (flag == "--cases") {
      n = std::atoll(argv[i + 1]);
    } else {
      std::fprintf(stderr, "usage: %s [--impl new|legacy] [--mode burst|steady] [--cases N]\n",
                   argv[0]);
      return 2;
    }
  }
  using namespace kpid;
  bench::Result r;
  if (mode == "burst") {
    if (n <= 0) n = 1'000'000;
    r = impl == "legacy" ? bench::Burst<bench_legacy::CaseTracker, bench_legacy::DimensionTable>(n)
                         : bench::Burst<cases::CaseTracker, cases::DimensionTable>(n);
  } else {
    if (n <= 0) n = 2'000'000;
    r = impl == "legacy" ? bench::Steady<bench_legacy::CaseTracker, bench_legacy::DimensionTable>(n)
                         : bench::Steady<cases::CaseTracker, cases::DimensionTable>(n);
  }
  std::printf(
      "{\"impl\":\"%s\",\"mode\":\"%s\",\"open_cases\":%llu,\"rss_delta_bytes\":%lld,"
      "\"bytes_per_case\":%.1f}\n",
      impl.c_str(), mode.c_str(), static_cast<unsigned long long>(r.open_cases),
      static_cast<long long>(r.rss_delta),
      static_cast<double>(r.rss_delta) / static_cast<double>(r.open_cases));
  return 0;
}
