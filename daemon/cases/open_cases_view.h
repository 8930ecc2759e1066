// What a case tracker publishes about its open cases for readers on other
// threads (the exporter's kpid_stage_oldest_case_age_seconds,
// kpid_process_cases_evicted_total and kpid_dedup_forgotten_total, gRPC's
// ListBreachingCases): an immutable snapshot, rebuilt by the worker at each
// Tick (about every 100 ms).
//
//   std::shared_ptr<const OpenCasesView> view = tracker.PublishedView();  // any thread
//   if (auto oldest = view->oldest_entered[p][s]) age = view->as_of - *oldest;
//   for (const BreachingCase& c : view->breaching) ...  // age = view->as_of - c.entered_at
//
// Ages are relative to `as_of` (the tracker's clock when it was built; with
// `clock: event` that is event time), not to the reader's now: a reader
// that wants ages at its own now adds the difference.
#pragma once

#include <string>
#include <vector>

#include "absl/time/time.h"
#include "absl/types/optional.h"
#include "daemon/cases/case_sink.h"

namespace kpid::cases {

// An open case past its stage's SLA (its age in the stage exceeds sla at
// the view's as_of).
struct BreachingCase {
  std::string case_id;
  int process = 0;  // index into Config::processes
  int stage = 0;    // index into the process's stages
  absl::Time entered_at;
  absl::Time deadline;  // entered_at + sla
  DimsId dims = 0;      // into the worker's DimensionTable
};

struct OpenCasesView {
  // The tracker's now when the view was built; InfinitePast before the
  // first Tick.
  absl::Time as_of = absl::InfinitePast();
  // [process][stage]: when the longest-waiting open case entered the stage
  // (exact); nullopt when no case is open there.
  std::vector<std::vector<absl::optional<absl::Time>>> oldest_entered;
  // Per stage, up to the tracker's max_breaching_per_stage oldest cases past
  // their deadline; all sorted by entered_at (oldest first), then process,
  // stage, case id.
  std::vector<BreachingCase> breaching;
  // [process]: open cases evicted to stay within max_open_cases since the
  // tracker started (a counter, for kpid_process_cases_evicted_total).
  std::vector<uint64_t> evicted;
  // Counters for kpid_dedup_forgotten_total: remembered event ids / closed
  // cases forgotten before dedup_horizon to stay within max_dedup_ids /
  // max_closed_cases.
  uint64_t event_ids_forgotten = 0;
  uint64_t closed_cases_forgotten = 0;
};

}  // namespace kpid::cases
