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

TEST(AlertPhaseName, Names) {
  EXPECT_EQ(AlertPhaseName(AlertPhase::kInactive), "inactive");
  EXPECT_EQ(AlertPhaseName(AlertPhase::kPending), "pending");
  EXPECT_EQ(AlertPhaseName(AlertPhase::kFiring), "firing");
  EXPECT_EQ(AlertPhaseName(AlertPhase::kResolved), "resolved");
}

}  // namespace
}  // namespace kpid::alert
