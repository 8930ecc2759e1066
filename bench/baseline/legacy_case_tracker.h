// Frozen copy of daemon/cases/case_tracker.h as of commit 059da4d (before the
// hot-path work), kept so bench/ can measure old against new in one run.
// Not used by the daemon; do not fix or extend it.
// The per-worker case tracker: applies the rules of DESIGN §3 to each event
// and reports the resulting facts to a CaseSink (the aggregator).
//
//   CaseTracker tracker({.config = &config, .clock = &clock, .sink = &shard,
//                        .dimensions = &dims});
//   ingest::Verdict v = tracker.Handle(event);   // worker thread
//   tracker.Tick(absl::Now());                   // fires SLA deadlines and expiry
//
// State per open case: current stage and when it was entered, stages visited,
// start time, last activity, dimension id. Closed cases are remembered for
// dedup_horizon (events for them are rejected as case_closed); event ids for
// dedup_horizon too, up to max_dedup_ids (the oldest are forgotten first).
// Deadlines live in a timing wheel with one-second slots, so a case that
// passes its SLA is reported within a second of "now" passing the deadline,
// on a quiet partition too (Tick).
//
// "Now" is the injected clock: wall time, or with `clock: event` the
// watermark (EventTimeClock). Single writer: everything here belongs to the
// worker thread that calls Handle and Tick.
#pragma once

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/time/time.h"
#include "bench/baseline/legacy_dimension_table.h"
#include "bench/baseline/legacy_timing_wheel.h"
#include "daemon/cases/case_sink.h"
#include "daemon/cases/clock.h"
#include "daemon/common/single_writer_counter.h"
#include "daemon/ingest/event_handler.h"
#include "daemon/model/config.h"

namespace kpid::bench_legacy {

using cases::CaseSink;
using cases::Clock;
using cases::DimsId;
using cases::ExitOutcome;

class CaseTracker : public ingest::EventHandler {
 public:
  struct Options {
    const model::Config* config = nullptr;
    Clock* clock = nullptr;
    CaseSink* sink = nullptr;
    DimensionTable* dimensions = nullptr;
    size_t max_dedup_ids = 2'000'000;
  };

  explicit CaseTracker(const Options& options);

  ingest::Verdict Handle(const ingest::DecodedEvent& event) override;
  void Tick(absl::Time wall_now) override;

  // Fires every deadline and expiry due at the clock's now.
  void AdvanceTimers();

  // For readers on any thread.
  uint64_t open_cases() const { return open_gauge_.load(std::memory_order_relaxed); }
  uint64_t dedup_evictions() const { return dedup_evictions_.Get(); }

 private:
  struct Case {
    int64_t entered_us = 0;  // entry into the current stage
    int64_t started_us = 0;
    int64_t last_event_us = 0;
    uint64_t visited = 0;  // bit s: the case has been in stage s
    uint32_t stay = 0;     // changes at every stage entry; SLA timer token
    uint32_t life = 0;     // unique per case; expiry timer token
    DimsId dims = 0;
    uint16_t process = 0;
    int16_t stage = -1;
    bool over_sla = false;
    bool open = false;
  };
  struct Closed {
    int64_t closed_us;
    uint16_t process;
    DimsId dims;
  };
  enum TimerKind : uint8_t { kSlaDeadline = 0, kExpiry = 1 };

  ingest::Verdict StageEntered(const ingest::DecodedEvent& event, int64_t at_us);
  ingest::Verdict Close(const ingest::DecodedEvent& event, int64_t at_us, int64_t now_us);
  void CostOrFeedback(const ingest::DecodedEvent& event, int64_t at_us);
  void EnterStage(uint32_t slot, int stage, int64_t at_us, bool rework);
  void ExitStage(Case& c, int64_t at_us, ExitOutcome outcome);
  void Release(uint32_t slot, int64_t closed_us);
  // The map key of a case: its process index and id (ids are per process).
  const std::string& KeyOf(const ingest::DecodedEvent& event);
  void FireTimer(const TimerEntry& entry, int64_t now_s);
  bool SeenEventId(const std::string& event_id, int64_t now_us);
  void ForgetOld(int64_t now_us);
  int64_t NowMicros() const { return absl::ToUnixMicros(clock_->Now()); }

  const model::Config& config_;
  Clock* clock_;
  CaseSink* sink_;
  DimensionTable* dims_;
  const size_t max_dedup_ids_;
  const int64_t ttl_us_;
  const int64_t horizon_us_;
  std::vector<std::vector<int64_t>> sla_us_;  // [process][stage]

  absl::flat_hash_map<std::string, uint32_t> open_;  // case id -> slot in cases_
  std::vector<Case> cases_;
  std::vector<std::string> case_keys_;  // slot -> key in open_, for expiry
  std::string key_;                     // reused lookup key
  std::vector<uint32_t> free_slots_;
  uint32_t next_token_ = 1;

  absl::flat_hash_map<std::string, Closed> closed_;
  std::deque<std::pair<int64_t, std::string>> closed_order_;  // (closed_us, case id)

  absl::flat_hash_set<uint64_t> seen_ids_;
  std::deque<std::pair<int64_t, uint64_t>> seen_order_;  // (seen_us, id hash)
  SingleWriterCounter dedup_evictions_;

  TimingWheel wheel_;
  std::atomic<uint64_t> open_gauge_{0};
};

}  // namespace kpid::bench_legacy
