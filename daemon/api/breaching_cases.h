// Where ListBreachingCases gets the open cases that are past their stage
// SLA. The case trackers own that state (one per ingest worker, on the
// worker thread); an adapter over what they publish implements this, so the
// gRPC service never reaches into a worker.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "daemon/aggregate/shard_set.h"
#include "daemon/cases/dimension_table.h"
#include "daemon/cases/open_cases_view.h"

namespace kpid::api {

struct BreachingCaseRecord {
  std::string case_id;
  int process = 0;  // index into config.processes
  int stage = 0;    // index into the process's stages
  absl::Time entered_at;
  absl::Time deadline;  // entered_at + the stage SLA
  // The case's dimension values in config.dimensions.names order (the
  // worker's DimensionTable::Values); may be empty.
  std::vector<std::string> dimension_values;
};

class BreachingCasesSource {
 public:
  virtual ~BreachingCasesSource() = default;
  // Every open case past its deadline, in any order; called from gRPC
  // threads, so it must only read published (immutable or lock-free) state.
  virtual std::vector<BreachingCaseRecord> Breaching() const = 0;
  // The same, and in `config` the config their indexes refer to when the
  // source knows it (the engines' shape, which a reload may change), else
  // null: the caller's own.
  virtual std::vector<BreachingCaseRecord> Breaching(
      std::shared_ptr<const model::Config>* config) const {
    config->reset();
    return Breaching();
  }
};

// The daemon's source: the views the engines' case trackers publish at each
// Tick (cases::OpenCasesView::breaching, up to K per stage and engine), with
// each case's dimension values from its engine's DimensionTable.
class PublishedBreachingCases : public BreachingCasesSource {
 public:
  // Each set's open_cases[i] is read with its tables[i].
  explicit PublishedBreachingCases(aggregate::ShardSource engines);

  std::vector<BreachingCaseRecord> Breaching() const override;
  std::vector<BreachingCaseRecord> Breaching(
      std::shared_ptr<const model::Config>* config) const override;

 private:
  aggregate::ShardSource engines_;
};

}  // namespace kpid::api
