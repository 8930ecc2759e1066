// What the case tracker tells the aggregator: the facts of DESIGN §3,
// already resolved to indexes (no strings on this path). The facts of one
// stage entry, completion or fallout come as one CaseStep (one call per
// event); the others one call per fact.
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

// What one STAGE_ENTERED, CASE_COMPLETED or CASE_FALLOUT event did to its
// case: all its facts share process, dims and time, so a sink can place them
// together (the aggregator finds the series record and the time's buckets
// once instead of once per fact). They are, in the order of the one-fact
// calls CaseSink::CaseStepped makes of them by default:
//   started          CaseStarted
//   an exit_stage    StageExited(exit_stage, outcome, cycle_time, sla_met),
//                    BacklogChanged(exit_stage, -1, exit_over_sla ? -1 : 0)
//   both stages      Transition(exit_stage, entry_stage)
//   an entry_stage   StageEntered(entry_stage, rework), BacklogChanged(entry_stage, +1, 0)
//   close            CaseCompleted(amount, lead_time) or CaseFallout
struct CaseStep {
  static constexpr int kNoStage = -1;
  enum class Close : uint8_t { kNone, kCompleted, kFallout };

  int process = 0;
  DimsId dims = 0;
  absl::Time at = absl::UnixEpoch();
  bool started = false;
  int exit_stage = kNoStage;
  ExitOutcome outcome = ExitOutcome::kAdvanced;
  bool sla_met = false;
  bool exit_over_sla = false;  // the stay had breached its SLA: it leaves that backlog too
  absl::Duration cycle_time = absl::ZeroDuration();
  int entry_stage = kNoStage;
  bool rework = false;
  Close close = Close::kNone;
  double amount = 0;                                // revenue, when completed
  absl::Duration lead_time = absl::ZeroDuration();  // when completed
};

class CaseSink {
 public:
  virtual ~CaseSink() = default;

  // The facts of one event together (see CaseStep). By default the one-fact
  // calls below, in CaseStep's order: what a sink that records facts sees.
  virtual void CaseStepped(const CaseStep& step);
  // A hint: `step` will be reported (CaseStepped) soon, a few events from
  // now (CaseTracker::HandleBatch reports steps that late for this, when
  // WantsStepHints). A sink whose writes miss the cache starts loading the
  // lines the step will write, so those misses overlap the work in
  // between. Changes nothing a reader or a later call sees; by default
  // nothing.
  virtual void PrefetchStep(const CaseStep& step) { static_cast<void>(step); }
  // Whether PrefetchStep is worth its cost now: HandleBatch holds steps
  // back and hints them only then (asked once per batch). By default false.
  virtual bool WantsStepHints() const { return false; }

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

inline void CaseSink::CaseStepped(const CaseStep& step) {
  const int p = step.process;
  if (step.started) CaseStarted(p, step.dims, step.at);
  if (step.exit_stage != CaseStep::kNoStage) {
    StageExited(p, step.exit_stage, step.dims, step.at, step.outcome, step.cycle_time,
                step.sla_met);
    BacklogChanged(p, step.exit_stage, step.dims, -1, step.exit_over_sla ? -1 : 0);
    if (step.entry_stage != CaseStep::kNoStage) {
      Transition(p, step.exit_stage, step.entry_stage, step.at);
    }
  }
  if (step.entry_stage != CaseStep::kNoStage) {
    StageEntered(p, step.entry_stage, step.dims, step.at, step.rework);
    BacklogChanged(p, step.entry_stage, step.dims, +1, 0);
  }
  if (step.close == CaseStep::Close::kCompleted) {
    CaseCompleted(p, step.dims, step.at, step.amount, step.lead_time);
  } else if (step.close == CaseStep::Close::kFallout) {
    CaseFallout(p, step.dims, step.at);
  }
}

}  // namespace kpid::cases
