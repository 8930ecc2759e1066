#include "daemon/alert/alert_state.h"

namespace kpid::alert {

absl::string_view AlertPhaseName(AlertPhase phase) {
  switch (phase) {
    case AlertPhase::kInactive:
      return "inactive";
    case AlertPhase::kPending:
      return "pending";
    case AlertPhase::kFiring:
      return "firing";
    case AlertPhase::kResolved:
      return "resolved";
  }
  return "unknown";
}

Transition AlertState::Activate(absl::Time now, absl::Duration for_duration) {
  active_at_ = now;
  if (for_duration <= absl::ZeroDuration()) {
    phase_ = AlertPhase::kFiring;
    fired_at_ = now;
    return Transition::kFired;
  }
  phase_ = AlertPhase::kPending;
  return Transition::kPending;
}

Transition AlertState::Evaluate(Verdict verdict, double value, absl::Time now,
                                absl::Duration for_duration, absl::Duration keep_firing_for) {
  if (verdict != Verdict::kNone) value_ = value;
  if (verdict == Verdict::kTrue) last_true_ = now;
  switch (phase_) {
    case AlertPhase::kInactive:
    case AlertPhase::kResolved:
      if (verdict == Verdict::kTrue) return Activate(now, for_duration);
      return Transition::kNone;
    case AlertPhase::kPending:
      if (verdict == Verdict::kFalse) {
        phase_ = AlertPhase::kInactive;
        return Transition::kCancelled;
      }
      if (verdict == Verdict::kTrue && now - active_at_ >= for_duration) {
        phase_ = AlertPhase::kFiring;
        fired_at_ = now;
        return Transition::kFired;
      }
      return Transition::kNone;
    case AlertPhase::kFiring:
      if (verdict == Verdict::kFalse && now - last_true_ >= keep_firing_for) {
        phase_ = AlertPhase::kResolved;
        resolved_at_ = now;
        return Transition::kResolved;
      }
      return Transition::kNone;
  }
  return Transition::kNone;
}

}  // namespace kpid::alert
