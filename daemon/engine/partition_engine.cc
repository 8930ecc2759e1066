#include "daemon/engine/partition_engine.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "daemon/common/state_codec.h"

namespace kpid::engine {
namespace {

constexpr absl::string_view kMagic = "KPPE";

bool FollowsEventTime(const PartitionEngine::Options& options) {
  return options.config->clock == model::ClockMode::kEvent && options.board != nullptr;
}

std::unique_ptr<cases::Clock> MakeClock(const PartitionEngine::Options& options) {
  if (FollowsEventTime(options)) {
    return std::make_unique<cases::EventTimeClock>(options.board, options.partition);
  }
  return std::make_unique<cases::WallClock>();
}

// With the wall clock, an event a producer stamped ahead of it must not move
// the shard's head past now, or every window would lose its recent buckets
// (DESIGN §3; aggregate_shard.h "Levels"). On event time the head is now.
void LimitShardHead(const PartitionEngine::Options& options, const cases::Clock* clock,
                    aggregate::AggregateShard* shard) {
  if (!FollowsEventTime(options)) shard->LimitHeadTo(clock);
}

cases::CaseTracker::Options TrackerOptions(const PartitionEngine::Options& options,
                                           cases::Clock* clock, aggregate::AggregateShard* shard,
                                           cases::DimensionTable* dims) {
  return {.config = options.config,
          .clock = clock,
          .sink = shard,
          .dimensions = dims,
          .max_dedup_ids = options.max_dedup_ids,
          .max_closed_cases = options.max_closed_cases,
          .max_open_cases = options.max_open_cases};
}

}  // namespace

struct PartitionEngine::Parts {
  std::unique_ptr<cases::Clock> clock;
  std::unique_ptr<cases::DimensionTable> dims;
  std::unique_ptr<aggregate::AggregateShard> shard;
  std::unique_ptr<cases::CaseTracker> tracker;
  int64_t next_offset = ingest::kUnknownOffset;
};

PartitionEngine::PartitionEngine(const Options& options)
    : options_(options),
      clock_(MakeClock(options)),
      dims_(
          std::make_unique<cases::DimensionTable>(*options.config, options.series_admission.get())),
      shard_(std::make_unique<aggregate::AggregateShard>(*options.config)),
      tracker_(std::make_unique<cases::CaseTracker>(
          TrackerOptions(options, clock_.get(), shard_.get(), dims_.get()))) {
  LimitShardHead(options, clock_.get(), shard_.get());
}

PartitionEngine::PartitionEngine(const Options& options, Parts parts)
    : options_(options),
      clock_(std::move(parts.clock)),
      dims_(std::move(parts.dims)),
      shard_(std::move(parts.shard)),
      tracker_(std::move(parts.tracker)),
      next_offset_(parts.next_offset) {}

PartitionEngine::~PartitionEngine() = default;

std::string PartitionEngine::Serialize(int64_t next_offset) const {
  StateEncoder e;
  e.Raw(kMagic);
  e.Varint(kStateVersion);
  e.Varint(static_cast<uint64_t>(options_.partition));
  e.Signed(next_offset);
  e.Signed(clock_->OwnMicros());
  const ingest::PartitionStats& s = stats();
  e.Varint(s.messages.Get());
  e.Varint(s.consumed.Get());
  e.Varint(s.duplicate.Get());
  e.Varint(s.late.Get());
  e.Varint(s.rejected.size());
  for (const SingleWriterCounter& r : s.rejected) e.Varint(r.Get());
  e.Signed(s.watermark_ms.Get());
  e.String(dims_->Serialize());
  e.String(shard_->Serialize());
  e.String(tracker_->Serialize());
  return e.Take();
}

absl::StatusOr<std::unique_ptr<PartitionEngine>> PartitionEngine::Restore(const Options& options,
                                                                          absl::string_view bytes,
                                                                          Dropped* dropped) {
  StateDecoder d(bytes);
  if (!d.Raw(kMagic)) return absl::DataLossError("partition state: not a partition state");
  if (const uint32_t version = d.U32(); d.ok() && version != kStateVersion) {
    return absl::FailedPreconditionError(absl::StrCat("partition state: version ", version,
                                                      " (this kpid reads ", kStateVersion, ")"));
  }
  const uint64_t partition = d.Varint();
  if (d.ok() && partition != static_cast<uint64_t>(options.partition)) {
    return absl::DataLossError(absl::StrCat("partition state: of partition ", partition,
                                            ", expected ", options.partition));
  }
  Parts parts;
  parts.next_offset = d.Signed();
  const int64_t own_micros = d.Signed();
  uint64_t counts[4];
  for (uint64_t& c : counts) c = d.Varint();
  const size_t reasons = d.Count();
  std::array<uint64_t, model::kRejectReasonCount> rejected{};
  for (size_t r = 0; r < reasons; ++r) {
    const uint64_t n = d.Varint();
    if (r < rejected.size()) rejected[r] = n;
  }
  const int64_t watermark_ms = d.Signed();
  const std::string dims_bytes = d.String();
  const std::string shard_bytes = d.String();
  const std::string tracker_bytes = d.String();
  if (!d.ok() || d.remaining() != 0 || parts.next_offset < ingest::kUnknownOffset) {
    return absl::DataLossError("partition state: truncated or corrupt");
  }

  parts.clock = MakeClock(options);
  // Timers are rebuilt at the clock's now: the time the state was saved at.
  parts.clock->ResumeAt(own_micros);
  absl::StatusOr<std::unique_ptr<cases::DimensionTable>> dims = cases::DimensionTable::Restore(
      *options.config, dims_bytes, dropped != nullptr ? &dropped->series : nullptr,
      options.series_admission.get());
  if (!dims.ok()) return dims.status();
  parts.dims = *std::move(dims);
  absl::StatusOr<std::unique_ptr<aggregate::AggregateShard>> shard =
      aggregate::AggregateShard::Restore(*options.config, shard_bytes);
  if (!shard.ok()) return shard.status();
  parts.shard = *std::move(shard);
  LimitShardHead(options, parts.clock.get(), parts.shard.get());
  absl::StatusOr<std::unique_ptr<cases::CaseTracker>> tracker = cases::CaseTracker::Restore(
      TrackerOptions(options, parts.clock.get(), parts.shard.get(), parts.dims.get()),
      tracker_bytes);
  if (!tracker.ok()) return tracker.status();
  parts.tracker = *std::move(tracker);

  std::unique_ptr<PartitionEngine> engine(new PartitionEngine(options, std::move(parts)));
  ingest::PartitionStats& s = engine->stats();
  s.messages.Add(counts[0]);
  s.consumed.Add(counts[1]);
  s.duplicate.Add(counts[2]);
  s.late.Add(counts[3]);
  for (size_t r = 0; r < rejected.size(); ++r) s.rejected[r].Add(rejected[r]);
  s.watermark_ms.Observe(watermark_ms);
  return engine;
}

absl::StatusOr<std::unique_ptr<PartitionEngine>> PartitionEngine::Reshape(const Options& options,
                                                                          int64_t next_offset,
                                                                          Dropped* dropped) const {
  Dropped counted;
  absl::StatusOr<std::unique_ptr<PartitionEngine>> reshaped =
      Restore(options, Serialize(next_offset), &counted);
  if (!reshaped.ok()) return reshaped.status();
  // Restore keeps every open case it can place (even above max_open_cases),
  // so the ones missing are exactly those of removed processes and stages.
  const size_t before = tracker_->open_cases();
  const size_t after = (*reshaped)->tracker().open_cases();
  counted.open_cases = before > after ? before - after : 0;
  if (dropped != nullptr) {
    dropped->open_cases += counted.open_cases;
    dropped->series += counted.series;
  }
  return reshaped;
}

void PartitionEngine::Checkpoint(int64_t next_offset) {
  next_offset_ = next_offset;
  if (options_.writer == nullptr) return;
  options_.writer->Submit({.partition = options_.partition,
                           .next_offset = next_offset,
                           .path = options_.state_path,
                           .payload = Serialize(next_offset)});
}

}  // namespace kpid::engine
