#include "daemon/alert/alert_state.h"

#include "gtest/gtest.h"

namespace kpid::alert {
namespace {

constexpr auto kT = Verdict::kTrue;
constexpr auto kF = Verdict::kFalse;
constexpr auto kN = Verdict::kNone;

// Evaluations one second apart from t = 0, with the rule's for and keep_firing_for.
class AlertStateTest : public ::testing::Test {
 protected:
  Transition At(int second, Verdict v, double value = 1) {
    return state_.Evaluate(v, value, absl::FromUnixSeconds(second), for_, keep_);
  }
  AlertState state_;
  absl::Duration for_ = absl::Seconds(5);
  absl::Duration keep_ = absl::ZeroDuration();
};

TEST_F(AlertStateTest, PendingForTheForDurationThenFiring) {
  EXPECT_EQ(At(0, kF), Transition::kNone);
  EXPECT_EQ(state_.phase(), AlertPhase::kInactive);
  EXPECT_EQ(At(1, kT), Transition::kPending);
  EXPECT_EQ(state_.active_at(), absl::FromUnixSeconds(1));
  for (int t = 2; t <= 5; ++t) EXPECT_EQ(At(t, kT), Transition::kNone) << t;  // 4 s < for
  EXPECT_EQ(state_.phase(), AlertPhase::kPending);
  EXPECT_EQ(At(6, kT), Transition::kFired);  // 6 - 1 = 5 s = for
  EXPECT_EQ(state_.phase(), AlertPhase::kFiring);
  EXPECT_EQ(state_.fired_at(), absl::FromUnixSeconds(6));
  EXPECT_EQ(At(7, kT), Transition::kNone);
  EXPECT_EQ(At(8, kF, 0.5), Transition::kResolved);  // keep_firing_for 0: at once
  EXPECT_EQ(state_.phase(), AlertPhase::kResolved);
  EXPECT_EQ(state_.value(), 0.5);
  EXPECT_EQ(state_.resolved_at(), absl::FromUnixSeconds(8));
}

TEST_F(AlertStateTest, ForZeroFiresOnTheFirstTrue) {
  for_ = absl::ZeroDuration();
  EXPECT_EQ(At(0, kT), Transition::kFired);
  EXPECT_EQ(state_.active_at(), absl::FromUnixSeconds(0));
}

TEST_F(AlertStateTest, FlappingInputNeverFires) {
  // true, false, true, false...: each false cancels the pending episode.
  for (int t = 0; t < 20; ++t) {
    const Transition tr = At(t, t % 2 == 0 ? kT : kF);
    EXPECT_EQ(tr, t % 2 == 0 ? Transition::kPending : Transition::kCancelled) << t;
  }
  EXPECT_NE(state_.phase(), AlertPhase::kFiring);
}

TEST_F(AlertStateTest, KeepFiringForBridgesShortRecoveries) {
  for_ = absl::ZeroDuration();
  keep_ = absl::Seconds(10);
  EXPECT_EQ(At(0, kT), Transition::kFired);
  EXPECT_EQ(At(1, kF), Transition::kNone);   // 1 s since last true < 10 s
  EXPECT_EQ(At(5, kT), Transition::kNone);   // true again: still the same episode
  EXPECT_EQ(At(14, kF), Transition::kNone);  // 9 s since 5
  EXPECT_EQ(state_.phase(), AlertPhase::kFiring);
  EXPECT_EQ(At(15, kF), Transition::kResolved);  // 10 s since 5
  EXPECT_EQ(state_.fired_at(), absl::FromUnixSeconds(0));
}

TEST_F(AlertStateTest, NoVerdictNeitherStartsNorEndsAnEpisode) {
  EXPECT_EQ(At(0, kN), Transition::kNone);
  EXPECT_EQ(state_.phase(), AlertPhase::kInactive);
  EXPECT_EQ(At(1, kT, 0.7), Transition::kPending);
  EXPECT_EQ(At(3, kN, 99), Transition::kNone);  // holds pending, value kept
  EXPECT_EQ(state_.value(), 0.7);
  EXPECT_EQ(At(6, kT), Transition::kFired);  // for counted from 1
  EXPECT_EQ(At(7, kN), Transition::kNone);
  EXPECT_EQ(At(100, kN), Transition::kNone);
  EXPECT_EQ(state_.phase(), AlertPhase::kFiring);
  EXPECT_EQ(At(101, kF), Transition::kResolved);
}

TEST_F(AlertStateTest, AResolvedAlertStartsANewEpisode) {
  for_ = absl::Seconds(2);
  At(0, kT);
  At(2, kT);
  ASSERT_EQ(state_.phase(), AlertPhase::kFiring);
  At(3, kF);
  ASSERT_EQ(state_.phase(), AlertPhase::kResolved);
  EXPECT_EQ(At(4, kF), Transition::kNone);
  EXPECT_EQ(At(10, kT), Transition::kPending);
  EXPECT_EQ(state_.active_at(), absl::FromUnixSeconds(10));
  EXPECT_EQ(At(12, kT), Transition::kFired);
}

// Save then Load in another object: the state a restarted kpid resumes.
AlertState RoundTrip(const AlertState& state) {
  StateEncoder e;
  state.Save(&e);
  const std::string bytes = e.Take();
  StateDecoder d(bytes);
  AlertState loaded;
  EXPECT_TRUE(AlertState::Load(&d, &loaded));
  EXPECT_EQ(d.remaining(), 0u);
  return loaded;
}

TEST_F(AlertStateTest, SaveAndLoadKeepEveryClock) {
  keep_ = absl::Seconds(3);
  At(1, kT, 0.25);
  At(6, kT, 0.5);   // fired
  At(7, kF, 0.75);  // keep firing until 6 + 3
  AlertState loaded = RoundTrip(state_);
  EXPECT_EQ(loaded.phase(), AlertPhase::kFiring);
  EXPECT_EQ(loaded.value(), 0.75);
  EXPECT_EQ(loaded.active_at(), absl::FromUnixSeconds(1));
  EXPECT_EQ(loaded.pending_since(), absl::FromUnixSeconds(1));
  EXPECT_EQ(loaded.last_true(), absl::FromUnixSeconds(6));
  EXPECT_EQ(loaded.fired_at(), absl::FromUnixSeconds(6));
  EXPECT_EQ(loaded.resolved_at(), absl::InfinitePast());
  // It behaves as the original would: resolves 3 s after the last true.
  EXPECT_EQ(loaded.Evaluate(kF, 0, absl::FromUnixSeconds(8), for_, keep_), Transition::kNone);
  EXPECT_EQ(loaded.Evaluate(kF, 0, absl::FromUnixSeconds(9), for_, keep_), Transition::kResolved);
}

TEST_F(AlertStateTest, ResumeStopsTheForClockForTheDowntime) {
  At(1, kT);
  At(3, kT);  // pending, held 2 s of 5
  AlertState resumed = RoundTrip(state_);
  resumed.Resume(absl::Seconds(100));                        // down from 3 to 103
  EXPECT_EQ(resumed.active_at(), absl::FromUnixSeconds(1));  // the episode's start stays
  EXPECT_EQ(resumed.pending_since(), absl::FromUnixSeconds(101));
  // 2 s before + 2 s after = 4 s < 5 s; 2 + 3 = 5 s fires.
  EXPECT_EQ(resumed.Evaluate(kT, 1, absl::FromUnixSeconds(105), for_, keep_), Transition::kNone);
  EXPECT_EQ(resumed.Evaluate(kT, 1, absl::FromUnixSeconds(106), for_, keep_), Transition::kFired);
  EXPECT_EQ(resumed.active_at(), absl::FromUnixSeconds(1));
  // A clock that went back loses nothing and gains nothing.
  AlertState back = RoundTrip(state_);
  back.Resume(-absl::Seconds(50));
  EXPECT_EQ(back.pending_since(), absl::FromUnixSeconds(1));
}

TEST(AlertStateLoadTest, MalformedBytesFailAndLeaveTheStateAlone) {
  AlertState state;
  state.Evaluate(kT, 1, absl::FromUnixSeconds(1), absl::ZeroDuration(), absl::ZeroDuration());
  StateEncoder e;
  state.Save(&e);
  const std::string bytes = e.Take();
  for (size_t n = 0; n < bytes.size(); ++n) {
    StateDecoder d(absl::string_view(bytes).substr(0, n));
    AlertState out;
    EXPECT_FALSE(AlertState::Load(&d, &out)) << n;
    EXPECT_EQ(out.phase(), AlertPhase::kInactive);
  }
  std::string bad_phase = bytes;
  bad_phase[0] = 4;  // one past kResolved
  StateDecoder d(bad_phase);
  AlertState out;
  EXPECT_FALSE(AlertState::Load(&d, &out));
}

TEST(AlertPhaseName, Names) {
  EXPECT_EQ(AlertPhaseName(AlertPhase::kInactive), "inactive");
  EXPECT_EQ(AlertPhaseName(AlertPhase::kPending), "pending");
  EXPECT_EQ(AlertPhaseName(AlertPhase::kFiring), "firing");
  EXPECT_EQ(AlertPhaseName(AlertPhase::kResolved), "resolved");
}

}  // namespace
}  // namespace kpid::alert
