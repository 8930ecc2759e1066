// The life of one alert instance: inactive -> pending -> firing -> resolved,
// as Prometheus defines it, plus kpid's "no verdict" for windows with fewer
// than min_events.
//
//   AlertState s;
//   Transition t = s.Evaluate(Verdict::kTrue, value, now, rule.for_duration,
//                             rule.keep_firing_for);
//   if (t == Transition::kFired) ... notify ...
//
// Rules per evaluation (time is a parameter; nothing here reads a clock):
//   inactive  true -> pending (active since now), or firing at once when for = 0
//   pending   true -> firing once `for` has passed since it became active;
//             false -> inactive; no verdict -> stays pending
//   firing    true -> firing; false -> resolved once keep_firing_for has passed
//             since the condition was last true; no verdict -> stays firing
//   resolved  true -> pending again (a new episode); else stays resolved
// "No verdict" never starts nor ends an episode: a quiet hour neither pages
// nor resolves anyone.
//
// Across a restart (Save, Load, Resume): the phase and the episode's start
// (active_at, Alertmanager's startsAt) are kept as they were; the `for` and
// keep_firing_for clocks stop while kpid is down, so a pending alert still
// needs the rest of its `for` held after the restart, and a firing alert the
// rest of its keep_firing_for cleared (see "Restarts" in docs/alerting.md).
//
// Not thread-safe: owned by the rule engine's evaluation thread.
#pragma once

#include <cstdint>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "daemon/common/state_codec.h"

namespace kpid::alert {

enum class AlertPhase : uint8_t { kInactive, kPending, kFiring, kResolved };
absl::string_view AlertPhaseName(AlertPhase phase);  // "inactive", "pending", ...

enum class Verdict : uint8_t { kFalse, kTrue, kNone };

enum class Transition : uint8_t {
  kNone,       // same phase as before
  kPending,    // inactive/resolved -> pending
  kFired,      // -> firing
  kCancelled,  // pending -> inactive
  kResolved,   // firing -> resolved
};

class AlertState {
 public:
  Transition Evaluate(Verdict verdict, double value, absl::Time now, absl::Duration for_duration,
                      absl::Duration keep_firing_for);

  AlertPhase phase() const { return phase_; }
  double value() const { return value_; }
  // Start of the current episode (pending or firing), as Prometheus' activeAt.
  absl::Time active_at() const { return active_at_; }
  absl::Time fired_at() const { return fired_at_; }
  absl::Time resolved_at() const { return resolved_at_; }
  // Where `for` is counted from: active_at, later by any downtime since.
  absl::Time pending_since() const { return pending_since_; }
  // The last evaluation that found the condition true (keep_firing_for
  // counts from it), later by any downtime since.
  absl::Time last_true() const { return last_true_; }

  // The state's bytes, in the alert state file's format (see rule_engine.h).
  void Save(StateEncoder* out) const;
  // Reads what Save wrote; false (and `out` unchanged) on malformed input.
  static bool Load(StateDecoder* in, AlertState* out);
  // Stops the `for` and keep_firing_for clocks for `downtime` (the time kpid
  // was not evaluating): both resume where they were.
  void Resume(absl::Duration downtime);

 private:
  Transition Activate(absl::Time now, absl::Duration for_duration);

  AlertPhase phase_ = AlertPhase::kInactive;
  double value_ = 0;
  absl::Time active_at_ = absl::InfinitePast();
  absl::Time pending_since_ = absl::InfinitePast();
  absl::Time last_true_ = absl::InfinitePast();
  absl::Time fired_at_ = absl::InfinitePast();
  absl::Time resolved_at_ = absl::InfinitePast();
};

// Times in state files: Unix nanoseconds, InfinitePast as INT64_MIN.
void SaveTime(StateEncoder* out, absl::Time t);
absl::Time LoadTime(StateDecoder* in);

}  // namespace kpid::alert
