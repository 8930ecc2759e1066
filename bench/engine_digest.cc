// Prints a digest of everything the engine (CaseTracker + DimensionTable +
// AggregateShard) does with the simulated streams: every verdict, every
// fact in order, and the tracker's, dimension table's and shard's
// serialized state at the end. Two builds (or HandleBatch against Handle)
// behave the same on these streams when their digests match: how a change
// to the hot path is checked against the build before it, whose tracker
// engine_equivalence cannot compare with (it compares with the frozen copy
// in bench/baseline/, which reports sub-second deadlines later by design).
//
//   build/bench/engine_digest [--events N] [--batch N] [--always-hint] [--reuse]
//   engine: 808064 events, verdicts 8f1c..., 4281977 facts 5c0b..., state 2e41..., 98132 open
//   ...
//
// --batch N: N events per HandleBatch call (0, the default: Handle). The
// streams are those of bench/engine_fixture.cc with duplicates and fresh
// ids on old events mixed in, on the event-time clock (`clock: event`).
// --always-hint: HandleBatch holds steps back for PrefetchStep whatever the
// shard's size (CaseSink::WantsStepHints), so batches of the small streams
// take that path too; the "many dims" stream takes it anyway once its
// shard has AggregateShard::kHintedRecords records.
// --reuse: each event (each batch) is first serialized and decoded by
// EventDecoder into the same reused DecodedEvent objects (RefillDecoded), as
// the daemon's worker decodes into them and as engine_benchmark's
// BM_EngineNewWarmBatch feeds the engine; the digests must be those without
// it.
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/engine_fixture.h"
#include "daemon/aggregate/aggregate_shard.h"
#include "daemon/cases/case_tracker.h"
#include "daemon/cases/clock.h"
#include "daemon/cases/dimension_table.h"
#include "daemon/cases/stable_hash.h"

namespace kpid::bench {
namespace {

// Folds each fact, as a line, into a running digest, and passes it on.
class DigestSink final : public cases::CaseSink {
 public:
  DigestSink(cases::CaseSink* next, bool always_hint) : next_(next), always_hint_(always_hint) {}
  // The hints go on, so the tracker holds steps back as it would for the
  // aggregator alone (or always, with --always-hint).
  void PrefetchStep(const cases::CaseStep& step) override { next_->PrefetchStep(step); }
  bool WantsStepHints() const override { return always_hint_ || next_->WantsStepHints(); }
  // The step's facts are digested one by one (so builds before CaseStep
  // give the same digest), and the step goes on whole, as the tracker
  // reports it to the aggregator.
  void CaseStepped(const cases::CaseStep& step) override {
    cases::CaseSink* next = next_;
    next_ = &null_;
    CaseSink::CaseStepped(step);
    next_ = next;
    next_->CaseStepped(step);
  }
  void CaseStarted(int p, cases::DimsId d, absl::Time at) override {
    Add("started", p, d, T(at));
    next_->CaseStarted(p, d, at);
  }
  void StageEntered(int p, int s, cases::DimsId d, absl::Time at, bool rework) override {
    Add("entered", p, s, d, T(at), rework);
    next_->StageEntered(p, s, d, at, rework);
  }
  void StageExited(int p, int s, cases::DimsId d, absl::Time at, cases::ExitOutcome o,
                   absl::Duration cycle, bool met) override {
    Add("exited", p, s, d, T(at), static_cast<int>(o), absl::ToInt64Microseconds(cycle), met);
    next_->StageExited(p, s, d, at, o, cycle, met);
  }
  void Transition(int p, int from, int to, absl::Time at) override {
    Add("transition", p, from, to, T(at));
    next_->Transition(p, from, to, at);
  }
  void CaseCompleted(int p, cases::DimsId d, absl::Time at, double amount,
                     absl::Duration lead) override {
    Add("completed", p, d, T(at), amount, absl::ToInt64Microseconds(lead));
    next_->CaseCompleted(p, d, at, amount, lead);
  }
  void CaseFallout(int p, cases::DimsId d, absl::Time at) override {
    Add("fallout", p, d, T(at));
    next_->CaseFallout(p, d, at);
  }
  void CaseExpired(int p, int s, cases::DimsId d, absl::Time at) override {
    Add("expired", p, s, d, T(at));
    next_->CaseExpired(p, s, d, at);
  }
  void Cost(int p, cases::DimsId d, absl::Time at, double amount) override {
    Add("cost", p, d, T(at), amount);
    next_->Cost(p, d, at, amount);
  }
  void Feedback(int p, cases::DimsId d, absl::Time at, double score) override {
    Add("feedback", p, d, T(at), score);
    next_->Feedback(p, d, at, score);
  }
  void SlaBreached(int p, int s, cases::DimsId d, absl::Time deadline) override {
    Add("breach", p, s, d, T(deadline));
    next_->SlaBreached(p, s, d, deadline);
  }
  void BacklogChanged(int p, int s, cases::DimsId d, int open, int over) override {
    Add("backlog", p, s, d, open, over);
    next_->BacklogChanged(p, s, d, open, over);
  }

  template <typename... Args>
  void Add(const Args&... args) {
    digest_ = cases::StableHash64(absl::StrCat(args...), digest_);
    ++count_;
  }
  uint64_t digest() const { return digest_; }
  uint64_t count() const { return count_; }

 private:
  static int64_t T(absl::Time t) { return absl::ToUnixMicros(t); }
  NullSink null_;
  cases::CaseSink* next_;
  const bool always_hint_;
  uint64_t digest_ = 0;
  uint64_t count_ = 0;
};

void Digest(const char* name, const model::Config& config, int64_t count, uint64_t seed,
            size_t batch_size, bool always_hint, bool reuse) {
  cases::DimensionTable dims(config);
  aggregate::AggregateShard shard(config);
  DigestSink sink(&shard, always_hint);
  cases::WatermarkBoard board(1);
  cases::EventTimeClock clock(&board, 0);
  cases::CaseTracker tracker(
      {.config = &config, .clock = &clock, .sink = &sink, .dimensions = &dims});
  std::vector<ingest::DecodedEvent> events = SimulateEvents(config, seed, count);
  std::mt19937_64 rng(seed);
  std::vector<ingest::DecodedEvent> stream;
  stream.reserve(events.size() + events.size() / 100);
  for (size_t i = 0; i < events.size(); ++i) {
    stream.push_back(events[i]);
    const uint64_t r = rng() % 1000;
    if (r < 5 && i > 0) {
      stream.push_back(events[rng() % i]);  // a duplicate, or anew past the horizon
    } else if (r < 8 && i > 0) {
      stream.push_back(events[rng() % i]);  // same stage, closed case, unknown case...
      stream.back().proto.set_event_id(absl::StrCat("x-", i));
    }
  }
  events.clear();
  // Apart from the facts: a batch's verdicts come after all its facts.
  uint64_t verdicts_digest = 0;
  auto verdict = [&](const ingest::Verdict& v) {
    verdicts_digest = cases::StableHash64(
        absl::StrCat(static_cast<int>(v.kind), " ", static_cast<int>(v.reason)), verdicts_digest);
  };
  std::vector<ingest::DecodedEvent> reused(reuse ? std::max<size_t>(batch_size, 1) : 0);
  ingest::EventDecoder decoder(config);
  std::string value;
  // The event to hand the engine for stream[i], the k-th of its batch.
  auto input = [&](size_t i, size_t k) -> const ingest::DecodedEvent& {
    if (!reuse) return stream[i];
    value.clear();
    if (!stream[i].proto.AppendToString(&value)) std::abort();
    RefillDecoded(decoder, value, &reused[k]);
    return reused[k];
  };
  if (batch_size == 0) {
    for (size_t i = 0; i < stream.size(); ++i) verdict(tracker.Handle(input(i, 0)));
  } else {
    std::vector<const ingest::DecodedEvent*> batch;
    std::vector<ingest::Verdict> verdicts(batch_size);
    for (size_t begin = 0; begin < stream.size(); begin += batch_size) {
      const size_t n = std::min(batch_size, stream.size() - begin);
      batch.clear();
      for (size_t i = 0; i < n; ++i) batch.push_back(&input(begin + i, i));
      tracker.HandleBatch(batch, verdicts.data());
      for (size_t i = 0; i < n; ++i) verdict(verdicts[i]);
    }
  }
  const uint64_t facts = sink.count();
  uint64_t state = cases::StableHash64(tracker.Serialize());
  state = cases::StableHash64(dims.Serialize(), state);
  state = cases::StableHash64(shard.Serialize(), state);
  std::printf("%s: %zu events, verdicts %016" PRIx64 ", %" PRIu64 " facts %016" PRIx64
              ", state %016" PRIx64 ", %" PRIu64 " open\n",
              name, stream.size(), verdicts_digest, facts, sink.digest(), state,
              tracker.open_cases());
}

}  // namespace
}  // namespace kpid::bench

int main(int argc, char** argv) {
  int64_t events = 800'000;
  size_t batch = 0;
  bool always_hint = false;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == "--events") events = std::atoll(argv[i + 1]);
    if (std::string(argv[i]) == "--batch") batch = static_cast<size_t>(std::atoll(argv[i + 1]));
  }
  bool reuse = false;
  for (int i = 1; i < argc; ++i) {
    always_hint = always_hint || std::string(argv[i]) == "--always-hint";
    reuse = reuse || std::string(argv[i]) == "--reuse";
  }
  using kpid::bench::Digest;
  Digest("engine", kpid::bench::EngineConfig(), events, 11, batch, always_hint, reuse);
  Digest("short cases", kpid::bench::ShortCasesConfig(), events, 12, batch, always_hint, reuse);
  kpid::model::Config tight = kpid::bench::ShortCasesConfig();
  tight.case_ttl = absl::Minutes(20);
  tight.dedup_horizon = absl::Minutes(3);
  tight.max_dedup_ids = 1000;
  Digest("ttl 20m, horizon 3m, 1000 ids", tight, events, 13, batch, always_hint, reuse);
  // Last, so the lines above compare with builds before it.
  Digest("many dims", kpid::bench::ManyDimsConfig(), events, 14, batch, always_hint, reuse);
  return 0;
}
