// Checks that the case tracker behaves as the frozen pre-optimization copy in
// bench/baseline/ does: both are fed the same simulated streams (with
// duplicates, replays of closed cases, unknown cases and clock jumps mixed
// in), and every verdict and every fact reported to the sink must match,
// call by call. Facts within one call are compared as a multiset: timers due
// in the same second fire "in no particular order" (timing_wheel.h).
//
// "Now" moves in whole seconds here. The one intended difference: a case
// whose expiry moved (activity after its start) now expires as soon as
// "now" passes last activity + case_ttl; the baseline re-checked such a case
// only from the next whole second on, so with a sub-second "now" it expired
// up to a second later. On whole seconds the two agree.
//
//   build/bench/engine_equivalence [--events N]
//   ...
//   OK: 3 streams, 2400000 events, 0 differences
//
// Exits 1 at the first difference, printing the event and both fact lists.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "bench/baseline/legacy_case_tracker.h"
#include "bench/engine_fixture.h"
#include "daemon/cases/case_tracker.h"
#include "daemon/cases/clock.h"

namespace kpid::bench {
namespace {

using kpid::v1::ProcessEvent;

// Writes every fact as one line (times in microseconds).
class RecordingSink : public cases::CaseSink {
 public:
  void CaseStarted(int p, cases::DimsId d, absl::Time at) override { Add("started", p, d, T(at)); }
  void StageEntered(int p, int s, cases::DimsId d, absl::Time at, bool rework) override {
    Add("entered", p, s, d, T(at), rework);
  }
  void StageExited(int p, int s, cases::DimsId d, absl::Time at, cases::ExitOutcome o,
                   absl::Duration cycle, bool met) override {
    Add("exited", p, s, d, T(at), static_cast<int>(o), absl::ToInt64Microseconds(cycle), met);
  }
  void Transition(int p, int from, int to, absl::Time at) override {
    Add("transition", p, from, to, T(at));
  }
  void CaseCompleted(int p, cases::DimsId d, absl::Time at, double amount,
                     absl::Duration lead) override {
    Add("completed", p, d, T(at), amount, absl::ToInt64Microseconds(lead));
  }
  void CaseFallout(int p, cases::DimsId d, absl::Time at) override { Add("fallout", p, d, T(at)); }
  void CaseExpired(int p, int s, cases::DimsId d, absl::Time at) override {
    Add("expired", p, s, d, T(at));
  }
  void Cost(int p, cases::DimsId d, absl::Time at, double amount) override {
    Add("cost", p, d, T(at), amount);
  }
  void Feedback(int p, cases::DimsId d, absl::Time at, double score) override {
    Add("feedback", p, d, T(at), score);
  }
  void SlaBreached(int p, int s, cases::DimsId d, absl::Time deadline) override {
    Add("breach", p, s, d, T(deadline));
  }
  void BacklogChanged(int p, int s, cases::DimsId d, int open, int over) override {
    Add("backlog", p, s, d, open, over);
  }

  std::vector<std::string> Take() { return std::exchange(facts_, {}); }

 private:
  static int64_t T(absl::Time t) { return absl::ToUnixMicros(t); }
  template <typename... Args>
  void Add(const Args&... args) {
    facts_.push_back(absl::StrJoin(std::make_tuple(args...), " "));
  }
  std::vector<std::string> facts_;
};

const char* VerdictName(const ingest::Verdict& v) {
  switch (v.kind) {
    case ingest::Verdict::Kind::kAccepted:
      return "accepted";
    case ingest::Verdict::Kind::kDuplicate:
      return "duplicate";
    case ingest::Verdict::Kind::kRejected:
      return model::RejectReasonName(v.reason).data();
  }
  return "?";
}

template <typename Tracker, typename Dims>
struct Side {
  Side(const model::Config& config, size_t max_dedup)
      : dims(config),
        tracker(typename Tracker::Options{.config = &config,
                                          .clock = &clock,
                                          .sink = &sink,
                                          .dimensions = &dims,
                                          .max_dedup_ids = max_dedup}) {}
  Dims dims;
  cases::ManualClock clock;
  RecordingSink sink;
  Tracker tracker;
};

bool Same(std::vector<std::string> a, std::vector<std::string> b) {
  if (a == b) return true;
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  return a == b;
}

// Runs `count` events of the simulation of `config`, perturbed: returns the
// number of events checked, or exits on a difference.
int64_t Check(const char* name, const model::Config& config, int64_t count, uint64_t seed,
              int64_t max_jump_s, size_t max_dedup = 2'000'000) {
  Side<cases::CaseTracker, cases::DimensionTable> now(config, max_dedup);
  Side<bench_legacy::CaseTracker, bench_legacy::DimensionTable> old(config, max_dedup);
  std::vector<ingest::DecodedEvent> events = SimulateEvents(config, seed, count);
  std::mt19937_64 rng(seed);
  std::vector<size_t> replay;  // earlier events to send again later
  absl::Time clock = events.front().occurred_at;
  int64_t checked = 0;
  auto fail = [&](const std::string& what, std::vector<std::string> a, std::vector<std::string> b) {
    std::fprintf(stderr, "%s: difference at check %lld: %s\n  %zu facts new, %zu legacy\n", name,
                 static_cast<long long>(checked), what.c_str(), a.size(), b.size());
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    std::vector<std::string> only_a, only_b;
    std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(only_a));
    std::set_difference(b.begin(), b.end(), a.begin(), a.end(), std::back_inserter(only_b));
    only_a.resize(std::min<size_t>(only_a.size(), 8));
    only_b.resize(std::min<size_t>(only_b.size(), 8));
    std::fprintf(stderr, "  only new:    %s\n  only legacy: %s\n",
                 absl::StrJoin(only_a, " | ").c_str(), absl::StrJoin(only_b, " | ").c_str());
    std::exit(1);
  };
  auto send = [&](const ingest::DecodedEvent& e) {
    // The clock follows event time, as `clock: event` does, never backwards,
    // on whole seconds: see the note at the top.
    clock = std::max(
        clock, absl::UnixEpoch() + absl::Ceil(e.occurred_at - absl::UnixEpoch(), absl::Seconds(1)));
    now.clock.Set(clock);
    old.clock.Set(clock);
    const ingest::Verdict a = now.tracker.Handle(e);
    const ingest::Verdict b = old.tracker.Handle(e);
    const std::vector<std::string> fa = now.sink.Take(), fb = old.sink.Take();
    if (a.kind != b.kind || a.reason != b.reason) {
      fail(absl::StrCat("verdict ", VerdictName(a), " vs ", VerdictName(b), " for ",
                        e.proto.ShortDebugString()),
           fa, fb);
    }
    if (!Same(fa, fb)) fail(absl::StrCat("facts for ", e.proto.ShortDebugString()), fa, fb);
    ++checked;
  };
  for (size_t i = 0; i < events.size(); ++i) {
    send(events[i]);
    const uint64_t r = rng() % 1000;
    if (r < 20) replay.push_back(i);  // a duplicate or a late replay, later
    if (r < 5 && !replay.empty()) {
      // An event sent again: a duplicate within the horizon, else handled anew.
      send(events[replay[rng() % replay.size()]]);
    } else if (r < 8) {
      // A fresh id for an old event: same stage, closed case, unknown case...
      ingest::DecodedEvent copy = events[replay.empty() ? i : replay[rng() % replay.size()]];
      copy.proto.set_event_id(absl::StrCat("x-", i));
      send(copy);
    } else if (r < 9) {
      // The clock jumps ahead (a quiet hour on a wall clock; a replay gap):
      // deadlines and expiries fire from the timer alone.
      clock += absl::Seconds(static_cast<int64_t>(rng() % static_cast<uint64_t>(max_jump_s + 1)));
      now.clock.Set(clock);
      old.clock.Set(clock);
      now.tracker.AdvanceTimers();
      old.tracker.AdvanceTimers();
      const std::vector<std::string> fa = now.sink.Take(), fb = old.sink.Take();
      if (!Same(fa, fb)) fail("facts of a clock jump", fa, fb);
      ++checked;
    }
    if (replay.size() > 10000) replay.erase(replay.begin(), replay.begin() + 5000);
  }
  if (now.tracker.open_cases() != old.tracker.open_cases()) {
    fail(absl::StrCat("open cases ", now.tracker.open_cases(), " vs ", old.tracker.open_cases()),
         {}, {});
  }
  std::printf("%s: %lld checks, %llu cases open at the end, no difference\n", name,
              static_cast<long long>(checked),
              static_cast<unsigned long long>(now.tracker.open_cases()));
  return checked;
}

}  // namespace
}  // namespace kpid::bench

int main(int argc, char** argv) {
  int64_t events = 800'000;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::string(argv[i]) == "--events") events = std::atoll(argv[i + 1]);
  }
  using kpid::bench::Check;
  // Small jumps keep "now" near event time: cases pile up as in production.
  int64_t checked = Check("engine", kpid::bench::EngineConfig(), events, 11, 60);
  checked += Check("engine, jumps of hours", kpid::bench::EngineConfig(), events, 14, 20000);
  checked += Check("short cases", kpid::bench::ShortCasesConfig(), events, 12, 600);
  // Expiry before deadlines, a short dedup horizon, a small dedup memory.
  kpid::model::Config tight = kpid::bench::ShortCasesConfig();
  tight.case_ttl = absl::Minutes(20);
  tight.dedup_horizon = absl::Minutes(3);
  checked += Check("ttl 20m, horizon 3m, 1000 ids", tight, events, 13, 600, 1000);
  std::printf("OK: %lld checks, new and legacy trackers agree\n", static_cast<long long>(checked));
  return 0;
}
