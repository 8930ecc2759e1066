// Checks that the aggregator reads exactly as the frozen copy of it before
// the write-path work (bench/baseline/legacy_aggregate_shard) does: both are
// fed the facts the case tracker reports for a simulated stream, with some
// fact times moved back (out of order, some too old for the short levels,
// a few older than the history) and a few jumps ahead, and every read must
// match at regular points: window counts of every series and of all dims
// for every window (now, and ending in the past), quantile distributions,
// totals, transitions, late and dropped counts. Then each shard's state is
// restored into a new shard (the frozen one writes format version 1) and
// read again. The new cost counts have no counterpart in the frozen shard:
// they are checked against the number of Cost facts instead.
//
//   build/bench/aggregate_equivalence [--events N]
//   ...
//   OK: 2 streams, 1534000 facts, 4120000 checks
//
// Exits 1 at the first difference.
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/baseline/legacy_aggregate_shard.h"
#include "bench/engine_fixture.h"
#include "daemon/aggregate/aggregate_shard.h"
#include "daemon/cases/case_tracker.h"
#include "daemon/cases/clock.h"

namespace kpid::bench {
namespace {

using aggregate::AggregateShard;
using LegacyShard = bench_legacy::AggregateShard;

uint64_t checks = 0;

[[noreturn]] void Fail(const std::string& what) {
  std::fprintf(stderr, "DIFFERENCE: %s\n", what.c_str());
  std::exit(1);
}

template <typename T>
void Expect(const T& legacy, const T& now, const std::string& what) {
  ++checks;
  if (!(legacy == now)) Fail(what);
}

// The new shard's process counts without what the frozen one lacks; checks
// stage_entries against the stage counts of the same read.
aggregate::SeriesWindow Comparable(aggregate::SeriesWindow w, const std::string& what) {
  uint64_t entered = 0;
  for (const aggregate::StageWindowCounts& s : w.stages) entered += s.entered;
  Expect(entered, w.process.stage_entries, what + " stage_entries");
  w.process.stage_entries = 0;
  w.process.cost_count = 0;
  return w;
}

// (process, dims) -> Cost facts so far.
using CostCounts = std::map<std::pair<int, cases::DimsId>, uint64_t>;

void Compare(const model::Config& config, const LegacyShard& legacy, const AggregateShard& now,
             const CostCounts& costs, const std::string& where) {
  Expect(legacy.latest(), now.latest(), where + " latest");
  Expect(legacy.late(), now.late(), where + " late");
  Expect(legacy.dropped(), now.dropped(), where + " dropped");
  if (!now.latest().has_value()) return;
  const absl::Time head = absl::FromUnixSeconds(*now.latest());
  for (int p = 0; p < now.process_count(); ++p) {
    const std::string proc = absl::StrCat(where, " process ", p);
    const std::vector<cases::DimsId> dims = now.ListDims(p);
    Expect(legacy.ListDims(p), dims, proc + " dims");
    // Not state: a restored shard counts changes from 0.
    if (where.find("restored") == std::string::npos) {
      Expect(legacy.ChangeCount(p), now.ChangeCount(p), proc + " changes");
    }
    const int stages = now.stage_count(p);
    for (int from = 0; from < stages; ++from) {
      for (int to = 0; to < stages; ++to) {
        Expect(legacy.ReadTransitions(p, from, to), now.ReadTransitions(p, from, to),
               proc + " transitions");
      }
    }
    for (cases::DimsId d : dims) {
      aggregate::SeriesTotals t = now.ReadSeriesTotals(p, d);
      const auto cost = costs.find({p, d});
      Expect(cost == costs.end() ? 0 : cost->second, t.process.cost_count,
             absl::StrCat(proc, " dims ", d, " cost_count total"));
      t.process.cost_count = 0;
      Expect(legacy.ReadSeriesTotals(p, d), t, absl::StrCat(proc, " dims ", d, " totals"));
    }
    for (int w = 0; w < static_cast<int>(config.windows.size()); ++w) {
      // Now, 100 s ago (a bucket or two back), and 3 h ago (the short
      // windows then read the history level).
      for (absl::Duration back : {absl::ZeroDuration(), absl::Seconds(100), absl::Hours(3)}) {
        const aggregate::WindowSpan span = now.Resolve(w, head - back);
        const std::string win =
            absl::StrCat(proc, " window ", w, " back ", absl::FormatDuration(back));
        for (cases::DimsId d : dims) {
          const std::string series = absl::StrCat(win, " dims ", d);
          Expect(legacy.ReadSeriesWindow(p, d, span),
                 Comparable(now.ReadSeriesWindow(p, d, span), series), series);
        }
        Expect(legacy.ReadAllDimsWindow(p, span),
               Comparable(now.ReadAllDimsWindow(p, span), win + " all dims"), win + " all dims");
        for (int s = 0; s < stages; ++s) {
          Expect(legacy.ReadCycleTimes(p, s, span), now.ReadCycleTimes(p, s, span),
                 absl::StrCat(win, " cycle times ", s));
        }
        Expect(legacy.ReadLeadTimes(p, span), now.ReadLeadTimes(p, span), win + " lead times");
      }
    }
  }
}

// The facts of `events` simulated events, as the current tracker reports
// them, with times perturbed (seeded).
std::vector<Fact> MakeFacts(const model::Config& config, int64_t events, uint64_t seed) {
  std::vector<Fact> facts;
  FactRecorder recorder(&facts);
  recorder.set_recording(true);
  cases::DimensionTable dims(config);
  cases::WatermarkBoard board(1);
  cases::EventTimeClock clock(&board, 0);
  cases::CaseTracker tracker(
      {.config = &config, .clock = &clock, .sink = &recorder, .dimensions = &dims});
  const std::vector<ingest::DecodedEvent> stream = SimulateEvents(config, seed, events);
  for (size_t i = 0; i < stream.size(); ++i) {
    tracker.Handle(stream[i]);
    if ((i & 1023) == 0) tracker.Tick(stream[i].occurred_at);
  }
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> coin(0, 1);
  for (Fact& f : facts) {
    const double c = coin(rng);
    if (c < 0.03) {
      f.at -= absl::Seconds(static_cast<int64_t>(coin(rng) * 3 * 3600));  // out of order
    } else if (c < 0.0301) {
      f.at -= absl::Hours(24 * 20);  // older than the 15 d of history: late
    } else if (c < 0.03015) {
      f.at += absl::Minutes(30);  // ahead: moves every head on
    }
  }
  return facts;
}

void Check(const model::Config& config, const std::vector<Fact>& facts, const std::string& name) {
  LegacyShard legacy(config);
  AggregateShard now(config);
  CostCounts costs;
  for (size_t i = 0; i < facts.size(); ++i) {
    Replay(facts[i], legacy);
    Replay(facts[i], now);
    if (facts[i].kind == Fact::Kind::kCost) ++costs[{facts[i].process, facts[i].dims}];
    if (i % 25'000 == 24'999) Compare(config, legacy, now, costs, absl::StrCat(name, " fact ", i));
  }
  Compare(config, legacy, now, costs, name + " end");
  std::printf("%s: %zu facts, %llu late\n", name.c_str(), facts.size(),
              static_cast<unsigned long long>(now.late()));
  // The frozen shard's state is format version 1: no cost counts.
  absl::StatusOr<std::unique_ptr<AggregateShard>> from_v1 =
      AggregateShard::Restore(config, legacy.Serialize());
  if (!from_v1.ok()) Fail(name + " restoring version 1: " + from_v1.status().ToString());
  Compare(config, legacy, **from_v1, {}, name + " restored from version 1");
  absl::StatusOr<std::unique_ptr<AggregateShard>> from_v2 =
      AggregateShard::Restore(config, now.Serialize());
  if (!from_v2.ok()) Fail(name + " restoring version 2: " + from_v2.status().ToString());
  Compare(config, legacy, **from_v2, costs, name + " restored from version 2");
}

}  // namespace
}  // namespace kpid::bench

int main(int argc, char** argv) {
  int64_t events = 400'000;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == "--events") events = std::atoll(argv[i + 1]);
  }
  using kpid::bench::Check;
  using kpid::bench::MakeFacts;
  size_t facts = 0;
  const auto long_cases = MakeFacts(kpid::bench::EngineConfig(), events, 11);
  Check(kpid::bench::EngineConfig(), long_cases, "long cases");
  facts += long_cases.size();
  const auto short_cases = MakeFacts(kpid::bench::ShortCasesConfig(), events, 12);
  Check(kpid::bench::ShortCasesConfig(), short_cases, "short cases");
  facts += short_cases.size();
  std::printf("OK: 2 streams, %zu facts, %llu checks\n", facts,
              static_cast<unsigned long long>(kpid::bench::checks));
  return 0;
}
