#include "daemon/api/call_pacer.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace kpid::api {
namespace {

absl::Duration IntervalOf(int calls_per_second) {
  return calls_per_second > 0 ? absl::Seconds(1) / calls_per_second : absl::ZeroDuration();
}

}  // namespace

CallPacer::CallPacer(Options options)
    : options_(options),
      interval_(IntervalOf(options.calls_per_second)),
      // `calls_per_second` turns at once after a quiet second: the first of
      // them at the schedule, the others up to this far ahead of it.
      burst_(interval_ * std::max(options.calls_per_second - 1, 0)) {}

absl::StatusOr<absl::Time> CallPacer::Reserve(absl::Time now, absl::Time latest) {
  if (options_.calls_per_second <= 0) return now;
  std::lock_guard<std::mutex> lock(mu_);
  const absl::Time turn = std::max(now, next_ - burst_);
  if (turn > now) {
    // Reserved turns are `interval_` apart, the last one at
    // next_ - interval_ - burst_: those after `now` are still waiting.
    const absl::Duration ahead = next_ - interval_ - burst_ - now;
    const int64_t queued =
        ahead > absl::ZeroDuration() ? absl::Ceil(ahead, interval_) / interval_ : 0;
    if (queued >= options_.max_queued) {
      return absl::ResourceExhaustedError(
          absl::StrCat("too many GetSnapshot calls waiting (", queued, "; at most ",
                       options_.calls_per_second, " calls a second are served); retry later"));
    }
    if (turn > latest) {
      return absl::ResourceExhaustedError(
          absl::StrCat("the next GetSnapshot turn is in ", absl::FormatDuration(turn - now),
                       ", after the call's deadline (at most ", options_.calls_per_second,
                       " calls a second are served)"));
    }
  }
  next_ = std::max(next_, now) + interval_;
  return turn;
}

}  // namespace kpid::api
