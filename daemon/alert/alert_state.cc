#include "daemon/alert/alert_state.h"

#include <cstdint>
#include <limits>

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
  pending_since_ = now;
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
      if (verdict == Verdict::kTrue && now - pending_since_ >= for_duration) {
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

void AlertState::Resume(absl::Duration downtime) {
  if (downtime <= absl::ZeroDuration()) return;  // a clock set back loses nothing
  pending_since_ += downtime;
  last_true_ += downtime;
}

void AlertState::Save(StateEncoder* out) const {
  out->Varint(static_cast<uint64_t>(phase_));
  out->Double(value_);
  SaveTime(out, active_at_);
  SaveTime(out, pending_since_);
  SaveTime(out, last_true_);
  SaveTime(out, fired_at_);
  SaveTime(out, resolved_at_);
}

bool AlertState::Load(StateDecoder* in, AlertState* out) {
  AlertState s;
  s.phase_ = static_cast<AlertPhase>(in->Below(static_cast<uint64_t>(AlertPhase::kResolved) + 1));
  s.value_ = in->Double();
  s.active_at_ = LoadTime(in);
  s.pending_since_ = LoadTime(in);
  s.last_true_ = LoadTime(in);
  s.fired_at_ = LoadTime(in);
  s.resolved_at_ = LoadTime(in);
  if (!in->ok()) return false;
  *out = s;
  return true;
}

void SaveTime(StateEncoder* out, absl::Time t) {
  out->Signed(t == absl::InfinitePast() ? std::numeric_limits<int64_t>::min()
                                        : absl::ToUnixNanos(t));
}

absl::Time LoadTime(StateDecoder* in) {
  const int64_t nanos = in->Signed();
  return nanos == std::numeric_limits<int64_t>::min() ? absl::InfinitePast()
                                                      : absl::FromUnixNanos(nanos);
}

}  // namespace kpid::alert
