// What one ingest worker has counted. Single writer: that worker's thread.
// Readers (the scrape) may read at any time; see SingleWriterCounter.
#pragma once

#include <array>
#include <cstdint>
#include <limits>

#include "daemon/common/single_writer_counter.h"
#include "daemon/model/reject_reason.h"

namespace kpid::ingest {

// Aligned so two workers' counters never share a cache line.
struct alignas(64) WorkerStats {
  SingleWriterCounter messages;   // every message taken from Kafka
  SingleWriterCounter consumed;   // accepted events
  SingleWriterCounter duplicate;  // repeated event ids
  // Accepted events older than the watermark minus retention: in the
  // totals, in no window.
  SingleWriterCounter late;
  std::array<SingleWriterCounter, model::kRejectReasonCount> rejected;
  // Latest event time accepted, in Unix milliseconds.
  SingleWriterMax watermark_ms{std::numeric_limits<int64_t>::min()};
};

}  // namespace kpid::ingest
