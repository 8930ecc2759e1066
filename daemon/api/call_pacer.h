// Spaces calls to at most `calls_per_second` on average, first come first
// served, with a burst of one second's worth after a quiet second (GCRA, the
// virtual-scheduling form of a token bucket). Each call reserves its turn
// on arrival; a call whose turn is later waits (it holds a server thread,
// not a core), so a client calling back to back is slowed to the rate
// instead of being refused and retrying at once.
//
//   CallPacer pacer({.calls_per_second = 20, .max_queued = 32});
//   absl::StatusOr<absl::Time> turn = pacer.Reserve(absl::Now(), deadline);
//   if (!turn.ok()) return turn.status();  // RESOURCE_EXHAUSTED
//   ... wait until *turn, then serve ...
//
// A synchronous client has one call in flight, so first come first served
// gives each waiting client its turn in rotation: a looping client cannot
// push the others out, it only shares the rate with them. A call that
// gives up after reserving wastes its turn (at most max_queued turns).
//
// Time is a parameter. Thread-safe (std::mutex: visible to TSan).
#pragma once

#include <mutex>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace kpid::api {

class CallPacer {
 public:
  struct Options {
    int calls_per_second = 20;  // 0: no pacing
    // Calls waiting for a later turn; one more gets RESOURCE_EXHAUSTED.
    int max_queued = 32;
  };

  explicit CallPacer(Options options);

  // The turn of a call arriving at `now`: `now` or later. RESOURCE_EXHAUSTED
  // (nothing reserved) when max_queued calls already wait, or when the turn
  // would come after `latest` (the call's deadline).
  absl::StatusOr<absl::Time> Reserve(absl::Time now, absl::Time latest = absl::InfiniteFuture());

 private:
  const Options options_;
  const absl::Duration interval_;  // between turns at the full rate
  const absl::Duration burst_;     // how far ahead of the schedule a turn may be
  std::mutex mu_;
  // The schedule: when the turn after the last reserved one would be
  // without any burst ("theoretical arrival time").
  absl::Time next_ = absl::InfinitePast();  // guarded by mu_
};

}  // namespace kpid::api
