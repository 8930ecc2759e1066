// The worker handles events and ticks (publishing a view each tick) while
// reader threads take the published view and read it. Meant to run under
// ThreadSanitizer (KPID_SANITIZE=thread) as well as plainly: TSan checks
// the handover; the assertions check that a reader never sees a view being
// built or a broken one.
#include <atomic>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "daemon/cases/case_tracker.h"
#include "gtest/gtest.h"

namespace kpid::cases {
namespace {

constexpr int64_t kT0 = 1772323200;
constexpr int kCases = 20000;

class NullSink final : public CaseSink {
 public:
  void CaseStarted(int, DimsId, absl::Time) override {}
  void StageEntered(int, int, DimsId, absl::Time, bool) override {}
  void StageExited(int, int, DimsId, absl::Time, ExitOutcome, absl::Duration, bool) override {}
  void Transition(int, int, int, absl::Time) override {}
  void CaseCompleted(int, DimsId, absl::Time, double, absl::Duration) override {}
  void CaseFallout(int, DimsId, absl::Time) override {}
  void CaseExpired(int, int, DimsId, absl::Time) override {}
  void Cost(int, DimsId, absl::Time, double) override {}
  void Feedback(int, DimsId, absl::Time, double) override {}
  void SlaBreached(int, int, DimsId, absl::Time) override {}
  void BacklogChanged(int, int, DimsId, int, int) override {}
};

TEST(OpenCasesViewStress, ReadersSeeWholeViewsWhileTheWorkerPublishes) {
  const model::Config config = *model::ParseConfig(R"(
clock: event
case_ttl: 1d
processes:
  - id: p
    stages:
      - {id: a, sla: 10s}
      - {id: b, sla: 1m}
)",
                                                   "t.yaml");
  DimensionTable dims(config);
  NullSink sink;
  ManualClock clock(absl::FromUnixSeconds(kT0));
  CaseTracker tracker({.config = &config, .clock = &clock, .sink = &sink, .dimensions = &dims});

  std::atomic<bool> done{false};
  std::vector<std::thread> readers;
  std::atomic<uint64_t> views_read{0};
  for (int r = 0; r < 2; ++r) {
    readers.emplace_back([&] {
      absl::Time last = absl::InfinitePast();
      while (!done.load(std::memory_order_acquire)) {
        const std::shared_ptr<const OpenCasesView> view = tracker.PublishedView();
        ASSERT_NE(view, nullptr);
        ASSERT_GE(view->as_of, last);  // views only move forward
        last = view->as_of;
        ASSERT_EQ(view->oldest_entered.size(), 1u);
        ASSERT_EQ(view->oldest_entered[0].size(), 2u);
        for (size_t i = 0; i < view->breaching.size(); ++i) {
          const BreachingCase& c = view->breaching[i];
          ASSERT_LT(c.deadline, view->as_of);
          ASSERT_EQ(c.deadline - c.entered_at, c.stage == 0 ? absl::Seconds(10) : absl::Minutes(1));
          ASSERT_FALSE(c.case_id.empty());
          if (i > 0) {
            ASSERT_LE(view->breaching[i - 1].entered_at, c.entered_at);
          }
          // The oldest of its stage entered no later than any breaching case there.
          ASSERT_LE(*view->oldest_entered[0][static_cast<size_t>(c.stage)], c.entered_at);
        }
        views_read.fetch_add(1, std::memory_order_relaxed);
      }
    });
  }

  ingest::DecodedEvent e;
  e.process_index = 0;
  e.proto.set_process("p");
  e.proto.set_kind(kpid::v1::ProcessEvent::STAGE_ENTERED);
  for (int i = 0; i < kCases; ++i) {
    // Case i enters a at i * 100 ms and b 5 s later (then stays).
    for (int stage = 0; stage < 2; ++stage) {
      const int64_t at_ms = int64_t{i} * 100 + stage * 5000;
      e.stage_index = stage;
      e.proto.set_stage(stage == 0 ? "a" : "b");
      e.proto.set_event_id(absl::StrCat(i, "-", stage));
      e.proto.set_case_id(absl::StrCat("case-with-a-rather-long-id-", i));
      e.occurred_at = absl::FromUnixSeconds(kT0) + absl::Milliseconds(at_ms);
      if (e.occurred_at > clock.Now()) clock.Set(e.occurred_at);
      tracker.Handle(e);
    }
    if (i % 10 == 0) tracker.Tick(absl::Now());
  }
  done.store(true, std::memory_order_release);
  for (std::thread& t : readers) t.join();
  EXPECT_GT(views_read.load(), 0u);
  // At the end (now = last entry into b, (kCases - 1) * 100 ms + 5 s): all
  // cases are in b; the oldest entered b at 5 s.
  tracker.Tick(absl::Now());
  EXPECT_EQ(tracker.PublishedView()->oldest_entered[0][1], absl::FromUnixSeconds(kT0 + 5));
  EXPECT_FALSE(tracker.PublishedView()->oldest_entered[0][0].has_value());
}

}  // namespace
}  // namespace kpid::cases
