// Where ListBreachingCases gets the open cases that are past their stage
// SLA. The case trackers own that state (one per ingest worker, on the
// worker thread); an adapter over what they publish implements this, so the
// gRPC service never reaches into a worker.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
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
};

// The daemon's source: the views the workers' case trackers publish at each
// Tick (cases::OpenCasesView::breaching, up to K per stage and worker), with
// each case's dimension values from its worker's DimensionTable.
class PublishedBreachingCases : public BreachingCasesSource {
 public:
  // views()[i] is worker i's current view (null before its first Tick);
  // dimensions[i] is worker i's table. The tables must outlive this.
  using ViewSource = std::function<std::vector<std::shared_ptr<const cases::OpenCasesView>>()>;
  PublishedBreachingCases(ViewSource views, std::vector<const cases::DimensionTable*> dimensions);

  std::vector<BreachingCaseRecord> Breaching() const override;

 private:
  ViewSource views_;
  std::vector<const cases::DimensionTable*> dimensions_;
};

}  // namespace kpid::api
