#include "daemon/cases/case_tracker.h"

#include <algorithm>
#include <deque>
#include <map>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "daemon/cases/stable_hash.h"
#include "daemon/ingest/event_decoder.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kpid::cases {
namespace {

using ingest::Verdict;
using kpid::v1::ProcessEvent;
using model::RejectReason;
using ::testing::ElementsAre;
using ::testing::IsEmpty;

// 2026-03-01T00:00:00Z; test times are seconds after it.
constexpr int64_t kT0 = 1772323200;

std::string At(absl::Time t) { return absl::StrCat("@", absl::ToUnixSeconds(t) - kT0); }
std::string Secs(absl::Duration d) { return absl::StrCat(absl::ToDoubleSeconds(d), "s"); }

// Writes every fact as one line, so a test states the expected facts in order.
class RecordingSink : public CaseSink {
 public:
  void CaseStarted(int p, DimsId d, absl::Time at) override {
    Add("started p", p, " d", d, " ", At(at));
  }
  void StageEntered(int p, int s, DimsId d, absl::Time at, bool rework) override {
    Add("entered p", p, " s", s, " d", d, " ", At(at), rework ? " rework" : "");
  }
  void StageExited(int p, int s, DimsId d, absl::Time at, ExitOutcome o, absl::Duration cycle,
                   bool met) override {
    Add("exited p", p, " s", s, " d", d, " ", At(at),
        o == ExitOutcome::kAdvanced ? " advanced " : " fallout ", Secs(cycle),
        met ? " met" : " missed");
  }
  void Transition(int p, int from, int to, absl::Time at) override {
    Add("transition p", p, " ", from, "->", to, " ", At(at));
  }
  void CaseCompleted(int p, DimsId d, absl::Time at, double amount, absl::Duration lead) override {
    Add("completed p", p, " d", d, " ", At(at), " amount=", amount, " lead=", Secs(lead));
  }
  void CaseFallout(int p, DimsId d, absl::Time at) override {
    Add("fallout p", p, " d", d, " ", At(at));
  }
  void CaseExpired(int p, int s, DimsId d, absl::Time at) override {
    Add("expired p", p, " s", s, " d", d, " ", At(at));
  }
  void Cost(int p, DimsId d, absl::Time at, double amount) override {
    Add("cost p", p, " d", d, " ", At(at), " ", amount);
  }
  void Feedback(int p, DimsId d, absl::Time at, double score) override {
    Add("feedback p", p, " d", d, " ", At(at), " ", score);
  }
  void SlaBreached(int p, int s, DimsId d, absl::Time deadline) override {
    Add("breach p", p, " s", s, " d", d, " ", At(deadline));
  }
  void BacklogChanged(int p, int s, DimsId d, int open, int over) override {
    backlog[{p, s, d}] += open;
    over_sla[{p, s, d}] += over;
  }
  bool WantsStepHints() const override { return wants_hints; }
  void PrefetchStep(const CaseStep&) override { ++hints; }

  // The facts since the last call.
  std::vector<std::string> Take() { return std::exchange(facts, {}); }

  std::vector<std::string> facts;
  std::map<std::tuple<int, int, DimsId>, int> backlog, over_sla;
  bool wants_hints = false;
  int hints = 0;

 private:
  template <typename... Args>
  void Add(const Args&... args) {
    facts.push_back(absl::StrCat(args...));
  }
};

constexpr char kConfig[] = R"(
clock: event
case_ttl: 10d
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

class CaseTrackerTest : public ::testing::Test {
 protected:
  CaseTrackerTest()
      : config_(*model::ParseConfig(kConfig, "t.yaml")),
        decoder_(config_),
        dims_(config_),
        tracker_(Wired()) {
    clock_.Set(absl::FromUnixSeconds(kT0));
  }

  // What every tracker here is wired to: the fixture's config, clock, sink
  // and dimension table.
  CaseTracker::Options Wired() {
    return {.config = &config_, .clock = &clock_, .sink = &sink_, .dimensions = &dims_};
  }

  // Handles one event at kT0 + `t` seconds. The manual clock follows event
  // time, as `clock: event` does, unless the test moves it on itself.
  Verdict Send(ProcessEvent::Kind kind, const std::string& case_id, const std::string& stage,
               int64_t t, double amount = 0, const std::string& process = "sales",
               const std::string& region = "emea") {
    ProcessEvent e;
    e.set_event_id(absl::StrCat("ev-", next_id_++));
    e.set_process(process);
    e.set_case_id(case_id);
    e.set_kind(kind);
    e.set_stage(stage);
    e.set_amount(amount);
    e.set_score(amount);
    e.mutable_occurred_at()->set_seconds(kT0 + t);
    if (!region.empty()) (*e.mutable_attributes())["region"] = region;
    last_ = e;
    return Decode(e);
  }

  // A COST event `event_id` of case "x" at kT0 + t seconds: it claims its
  // id and nothing else.
  Verdict CostEvent(const std::string& event_id, int64_t t) {
    ProcessEvent e;
    e.set_event_id(event_id);
    e.set_process("sales");
    e.set_case_id("x");
    e.set_kind(ProcessEvent::COST);
    e.mutable_occurred_at()->set_seconds(kT0 + t);
    return Decode(e);
  }

  Verdict Decode(const ProcessEvent& e) {
    ingest::DecodedEvent decoded;
    auto rejection = decoder_.Decode(e.SerializeAsString(), false, &decoded);
    EXPECT_FALSE(rejection.has_value()) << rejection->detail;
    if (absl::FromUnixSeconds(e.occurred_at().seconds()) > clock_.Now()) {
      clock_.Set(absl::FromUnixSeconds(e.occurred_at().seconds()));
    }
    return target_->Handle(decoded);
  }

  Verdict Enter(const std::string& c, const std::string& stage, int64_t t) {
    return Send(ProcessEvent::STAGE_ENTERED, c, stage, t);
  }

  void MoveClockTo(int64_t t) {
    clock_.Set(absl::FromUnixSeconds(kT0 + t));
    target_->AdvanceTimers();
  }

  // Ticks the tracker at the clock's now and returns when the oldest open
  // case of (p, s) entered, in seconds after kT0 (-1: none open).
  int64_t OldestEntered(int p, int s) {
    target_->Tick(absl::Now());
    const auto view = target_->PublishedView();
    EXPECT_EQ(view->as_of, clock_.Now());
    const absl::optional<absl::Time>& oldest =
        view->oldest_entered[static_cast<size_t>(p)][static_cast<size_t>(s)];
    return oldest ? absl::ToUnixSeconds(*oldest) - kT0 : -1;
  }
  // The published breaching cases after a Tick at kT0 + t, one line each.
  std::vector<std::string> BreachingAt(int64_t t) {
    clock_.Set(absl::FromUnixSeconds(kT0 + t));
    target_->Tick(absl::Now());
    std::vector<std::string> lines;
    for (const BreachingCase& c : target_->PublishedView()->breaching) {
      lines.push_back(absl::StrCat(c.case_id, " p", c.process, " s", c.stage, " d", c.dims, " ",
                                   At(c.entered_at), " deadline ", At(c.deadline)));
    }
    return lines;
  }

  int Backlog(int p, int s, DimsId d = 2) { return sink_.backlog[{p, s, d}]; }
  int OverSla(int p, int s, DimsId d = 2) { return sink_.over_sla[{p, s, d}]; }

  model::Config config_;
  ingest::EventDecoder decoder_;
  ManualClock clock_;
  RecordingSink sink_;
  DimensionTable dims_;
  CaseTracker tracker_;
  CaseTracker* target_ = &tracker_;  // where Send and Decode deliver
  ProcessEvent last_;
  int next_id_ = 0;
};

bool Accepted(const Verdict& v) { return v.kind == Verdict::Kind::kAccepted; }
bool Rejected(const Verdict& v, RejectReason r) {
  return v.kind == Verdict::Kind::kRejected && v.reason == r;
}

// region "emea" is the first real combination: DimsId 2 (0 = empty, 1 = __other__).
TEST_F(CaseTrackerTest, FirstStageEnteredStartsTheCase) {
  EXPECT_TRUE(Accepted(Enter("c1", "lead", 0)));
  EXPECT_THAT(sink_.Take(), ElementsAre("started p0 d2 @0", "entered p0 s0 d2 @0"));
  EXPECT_EQ(Backlog(0, 0), 1);
  EXPECT_EQ(tracker_.open_cases(), 1u);
}

TEST_F(CaseTrackerTest, AdvanceExitsThePreviousStageWithItsCycleTime) {
  Enter("c1", "lead", 0);
  sink_.Take();
  // 50 minutes in lead (SLA 1h): met.
  EXPECT_TRUE(Accepted(Enter("c1", "demo", 3000)));
  EXPECT_THAT(sink_.Take(), ElementsAre("exited p0 s0 d2 @3000 advanced 3000s met",
                                        "transition p0 0->1 @3000", "entered p0 s1 d2 @3000"));
  EXPECT_EQ(Backlog(0, 0), 0);
  EXPECT_EQ(Backlog(0, 1), 1);
}

TEST_F(CaseTrackerTest, SlaMetAtExactlyTheDeadlineMissedOneSecondOver) {
  Enter("on-time", "lead", 0);
  Enter("late", "lead", 0);
  sink_.Take();
  Enter("on-time", "demo", 3600);  // cycle 1h == SLA
  EXPECT_THAT(sink_.Take()[0], "exited p0 s0 d2 @3600 advanced 3600s met");
  // The clock reaches 3601: "late" has passed its deadline while still open.
  Enter("late", "demo", 3601);
  EXPECT_THAT(sink_.Take(),
              ElementsAre("breach p0 s0 d2 @3600", "exited p0 s0 d2 @3601 advanced 3601s missed",
                          "transition p0 0->1 @3601", "entered p0 s1 d2 @3601"));
}

TEST_F(CaseTrackerTest, TimerAloneBreachesAnOpenCaseWithinASecond) {
  Enter("c1", "lead", 0);
  sink_.Take();
  MoveClockTo(3600);  // at the deadline: not yet breached
  EXPECT_THAT(sink_.Take(), IsEmpty());
  EXPECT_EQ(OverSla(0, 0), 0);
  MoveClockTo(3601);
  EXPECT_THAT(sink_.Take(), ElementsAre("breach p0 s0 d2 @3600"));
  EXPECT_EQ(OverSla(0, 0), 1);
  EXPECT_EQ(Backlog(0, 0), 1);
  // Once per stay: time passing further reports nothing more.
  MoveClockTo(90000);
  EXPECT_THAT(sink_.Take(), IsEmpty());
  // Leaving the stage takes it out of the over-SLA backlog.
  Enter("c1", "demo", 90000);
  EXPECT_EQ(OverSla(0, 0), 0);
  EXPECT_EQ(Backlog(0, 0), 0);
}

TEST_F(CaseTrackerTest, ABreachLaterInASecondAlreadyCheckedIsNotDelayedToTheNext) {
  Enter("c1", "lead", 0);  // deadline kT0 + 3600 s exactly
  sink_.Take();
  // Half a second before the deadline the wheel has swept second 3599...
  clock_.Set(absl::FromUnixSeconds(kT0 + 3599) + absl::Milliseconds(500));
  tracker_.AdvanceTimers();
  // ...and at 3600.000 the deadline's own second, where it is not yet past.
  clock_.Set(absl::FromUnixSeconds(kT0 + 3600));
  tracker_.AdvanceTimers();
  EXPECT_THAT(sink_.Take(), IsEmpty());
  // 100 ms later, same second: the breach is reported now, not at 3601.
  clock_.Set(absl::FromUnixSeconds(kT0 + 3600) + absl::Milliseconds(100));
  tracker_.AdvanceTimers();
  EXPECT_THAT(sink_.Take(), ElementsAre("breach p0 s0 d2 @3600"));
}

// A walk of the breach frontiers looks only at the stages whose deadline
// bound has passed: a breach in one stage fires once, at its second, while
// the others (not due, or due by a bound that went stale when their case
// left) report nothing; a stay entering a stage with nothing pending
// becomes its frontier and is walked in turn.
TEST_F(CaseTrackerTest, EachStageBreachesOnceAtItsOwnDeadlineWhileOthersAreNotDue) {
  Enter("a", "lead", 0);                                              // deadline 3600
  Send(ProcessEvent::STAGE_ENTERED, "t", "triage", 0, 0, "support");  // 1800
  Enter("q", "quote", 0);                                             // 86400
  Enter("x", "demo", 100);                                            // 7300, but...
  Enter("x", "quote", 200);                                           // ...left: quote's 86600
  sink_.Take();
  MoveClockTo(1800);
  EXPECT_THAT(sink_.Take(), IsEmpty());
  MoveClockTo(1801);
  EXPECT_THAT(sink_.Take(), ElementsAre("breach p1 s0 d2 @1800"));
  MoveClockTo(3600);
  EXPECT_THAT(sink_.Take(), IsEmpty());
  MoveClockTo(3601);
  EXPECT_THAT(sink_.Take(), ElementsAre("breach p0 s0 d2 @3600"));
  // Lead has nothing pending now: "b" becomes its frontier.
  Enter("b", "lead", 4000);  // deadline 7600
  sink_.Take();
  MoveClockTo(7301);  // demo's deadline bound passes: "x" is no longer there
  EXPECT_THAT(sink_.Take(), IsEmpty());
  MoveClockTo(7600);
  EXPECT_THAT(sink_.Take(), IsEmpty());
  MoveClockTo(7601);
  EXPECT_THAT(sink_.Take(), ElementsAre("breach p0 s0 d2 @7600"));
  MoveClockTo(86400);
  EXPECT_THAT(sink_.Take(), IsEmpty());
  MoveClockTo(86401);
  EXPECT_THAT(sink_.Take(), ElementsAre("breach p0 s2 d2 @86400"));
  MoveClockTo(86601);
  EXPECT_THAT(sink_.Take(), ElementsAre("breach p0 s2 d2 @86600"));
  // Once per stay.
  MoveClockTo(90000);
  EXPECT_THAT(sink_.Take(), IsEmpty());
  EXPECT_EQ(OverSla(0, 0), 2);
  EXPECT_EQ(OverSla(0, 1), 0);
  EXPECT_EQ(OverSla(0, 2), 2);
  EXPECT_EQ(OverSla(1, 0), 1);
}

TEST_F(CaseTrackerTest, CompletedClosesWithRevenueAndLeadTime) {
  Enter("c1", "lead", 0);
  Enter("c1", "demo", 1800);
  Enter("c1", "quote", 9000);  // 2h in demo = SLA: met
  sink_.Take();
  EXPECT_TRUE(Accepted(Send(ProcessEvent::CASE_COMPLETED, "c1", "", 50000, 1250.5)));
  EXPECT_THAT(sink_.Take(), ElementsAre("exited p0 s2 d2 @50000 advanced 41000s met",
                                        "completed p0 d2 @50000 amount=1250.5 lead=50000s"));
  EXPECT_EQ(tracker_.open_cases(), 0u);
  EXPECT_EQ(Backlog(0, 2), 0);
}

TEST_F(CaseTrackerTest, FalloutClosesFromTheCurrentStage) {
  Enter("c1", "lead", 0);
  Enter("c1", "demo", 100);
  sink_.Take();
  EXPECT_TRUE(Accepted(Send(ProcessEvent::CASE_FALLOUT, "c1", "", 8000)));
  // 7900 s in demo, SLA 2h = 7200 s; the clock jumped past the deadline first.
  EXPECT_THAT(sink_.Take(),
              ElementsAre("breach p0 s1 d2 @7300", "exited p0 s1 d2 @8000 fallout 7900s missed",
                          "fallout p0 d2 @8000"));
  EXPECT_EQ(OverSla(0, 1), 0);
}

TEST_F(CaseTrackerTest, ReenteringAStageIsRework) {
  Enter("c1", "lead", 0);
  Enter("c1", "demo", 10);
  Enter("c1", "quote", 20);
  sink_.Take();
  Enter("c1", "demo", 30);
  EXPECT_THAT(sink_.Take(), ElementsAre("exited p0 s2 d2 @30 advanced 10s met",
                                        "transition p0 2->1 @30", "entered p0 s1 d2 @30 rework"));
  // The first visit of a stage is not rework, even after going back.
  Enter("c1", "lead", 40);
  EXPECT_EQ(sink_.Take().back(), "entered p0 s0 d2 @40 rework");
}

TEST_F(CaseTrackerTest, SameStageAgainIsRejectedAndChangesNothing) {
  Enter("c1", "lead", 0);
  sink_.Take();
  EXPECT_TRUE(Rejected(Enter("c1", "lead", 100), RejectReason::kSameStage));
  EXPECT_THAT(sink_.Take(), IsEmpty());
  // The stay was not restarted: the deadline is still from t=0.
  MoveClockTo(3601);
  EXPECT_THAT(sink_.Take(), ElementsAre("breach p0 s0 d2 @3600"));
}

TEST_F(CaseTrackerTest, CompletionOrFalloutOfAnUnknownCaseIsRejected) {
  EXPECT_TRUE(
      Rejected(Send(ProcessEvent::CASE_COMPLETED, "ghost", "", 0, 10), RejectReason::kUnknownCase));
  EXPECT_TRUE(
      Rejected(Send(ProcessEvent::CASE_FALLOUT, "ghost", "", 0), RejectReason::kUnknownCase));
  EXPECT_THAT(sink_.Take(), IsEmpty());
}

TEST_F(CaseTrackerTest, ClosedCaseRejectsEventsForTheHorizonThenStartsAnew) {
  Enter("c1", "lead", 0);
  Send(ProcessEvent::CASE_FALLOUT, "c1", "", 60);
  sink_.Take();
  EXPECT_TRUE(Rejected(Enter("c1", "demo", 120), RejectReason::kCaseClosed));
  EXPECT_TRUE(
      Rejected(Send(ProcessEvent::CASE_COMPLETED, "c1", "", 130, 5), RejectReason::kCaseClosed));
  EXPECT_TRUE(Rejected(Enter("c1", "lead", 60 + 3599), RejectReason::kCaseClosed));
  // Cost and feedback count whatever the state, with the case's dimensions.
  EXPECT_TRUE(Accepted(Send(ProcessEvent::FEEDBACK, "c1", "", 200, 9, "sales", "")));
  EXPECT_THAT(sink_.Take(), ElementsAre("feedback p0 d2 @200 9"));
  // Remembered for dedup_horizon (1h) after closing at 60; then the id may start anew.
  EXPECT_TRUE(Accepted(Enter("c1", "lead", 60 + 3600)));
  EXPECT_THAT(sink_.Take(), ElementsAre("started p0 d2 @3660", "entered p0 s0 d2 @3660"));
}

TEST_F(CaseTrackerTest, RepeatedEventIdIsADuplicateOnlyWithinTheHorizon) {
  Enter("c1", "lead", 0);
  const ProcessEvent first = last_;
  sink_.Take();
  EXPECT_EQ(Decode(first).kind, Verdict::Kind::kDuplicate);
  EXPECT_THAT(sink_.Take(), IsEmpty());
  // A rejected event does not claim its id.
  Enter("c1", "lead", 10);
  ProcessEvent same_stage = last_;
  EXPECT_TRUE(Rejected(Decode(same_stage), RejectReason::kSameStage));
  // After the horizon the id is forgotten: the old event is handled again
  // (here: same stage, so rejected, not a duplicate).
  MoveClockTo(3601);
  EXPECT_TRUE(Rejected(Decode(first), RejectReason::kSameStage));
}

TEST_F(CaseTrackerTest, CostAndFeedbackForUnknownCasesUseTheirOwnAttributes) {
  EXPECT_TRUE(Accepted(Send(ProcessEvent::COST, "x", "", 5, 99.5, "sales", "apac")));
  EXPECT_TRUE(Accepted(Send(ProcessEvent::FEEDBACK, "y", "", 6, 7, "support", "emea")));
  // apac is sales' first combination (2); support's emea is also 2 in its own table.
  EXPECT_THAT(sink_.Take(), ElementsAre("cost p0 d2 @5 99.5", "feedback p1 d2 @6 7"));
  EXPECT_EQ(tracker_.open_cases(), 0u);
}

TEST_F(CaseTrackerTest, CaseIdsArePerProcess) {
  Enter("c1", "lead", 0);
  EXPECT_TRUE(Accepted(Send(ProcessEvent::STAGE_ENTERED, "c1", "triage", 5, 0, "support")));
  EXPECT_EQ(tracker_.open_cases(), 2u);
}

TEST_F(CaseTrackerTest, DimensionsComeFromTheFirstEvent) {
  Send(ProcessEvent::STAGE_ENTERED, "c1", "lead", 0, 0, "sales", "amer");
  Send(ProcessEvent::STAGE_ENTERED, "c1", "demo", 10, 0, "sales", "emea");
  // amer got id 2 first; the second event's region is ignored.
  EXPECT_THAT(sink_.Take(), ElementsAre("started p0 d2 @0", "entered p0 s0 d2 @0",
                                        "exited p0 s0 d2 @10 advanced 10s met",
                                        "transition p0 0->1 @10", "entered p0 s1 d2 @10"));
  EXPECT_EQ(dims_.Values(0, 2), std::vector<std::string>{"amer"});
}

TEST_F(CaseTrackerTest, IdleCaseExpiresAfterTtlAndCountsAsClosed) {
  Enter("c1", "quote", 0);
  Send(ProcessEvent::COST, "c1", "", 86400, 10);  // activity: pushes expiry to day 11
  sink_.Take();
  MoveClockTo(10 * 86400 + 1);  // idle only 9 days
  EXPECT_THAT(sink_.Take(), ElementsAre("breach p0 s2 d2 @86400"));
  EXPECT_EQ(OverSla(0, 2), 1);
  MoveClockTo(11 * 86400);  // exactly ttl idle: still open
  EXPECT_THAT(sink_.Take(), IsEmpty());
  MoveClockTo(11 * 86400 + 1);
  EXPECT_THAT(sink_.Take(), ElementsAre("expired p0 s2 d2 @950400"));
  EXPECT_EQ(tracker_.open_cases(), 0u);
  EXPECT_EQ(Backlog(0, 2), 0);
  EXPECT_EQ(OverSla(0, 2), 0);
  EXPECT_TRUE(Rejected(Enter("c1", "lead", 11 * 86400 + 2), RejectReason::kCaseClosed));
}

TEST_F(CaseTrackerTest, ManyCasesBreachInDeadlineOrderOnAJump) {
  for (int i = 0; i < 5; ++i) Enter(absl::StrCat("c", i), "lead", 100 * (4 - i));
  sink_.Take();
  MoveClockTo(5 * 86400);  // days later, one step
  EXPECT_THAT(sink_.Take(),
              ElementsAre("breach p0 s0 d2 @3600", "breach p0 s0 d2 @3700", "breach p0 s0 d2 @3800",
                          "breach p0 s0 d2 @3900", "breach p0 s0 d2 @4000"));
  EXPECT_EQ(OverSla(0, 0), 5);
}

// c1 enters in time order (its deadline on the stage's breach frontier), c2
// after it but stamped earlier (its deadline on its own timer). On a jump
// past both expiries every fact comes in due order: deadlines 500 + 3600 =
// 4100 (c2) and 1000 + 3600 = 4600 (c1), then expiries after case_ttl
// (10 days = 864000 s) idle: 500 + 864000 = 864500 (c2), 865000 (c1).
TEST_F(CaseTrackerTest, BreachesAndExpiriesOfInAndOutOfOrderStaysComeInDueOrder) {
  Enter("c1", "lead", 1000);
  Enter("c2", "lead", 500);
  sink_.Take();
  MoveClockTo(20 * 86400);
  EXPECT_THAT(sink_.Take(), ElementsAre("breach p0 s0 d2 @4100", "breach p0 s0 d2 @4600",
                                        "expired p0 s0 d2 @864500", "expired p0 s0 d2 @865000"));
  EXPECT_EQ(tracker_.open_cases(), 0u);
  EXPECT_EQ(OverSla(0, 0), 0);
}

// The case's timer is armed at its start (for its expiry, at most a day
// ahead); stage entries and cost move the expiry on without re-arming it,
// and it still
// fires exactly ttl after the last activity (5000 + 864000 = 869000). The
// demo deadline (entered 3000 + SLA 2h = 10200) is the breach frontier's.
TEST_F(CaseTrackerTest, ExpiryFollowsActivityWithoutReArmingPerEvent) {
  Enter("c1", "lead", 0);
  Enter("c1", "demo", 3000);
  Send(ProcessEvent::COST, "c1", "", 5000, 10);
  sink_.Take();
  MoveClockTo(864000 + 1);  // the first expiry it was armed for: not idle that long
  EXPECT_THAT(sink_.Take(), ElementsAre("breach p0 s1 d2 @10200"));
  MoveClockTo(869000);  // exactly ttl idle: still open
  EXPECT_THAT(sink_.Take(), IsEmpty());
  EXPECT_EQ(tracker_.open_cases(), 1u);
  MoveClockTo(869000 + 1);
  EXPECT_THAT(sink_.Take(), ElementsAre("expired p0 s1 d2 @869000"));
  EXPECT_EQ(tracker_.open_cases(), 0u);
}

// ---- max_dedup_ids / max_closed_cases: the oldest remembered id goes first,
// within dedup_horizon (1h) too.

// A stream through every path of Handle: new cases, advances and rework,
// the same stage again, completion and fallout, unknown and closed cases,
// cost and feedback, repeated event ids, and time jumps past SLA deadlines,
// the dedup horizon and case_ttl, so timers fire between events.
std::vector<ingest::DecodedEvent> MixedStream(const model::Config& config) {
  ingest::EventDecoder decoder(config);
  std::vector<ProcessEvent> sent;
  uint64_t r = 12345;
  auto random = [&r](uint64_t n) {
    r = r * 6364136223846793005ULL + 1442695040888963407ULL;
    return (r >> 33) % n;
  };
  const std::vector<std::string> sales_stages = {"lead", "demo", "quote"};
  const std::vector<ProcessEvent::Kind> kinds = {
      ProcessEvent::STAGE_ENTERED,  ProcessEvent::STAGE_ENTERED, ProcessEvent::STAGE_ENTERED,
      ProcessEvent::STAGE_ENTERED,  ProcessEvent::STAGE_ENTERED, ProcessEvent::STAGE_ENTERED,
      ProcessEvent::CASE_COMPLETED, ProcessEvent::CASE_FALLOUT,  ProcessEvent::COST,
      ProcessEvent::FEEDBACK};
  int64_t t = 0;
  for (int i = 0; i < 1500; ++i) {
    const uint64_t pick = random(100);
    if (pick < 5 && !sent.empty()) {
      sent.push_back(sent[random(sent.size())]);  // its id again
      continue;
    }
    t += pick == 5 ? 11 * 86400 : pick < 10 ? 3700 : static_cast<int64_t>(random(120));
    ProcessEvent e;
    e.set_event_id(absl::StrCat("ev-", i));
    const bool sales = random(5) != 0;
    e.set_process(sales ? "sales" : "support");
    e.set_case_id(absl::StrCat("c", random(40)));
    e.set_kind(kinds[random(kinds.size())]);
    e.set_stage(sales ? sales_stages[random(sales_stages.size())] : "triage");
    e.set_amount(static_cast<double>(1 + random(100)));
    e.set_score(3);
    e.mutable_occurred_at()->set_seconds(kT0 + t);
    (*e.mutable_attributes())["region"] = random(2) == 0 ? "emea" : "apac";
    sent.push_back(e);
  }
  std::vector<ingest::DecodedEvent> events(sent.size());
  for (size_t i = 0; i < sent.size(); ++i) {
    auto rejection = decoder.Decode(sent[i].SerializeAsString(), false, &events[i]);
    EXPECT_FALSE(rejection.has_value()) << rejection->detail;
    events[i].OwnAttributes();  // read after the decoder is gone
  }
  return events;
}

struct Outcome {
  std::vector<std::string> verdicts;
  std::vector<std::string> facts;
  std::map<std::tuple<int, int, DimsId>, int> backlog, over_sla;
  std::string state;
  int hints = 0;
};

// `events` through a fresh tracker on the event clock, `batch` at a time,
// each batch through HandleBatch or else Handle one by one, with a Tick
// after every batch; `hinted`: the sink wants step hints (HandleBatch then
// holds steps back).
Outcome HandleInBatches(const model::Config& config,
                        const std::vector<ingest::DecodedEvent>& events, size_t batch,
                        bool use_batch, bool hinted = false) {
  WatermarkBoard board(1);
  EventTimeClock clock(&board, 0);
  RecordingSink sink;
  sink.wants_hints = hinted;
  DimensionTable dims(config);
  CaseTracker tracker({.config = &config, .clock = &clock, .sink = &sink, .dimensions = &dims});
  Outcome out;
  std::vector<const ingest::DecodedEvent*> pointers;
  std::vector<Verdict> verdicts(batch);
  for (size_t begin = 0; begin < events.size(); begin += batch) {
    const size_t n = std::min(batch, events.size() - begin);
    pointers.clear();
    for (size_t i = begin; i < begin + n; ++i) pointers.push_back(&events[i]);
    if (use_batch) {
      tracker.HandleBatch(pointers, verdicts.data());
    } else {
      for (size_t i = 0; i < n; ++i) verdicts[i] = tracker.Handle(*pointers[i]);
    }
    for (size_t i = 0; i < n; ++i) {
      out.verdicts.push_back(absl::StrCat(static_cast<int>(verdicts[i].kind), " ",
                                          model::RejectReasonName(verdicts[i].reason)));
    }
    tracker.Tick(absl::FromUnixSeconds(kT0));
  }
  out.facts = sink.Take();
  out.backlog = sink.backlog;
  out.over_sla = sink.over_sla;
  out.state = tracker.Serialize();
  out.hints = sink.hints;
  return out;
}

TEST(CaseTrackerBatchTest, HandleBatchDoesWhatHandleDoesInOrder) {
  const model::Config config = *model::ParseConfig(kConfig, "t.yaml");
  const std::vector<ingest::DecodedEvent> events = MixedStream(config);
  // Sizes around the prefetch distance and not multiples of it, and one
  // batch larger than the stream.
  for (size_t batch : {size_t{1}, size_t{2}, size_t{3}, size_t{5}, size_t{8}, size_t{13},
                       size_t{1024}, size_t{4096}}) {
    SCOPED_TRACE(absl::StrCat("batch ", batch));
    const Outcome one_by_one = HandleInBatches(config, events, batch, /*use_batch=*/false);
    auto expect_as_one_by_one = [&](const Outcome& o) {
      EXPECT_EQ(o.verdicts, one_by_one.verdicts);
      EXPECT_EQ(o.facts, one_by_one.facts);
      EXPECT_EQ(o.backlog, one_by_one.backlog);
      EXPECT_EQ(o.over_sla, one_by_one.over_sla);
      EXPECT_EQ(o.state, one_by_one.state);
    };
    const Outcome batched = HandleInBatches(config, events, batch, /*use_batch=*/true);
    expect_as_one_by_one(batched);
    EXPECT_EQ(batched.hints, 0);
    // Steps held back for the sink's hints: the same facts in the same
    // order, the breaches, expiries and costs between steps included.
    const Outcome hinted =
        HandleInBatches(config, events, batch, /*use_batch=*/true, /*hinted=*/true);
    expect_as_one_by_one(hinted);
    EXPECT_GT(hinted.hints, 0);
    // The stream does take every path (else the comparison proves little).
    auto verdicts_with = [&](absl::string_view what) {
      return std::count_if(one_by_one.verdicts.begin(), one_by_one.verdicts.end(),
                           [&](const std::string& v) { return absl::StrContains(v, what); });
    };
    auto facts_with = [&](absl::string_view what) {
      return std::count_if(one_by_one.facts.begin(), one_by_one.facts.end(),
                           [&](const std::string& f) { return absl::StartsWith(f, what); });
    };
    EXPECT_GT(verdicts_with(absl::StrCat(static_cast<int>(Verdict::Kind::kDuplicate), " ")), 0);
    for (RejectReason reason :
         {RejectReason::kSameStage, RejectReason::kUnknownCase, RejectReason::kCaseClosed}) {
      EXPECT_GT(verdicts_with(model::RejectReasonName(reason)), 0)
          << model::RejectReasonName(reason);
    }
    for (const char* fact :
         {"started", "transition", "completed", "fallout", "expired", "cost", "breach"}) {
      EXPECT_GT(facts_with(fact), 0) << fact;
    }
  }
}

// HandleBatch hands FindOpen the open-case word PrefetchCase matched by its
// 32-bit tag: two cases whose keys share those bits must still be told
// apart (the hint is only trusted when the record is the case's).
TEST(CaseTrackerBatchTest, CasesWhoseKeysShareTheOpenTagStayApart) {
  const model::Config config = *model::ParseConfig(kConfig, "t.yaml");
  // Two case ids of "sales" with the same low 32 bits of their key (the
  // tracker's CaseKey: StableHash64 seeded by the process id's hash).
  const uint64_t start = StableHashStart(StableHash64("sales"));
  std::string a, b;
  absl::flat_hash_map<uint32_t, int> seen;
  for (int i = 0; b.empty(); ++i) {
    const std::string id = absl::StrCat("c", i);
    const auto [it, added] = seen.emplace(static_cast<uint32_t>(StableHash64From(id, start)), i);
    if (!added) {
      a = absl::StrCat("c", it->second);
      b = id;
    }
  }
  ASSERT_NE(StableHash64From(a, start), StableHash64From(b, start));
  ingest::EventDecoder decoder(config);
  std::vector<ingest::DecodedEvent> events;
  auto add = [&](ProcessEvent::Kind kind, const std::string& case_id, const std::string& stage,
                 int64_t t) {
    ProcessEvent e;
    e.set_event_id(absl::StrCat("ev-", events.size()));
    e.set_process("sales");
    e.set_case_id(case_id);
    e.set_kind(kind);
    e.set_stage(stage);
    e.set_amount(5);
    e.mutable_occurred_at()->set_seconds(kT0 + t);
    (*e.mutable_attributes())["region"] = "emea";
    events.emplace_back();
    EXPECT_FALSE(decoder.Decode(e.SerializeAsString(), false, &events.back()).has_value());
  };
  // In the first events of a batch (HandleKeyed finds the hint itself) and
  // after 8 others (the hint came from 4 events back).
  add(ProcessEvent::STAGE_ENTERED, a, "lead", 0);
  add(ProcessEvent::STAGE_ENTERED, b, "lead", 1);  // new, though a's word has its tag
  add(ProcessEvent::STAGE_ENTERED, a, "demo", 2);
  add(ProcessEvent::STAGE_ENTERED, b, "demo", 3);
  for (int i = 0; i < 8; ++i) add(ProcessEvent::STAGE_ENTERED, absl::StrCat("f", i), "lead", 4);
  add(ProcessEvent::STAGE_ENTERED, b, "quote", 10);
  add(ProcessEvent::STAGE_ENTERED, a, "quote", 11);
  add(ProcessEvent::CASE_COMPLETED, b, "", 12);
  add(ProcessEvent::CASE_FALLOUT, a, "", 13);
  add(ProcessEvent::STAGE_ENTERED, a, "lead", 14);  // closed: rejected
  add(ProcessEvent::COST, b, "", 15);               // closed: the closed case's dims
  const Outcome one_by_one = HandleInBatches(config, events, 64, /*use_batch=*/false);
  const Outcome batched = HandleInBatches(config, events, 64, /*use_batch=*/true);
  EXPECT_EQ(batched.verdicts, one_by_one.verdicts);
  EXPECT_EQ(batched.facts, one_by_one.facts);
  EXPECT_EQ(batched.state, one_by_one.state);
  // By hand: 10 cases started (a, b, f0-f7), a and b each 0->1 then 1->2,
  // b completed, a fell out; only the entry after a closed is rejected.
  auto count = [&](absl::string_view prefix) {
    return std::count_if(batched.facts.begin(), batched.facts.end(),
                         [&](const std::string& f) { return absl::StartsWith(f, prefix); });
  };
  EXPECT_EQ(count("started p0"), 10);
  EXPECT_EQ(count("transition p0 0->1"), 2);
  EXPECT_EQ(count("transition p0 1->2"), 2);
  EXPECT_EQ(count("completed p0 d2 @12 amount=5"), 1);
  EXPECT_EQ(count("fallout p0 d2 @13"), 1);
  EXPECT_EQ(count("cost p0 d2 @15"), 1);
  const std::string accepted = absl::StrCat(static_cast<int>(Verdict::Kind::kAccepted), " ",
                                            model::RejectReasonName(RejectReason{}));
  for (size_t i = 0; i < events.size(); ++i) {
    if (i == 16) {
      EXPECT_THAT(batched.verdicts[i], ::testing::HasSubstr("case_closed"));
    } else {
      EXPECT_EQ(batched.verdicts[i], accepted) << i;
    }
  }
}

TEST_F(CaseTrackerTest, EventIdsBeyondTheBoundForgetTheOldest) {
  CaseTracker::Options options = Wired();
  options.max_dedup_ids = 3;
  CaseTracker small(options);
  target_ = &small;
  // COST events "id0".."id4" at 0..4 s: each claims its id. The 4th forgets
  // id0, the 5th id1: 5 - 3 = 2 forgotten; id2, id3, id4 remain.
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(Accepted(CostEvent(absl::StrCat("id", i), i)));
  EXPECT_EQ(small.event_ids_forgotten(), 2u);
  // Still remembered (5 s < 1h): duplicates, nothing forgotten.
  EXPECT_EQ(CostEvent("id2", 5).kind, Verdict::Kind::kDuplicate);
  EXPECT_EQ(CostEvent("id4", 5).kind, Verdict::Kind::kDuplicate);
  EXPECT_EQ(small.event_ids_forgotten(), 2u);
  // Forgotten early: id0 counts again, and claiming it forgets id2 (3rd).
  EXPECT_TRUE(Accepted(CostEvent("id0", 6)));
  EXPECT_EQ(small.event_ids_forgotten(), 3u);
  EXPECT_TRUE(Accepted(CostEvent("id2", 7)));  // forgets id3 (4th)
  EXPECT_EQ(small.event_ids_forgotten(), 4u);
  small.Tick(absl::Now());
  EXPECT_EQ(small.PublishedView()->event_ids_forgotten, 4u);
  EXPECT_EQ(small.PublishedView()->closed_cases_forgotten, 0u);
}

// The event-id set forgets the oldest ids by popping its ring and leaves
// their index words dead until a rebuild: over many thousands of forgets,
// with ids coming back, every verdict is a plain FIFO window's of the last
// max_dedup_ids accepted ids. A live id's word lost by mistake (a rebuild
// or a dead-word reuse gone wrong) would let its repeat through as accepted.
TEST_F(CaseTrackerTest, EventIdDedupIsAWindowOfTheLastAcceptedIdsAcrossManyForgets) {
  constexpr size_t kBound = 1000;
  CaseTracker::Options options = Wired();
  options.max_dedup_ids = kBound;
  CaseTracker small(options);
  target_ = &small;
  std::deque<std::string> window;  // the model: oldest first
  std::set<std::string> remembered;
  std::mt19937 random(7);
  int next = 0;
  uint64_t forgotten = 0;
  int duplicates = 0;
  for (int i = 0; i < 30000; ++i) {
    // Mostly new ids; a third of the time one of the last 2 x kBound made,
    // remembered or forgotten by now.
    std::string id;
    if (next > 0 && random() % 3 == 0) {
      const int back = static_cast<int>(random() % (2 * kBound));
      id = absl::StrCat("e", std::max(0, next - 1 - back));
    } else {
      id = absl::StrCat("e", next++);
    }
    const Verdict v = CostEvent(id, i / 10);  // 3000 s in all: within the 1h horizon
    if (remembered.count(id) != 0) {
      ASSERT_EQ(v.kind, Verdict::Kind::kDuplicate) << "event " << i << " id " << id;
      ++duplicates;
      continue;
    }
    ASSERT_TRUE(Accepted(v)) << "event " << i << " id " << id;
    if (window.size() == kBound) {
      remembered.erase(window.front());
      window.pop_front();
      ++forgotten;
    }
    window.push_back(id);
    remembered.insert(id);
  }
  EXPECT_EQ(small.event_ids_forgotten(), forgotten);
  EXPECT_GT(duplicates, 1000);  // both verdicts were exercised, many times
  EXPECT_GT(forgotten, 15000u);
}

// The event-id index takes a forgotten id's word out when the word's
// cache line has room, and leaves it (dead) in a full line, where taking
// it out would end the probes of words that overflowed into later lines.
// With a handful of ids the index is two to four lines of eight words, so
// lines fill, overflow, and lose words all the time.
TEST_F(CaseTrackerTest, EventIdDedupForgetsInOrderWithTwoRemembered) {
  CaseTracker::Options options = Wired();
  options.max_dedup_ids = 2;
  CaseTracker small(options);
  target_ = &small;
  EXPECT_TRUE(Accepted(CostEvent("a", 0)));
  EXPECT_TRUE(Accepted(CostEvent("b", 1)));
  EXPECT_EQ(CostEvent("a", 2).kind, Verdict::Kind::kDuplicate);
  EXPECT_TRUE(Accepted(CostEvent("c", 3)));  // forgets a: {b, c}
  EXPECT_EQ(CostEvent("b", 4).kind, Verdict::Kind::kDuplicate);
  EXPECT_TRUE(Accepted(CostEvent("a", 5)));  // forgets b: {c, a}
  EXPECT_TRUE(Accepted(CostEvent("b", 6)));  // forgets c: {a, b}
  EXPECT_EQ(CostEvent("a", 7).kind, Verdict::Kind::kDuplicate);
  EXPECT_EQ(CostEvent("b", 8).kind, Verdict::Kind::kDuplicate);
  EXPECT_TRUE(Accepted(CostEvent("c", 9)));  // forgets a: {b, c}
  EXPECT_EQ(small.event_ids_forgotten(), 4u);
  // An hour after b was accepted (at 6) it is forgotten too, uncounted:
  // at 3606 only c (9) is left, so b is new again and a is new.
  EXPECT_TRUE(Accepted(CostEvent("b", 3606)));  // {c, b}
  EXPECT_EQ(CostEvent("c", 3607).kind, Verdict::Kind::kDuplicate);
  EXPECT_TRUE(Accepted(CostEvent("a", 3609)));  // c forgotten by the hour: {b, a}
  EXPECT_EQ(CostEvent("b", 3610).kind, Verdict::Kind::kDuplicate);
  EXPECT_EQ(small.event_ids_forgotten(), 4u);
}

TEST_F(CaseTrackerTest, EventIdDedupIsAWindowForSmallBoundsAndHorizonForgets) {
  int64_t t = 0;  // on from one bound's tracker to the next: the clock only goes forward
  for (const size_t bound : {1, 2, 3, 5, 6, 7, 8, 11, 12, 13, 24, 40}) {
    SCOPED_TRACE(bound);
    CaseTracker::Options options = Wired();
    options.max_dedup_ids = bound;
    CaseTracker small(options);
    target_ = &small;
    std::deque<std::pair<std::string, int64_t>> window;  // the model: (id, at), oldest first
    std::mt19937 random(static_cast<uint32_t>(bound));
    int next = 0;
    uint64_t forgotten = 0;
    int duplicates = 0;
    for (int i = 0; i < 6000; ++i) {
      // Mostly a second on; now and then past the hour (1h horizon) of the
      // oldest ids remembered, or of some of them.
      t += random() % 50 == 0 ? 3000 + static_cast<int64_t>(random() % 1200) : 1;
      while (!window.empty() && window.front().second <= t - 3600) window.pop_front();
      std::string id;
      if (next > 0 && random() % 2 == 0) {
        const int back = static_cast<int>(random() % (2 * bound + 2));
        id = absl::StrCat("e", std::max(0, next - 1 - back));
      } else {
        id = absl::StrCat("e", next++);
      }
      const Verdict v = CostEvent(id, t);
      const bool remembered =
          std::any_of(window.begin(), window.end(), [&](const auto& w) { return w.first == id; });
      if (remembered) {
        ASSERT_EQ(v.kind, Verdict::Kind::kDuplicate) << "event " << i << " id " << id;
        ++duplicates;
        continue;
      }
      ASSERT_TRUE(Accepted(v)) << "event " << i << " id " << id << " kind "
                               << static_cast<int>(v.kind);
      if (window.size() == bound) {
        window.pop_front();
        ++forgotten;
      }
      window.emplace_back(id, t);
    }
    EXPECT_EQ(small.event_ids_forgotten(), forgotten);
    EXPECT_GT(duplicates, 500);
    EXPECT_GT(forgotten, 1000u);
  }
}

TEST_F(CaseTrackerTest, ClosedCasesBeyondTheBoundForgetTheOldest) {
  CaseTracker::Options options = Wired();
  options.max_closed_cases = 2;
  CaseTracker small(options);
  target_ = &small;
  // k0, k1, k2 start and complete in turn (closed at 10, 11, 12): closing
  // k2 forgets k0, 3 - 2 = 1 forgotten.
  for (int i = 0; i < 3; ++i) {
    const std::string id = absl::StrCat("k", i);
    EXPECT_TRUE(Accepted(Enter(id, "lead", i)));
    EXPECT_TRUE(Accepted(Send(ProcessEvent::CASE_COMPLETED, id, "", 10 + i, 100)));
  }
  EXPECT_EQ(small.closed_cases_forgotten(), 1u);
  // k1, k2 are remembered (closed < 1h ago): rejected case_closed.
  EXPECT_TRUE(Rejected(Enter("k1", "demo", 20), RejectReason::kCaseClosed));
  EXPECT_TRUE(Rejected(Send(ProcessEvent::CASE_FALLOUT, "k2", "", 20), RejectReason::kCaseClosed));
  // k0 was forgotten 2 s after it closed, within the hour: a fallout of it
  // is an unknown case, a stage entry starts it anew.
  EXPECT_TRUE(Rejected(Send(ProcessEvent::CASE_FALLOUT, "k0", "", 21), RejectReason::kUnknownCase));
  sink_.Take();
  EXPECT_TRUE(Accepted(Enter("k0", "lead", 22)));
  EXPECT_THAT(sink_.Take(), ElementsAre("started p0 d2 @22", "entered p0 s0 d2 @22"));
  EXPECT_EQ(small.closed_cases_forgotten(), 1u);
  small.Tick(absl::Now());
  EXPECT_EQ(small.PublishedView()->closed_cases_forgotten, 1u);
}

// Evictions at max_open_cases add closed cases: a flood of new ids stays
// within both bounds.
TEST_F(CaseTrackerTest, AFloodOfNewCasesStaysWithinTheOpenAndClosedBounds) {
  CaseTracker::Options options = Wired();
  options.max_open_cases = 2;
  options.max_closed_cases = 3;
  options.max_dedup_ids = 4;
  CaseTracker small(options);
  target_ = &small;
  // f0..f9 enter lead at 0..9 s. From f2 on each evicts the oldest open one
  // (f0 by f2, ..., f7 by f9): 8 evicted, 8 closed, of which 8 - 3 = 5
  // forgotten (f0..f4; f5, f6, f7 remembered). 10 event ids claimed, 10 - 4
  // = 6 forgotten.
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(Accepted(Enter(absl::StrCat("f", i), "lead", i)));
  EXPECT_EQ(small.open_cases(), 2u);
  EXPECT_EQ(small.evicted(), 8u);
  EXPECT_EQ(small.closed_cases_forgotten(), 5u);
  EXPECT_EQ(small.event_ids_forgotten(), 6u);
  EXPECT_TRUE(Rejected(Enter("f7", "demo", 10), RejectReason::kCaseClosed));
  EXPECT_TRUE(Rejected(Enter("f5", "demo", 10), RejectReason::kCaseClosed));
  // f4 is forgotten: it starts anew, evicting f8 (in lead since 8), and f8
  // closing forgets f5: 6 forgotten.
  EXPECT_TRUE(Accepted(Enter("f4", "demo", 11)));
  EXPECT_EQ(small.closed_cases_forgotten(), 6u);
  EXPECT_TRUE(Rejected(Enter("f8", "demo", 12), RejectReason::kCaseClosed));
}

TEST_F(CaseTrackerTest, ViewIsEmptyBeforeTheFirstTick) {
  Enter("c1", "lead", 0);
  const auto view = tracker_.PublishedView();
  EXPECT_EQ(view->as_of, absl::InfinitePast());
  ASSERT_EQ(view->oldest_entered.size(), 2u);  // sales, support
  EXPECT_EQ(view->oldest_entered[0].size(), 3u);
  EXPECT_FALSE(view->oldest_entered[0][0].has_value());
  EXPECT_THAT(view->breaching, IsEmpty());
}

TEST_F(CaseTrackerTest, OldestOpenCasePerStageFollowsEveryWayOfLeaving) {
  Enter("c1", "lead", 0);
  Enter("c2", "lead", 100);
  Enter("c3", "lead", 50);  // read after c2: an older entry arriving late
  Enter("c4", "lead", 60);
  EXPECT_EQ(OldestEntered(0, 0), 0);
  EXPECT_EQ(OldestEntered(0, 1), -1);  // nobody in demo
  EXPECT_EQ(OldestEntered(1, 0), -1);  // nor in support's triage
  Enter("c1", "demo", 200);            // advance: c3 (50) is now lead's oldest
  EXPECT_EQ(OldestEntered(0, 0), 50);
  EXPECT_EQ(OldestEntered(0, 1), 200);
  Send(ProcessEvent::CASE_COMPLETED, "c3", "", 300, 1);  // completed from lead
  EXPECT_EQ(OldestEntered(0, 0), 60);
  Send(ProcessEvent::CASE_FALLOUT, "c4", "", 310);
  EXPECT_EQ(OldestEntered(0, 0), 100);
  Enter("c1", "lead", 400);  // rework: back in lead, entered 400; demo is empty
  EXPECT_EQ(OldestEntered(0, 0), 100);
  EXPECT_EQ(OldestEntered(0, 1), -1);
  Send(ProcessEvent::CASE_FALLOUT, "c2", "", 410);
  EXPECT_EQ(OldestEntered(0, 0), 400);
  // c1's last event at 400: it expires after 400 + 10 d.
  MoveClockTo(400 + 10 * 86400 + 1);
  EXPECT_THAT(sink_.Take(), ::testing::Contains("expired p0 s0 d2 @864400"));
  EXPECT_EQ(OldestEntered(0, 0), -1);
}

TEST_F(CaseTrackerTest, BreachingCasesAreTheOldestPastTheirDeadline) {
  const std::string long_id = "order-2026-03-01-emea-0000042";  // 29 bytes: pooled
  const std::string inline_id = "ticket-2026-03-01-00042";      // 23 bytes: the most inline
  ASSERT_EQ(long_id.size(), 29u);
  ASSERT_EQ(inline_id.size(), 23u);
  Enter("short", "lead", 0);   // lead sla 1h: deadline 3600
  Enter(long_id, "lead", 10);  // deadline 3610
  Enter("d1", "lead", 20);
  Enter("d1", "demo", 100);  // demo sla 2h: deadline 7300
  Send(ProcessEvent::STAGE_ENTERED, inline_id, "triage", 5, 0, "support");  // 30m: 1805
  // At 3610: short is 3610 s in lead (> 1h), the long id exactly 1h (not
  // over); the ticket 3605 s in triage (> 30m); d1 3510 s in demo (< 2h).
  EXPECT_THAT(BreachingAt(3610),
              ElementsAre("short p0 s0 d2 @0 deadline @3600",
                          absl::StrCat(inline_id, " p1 s0 d2 @5 deadline @1805")));
  // At 7301 all four, by entry time.
  EXPECT_THAT(BreachingAt(7301), ElementsAre("short p0 s0 d2 @0 deadline @3600",
                                             absl::StrCat(inline_id, " p1 s0 d2 @5 deadline @1805"),
                                             absl::StrCat(long_id, " p0 s0 d2 @10 deadline @3610"),
                                             "d1 p0 s1 d2 @100 deadline @7300"));
  // Leaving the stage leaves the list, whether or not the case stays open.
  Enter("short", "demo", 7302);  // demo deadline 7302 + 7200 = 14502
  Send(ProcessEvent::CASE_COMPLETED, long_id, "", 7303, 1);
  EXPECT_THAT(BreachingAt(7304), ElementsAre(absl::StrCat(inline_id, " p1 s0 d2 @5 deadline @1805"),
                                             "d1 p0 s1 d2 @100 deadline @7300"));
}

TEST_F(CaseTrackerTest, BreachingCasesAreLimitedPerStage) {
  CaseTracker::Options options = Wired();
  options.max_breaching_per_stage = 2;
  CaseTracker small(options);
  target_ = &small;
  for (int i = 0; i < 5; ++i) Enter(absl::StrCat("c", i), "lead", i);  // deadlines 3600..3604
  for (int i = 0; i < 3; ++i) {
    Send(ProcessEvent::STAGE_ENTERED, absl::StrCat("s", i), "triage", 5 + i, 0, "support");
  }
  // At 3700 all 5 lead and all 3 triage cases are over; 2 of each, the oldest.
  EXPECT_THAT(BreachingAt(3700),
              ElementsAre("c0 p0 s0 d2 @0 deadline @3600", "c1 p0 s0 d2 @1 deadline @3601",
                          "s0 p1 s0 d2 @5 deadline @1805", "s1 p1 s0 d2 @6 deadline @1806"));
  // Oldest is not limited by K: c0 is lead's oldest whatever K.
  EXPECT_EQ(OldestEntered(0, 0), 0);
}

// One case stays in lead while 5,000 others pass through it (a third of
// them read out of order): the stale index entries they leave are dropped
// as they go, and the oldest stays exact.
TEST_F(CaseTrackerTest, OldestStaysExactWhileManyCasesPassThrough) {
  Enter("old", "lead", 0);
  for (int i = 1; i <= 5000; ++i) {
    const std::string id = absl::StrCat("pass-", i);
    const int64_t t = i % 3 == 0 ? i - 2 : i;  // every third one entered before the previous
    Enter(id, "lead", t);
    Enter(id, "demo", t + 1);
    Send(ProcessEvent::CASE_COMPLETED, id, "", t + 2, 1);
    if (i % 1000 == 0) {
      EXPECT_EQ(OldestEntered(0, 0), 0) << i;
    }
  }
  EXPECT_EQ(OldestEntered(0, 1), -1);
  Enter("old", "demo", 6000);
  EXPECT_EQ(OldestEntered(0, 0), -1);
  EXPECT_EQ(OldestEntered(0, 1), 6000);
}

// ---- max_open_cases. SLAs: lead 1h, demo 2h, quote 1d, triage 30m; case_ttl 10d.

// Evicted: the case waiting longest in its current stage, whatever its
// process or when it started; closed like an expiry and counted.
TEST_F(CaseTrackerTest, NewCaseBeyondTheBoundEvictsTheLongestWaiting) {
  CaseTracker::Options options = Wired();
  options.max_open_cases = 3;
  CaseTracker small(options);
  target_ = &small;
  Enter("a", "lead", 0);  // started first, but in demo only since 300
  Send(ProcessEvent::STAGE_ENTERED, "c", "triage", 100, 0, "support");  // deadline 1900
  Enter("b", "quote", 200);
  Enter("a", "demo", 300);
  sink_.Take();
  // Waiting: c in triage since 100, b in quote since 200, a in demo since
  // 300. At 2000 c has breached (1900) and is the longest wait: evicted,
  // at the evicting event's time, leaving backlog and over-SLA.
  EXPECT_TRUE(Accepted(Enter("d", "lead", 2000)));
  EXPECT_THAT(sink_.Take(), ElementsAre("breach p1 s0 d2 @1900", "expired p1 s0 d2 @2000",
                                        "started p0 d2 @2000", "entered p0 s0 d2 @2000"));
  EXPECT_EQ(small.evicted(), 1u);
  EXPECT_EQ(small.evicted(1), 1u);
  EXPECT_EQ(small.evicted(0), 0u);
  EXPECT_EQ(small.open_cases(), 3u);
  EXPECT_EQ(Backlog(1, 0), 0);
  EXPECT_EQ(OverSla(1, 0), 0);
  EXPECT_EQ(Backlog(0, 0), 1);  // d
  EXPECT_EQ(Backlog(0, 1), 1);  // a
  EXPECT_EQ(Backlog(0, 2), 1);  // b
  // c is remembered as closed: its late events do not reopen it (nor evict).
  EXPECT_TRUE(Rejected(Send(ProcessEvent::STAGE_ENTERED, "c", "triage", 2100, 0, "support"),
                       RejectReason::kCaseClosed));
  EXPECT_TRUE(Rejected(Send(ProcessEvent::CASE_COMPLETED, "c", "", 2110, 5, "support"),
                       RejectReason::kCaseClosed));
  EXPECT_EQ(small.evicted(), 1u);
  // d is open: it advances (200 s in lead).
  EXPECT_TRUE(Accepted(Enter("d", "demo", 2200)));
  EXPECT_THAT(sink_.Take(), ElementsAre("exited p0 s0 d2 @2200 advanced 200s met",
                                        "transition p0 0->1 @2200", "entered p0 s1 d2 @2200"));
  // Published for the exporter: [sales, support].
  small.Tick(absl::Now());
  EXPECT_THAT(small.PublishedView()->evicted, ElementsAre(0u, 1u));
}

// All in one stage, one of them read out of order (the index's heap).
TEST_F(CaseTrackerTest, EvictionWithinOneStageTakesTheEarliestEntered) {
  CaseTracker::Options options = Wired();
  options.max_open_cases = 3;
  CaseTracker small(options);
  target_ = &small;
  Enter("x1", "lead", 10);
  Enter("x2", "lead", 5);  // earlier than x1, read after it
  Enter("x3", "lead", 20);
  sink_.Take();
  Enter("x4", "lead", 30);  // evicts x2 (5)
  EXPECT_THAT(sink_.Take(),
              ElementsAre("expired p0 s0 d2 @30", "started p0 d2 @30", "entered p0 s0 d2 @30"));
  EXPECT_EQ(OldestEntered(0, 0), 10);
  Enter("x5", "lead", 40);  // evicts x1 (10)
  EXPECT_EQ(OldestEntered(0, 0), 20);
  EXPECT_EQ(small.evicted(), 2u);
  EXPECT_EQ(Backlog(0, 0), 3);  // x3, x4, x5
  EXPECT_TRUE(Rejected(Enter("x2", "demo", 50), RejectReason::kCaseClosed));
  EXPECT_TRUE(Rejected(Enter("x1", "demo", 50), RejectReason::kCaseClosed));
  sink_.Take();
  EXPECT_TRUE(Accepted(Enter("x3", "demo", 50)));  // still open: 50 - 20 = 30 s in lead
  EXPECT_THAT(sink_.Take(), ::testing::Contains("exited p0 s0 d2 @50 advanced 30s met"));
}

// Expiries due by now are applied before the bound is checked, so a case
// that expired is not also evicted; an evicted case's timer stays silent.
TEST_F(CaseTrackerTest, ExpiryFreesRoomBeforeEvictionAndEvictedCasesNeverExpire) {
  CaseTracker::Options options = Wired();
  options.max_open_cases = 2;
  CaseTracker small(options);
  target_ = &small;
  Enter("e1", "lead", 0);    // expires after 0 + 864000
  Enter("e2", "demo", 100);  // deadline 7300; expires after 864100
  sink_.Take();
  // At 864001 e1 has expired: one open case, room for e3 without eviction.
  EXPECT_TRUE(Accepted(Enter("e3", "quote", 864001)));
  // The timers of one jump fire in no promised order; all before e3 starts.
  const std::vector<std::string> facts = sink_.Take();
  ASSERT_EQ(facts.size(), 5u);
  EXPECT_THAT(std::vector<std::string>(facts.begin(), facts.begin() + 3),
              ::testing::UnorderedElementsAre("breach p0 s0 d2 @3600", "breach p0 s1 d2 @7300",
                                              "expired p0 s0 d2 @864000"));
  EXPECT_THAT(std::vector<std::string>(facts.begin() + 3, facts.end()),
              ElementsAre("started p0 d2 @864001", "entered p0 s2 d2 @864001"));
  EXPECT_EQ(small.evicted(), 0u);
  EXPECT_EQ(OverSla(0, 1), 1);
  // Full (e2 in demo since 100, e3 in quote since 864001): e4 evicts e2.
  EXPECT_TRUE(Accepted(Enter("e4", "lead", 864002)));
  EXPECT_THAT(sink_.Take(), ElementsAre("expired p0 s1 d2 @864002", "started p0 d2 @864002",
                                        "entered p0 s0 d2 @864002"));
  EXPECT_EQ(small.evicted(), 1u);
  EXPECT_EQ(Backlog(0, 1), 0);
  EXPECT_EQ(OverSla(0, 1), 0);
  // Past e2's expiry (864100): nothing (its timer went stale with it); the
  // next deadlines are e4's 864002 + 3600 and e3's 864001 + 86400.
  MoveClockTo(864200);
  EXPECT_THAT(sink_.Take(), IsEmpty());
  EXPECT_TRUE(Rejected(Enter("e2", "lead", 864300), RejectReason::kCaseClosed));
  EXPECT_TRUE(Rejected(Enter("e1", "lead", 864300), RejectReason::kCaseClosed));
  EXPECT_EQ(small.open_cases(), 2u);
  EXPECT_EQ(small.evicted(), 1u);
}

}  // namespace
}  // namespace kpid::cases
