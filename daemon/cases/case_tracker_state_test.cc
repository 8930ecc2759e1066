// Serialize / Restore of a worker's state: CaseTracker + DimensionTable
// (+ AggregateShard, whose own format is tested in daemon/aggregate).
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "daemon/aggregate/aggregate_shard.h"
#include "daemon/cases/case_tracker.h"
#include "daemon/ingest/event_decoder.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kpid::cases {
namespace {

using aggregate::AggregateShard;
using ingest::Verdict;
using kpid::v1::ProcessEvent;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr int64_t kT0 = 1772323200;  // 2026-03-01T00:00:00Z; times below are seconds after it

std::string At(absl::Time t) { return absl::StrCat("@", absl::ToUnixSeconds(t) - kT0); }

// Records every fact as a line and passes it on to the worker's shard.
class TeeSink : public CaseSink {
 public:
  void CaseStarted(int p, DimsId d, absl::Time at) override {
    Add("started p", p, " d", d, " ", At(at));
    shard->CaseStarted(p, d, at);
  }
  void StageEntered(int p, int s, DimsId d, absl::Time at, bool rework) override {
    Add("entered p", p, " s", s, " d", d, " ", At(at), rework ? " rework" : "");
    shard->StageEntered(p, s, d, at, rework);
  }
  void StageExited(int p, int s, DimsId d, absl::Time at, ExitOutcome o, absl::Duration cycle,
                   bool met) override {
    Add("exited p", p, " s", s, " d", d, " ", At(at), " ", static_cast<int>(o), " ",
        absl::ToInt64Seconds(cycle), met ? " met" : " missed");
    shard->StageExited(p, s, d, at, o, cycle, met);
  }
  void Transition(int p, int from, int to, absl::Time at) override {
    Add("transition p", p, " ", from, "->", to, " ", At(at));
    shard->Transition(p, from, to, at);
  }
  void CaseCompleted(int p, DimsId d, absl::Time at, double amount, absl::Duration lead) override {
    Add("completed p", p, " d", d, " ", At(at), " ", amount, " ", absl::ToInt64Seconds(lead));
    shard->CaseCompleted(p, d, at, amount, lead);
  }
  void CaseFallout(int p, DimsId d, absl::Time at) override {
    Add("fallout p", p, " d", d, " ", At(at));
    shard->CaseFallout(p, d, at);
  }
  void CaseExpired(int p, int s, DimsId d, absl::Time at) override {
    Add("expired p", p, " s", s, " d", d, " ", At(at));
    shard->CaseExpired(p, s, d, at);
  }
  void Cost(int p, DimsId d, absl::Time at, double amount) override {
    Add("cost p", p, " d", d, " ", At(at), " ", amount);
    shard->Cost(p, d, at, amount);
  }
  void Feedback(int p, DimsId d, absl::Time at, double score) override {
    Add("feedback p", p, " d", d, " ", At(at), " ", score);
    shard->Feedback(p, d, at, score);
  }
  void SlaBreached(int p, int s, DimsId d, absl::Time deadline) override {
    Add("breach p", p, " s", s, " d", d, " ", At(deadline));
    shard->SlaBreached(p, s, d, deadline);
  }
  void BacklogChanged(int p, int s, DimsId d, int open, int over) override {
    Add("backlog p", p, " s", s, " d", d, " ", open, " ", over);
    shard->BacklogChanged(p, s, d, open, over);
  }

  AggregateShard* shard = nullptr;
  std::vector<std::string> facts;

 private:
  template <typename... Args>
  void Add(const Args&... args) {
    facts.push_back(absl::StrCat(args...));
  }
};

constexpr char kConfig[] = R"(
clock: event
windows: [1h, 24h]
case_ttl: 2h
dedup_horizon: 1h
dimensions: {names: [region], max_series_per_process: 100}
processes:
  - id: sales
    stages:
      - {id: lead, sla: 1h}
      - {id: demo, sla: 2h}
      - {id: quote, sla: 1d}
  - id: support
    stages:
      - {id: triage, sla: 30m}
)";

// One worker: tracker, dimension table, shard, clock; restorable.
struct Worker {
  explicit Worker(const model::Config& config)
      : config(config),
        dims(std::make_unique<DimensionTable>(config)),
        shard(std::make_unique<AggregateShard>(config)) {
    clock.Set(absl::FromUnixSeconds(kT0));
    sink.shard = shard.get();
    tracker = std::make_unique<CaseTracker>(options());
  }
  CaseTracker::Options options() {
    return {.config = &config,
            .clock = &clock,
            .sink = &sink,
            .dimensions = dims.get(),
            .max_open_cases = max_open_cases};
  }
  // The state of `from`, restored into this worker's fresh objects.
  void RestoreFrom(const Worker& from) {
    const std::string tracker_state = from.tracker->Serialize();
    auto restored_dims = DimensionTable::Restore(config, from.dims->Serialize());
    ASSERT_TRUE(restored_dims.ok()) << restored_dims.status();
    auto restored_shard = AggregateShard::Restore(config, from.shard->Serialize());
    ASSERT_TRUE(restored_shard.ok()) << restored_shard.status();
    dims = *std::move(restored_dims);
    shard = *std::move(restored_shard);
    sink.shard = shard.get();
    clock.Set(from.clock.Now());
    auto restored = CaseTracker::Restore(options(), tracker_state);
    ASSERT_TRUE(restored.ok()) << restored.status();
    tracker = *std::move(restored);
  }

  const model::Config& config;
  size_t max_open_cases = 0;  // for the next tracker built; 0: the config's
  ManualClock clock;
  std::unique_ptr<DimensionTable> dims;
  std::unique_ptr<AggregateShard> shard;
  TeeSink sink;
  std::unique_ptr<CaseTracker> tracker;
};

// An event or a tick (kind UNSPECIFIED: Tick at `t`).
struct Step {
  ProcessEvent::Kind kind;
  std::string case_id;
  std::string stage;
  int64_t t;
  std::string event_id = "";
  std::string process = "sales";
  std::string region = "emea";
  double amount = 0;
};

class CaseTrackerStateTest : public ::testing::Test {
 protected:
  CaseTrackerStateTest() : config_(*model::ParseConfig(kConfig, "t.yaml")), decoder_(config_) {}

  // Runs the steps on `w`; returns one line per step: the verdict and the
  // facts it caused.
  std::vector<std::string> Run(Worker& w, const std::vector<Step>& steps) {
    std::vector<std::string> lines;
    for (const Step& step : steps) {
      w.sink.facts.clear();
      std::string verdict = "tick";
      const absl::Time at = absl::FromUnixSeconds(kT0 + step.t);
      if (at > w.clock.Now()) w.clock.Set(at);
      if (step.kind == ProcessEvent::KIND_UNSPECIFIED) {
        w.tracker->Tick(absl::Now());
      } else {
        ProcessEvent e;
        e.set_event_id(step.event_id.empty() ? absl::StrCat("ev-", step.case_id, "-", step.t)
                                             : step.event_id);
        e.set_process(step.process);
        e.set_case_id(step.case_id);
        e.set_kind(step.kind);
        e.set_stage(step.stage);
        e.set_amount(step.amount);
        e.set_score(step.amount);
        e.mutable_occurred_at()->set_seconds(kT0 + step.t);
        if (!step.region.empty()) (*e.mutable_attributes())["region"] = step.region;
        ingest::DecodedEvent decoded;
        auto rejection = decoder_.Decode(e.SerializeAsString(), false, &decoded);
        EXPECT_FALSE(rejection.has_value()) << rejection->detail;
        const Verdict v = w.tracker->Handle(decoded);
        verdict =
            absl::StrCat("verdict ", static_cast<int>(v.kind), " ", static_cast<int>(v.reason));
      }
      lines.push_back(absl::StrCat(verdict, " | ", absl::StrJoin(w.sink.facts, " | ")));
    }
    return lines;
  }

  model::Config config_;
  ingest::EventDecoder decoder_;
};

const std::string kLongId = "a-case-id-longer-than-23-bytes";  // pooled, not inline

// Before the split. Stage SLAs: lead 1h, demo 2h, triage 30m; case_ttl 2h.
std::vector<Step> StreamA() {
  using K = ProcessEvent;
  return {
      {K::STAGE_ENTERED, "c1", "lead", 0},
      {K::STAGE_ENTERED, "c2", "lead", 10, "", "sales", "amer"},
      {K::STAGE_ENTERED, "c3", "lead", 20, "", "sales", "apac"},
      {K::STAGE_ENTERED, "c1", "demo", 100},     // c1: demo deadline 7300, expiry 7300
      {K::STAGE_ENTERED, kLongId, "lead", 110},  // deadline 3710, expiry 7310
      {K::CASE_COMPLETED, "c3", "", 200, "", "sales", "", 5},
      {K::STAGE_ENTERED, "c4", "lead", 300},
      {K::CASE_FALLOUT, "c4", "", 400},                        // closed at now = 400
      {K::STAGE_ENTERED, "t1", "triage", 500, "", "support"},  // deadline 2300
      {K::COST, "c3", "", 600, "", "sales", "", 7},            // closed case: its dims (apac)
      {K::STAGE_ENTERED, "c2", "demo", 700, "dup-1"},          // deadline 7900
      {K::STAGE_ENTERED, "c5", "lead", 1000},
      {K::STAGE_ENTERED, "c5", "demo", 1010},
      {K::STAGE_ENTERED, "c5", "lead", 1020},  // rework; lead deadline 4620
      {K::KIND_UNSPECIFIED, "", "", 1100},
  };
}

// After the split.
std::vector<Step> StreamB() {
  using K = ProcessEvent;
  return {
      {K::STAGE_ENTERED, "c2", "demo", 700, "dup-1"},     // the same event id: duplicate
      {K::STAGE_ENTERED, "c4", "lead", 1200},             // closed at 400: case_closed
      {K::FEEDBACK, "c3", "", 1300, "", "sales", "", 9},  // closed case's dims (apac)
      {K::KIND_UNSPECIFIED, "", "", 2400},                // t1's deadline (2300) passed: breach
      {K::KIND_UNSPECIFIED, "", "", 3800},                // the long id's (3710)
      {K::STAGE_ENTERED, "c4", "lead", 4100},             // closed at 400 + 1h horizon: a new case
      {K::STAGE_ENTERED, "c5", "demo", 5000},  // lead breached at 4620 first; demo is rework
      {K::KIND_UNSPECIFIED, "", "", 8000},     // c1, c2 breach and expire; the long id, t1 expire
      {K::STAGE_ENTERED, "c1", "lead", 8001},  // closed by expiry: case_closed
      {K::CASE_COMPLETED, "c5", "", 8100, "", "sales", "", 100},
  };
}

TEST_F(CaseTrackerStateTest, RestoredWorkerContinuesExactlyAsTheOriginal) {
  Worker original(config_), before_split(config_), restored(config_);
  Run(original, StreamA());
  Run(before_split, StreamA());
  restored.RestoreFrom(before_split);
  EXPECT_EQ(restored.tracker->open_cases(), before_split.tracker->open_cases());
  EXPECT_EQ(restored.tracker->restore_dropped(), 0u);

  const std::vector<std::string> expected = Run(original, StreamB());
  const std::vector<std::string> got = Run(restored, StreamB());
  EXPECT_EQ(got, expected);
  // The scenario did what it is meant to (so equality above means something):
  ASSERT_EQ(expected.size(), 10u);
  EXPECT_THAT(expected[0], HasSubstr("verdict 1"));               // kDuplicate
  EXPECT_THAT(expected[1], HasSubstr("verdict 2"));               // kRejected (case_closed)
  EXPECT_THAT(expected[2], HasSubstr("feedback p0 d4 @1300 9"));  // apac: DimsId 4
  EXPECT_THAT(expected[3], HasSubstr("breach p1 s0 d2 @2300"));
  EXPECT_THAT(expected[4], HasSubstr("breach p0 s0 d2 @3710"));
  EXPECT_THAT(expected[5], HasSubstr("started p0 d2 @4100"));
  EXPECT_THAT(expected[6], HasSubstr("breach p0 s0 d2 @4620"));
  EXPECT_THAT(expected[6], HasSubstr("entered p0 s1 d2 @5000 rework"));
  EXPECT_THAT(expected[7], HasSubstr("expired p0 s1 d2 @7300"));
  EXPECT_THAT(expected[7], HasSubstr("expired p1 s0 d2 @7700"));
  EXPECT_THAT(expected[8], HasSubstr("verdict 2"));

  // Every aggregate read agrees too.
  const absl::Time end = absl::FromUnixSeconds(kT0 + 8100);
  for (int p = 0; p < 2; ++p) {
    EXPECT_EQ(restored.shard->ReadAllDimsTotals(p), original.shard->ReadAllDimsTotals(p)) << p;
    EXPECT_EQ(restored.shard->ListDims(p), original.shard->ListDims(p));
    for (DimsId d : original.shard->ListDims(p)) {
      EXPECT_EQ(restored.shard->ReadSeriesTotals(p, d), original.shard->ReadSeriesTotals(p, d));
      EXPECT_EQ(restored.dims->Values(p, d), original.dims->Values(p, d));
    }
    for (int w = 0; w < 2; ++w) {
      EXPECT_EQ(restored.shard->ReadAllDimsWindow(p, restored.shard->Resolve(w, end)),
                original.shard->ReadAllDimsWindow(p, original.shard->Resolve(w, end)));
      for (int s = 0; s < original.shard->stage_count(p); ++s) {
        EXPECT_EQ(restored.shard->ReadCycleTimes(p, s, w, end).Quantile(0.5),
                  original.shard->ReadCycleTimes(p, s, w, end).Quantile(0.5));
      }
    }
  }
  // And what the trackers publish.
  const auto a = original.tracker->PublishedView();
  const auto b = restored.tracker->PublishedView();
  EXPECT_EQ(a->oldest_entered, b->oldest_entered);
  EXPECT_EQ(a->breaching.size(), b->breaching.size());
}

TEST_F(CaseTrackerStateTest, RestoredOpenCasesArePublishedWithTheirIds) {
  Worker w(config_), restored(config_);
  Run(w, StreamA());
  restored.RestoreFrom(w);
  // At 3800: the long id (lead since 110, deadline 3710) and t1 (triage
  // since 500, deadline 2300) are past; c5 (lead since 1020, deadline 4620)
  // and c1, c2 (demo, 7300 and 7900) are not. Oldest entry first.
  Run(restored, {{ProcessEvent::KIND_UNSPECIFIED, "", "", 3800}});
  const auto view = restored.tracker->PublishedView();
  ASSERT_EQ(view->breaching.size(), 2u);
  EXPECT_EQ(view->breaching[0].case_id, kLongId);
  EXPECT_EQ(view->breaching[0].deadline, absl::FromUnixSeconds(kT0 + 3710));
  EXPECT_EQ(view->breaching[1].case_id, "t1");
  EXPECT_EQ(view->breaching[1].process, 1);
  EXPECT_EQ(view->breaching[1].deadline, absl::FromUnixSeconds(kT0 + 2300));
  EXPECT_EQ(view->oldest_entered[0][0], absl::FromUnixSeconds(kT0 + 110));  // lead
  EXPECT_EQ(view->oldest_entered[0][1], absl::FromUnixSeconds(kT0 + 100));  // demo: c1
}

// Restored under a lower bound: every case is kept (Restore reports no
// facts); the next new case evicts down to the bound. Eviction counts are
// not part of the state.
TEST_F(CaseTrackerStateTest, RestoredAboveTheBoundTheNextNewCaseEvictsDownToIt) {
  Worker w(config_), bounded(config_), again(config_);
  Run(w, {{ProcessEvent::STAGE_ENTERED, "c0", "lead", 0},
          {ProcessEvent::STAGE_ENTERED, "c1", "lead", 10},
          {ProcessEvent::STAGE_ENTERED, "c2", "lead", 20},
          {ProcessEvent::STAGE_ENTERED, "c3", "lead", 30}});
  bounded.max_open_cases = 2;
  bounded.RestoreFrom(w);
  EXPECT_EQ(bounded.tracker->open_cases(), 4u);
  EXPECT_EQ(bounded.tracker->evicted(), 0u);
  // n at 40: 4 open >= 2, evict c0 (0), 3 >= 2, c1 (10), 2 >= 2, c2 (20);
  // then n opens: c3 and n, 2 open.
  EXPECT_THAT(Run(bounded, {{ProcessEvent::STAGE_ENTERED, "n", "lead", 40}}),
              ElementsAre("verdict 0 0 | expired p0 s0 d2 @40 | backlog p0 s0 d2 -1 0"
                          " | expired p0 s0 d2 @40 | backlog p0 s0 d2 -1 0"
                          " | expired p0 s0 d2 @40 | backlog p0 s0 d2 -1 0"
                          " | started p0 d2 @40 | entered p0 s0 d2 @40"
                          " | backlog p0 s0 d2 1 0"));
  EXPECT_EQ(bounded.tracker->open_cases(), 2u);
  EXPECT_EQ(bounded.tracker->evicted(), 3u);
  EXPECT_EQ(bounded.tracker->evicted(0), 3u);
  // The evicted ids are closed, and stay so across a restore; the count restarts.
  again.max_open_cases = 2;
  again.RestoreFrom(bounded);
  EXPECT_EQ(again.tracker->evicted(), 0u);
  EXPECT_EQ(again.tracker->open_cases(), 2u);
  const std::vector<std::string> rejected =
      Run(again, {{ProcessEvent::STAGE_ENTERED, "c1", "demo", 50}});
  EXPECT_THAT(rejected,
              ElementsAre(absl::StrCat("verdict ", static_cast<int>(Verdict::Kind::kRejected), " ",
                                       static_cast<int>(model::RejectReason::kCaseClosed), " | ")));
}

TEST_F(CaseTrackerStateTest, UnknownVersionIsRejected) {
  Worker w(config_);
  Run(w, StreamA());
  std::string state = w.tracker->Serialize();
  ASSERT_EQ(state[4], '\x01');  // version 1 follows "KPCT"
  state[4] = '\x02';
  auto restored = CaseTracker::Restore(w.options(), state);
  EXPECT_EQ(restored.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(restored.status().message(), HasSubstr("version 2"));

  std::string dims = w.dims->Serialize();
  dims[4] = '\x07';
  EXPECT_EQ(DimensionTable::Restore(config_, dims).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(CaseTracker::Restore(w.options(), "not a state").status().code(),
            absl::StatusCode::kInvalidArgument);
}

// Every prefix of a valid state and random byte flips: an error or a
// usable tracker, never a crash, an overflow or a huge allocation (ASan and
// UBSan in CI).
TEST_F(CaseTrackerStateTest, DamagedStateGivesAnErrorNeverACrash) {
  Worker w(config_);
  Run(w, StreamA());
  const std::string tracker_state = w.tracker->Serialize();
  const std::string dims_state = w.dims->Serialize();
  auto use = [&](const CaseTracker& t) {
    // A restored tracker must be consistent enough to serialize again.
    EXPECT_FALSE(t.Serialize().empty());
  };
  // One worker's dims and sink serve every attempt (building a shard is
  // the slow part); the tracker is what is restored.
  Worker fresh(config_);
  fresh.dims = *DimensionTable::Restore(config_, dims_state);
  for (size_t n = 0; n < tracker_state.size(); ++n) {
    auto restored = CaseTracker::Restore(fresh.options(), tracker_state.substr(0, n));
    EXPECT_FALSE(restored.ok()) << n;
  }
  for (size_t n = 0; n < dims_state.size(); ++n) {
    EXPECT_FALSE(DimensionTable::Restore(config_, dims_state.substr(0, n)).ok()) << n;
  }
  std::mt19937 rng(42);
  int ok = 0;
  for (int i = 0; i < 3000; ++i) {
    std::string damaged = i % 2 ? tracker_state : dims_state;
    const int flips = 1 + static_cast<int>(rng() % 3);
    for (int f = 0; f < flips; ++f) {
      damaged[rng() % damaged.size()] ^= static_cast<char>(1 + rng() % 255);
    }
    if (i % 2) {
      auto restored = CaseTracker::Restore(fresh.options(), damaged);
      if (restored.ok()) {
        ++ok;
        use(**restored);
        // Events and timers run on it.
        fresh.tracker = *std::move(restored);
        Run(fresh, StreamB());
      }
    } else {
      auto restored = DimensionTable::Restore(config_, damaged);
      if (restored.ok()) ++ok;
    }
  }
  // Flipped times, ids and dims still parse: some restores succeed.
  EXPECT_GT(ok, 0);
}

TEST_F(CaseTrackerStateTest, ChangedConfigDropsWhatNoLongerExists) {
  Worker w(config_);
  Run(w, StreamA());
  // support is gone; sales lost demo and gained a stage; processes reordered.
  const model::Config changed = *model::ParseConfig(R"(
clock: event
windows: [1h, 24h]
case_ttl: 2h
dedup_horizon: 1h
dimensions: {names: [channel, region], max_series_per_process: 100}
processes:
  - id: billing
    stages:
      - {id: invoice, sla: 1h}
  - id: sales
    stages:
      - {id: quote, sla: 1d}
      - {id: lead, sla: 1h}
      - {id: won, sla: 1h}
)",
                                                    "t2.yaml");
  uint64_t dims_dropped = 0;
  auto dims = DimensionTable::Restore(changed, w.dims->Serialize(), &dims_dropped);
  ASSERT_TRUE(dims.ok()) << dims.status();
  // support had 2 combinations: empty and __other__, and emea: 3.
  EXPECT_EQ(dims_dropped, 3u);
  // sales (now process 1): DimsIds keep their meaning; region moved to the
  // second name, channel is new (empty).
  EXPECT_EQ((*dims)->Values(1, 2), (std::vector<std::string>{"", "emea"}));
  EXPECT_EQ((*dims)->Values(1, 3), (std::vector<std::string>{"", "amer"}));
  EXPECT_EQ((*dims)->Values(1, 4), (std::vector<std::string>{"", "apac"}));
  EXPECT_EQ((*dims)->Values(1, 1), (std::vector<std::string>{"__other__", "__other__"}));
  EXPECT_EQ((*dims)->Size(0), 2u);  // billing: only its own fixed combinations

  ManualClock clock(w.clock.Now());
  TeeSink sink;
  AggregateShard shard(changed);
  sink.shard = &shard;
  auto restored = CaseTracker::Restore(
      {.config = &changed, .clock = &clock, .sink = &sink, .dimensions = dims->get()},
      w.tracker->Serialize());
  ASSERT_TRUE(restored.ok()) << restored.status();
  // Open at the split: c1 (demo: gone), c2 (demo: gone), the long id (lead),
  // t1 (support: gone), c5 (lead). Closed: c3, c4 (sales: kept). So 3
  // dropped, 2 open.
  EXPECT_EQ((*restored)->restore_dropped(), 3u);
  EXPECT_EQ((*restored)->open_cases(), 2u);
  (*restored)->Tick(absl::Now());
  const auto view = (*restored)->PublishedView();
  EXPECT_EQ(view->oldest_entered[1][1], absl::FromUnixSeconds(kT0 + 110));  // lead: the long id
  EXPECT_FALSE(view->oldest_entered[1][0].has_value());                     // quote
}

}  // namespace
}  // namespace kpid::cases
