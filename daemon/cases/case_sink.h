// What the case tracker tells the aggregator: the facts of DESIGN §3, one
// call per fact, already resolved to indexes (no strings on this path).
//
// Single writer: a sink is called only from the thread of the worker that
// owns the tracker feeding it. `at` is always event time (or, for timer
// facts, the deadline that passed), so windows are by the event time of the
// exit as §3 says, whatever the clock mode.
#pragma once

#include <cstdint>

#include "absl/time/time.h"

namespace kpid::cases {

// Index of a dimension-value combination within one process, from
// DimensionTable (0 is always the combination of empty values).
using DimsId = uint32_t;

enum class ExitOutcome : uint8_t { kAdvanced = 0, kFallout = 1 };

class CaseSink {
 public:
  virtual ~CaseSink() = default;

  // A case began (its first STAGE_ENTERED).
  virtual void CaseStarted(int process, DimsId dims, absl::Time at) = 0;
  // A case entered `stage`; `rework` when it had been in that stage before.
  virtual void StageEntered(int process, int stage, DimsId dims, absl::Time at, bool rework) = 0;
  // A case left `stage` after `cycle_time`; `sla_met` iff cycle_time <= sla.
  virtual void StageExited(int process, int stage, DimsId dims, absl::Time at, ExitOutcome outcome,
                           absl::Duration cycle_time, bool sla_met) = 0;
  // A case moved from one stage to another (after StageExited, before StageEntered).
  virtual void Transition(int process, int from_stage, int to_stage, absl::Time at) = 0;
  // CASE_COMPLETED: `amount` is revenue; lead time = at - started_at.
  virtual void CaseCompleted(int process, DimsId dims, absl::Time at, double amount,
                             absl::Duration lead_time) = 0;
  virtual void CaseFallout(int process, DimsId dims, absl::Time at) = 0;
  // An open case idle longer than case_ttl was closed; it was in `stage`.
  virtual void CaseExpired(int process, int stage, DimsId dims, absl::Time at) = 0;
  virtual void Cost(int process, DimsId dims, absl::Time at, double amount) = 0;
  virtual void Feedback(int process, DimsId dims, absl::Time at, double score) = 0;
  // An open case in `stage` passed its deadline (entered_at + sla) without
  // leaving; reported once per stay, at most one second late.
  virtual void SlaBreached(int process, int stage, DimsId dims, absl::Time deadline) = 0;

  // Current-state gauges, as deltas: open cases in the stage, and those of
  // them past their deadline.
  virtual void BacklogChanged(int process, int stage, DimsId dims, int open_delta,
                              int over_sla_delta) = 0;
};

}  // namespace kpid::cases
