// What ingest has counted of one partition's messages. Single writer: the
// worker thread that owns the partition. Readers (the scrape) may read at any
// time; see SingleWriterCounter. Kept with the partition's engine and saved
// in its checkpoints, so the totals stay exact across restarts: a message is
// counted by the run whose checkpoint covers it, never twice.
#pragma once

#include <array>
#include <cstdint>
#include <limits>

#include "daemon/common/single_writer_counter.h"
#include "daemon/model/reject_reason.h"

namespace kpid::ingest {

// Aligned so two partitions' counters never share a cache line.
struct alignas(64) PartitionStats {
  SingleWriterCounter messages;   // every message taken from Kafka
  SingleWriterCounter consumed;   // accepted events
  SingleWriterCounter duplicate;  // repeated event ids
  // Accepted events older than the partition's watermark minus retention:
  // in the totals, in no window.
  SingleWriterCounter late;
  std::array<SingleWriterCounter, model::kRejectReasonCount> rejected;
  // Latest event time accepted, in Unix milliseconds.
  SingleWriterMax watermark_ms{std::numeric_limits<int64_t>::min()};
};

}  // namespace kpid::ingest
