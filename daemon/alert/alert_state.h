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
// Not thread-safe: owned by the rule engine's evaluation thread.
#pragma once

#include <cstdint>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

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

 private:
  Transition Activate(absl::Time now, absl::Duration for_duration);

  AlertPhase phase_ = AlertPhase::kInactive;
  double value_ = 0;
  absl::Time active_at_ = absl::InfinitePast();
  absl::Time last_true_ = absl::InfinitePast();
  absl::Time fired_at_ = absl::InfinitePast();
  absl::Time resolved_at_ = absl::InfinitePast();
};

}  // namespace kpid::alert
