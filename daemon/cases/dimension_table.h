// Interns the dimension values of cases into small per-process ids, so the
// aggregator indexes series by integer, never by string.
//
//   DimensionTable dims(config);
//   DimsId id = dims.Resolve(process, event.attributes);   // worker thread
//   const std::vector<std::string>& values = dims.Values(process, id);  // any thread
//
// Values are taken, in `dimensions.names` order, from a case's first event
// (ingest::FindAttribute: a key's last entry); a missing attribute is "".
// Once a process has `max_series_per_process` combinations, new ones fold
// into the combination whose every value is "__other__", counted in
// Folded(process).
//
// With a SeriesAdmission (shared by every partition's table of a replica),
// a combination new to this table also needs the admission's consent, so the
// limit holds per process across partitions (series_admission.h); refused
// ones fold as above. The table's own capacity stays the limit either way.
// The table holds one admission reference per combination it interned (or
// restored) and gives them all back when it is destroyed, so a revoked or
// reshaped partition's combinations make room for other partitions' new
// ones. Ids never change meaning: a case folded stays in __other__ (as do
// its facts), while a refused combination is not remembered, so a later
// case of it is asked about again and gets its own series once the
// admission has room (Folded keeps counting the cases folded before).
//
// Single writer (the worker thread); readers on any thread see ids below
// Size(process) with their values fully written (release/acquire on the size).
// Nothing is ever moved or removed, so references stay valid.
//
// State (durability): Serialize() writes every combination of every
// process with its DimsId; Restore() rebuilds a table in which every
// serialized DimsId means what it meant (the aggregator's state and the
// tracker's cases refer to them), so restore the three together. Format,
// version kStateVersion (varints, length-prefixed strings):
//   "KPDT" version
//   names: count, name...
//   processes: count, then per process:
//     id, folded, combinations: count, (values: count, value...)...   by DimsId
// Restoring into a changed config: processes are matched by id (those no
// longer configured are dropped, counted in Restore's `dropped`);
// dimension values by name: a dimension still configured keeps its value,
// a new one gets "", a removed one is dropped. Combinations that become
// equal keep their own DimsIds (series are grouped by values when read, so
// they merge at the scrape); the lookup finds the first. A table that had
// more combinations than max_series_per_process now allows keeps them all
// and folds every new one into __other__.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "daemon/cases/case_sink.h"
#include "daemon/cases/series_admission.h"
#include "daemon/common/single_writer_counter.h"
#include "daemon/ingest/event_decoder.h"
#include "daemon/model/config.h"

namespace kpid::cases {

inline constexpr absl::string_view kOtherDimensionValue = "__other__";

class DimensionTable {
 public:
  static constexpr uint32_t kStateVersion = 1;

  // `admission` (optional) must outlive the table.
  explicit DimensionTable(const model::Config& config, SeriesAdmission* admission = nullptr);
  // Releases the table's admission references.
  ~DimensionTable();
  DimensionTable(const DimensionTable&) = delete;
  DimensionTable& operator=(const DimensionTable&) = delete;

  // Worker thread (or when no one writes).
  std::string Serialize() const;
  // A new table for `config` with the serialized combinations. `dropped`
  // (optional) counts the combinations of processes no longer configured.
  // The restored combinations are registered with `admission` (optional),
  // whatever its count (and released if the restore fails). Call before any
  // other thread can see the table.
  static absl::StatusOr<std::unique_ptr<DimensionTable>> Restore(
      const model::Config& config, absl::string_view bytes, uint64_t* dropped = nullptr,
      SeriesAdmission* admission = nullptr);

  // Id 0 is every value empty; with dimensions configured, id 1 is __other__.
  DimsId Resolve(int process, ingest::Attributes attributes);

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
  std::string KeyOf(const std::vector<std::string>& values) const;

  std::vector<std::string> names_;
  std::vector<std::string> process_ids_;
  std::vector<std::unique_ptr<Process>> processes_;
  SeriesAdmission* admission_;
  // Writer only, reused: the lookup key, and each name's value in the
  // attributes it was made of (nullptr: missing).
  std::string key_;
  std::vector<const std::string*> found_;
};

}  // namespace kpid::cases
