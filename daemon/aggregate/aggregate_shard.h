// The lock-free windowed aggregator (DESIGN §6 daemon/aggregate): one
// AggregateShard per ingest worker turns the case tracker's facts into the
// KPIs of DESIGN §3, and any number of reader threads (exporter, rules, gRPC)
// read them without ever blocking the worker.
//
//   AggregateShard shard(config);                     // one per worker
//   CaseTracker tracker({..., .sink = &shard, ...});  // the worker writes
//   // any thread:
//   WindowSpan span = shard.Resolve(/*window=*/0, absl::Now());
//   SeriesWindow w = shard.ReadSeriesWindow(process, dims, span);
//   absl::optional<double> conv = w.stages[stage].conversion();
//   absl::optional<double> p90 = shard.ReadCycleTimes(process, stage, span).Quantile(0.9);
//   // several workers: MergedReader (merged_reader.h) sums the shards.
//
// Design
// ------
// Series. A stage series is (process, stage, dims), a process series
// (process, dims); dims is the DimsId the tracker's DimensionTable gave the
// case (dense small integers per process, per worker). All series of one
// (process, dims) live in one record, allocated the first time that DimsId is
// used and never moved or freed while the shard lives: records hang off
// fixed-size chunks of atomic pointers published with release stores and a
// published `dims_end` (acquire), so readers find them without a lock. This
// first-use allocation is the only allocation on the write path.
//
// Levels. Time is cut into buckets at several resolutions, as folly's
// MultiLevelTimeSeries: one level per configured window W with 61 buckets of
// W/60 (60 plus the current one), and a history level covering `retention`
// with buckets of (largest window)/60, which the largest window also reads
// (WindowLayout). A fact goes into the bucket of its event time `at` at every
// level. The shard's head is the latest fact time seen; a level keeps the
// buckets from head - (slots - 1) buckets to head; a fact older than that is
// not added to the level, and one older than the history level's oldest
// bucket is counted in late() only (the caller's _total counters still count
// it; the totals here count it too). A fact in the future moves the head
// forward (so the oldest buckets go); a read only counts buckets up to the
// bucket of its `end`, so a future fact shows once `end` reaches it. Hence
// the caller must not pass times far ahead of now: one fact a day ahead
// would empty every level shorter than a day, and facts at the true time
// would then be too old for them. With clock: wall the events a producer
// stamps ahead of the wall clock (accepted up to max_future_skew) would do
// just that, so LimitHeadTo(wall clock) keeps the head at most one finest
// bucket past the clock's now: a fact stamped later is placed at now plus
// that bucket (its totals are unchanged), and every window keeps all but
// at most its oldest bucket. clock: event needs no limit: readers' now is
// the latest head of all shards, so windows end at the head anyway. Bucket
// slots are reused lazily: each slot carries the index of the bucket it
// holds (its start time / width), and the writer clears a slot when it first
// writes a newer bucket into it; readers skip slots holding other buckets, so
// a read at `now` never needs the writer to have advanced.
//
// Per bucket: stage entered, advanced, fallout, sla_met, rework,
// sla_breaches (exited = advanced + fallout); process started, completed,
// fallout, revenue, cost, cost_count, score_sum, score_count (a process's
// accepted events are its stage entries plus completed, fallout, cost_count
// and score_count: ProcessWindowCounts::events()). Window quantiles come from
// Distribution bins (uint32, ~1% relative error) kept per bucket ONLY for the
// dims-less aggregates (process, stage) and (process): cycle-time and
// lead-time quantiles are exported without dimension labels. A dense
// distribution is ~3.9 KB (992 uint32: a header line and 984 bins; a
// bucket with few facts keeps them in a pool instead, see "Write path"), so one
// per dims series would cost ~1.2 MB per series (313 buckets with the
// default levels) — 1000 dims x 6 series would be 7 GB per worker; counts
// per dims are cheap, quantiles per dims are not.
//
// Memory (default windows [5m, 1h, 24h, 7d], retention 15d: 61 + 61 + 61 +
// 130 = 313 buckets per series): a stage series 313 x 24 B = 7.5 KB plus 256
// B of totals; a process series 313 x 48 B = 15 KB, plus 313 x 8 B of
// bucket stamps shared by the record; a record of a 5-stage process ~56 KB.
// Dims-less distributions: 313 x 3.9 KB = 1.2 MB per stage and per process,
// allocated (calloc, untouched pages stay free) when the shard is built,
// plus bookkeeping: two 64-byte lines per slot and 8 B per slot and series.
// A bucket's first 24 (series, bin) pairs go to a pool in the slot's lines
// instead of the dense bins (below), so a bucket with few facts touches no
// dense page at all.
//
// Write path. Almost every fact falls in the buckets the head is in (its
// time is the latest, or close behind it). The writer keeps, per level, the
// head's bucket, its time range and its slot (a cursor), and the time range
// common to all of them: a fact in that range goes to the cursors' slots
// with no division and no "does this level keep it" test; the cursors move
// on by one bucket without dividing either. Slots are stamped lazily per
// record (below), but a record remembers the "epoch" (bumped whenever a head
// bucket changes) in which it last stamped its head slots, so a fact checks
// one number instead of one stamp per level; when the epoch moved on, only
// the levels whose head moved since are stamped (mostly the finest alone).
// A distribution slot is stamped the same way per process. Its first 24
// distinct (series, bin) pairs of a bucket, of all its series (a stage's
// cycle times, the lead times) together, go to a pool of (key, count)
// words in the slot's own two lines; later ones (and counts past 16 bits)
// to the series' dense bins, which are prepared only when the bucket's
// first such fact of that series arrives. When every partition's shard
// walks a day of event time per second of replay, most fresh buckets get
// one or two facts: preparing all stages + 1 series (a header line ~4 KB
// apart each, and their used bins) was a fifth of the workers' time end to
// end (RESULTS §16, §18), and a dense series per fact still cost a header
// line, a bin line, the zeroing of the previous bucket's bin and, while
// history filled, a page fault (§29). Facts before the head buckets
// take the general path. The record of the previous fact is reused. The
// tracker reports an event's facts (an exit, a transition, an entry, the
// backlog changes, a start or a close) as one CaseStep, placed with one
// time check and one version bump, each slot's counters of all its facts
// written together. What one fact updates per level is one counter line
// (and, for exits and completions, the distribution slot's pool line, or
// once it is full a dense header line and bin line); the totals an entry, an exit and the backlog
// changes update share a line. With many records (kHintedRecords and up) those lines fall out of
// the caches between a record's facts, so the shard asks for step hints
// (WantsStepHints): CaseTracker::HandleBatch then gives each step to
// PrefetchStep a few steps before CaseStepped, which loads the record's
// first lines (where the arrays' addresses, the epoch and the version are)
// and, at the next hint, the head slots' lines the step will write and the
// totals it updates (the distributions' lines are per process, so stay
// cached). Hints store nothing: a step that lands elsewhere (the head moved
// on) only misses as without them.
//
// Consistency. Each bucket slot has an atomic stamp (the bucket index it
// holds). The writer reuses a slot seqlock-style: stamp := none, zero the
// values, stamp := new index. Bucket values are stored with release and
// loaded with acquire (plain moves on x86; no standalone fences, which
// ThreadSanitizer does not model). A reader loads the stamp, reads the
// values, and loads the stamp again: had it read any value of a later reuse,
// it would synchronize with that store and so see the changed stamp; then it
// retries (and skips the slot: the bucket it wanted is gone). So a read never
// mixes two buckets' values: every read is exact for the buckets it covers,
// up to facts still being written. A distribution slot also has a bit per
// series, cleared (release) between its kNoBucket and its new stamp and set
// (release) once the series' bins were zeroed for the bucket; a reader that
// saw the stamp loads the bit (acquire) and reads an unset series as having
// no dense bins, without touching them (they may still hold an older
// bucket's values). Likewise the pool's count of entries: set to 0
// (release) between kNoBucket and the new stamp, stored (release) after
// each new entry; a reader loads it (acquire) and reads only the entries
// below it, which that bucket wrote (entries are never cleared). A bit or
// count it loads from a later reuse is that reuse's release store, made
// after its kNoBucket: the stamp check after it then fails, as for any
// value. Within a bucket, counters that bound each
// other are stored in an order readers reverse (sla_met after
// advanced/fallout, rework after entered, completed after revenue,
// score_count after score_sum), so sla_met <= exited and rework <= entered
// hold in every read and those ratios stay in [0, 1]. Totals are independent
// monotonic counters (relaxed), as SingleWriterCounter. Each record also
// has a version the writer bumps (release) after every fact (or CaseStep)
// that changed it,
// so a reader that kept an earlier read can tell it is still what a read
// would give (SeriesVersion; SeriesReadCache).
//
// Thread safety: the CaseSink methods (and Restore's filling in) belong to
// ONE thread, the worker's; every const method may be called from any thread
// at any time. No mutex anywhere.
#pragma once

#include <atomic>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/optional.h"
#include "daemon/aggregate/aggregate_types.h"
#include "daemon/aggregate/distribution.h"
#include "daemon/aggregate/window_layout.h"
#include "daemon/cases/case_sink.h"
#include "daemon/cases/clock.h"
#include "daemon/model/config.h"

namespace kpid::aggregate {

using cases::DimsId;

class AggregateShard final : public cases::CaseSink {
 public:
  // Leading version of Serialize()'s format; Restore also reads version 1.
  static constexpr uint32_t kStateVersion = 2;
  // DimsIds at or above this are dropped (counted in dropped()).
  static constexpr uint32_t kMaxDims = 1u << 20;
  // Records (dims series, of all processes) from which the shard wants step
  // hints (WantsStepHints): with ~20 records their head lines stay cached
  // and the hints cost ~5% of the engine's time per event, with ~1800 they
  // save ~15-25% of it (bench/RESULTS.md §20). 256 records' head
  // lines (~2 KB each) fill an L2 cache of 512 KB; the break-even in
  // between was not measured.
  static constexpr uint64_t kHintedRecords = 256;

  // Keeps what it needs of `config` (ids, windows, retention); the config
  // need not outlive the shard.
  explicit AggregateShard(const model::Config& config);
  ~AggregateShard() override;
  AggregateShard(const AggregateShard&) = delete;
  AggregateShard& operator=(const AggregateShard&) = delete;

  // ---- CaseSink: the worker thread only. Out-of-range process/stage
  // indexes (a tracker built from another config) are dropped and counted.
  // A step's facts are placed together: one record lookup, one resolution
  // of its time to the levels' slots, and per slot the counter lines of all
  // its facts (see "Write path").
  void CaseStepped(const cases::CaseStep& step) override;
  // Starts loading the lines the step will write (see "Write path").
  void PrefetchStep(const cases::CaseStep& step) override;
  // Once the shard has kHintedRecords records or more.
  bool WantsStepHints() const override { return records_ >= kHintedRecords; }
  void CaseStarted(int process, DimsId dims, absl::Time at) override;
  void StageEntered(int process, int stage, DimsId dims, absl::Time at, bool rework) override;
  void StageExited(int process, int stage, DimsId dims, absl::Time at, cases::ExitOutcome outcome,
                   absl::Duration cycle_time, bool sla_met) override;
  void Transition(int process, int from_stage, int to_stage, absl::Time at) override;
  void CaseCompleted(int process, DimsId dims, absl::Time at, double amount,
                     absl::Duration lead_time) override;
  void CaseFallout(int process, DimsId dims, absl::Time at) override;
  void CaseExpired(int process, int stage, DimsId dims, absl::Time at) override;
  void Cost(int process, DimsId dims, absl::Time at, double amount) override;
  void Feedback(int process, DimsId dims, absl::Time at, double score) override;
  void SlaBreached(int process, int stage, DimsId dims, absl::Time deadline) override;
  void BacklogChanged(int process, int stage, DimsId dims, int open_delta,
                      int over_sla_delta) override;

  // Facts stamped after `wall_clock`'s now plus the finest bucket width are
  // placed at that time instead (see "Levels" above). The clock is read
  // only when a fact passes the limit last computed, so about once per
  // finest bucket. Call before the worker writes; `wall_clock` must outlive
  // the shard. Null (the default): no limit, for clock: event.
  void LimitHeadTo(const cases::Clock* wall_clock);

  // ---- Readers: any thread, never block the writer.
  const WindowLayout& layout() const { return layout_; }
  int process_count() const { return static_cast<int>(processes_.size()); }
  int stage_count(int process) const;
  const std::string& process_id(int process) const;
  const std::string& stage_id(int process, int stage) const;

  // Latest fact time seen (Unix seconds), the head of every level.
  absl::optional<int64_t> latest() const;
  // Facts older than the history level's oldest bucket (in no window).
  uint64_t late() const { return late_.load(std::memory_order_relaxed); }
  // Facts dropped: bad process/stage index or DimsId >= kMaxDims.
  uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }

  // Enumerates the series: the DimsIds of `process` that have a record
  // (ascending). Every read below for another DimsId returns zeros.
  std::vector<DimsId> ListDims(int process) const;

  // Window `window_index` (into config.windows) ending at `end` (usually
  // now), resolved against this shard's head. To merge shards, resolve once
  // (MergedReader::Resolve) and pass the span to each.
  WindowSpan Resolve(int window_index, absl::Time end) const {
    return layout_.Resolve(window_index, end, latest());
  }

  StageWindowCounts ReadStageWindow(int process, int stage, DimsId dims,
                                    const WindowSpan& span) const;
  StageWindowCounts ReadStageWindow(int process, int stage, DimsId dims, int window_index,
                                    absl::Time end) const {
    return ReadStageWindow(process, stage, dims, Resolve(window_index, end));
  }
  ProcessWindowCounts ReadProcessWindow(int process, DimsId dims, const WindowSpan& span) const;
  ProcessWindowCounts ReadProcessWindow(int process, DimsId dims, int window_index,
                                        absl::Time end) const {
    return ReadProcessWindow(process, dims, Resolve(window_index, end));
  }
  // The process series and every stage series of one dims, in one pass (one
  // stamp check per bucket): what the exporter reads per series.
  SeriesWindow ReadSeriesWindow(int process, DimsId dims, const WindowSpan& span) const;
  // ReadSeriesWindow added to `out` (whose stages grow to the process's),
  // without allocating: merging one series over many shards.
  void AddSeriesWindow(int process, DimsId dims, const WindowSpan& span, SeriesWindow* out) const;
  // Changes after every fact that changed anything of (process, dims): its
  // buckets or its totals; 0 while the series has no record, never 0 after.
  // Load it BEFORE reading: equal versions before two reads (of one span,
  // for windows) then mean the second read would see nothing the first did
  // not, up to a fact being written during the first, which bumps the
  // version when done. What SeriesReadCache keys on.
  uint64_t SeriesVersion(int process, DimsId dims) const;
  // SeriesVersion of every DimsId of `process` below its last record's + 1,
  // into (*out)[dims]: one pass, so the loads (a cache miss per record)
  // overlap instead of coming one per series read.
  void SeriesVersions(int process, std::vector<uint64_t>* out) const;
  // Summed over every dims of the process (alert rules, the KPI tree).
  SeriesWindow ReadAllDimsWindow(int process, const WindowSpan& span) const;

  // Cycle times of the exits of `stage` (all dims, both outcomes) in the window.
  Distribution ReadCycleTimes(int process, int stage, const WindowSpan& span) const;
  Distribution ReadCycleTimes(int process, int stage, int window_index, absl::Time end) const {
    return ReadCycleTimes(process, stage, Resolve(window_index, end));
  }
  // Lead times of the cases completed in the window (all dims).
  Distribution ReadLeadTimes(int process, const WindowSpan& span) const;
  Distribution ReadLeadTimes(int process, int window_index, absl::Time end) const {
    return ReadLeadTimes(process, Resolve(window_index, end));
  }

  // Monotonic totals and gauges.
  StageTotals ReadStageTotals(int process, int stage, DimsId dims) const;
  ProcessTotals ReadProcessTotals(int process, DimsId dims) const;
  SeriesTotals ReadSeriesTotals(int process, DimsId dims) const;
  // ReadSeriesTotals added to `out`, as AddSeriesWindow.
  void AddSeriesTotals(int process, DimsId dims, SeriesTotals* out) const;
  SeriesTotals ReadAllDimsTotals(int process) const;
  // kpid_transitions_total{process, from, to} (no dims).
  uint64_t ReadTransitions(int process, int from_stage, int to_stage) const;

  // Exits and breaches of `process` so far: a cheap "has anything changed"
  // for readers that re-evaluate on change (the rule engine).
  uint64_t ChangeCount(int process) const;

  // Bytes allocated (records, chunk tables, distributions), for a self metric.
  size_t AllocatedBytes() const;

  // ---- State, for durability. Serialize() may run on any thread; it is
  // exact when the writer is quiet, else consistent per bucket like a read.
  // The format (versioned, kStateVersion first) names processes and stages
  // by id and levels by bucket width, so Restore into a changed config keeps
  // what still matches (and drops the rest); DimsIds are kept as they are,
  // so restore the worker's DimensionTable alongside.
  std::string Serialize() const;
  // A new shard for `config` holding the serialized state. Call before any
  // other thread can see the shard.
  static absl::StatusOr<std::unique_ptr<AggregateShard>> Restore(const model::Config& config,
                                                                 absl::string_view bytes);

 private:
  struct DimsRecord;
  struct Chunk;
  struct ProcessState;

  ProcessState* WriterProcess(int process, int stage);
  DimsRecord* WriterRecord(ProcessState& p, DimsId dims);
  // The record of `dims` < kMaxDims, which has none yet: the write path's
  // only allocation (see "Series").
  DimsRecord* BuildWriterRecord(ProcessState& p, DimsId dims);
  const ProcessState* ReaderProcess(int process) const;
  const DimsRecord* ReaderRecord(const ProcessState& p, DimsId dims) const;

  // Places a fact at `at` in every level that keeps its bucket: fn(slot) per
  // level, after preparing the slot in `r` (and in the dims-less
  // distributions when `with_dist`). Advances the head; counts late facts.
  // `facts` is how many facts fn places (a CaseStep's): each counts in late()
  // or dropped() when the time is out of range.
  template <typename Fn>
  void ForEachSlot(absl::Time at, ProcessState& p, DimsRecord& r, bool with_dist, Fn&& fn,
                   uint64_t facts = 1);
  // ForEachSlot for a fact before the head buckets (out of order, or late).
  template <typename Fn>
  void ForEachOlderSlot(int64_t at_s, ProcessState& p, DimsRecord& r, bool with_dist, Fn& fn,
                        uint64_t facts);
  // `at_s`, or the head limit if `at_s` is past it after re-reading the clock.
  int64_t LimitedSeconds(int64_t at_s);
  // Moves the head to `at_s` (not before it); false if out of range.
  bool AdvanceHead(int64_t at_s);
  // AdvanceHead when a level other than the first moves (and the first fact).
  void AdvanceHeadLevels(int64_t at_s);
  struct Cursor;
  // Moves the cursor of level `l` to the bucket of `at_s`, at or after its end.
  static void MoveCursor(Cursor& c, const Level& l, int64_t at_s);
  void PrepareHead(ProcessState& p, DimsRecord& r);
  void PrepareHeadDist(ProcessState& p);
  // After a fact's last store to `r`: bumps its SeriesVersion.
  static void Changed(DimsRecord& r);
  void PrepareSlot(DimsRecord& r, int stages, int slot, int64_t bucket);
  // Stamps a distribution slot with `bucket`, its pool and every series
  // empty; a series' dense bins are prepared (PrepareDistSeries) by
  // AddToDist, for its first fact there that the pool does not take.
  void PrepareDistSlot(ProcessState& p, int slot, int64_t bucket);
  void PrepareDistSeries(ProcessState& p, int slot, int series);
  void AddToDist(ProcessState& p, int slot, int series, int bin, uint32_t n);
  // One fact of an exit, an entry or a completion: its totals (the exit's
  // and completion's return the distribution bin of their duration) and its
  // writes into one head or older slot, in the store order readers reverse.
  // Shared by the one-fact calls and CaseStepped, which writes all of a
  // step's facts into a slot before the next slot.
  static int AddExitTotals(ProcessState& p, DimsRecord& r, int stage, bool advanced, bool sla_met,
                           absl::Duration cycle_time);
  void AddExitToSlot(ProcessState& p, DimsRecord& r, int slot, int stage, bool advanced,
                     bool sla_met, int bin);
  static void AddEntryTotals(DimsRecord& r, int stage, bool rework);
  static void AddEntryToSlot(const ProcessState& p, DimsRecord& r, int slot, int stage,
                             bool rework);
  static int AddCompletionTotals(DimsRecord& r, double amount, absl::Duration lead_time);
  void AddCompletionToSlot(ProcessState& p, DimsRecord& r, int slot, double amount, int bin);

  // Adds the buckets of `span` to `out`: stages [stage_begin, stage_end),
  // and the process series when `with_process`.
  void ReadRecordSlots(const ProcessState& p, const DimsRecord& r, const WindowSpan& span,
                       size_t stage_begin, size_t stage_end, bool with_process,
                       SeriesWindow* out) const;
  Distribution ReadDist(int process, int series, const WindowSpan& span) const;
  void ReadTotalsInto(const ProcessState& p, const DimsRecord& r, SeriesTotals* out) const;

  const WindowLayout layout_;
  std::vector<std::unique_ptr<ProcessState>> processes_;

  // Latest fact time seen, Unix seconds; kNoTime before the first. Written by
  // the writer only; relaxed: readers use it to choose a level and to clip a
  // span, and stamps (not the head) decide what a read includes, so a stale
  // head can only make a span a bucket wider or narrower at its old end.
  std::atomic<int64_t> latest_;
  std::atomic<uint64_t> late_{0};     // single writer, relaxed (a counter)
  std::atomic<uint64_t> dropped_{0};  // single writer, relaxed (a counter)

  // ---- The writer's own state (plain fields: only the worker thread, and
  // Restore before the shard is shared, touch them).
  // Per level, the bucket the head is in, [start, end) in seconds, and its slot.
  struct Cursor {
    int64_t bucket = 0;
    int64_t start = 0;
    int64_t end = std::numeric_limits<int64_t>::min();  // none yet
    int slot = 0;
    // epoch_ as of the cursor's last move: a record prepared at an epoch at
    // or after it has this level's head slot stamped already.
    uint64_t moved_epoch = 0;
  };
  std::vector<Cursor> cursors_;
  // LimitHeadTo's clock, and the latest time (Unix seconds) a fact may have
  // without re-reading it; max() when there is no limit.
  const cases::Clock* wall_clock_ = nullptr;
  int64_t head_limit_ = std::numeric_limits<int64_t>::max();
  int64_t head_ = std::numeric_limits<int64_t>::min();  // latest_, as the writer knows it
  // Facts in [hot_from_, hot_to_) fall in every level's head bucket: no
  // division, no "is it kept" test, and their slots are those of cursors_.
  int64_t hot_from_ = std::numeric_limits<int64_t>::min();
  int64_t hot_to_ = std::numeric_limits<int64_t>::min();
  // The range common to the head buckets of every level but the first (the
  // finest): while the head stays before coarse_to_, only the first level's
  // cursor moves (AdvanceHead). [min, min) until the first fact.
  int64_t coarse_from_ = std::numeric_limits<int64_t>::min();
  int64_t coarse_to_ = std::numeric_limits<int64_t>::min();
  // Bumped whenever a head bucket changes. A record (or a process's
  // distributions) whose prepared epoch equals it has every head slot
  // stamped with the head bucket already, so its stamps need no check; one
  // prepared at an earlier epoch needs only the levels whose cursor moved
  // since (Cursor::moved_epoch).
  uint64_t epoch_ = 1;
  uint64_t records_ = 0;  // built so far, of every process
  // The step PrefetchStep was last given, whose head-slot lines the next
  // PrefetchStep starts loading (record null: none).
  struct Hinted {
    const ProcessState* process = nullptr;
    const DimsRecord* record = nullptr;
    int exit_stage = cases::CaseStep::kNoStage;  // valid, or kNoStage
    int entry_stage = cases::CaseStep::kNoStage;
    bool process_facts = false;  // a start or a close: the process buckets
    bool completed = false;      // the lead-time distribution, the process totals
  };
  void PrefetchStepSlots(const Hinted& hinted);
  Hinted hinted_;
  // The record of the previous fact: the tracker reports several facts of
  // one case in a row.
  const ProcessState* last_process_ = nullptr;
  DimsId last_dims_ = 0;
  DimsRecord* last_record_ = nullptr;
};

}  // namespace kpid::aggregate
