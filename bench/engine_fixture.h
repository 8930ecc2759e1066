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

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "daemon/aggregate/aggregate_shard.h"
#include "daemon/cases/case_sink.h"
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
// EngineConfig with 30 x 30 values of [region, channel] per process: ~1800
// dims records (~100 MB) instead of ~20, for the aggregator's cache misses.
const model::Config& ManyDimsConfig();
// bench/e2e_ingest.py's config (lead_to_cash alone, 3,600 arrivals per hour,
// `clock: event`), and the same with its --compress-time 150000: every stage
// time and SLA 150,000 times shorter and arrivals as many times more
// frequent, so the same mix of events spans seconds of event time instead
// of days (what e2e_ingest.py calls the live-like density).
const model::Config& E2EConfig();
const model::Config& E2ELiveConfig();

// Events as a fetched Kafka batch holds them: each one's binary protobuf,
// back to back in one buffer.
class WireEvents {
 public:
  explicit WireEvents(const std::vector<ingest::DecodedEvent>& events);
  absl::string_view operator[](size_t i) const {
    return absl::string_view(bytes_).substr(starts_[i], starts_[i + 1] - starts_[i]);
  }

 private:
  std::string bytes_;
  std::vector<size_t> starts_;  // events.size() + 1
};

// Decodes `value` into `to` with the daemon's own decoder, as the worker
// decodes each run of messages into the same few reused events
// (kafka_ingest.cc), so the engine finds them in the cache: a benchmark
// refilling a reused batch this way hands the engine its input as the
// daemon does, from bytes as compact as a fetched batch. Aborts on a
// rejection (the simulated events are valid).
void RefillDecoded(ingest::EventDecoder& decoder, absl::string_view value,
                   ingest::DecodedEvent* to);

// The first `count` events of the seeded simulation of every process of
// `config`, decoded by EventDecoder (RefillDecoded). Each event owns its
// strings: ~0.5 KB per event.
std::vector<ingest::DecodedEvent> SimulateEvents(const model::Config& config, uint64_t seed,
                                                 int64_t count);

// Gives `shard` (and `dims`) `series_per_process` dimension combinations per
// process of `config`, each with facts in every stage over the last two days
// before `now`, so every window and total of every series has values to
// render: what a scrape of that many series costs.
void FillSeries(const model::Config& config, int series_per_process, absl::Time now,
                cases::DimensionTable* dims, aggregate::AggregateShard* shard);

// A sink that drops every fact: the tracker's own cost, without the aggregator.
class NullSink final : public cases::CaseSink {
 public:
  void CaseStarted(int, cases::DimsId, absl::Time) override {}
  void StageEntered(int, int, cases::DimsId, absl::Time, bool) override {}
  void StageExited(int, int, cases::DimsId, absl::Time, cases::ExitOutcome, absl::Duration,
                   bool) override {}
  void Transition(int, int, int, absl::Time) override {}
  void CaseCompleted(int, cases::DimsId, absl::Time, double, absl::Duration) override {}
  void CaseFallout(int, cases::DimsId, absl::Time) override {}
  void CaseExpired(int, int, cases::DimsId, absl::Time) override {}
  void Cost(int, cases::DimsId, absl::Time, double) override {}
  void Feedback(int, cases::DimsId, absl::Time, double) override {}
  void SlaBreached(int, int, cases::DimsId, absl::Time) override {}
  void BacklogChanged(int, int, cases::DimsId, int, int) override {}
  void CaseStepped(const cases::CaseStep&) override {}
};

// One CaseSink call, recorded so that the aggregator can be replayed alone.
struct Fact {
  enum class Kind : uint8_t {
    kStep,  // CaseStepped: `step`, at `at` (which replaces step.at)
    kStarted,
    kEntered,
    kExited,
    kTransition,
    kCompleted,
    kFallout,
    kExpired,
    kCost,
    kFeedback,
    kBreached,
    kBacklog,
  };
  Kind kind = Kind::kStarted;
  bool flag = false;  // rework, sla_met
  cases::ExitOutcome outcome = cases::ExitOutcome::kAdvanced;
  int process = 0;
  int stage = 0;
  int to_stage = 0;  // Transition only
  int open_delta = 0;
  int over_sla_delta = 0;
  cases::DimsId dims = 0;
  absl::Time at = absl::UnixEpoch();
  absl::Duration duration = absl::ZeroDuration();  // cycle or lead time
  double amount = 0;                               // revenue, cost, score
  cases::CaseStep step = {};
};

// Appends every call to `out` while recording.
class FactRecorder final : public cases::CaseSink {
 public:
  explicit FactRecorder(std::vector<Fact>* out) : out_(out) {}
  void set_recording(bool on) { recording_ = on; }

  // A step is recorded whole, as the tracker reports it.
  void CaseStepped(const cases::CaseStep& step) override;
  void CaseStarted(int p, cases::DimsId d, absl::Time at) override;
  void StageEntered(int p, int s, cases::DimsId d, absl::Time at, bool rework) override;
  void StageExited(int p, int s, cases::DimsId d, absl::Time at, cases::ExitOutcome outcome,
                   absl::Duration cycle, bool sla_met) override;
  void Transition(int p, int from, int to, absl::Time at) override;
  void CaseCompleted(int p, cases::DimsId d, absl::Time at, double amount,
                     absl::Duration lead) override;
  void CaseFallout(int p, cases::DimsId d, absl::Time at) override;
  void CaseExpired(int p, int s, cases::DimsId d, absl::Time at) override;
  void Cost(int p, cases::DimsId d, absl::Time at, double amount) override;
  void Feedback(int p, cases::DimsId d, absl::Time at, double score) override;
  void SlaBreached(int p, int s, cases::DimsId d, absl::Time deadline) override;
  void BacklogChanged(int p, int s, cases::DimsId d, int open, int over) override;

 private:
  void Add(const Fact& f) {
    if (recording_) out_->push_back(f);
  }
  std::vector<Fact>* out_;
  bool recording_ = false;
};

// Makes the call `f` records.
void Replay(const Fact& f, cases::CaseSink& sink);

}  // namespace kpid::bench
