// Shared setup of the engine benchmarks (engine_benchmark.cc, case_memory.cc):
// one config, realistic pre-decoded events from kpi-loadgen's Simulator, and
// aggregator shards filled with a given number of dimension series.
//
//   const model::Config& config = bench::EngineConfig();
//   std::vector<ingest::DecodedEvent> events = bench::SimulateEvents(config, 7, 1'000'000);
//   tracker.Handle(events[0]);
//
// Single-threaded helpers; what they return may be shared read-only.
#pragma once

#include <cstdint>
#include <vector>

#include "daemon/aggregate/aggregate_shard.h"
#include "daemon/cases/dimension_table.h"
#include "daemon/ingest/event_decoder.h"
#include "daemon/model/config.h"
#include "kpid/v1/event.pb.h"

namespace kpid::bench {

// Two 5-stage processes (lead_to_cash as in e2e_ingest.py, and a faster
// fulfillment), dimensions [region, channel] with up to 1000 series per
// process, `clock: event`, the default case_ttl (30d) and dedup_horizon (1h).
const model::Config& EngineConfig();
// EngineConfig with every SLA and stage time 60 times shorter (windows and
// retention unchanged): the same event mix with ~60 times fewer open cases,
// so the tracker's tables fit in the caches.
const model::Config& ShortCasesConfig();

// Fills `out` as EventDecoder::Decode would for a valid event (process and
// stage resolved, time converted), without the protobuf round trip.
void ToDecoded(const model::Config& config, const kpid::v1::ProcessEvent& event,
               ingest::DecodedEvent* out);

// The first `count` events of the seeded simulation of every process of
// `config`, decoded. Each event owns its strings: ~0.5 KB per event.
std::vector<ingest::DecodedEvent> SimulateEvents(const model::Config& config, uint64_t seed,
                                                 int64_t count);

// Gives `shard` (and `dims`) `series_per_process` dimension combinations per
// process of `config`, each with facts in every stage over the last two days
// before `now`, so every window and total of every series has values to
// render: what a scrape of that many series costs.
void FillSeries(const model::Config& config, int series_per_process, absl::Time now,
                cases::DimensionTable* dims, aggregate::AggregateShard* shard);

}  // namespace kpid::bench
