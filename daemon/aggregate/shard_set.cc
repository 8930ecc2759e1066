#include "daemon/aggregate/shard_set.h"

#include <utility>

namespace kpid::aggregate {

ShardSource FixedShards(std::vector<const AggregateShard*> shards,
                        std::vector<const cases::DimensionTable*> tables) {
  return [shards = std::move(shards), tables = std::move(tables)] {
    ShardSet set;
    set.shards = shards;
    set.tables = tables;
    return set;
  };
}

}  // namespace kpid::aggregate
