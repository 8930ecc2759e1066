// Frozen copy of daemon/cases/dimension_table.h as of commit 059da4d (before the
// hot-path work), kept so bench/ can measure old against new in one run.
// Not used by the daemon; do not fix or extend it.
// Interns the dimension values of cases into small per-process ids, so the
// aggregator indexes series by integer, never by string.
//
//   DimensionTable dims(config);
//   DimsId id = dims.Resolve(process, event.attributes());   // worker thread
//   const std::vector<std::string>& values = dims.Values(process, id);  // any thread
//
// Values are taken, in `dimensions.names` order, from a case's first event; a
// missing attribute is "". Once a process has `max_series_per_process`
// combinations, new ones fold into the combination whose every value is
// "__other__", counted in Folded(process).
//
// Single writer (the worker thread); readers on any thread see ids below
// Size(process) with their values fully written (release/acquire on the size).
// Nothing is ever moved or removed, so references stay valid.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "daemon/cases/case_sink.h"
#include "daemon/common/single_writer_counter.h"
#include "daemon/model/config.h"
#include "google/protobuf/map.h"

namespace kpid::bench_legacy {

using cases::DimsId;

inline constexpr absl::string_view kOtherDimensionValue = "__other__";

class DimensionTable {
 public:
  explicit DimensionTable(const model::Config& config);

  // Id 0 is every value empty; with dimensions configured, id 1 is __other__.
  DimsId Resolve(int process, const google::protobuf::Map<std::string, std::string>& attributes);

  size_t Size(int process) const;
  const std::vector<std::string>& Values(int process, DimsId id) const;
  uint64_t Folded(int process) const;
  const std::vector<std::string>& names() const { return names_; }
  DimsId other_id() const { return names_.empty() ? 0 : 1; }

 private:
  struct Process {
    std::unique_ptr<std::vector<std::string>[]> values;  // capacity fixed at construction
    size_t capacity = 0;
    std::atomic<size_t> size{0};
    absl::flat_hash_map<std::string, DimsId> ids;  // writer only
    SingleWriterCounter folded;
  };

  DimsId Add(Process& p, std::string key, std::vector<std::string> values);

  std::vector<std::string> names_;
  std::vector<std::unique_ptr<Process>> processes_;
  std::string key_;  // reused lookup key (writer only)
};

}  // namespace kpid::bench_legacy
