// The shards readers merge, taken afresh for each read: the engines of the
// Kafka partitions this daemon owns come and go with rebalances, so no
// reader may keep a shard pointer beyond one read.
//
//   ShardSource source = registry.Source();   // the daemon (daemon/engine)
//   const ShardSet set = source();            // once per read, any thread
//   MergedReader reader(set.shards);
//   set.tables[ref.shard]->Values(process, ref.dims);
//
// `keep_alive` owns what the pointers point into for as long as the set
// lives: an engine revoked while a reader uses it is freed with the last set
// that holds it. Lower layers only (shards, tables, views), so readers do not
// depend on the engines that own them.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "daemon/aggregate/aggregate_shard.h"
#include "daemon/cases/open_cases_view.h"
#include "daemon/model/config.h"

namespace kpid::cases {
class DimensionTable;
}  // namespace kpid::cases

namespace kpid::aggregate {

struct ShardSet {
  std::vector<const AggregateShard*> shards;  // at least one
  // tables[i] interns the DimsIds of shards[i].
  std::vector<const cases::DimensionTable*> tables;
  // open_cases[i]: what shards[i]'s case tracker published at its last Tick
  // (null before the first); empty when the source has no trackers.
  std::vector<std::shared_ptr<const cases::OpenCasesView>> open_cases;
  // Differs between two sets of different engines: a reader that remembers
  // something summed over the shards (e.g. change counts) starts over.
  uint64_t generation = 0;
  // The config the shards are shaped by (processes, stages, dimensions:
  // the indexes they are kept under). A reload can reshape the engines
  // (EngineRegistry::Reshape): a reader reads them with this config, never
  // with one it holds itself. Null: the reader's own config (fixed shards).
  std::shared_ptr<const model::Config> config;
  // Declared last: freed first, before the config the engines refer to.
  std::shared_ptr<const void> keep_alive;
  // The Kafka partitions whose engines these are, ascending, and assigned
  // partitions still restoring their state (not in the shards: answers
  // are partial). Empty for sources without partitions.
  std::vector<int32_t> partitions;
  std::vector<int32_t> restoring;
};

// The config to read `set` with: its own, else the reader's `fallback`.
inline const model::Config& ConfigOf(const ShardSet& set, const model::Config& fallback) {
  return set.config != nullptr ? *set.config : fallback;
}

// Any thread; called once per read.
using ShardSource = std::function<ShardSet()>;

// Always the same shards and tables (tests, benchmarks, tools): they must
// outlive the source. `tables[i]` belongs to `shards[i]`.
ShardSource FixedShards(std::vector<const AggregateShard*> shards,
                        std::vector<const cases::DimensionTable*> tables);

}  // namespace kpid::aggregate
