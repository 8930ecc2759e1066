// kpid_stage_oldest_case_age_seconds{process,stage}: how long the
// longest-waiting open case of each stage has been in it, over every worker
// (DESIGN §4). Read from the views the case trackers publish at each Tick
// (cases::OpenCasesView), so a scrape never touches a tracker's state.
//
//   OpenCasesMetrics metrics(&config, registry.Source(), &clock);
//
// The age is taken at the scrape's now (the clock that ends the windows:
// wall time, or the latest event time with `clock: event`), not at the
// view's as_of, so it keeps growing between Ticks like the wait it
// measures. A stage with no open case has no sample (an age of 0 would read
// as "a case just arrived"). No dimension labels: the trackers keep the
// oldest case per stage, not per dimension combination.
//
// kpid_process_cases_evicted_total{process}: open cases the trackers
// evicted to stay within max_open_cases, summed over the workers; every
// configured process has a sample (0 until the first eviction), so
// increase() sees the first one. Counts this run only (not in the workers'
// saved state): a restart resets it like any counter of a process.
//
// kpid_dedup_forgotten_total{set="event_ids|closed_cases"}: remembered
// event ids / closed cases the trackers forgot before dedup_horizon to stay
// within max_dedup_ids / max_closed_cases (a duplicate or a late event of a
// closed case may then be accepted). Both series always present.
//
// Thread-safe: WriteMetrics may run on any thread.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "daemon/aggregate/shard_set.h"
#include "daemon/cases/clock.h"
#include "daemon/cases/open_cases_view.h"
#include "daemon/export/metric_writer.h"
#include "daemon/model/config.h"

namespace kpid::exporter {

class OpenCasesMetrics : public WriterCollectable {
 public:
  // The current view of every worker's tracker (a null entry is skipped).
  using ViewSource = std::function<std::vector<std::shared_ptr<const cases::OpenCasesView>>()>;

  // `config` and `clock` must outlive this collectable.
  OpenCasesMetrics(const model::Config* config, ViewSource views, const cases::Clock* clock);
  // The views of the engines' ShardSet, read with its config (a reload may
  // reshape the processes; `config` when the set has none).
  OpenCasesMetrics(const model::Config* config, aggregate::ShardSource shards,
                   const cases::Clock* clock);

  void WriteMetrics(MetricWriter* out) const override;

 private:
  const model::Config* config_;
  aggregate::ShardSource shards_;
  const cases::Clock* clock_;
};

}  // namespace kpid::exporter
