// The per-partition case tracker: applies the rules of DESIGN §3 to each event
// and reports the resulting facts to a CaseSink (the aggregator).
//
//   CaseTracker tracker({.config = &config, .clock = &clock, .sink = &shard,
//                        .dimensions = &dims});
//   ingest::Verdict v = tracker.Handle(event);   // worker thread
//   tracker.Tick(absl::Now());                   // fires SLA deadlines and expiry,
//                                                // publishes the open-cases view
//   auto view = tracker.PublishedView();         // any thread
//
// State per open case: its id, current stage and when it was entered,
// stages visited, start time, last activity, dimension id. Closed cases are
// remembered for dedup_horizon (events for them are rejected as
// case_closed), up to max_closed_cases; event ids for dedup_horizon too, up
// to max_dedup_ids. Beyond either bound the oldest is forgotten first,
// early, and counted (closed_cases_forgotten, event_ids_forgotten): without
// a count bound a flood of unique event ids, or of new case ids evicting
// each other at max_open_cases, grows memory within the horizon without
// limit. At the bound a set's ring and index stop growing, so forgetting
// allocates nothing. A case that passes its SLA is reported at the first
// timer check (every event, every Tick) after "now" passes the deadline, on
// a quiet partition too (Tick).
//
// Memory and speed: this is the hot path (every event) and holds up to
// millions of open cases per partition, so what an event costs is mostly cache
// misses, and what a case costs is its record and table entries.
// - A case is a fixed 64-byte record (one cache line) in a slot array,
//   holding its id (inline up to 23 bytes, else in a pool: CaseIdStore),
//   found through an open-addressing table of 8-byte words (32 bits of a
//   hash of (process, case id) + slot) and confirmed by comparing the id
//   (CaseIdStore::Equals: no byte read past the record, where memcmp's
//   32-byte reads touched the next record's line): no allocation per case
//   or per event once the arrays have grown; ~150 bytes per open case in
//   all (bench/RESULTS.md §3). The tables (open cases, closed cases, event
//   ids) probe linearly from the first word of a cache line, so a lookup
//   reads the one line prefetched unless that line is full (§21).
// - Closed cases and event ids are remembered by a 64-bit StableHash64 of
//   (process id, case id) and of the event id: two closed ids of a process
//   with the same hash would be taken for one, about 1 in 2^44 per new case
//   with a million remembered. The hash is stable across processes so the
//   remembered hashes survive Serialize/Restore.
// - Closed cases and event ids are forgotten in arrival order by popping a
//   ring, without touching their hash index (see RecentSet).
// - SLA deadlines need no timer per stage entry: within a (process, stage)
//   they are entry time + one SLA, so in the order the stage's
//   StageAgeIndex keeps its ring in, and a breach frontier walks that ring
//   as "now" passes them (bench/RESULTS.md §14). Only a stay that entered
//   out of order (the index's heap) has its deadline on the case's timer.
// - Each open case has one live timer entry in a timing wheel with
//   one-second slots, armed when the case opens, for its expiry (or the
//   deadline of an out-of-order stay, whichever comes first), at most a day
//   ahead (which bounds how long entries of closed cases linger). Activity
//   does not re-arm it: when it fires early, it is armed again for the
//   expiry as it is then. A dense array of the live entries' tokens drops
//   stale entries without reading the case records.
// - Per (process, stage) a StageAgeIndex orders the open cases by entry
//   time, so the oldest and the K oldest past their SLA are known without
//   a scan: an 8-byte append per stage entry when events come in time
//   order, a heap push otherwise (see stage_age_index.h).
// - The loads an event will need (event-id index, case index, case record,
//   or for a case not open the closed cases' index) are prefetched up
//   front, so their misses overlap; HandleBatch starts them several events
//   ahead, so the misses of consecutive events overlap too. The dedup
//   rings' head and tail lines are prefetched ahead of the pops and
//   pushes. HandleBatch does the same for a sink that WantsStepHints (the
//   aggregator once its records no longer stay cached): an event's CaseStep
//   is handed to CaseSink::PrefetchStep at once and reported kStepLag steps
//   later (or before the next other fact), so the sink's misses overlap the
//   tracker's work on the events in between. The large arrays (records,
//   indexes, rings) are in 2 MiB pages (HugePageAllocator) where the
//   kernel gives them, so a random lookup is not also a page walk.
// A case expires at the first timer check after "now" passes its last
// activity + case_ttl, within the second.
//
// Bounded: at most max_open_cases open cases (the partition's share of the
// config's topic-wide max_open_cases). A new case beyond it first evicts
// the open case that has waited longest in its current stage: the oldest of
// the StageAgeIndex tops of every (process, stage), O(stages) per eviction
// and no memory per case (the 64-byte record is unchanged). Not the
// earliest started nor the least recently active: either needs an order
// kept nowhere, another index entry per case (8 to 16 bytes on ~150) paid
// by every case for an attack path; and the longest wait is what
// kpid_stage_oldest_case_age_seconds shows, so what goes is visible. An
// eviction is closed like an expiry: CaseExpired to the sink (the case
// leaves its stage without an outcome: the backlog gauges drop by it, no
// exit, not completed nor fallout, so kpid_process_cases_expired_total
// includes evictions; the CaseSink interface stays as it is), at the
// event time of the case that evicted it; the id is remembered as closed,
// so its late events are rejected case_closed within dedup_horizon rather
// than reopening it. Counted by the evicted case's process (evicted(),
// published in the view for kpid_process_cases_evicted_total) and logged
// at the 1st, 2nd, 4th, 8th... eviction of the tracker. Cost when not
// evicting: one comparison per new case.
//
// Readers. Other threads never touch the state above: Tick builds an
// OpenCasesView (oldest entry time per stage, up to
// max_breaching_per_stage oldest cases past SLA per stage) and publishes it
// under a mutex, once per Tick, never per event; PublishedView() copies the
// pointer under that mutex. Building it costs O(stages x K log n) plus the
// stale index entries it drops, not a scan of the cases.
//
// "Now" is the injected clock: wall time, or with `clock: event` the
// watermark (EventTimeClock). Single writer: everything here but
// PublishedView, open_cases, the *_forgotten counters and evicted belongs
// to the worker thread that calls Handle and Tick.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/base/attributes.h"
#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "daemon/cases/case_id_store.h"
#include "daemon/cases/case_sink.h"
#include "daemon/cases/clock.h"
#include "daemon/cases/dimension_table.h"
#include "daemon/cases/open_cases_view.h"
#include "daemon/cases/stage_age_index.h"
#include "daemon/cases/timing_wheel.h"
#include "daemon/cases/word_line.h"
#include "daemon/common/huge_page_allocator.h"
#include "daemon/common/lag_ring.h"
#include "daemon/common/single_writer_counter.h"
#include "daemon/ingest/event_handler.h"
#include "daemon/model/config.h"

namespace kpid::cases {

class CaseTracker : public ingest::EventHandler {
 public:
  struct Options {
    const model::Config* config = nullptr;
    Clock* clock = nullptr;
    CaseSink* sink = nullptr;
    DimensionTable* dimensions = nullptr;
    // Event ids and closed cases remembered; beyond, the oldest are
    // forgotten. The daemon passes Config::MaxDedupIdsPerPartition /
    // MaxClosedCasesPerPartition; 0: the config's whole bound (a single partition).
    size_t max_dedup_ids = 0;
    size_t max_closed_cases = 0;
    // Per (process, stage), at most this many cases past SLA in the view.
    size_t max_breaching_per_stage = 100;
    // Open cases kept; beyond, the longest-waiting is evicted. The daemon
    // passes Config::MaxOpenCasesPerPartition; 0: config->max_open_cases
    // whole (a single partition).
    size_t max_open_cases = 0;
  };

  // Leading version of Serialize()'s format.
  static constexpr uint32_t kStateVersion = 1;

  explicit CaseTracker(const Options& options);
  ~CaseTracker() override;

  // ---- State, for durability (a partition engine's state is this, its
  // DimensionTable's and its AggregateShard's, taken together).
  //
  // Serialize: on the worker thread, or while nothing calls Handle/Tick.
  // Restore: a new tracker for `options` (its `dimensions` restored from
  // the same state, its `sink` the restored shard) holding the state; no
  // fact is reported (the shard's state already has them). Timers are not
  // serialized but rebuilt from the cases at the clock's now: a deadline or
  // expiry that passed in between fires at the first event or Tick.
  //
  // Format, version kStateVersion (varints; signed ones zigzag; keys as 8
  // little-endian bytes; strings length-prefixed):
  //   "KPCT" version event_ids_forgotten
  //   processes: count, then per process: id, stages: count, stage ids...
  //   open cases: count, then per case:
  //     process, stage (indexes into the lists above), case id, dims,
  //     entered_us, started_us, last_event_us, visited (bit per listed
  //     stage), over_sla
  //   closed cases: count, (at_us, key, process, dims)...    oldest first
  //   event ids: count, (at_us, key)...                       oldest first
  // Eviction counts and closed_cases_forgotten are not stored: they count
  // this run's (a restart resets them, as any counter of a process; the
  // expiries evictions also are persist with the shard). A state
  // holding more open cases than max_open_cases (restored under a lower
  // bound) keeps them all; the next new case evicts down to the bound.
  // Guarantees: fed the same events afterwards, a restored tracker reports
  // the same facts and verdicts as the original would have (duplicates and
  // closed cases are still recognized: keys are StableHash64, not
  // per-process hashes), for the same config. Into a changed config,
  // processes and stages are matched by id; open cases and closed cases of
  // processes or stages no longer configured are dropped and counted in
  // restore_dropped(); visits to stages gone are forgotten (rework is judged
  // on the rest); remembered event ids and closed cases beyond
  // max_dedup_ids / max_closed_cases are forgotten oldest first (counted).
  // Bytes that do not decode (truncated, corrupt, another version:
  // FailedPrecondition) give an error Status; nothing is trusted (every
  // count is bounded by the bytes left, indexes by their lists, dims by the
  // dimension table, times by +-2^55 us), so corruption that still decodes
  // gives wrong values at worst, never undefined behaviour.
  std::string Serialize() const;
  static absl::StatusOr<std::unique_ptr<CaseTracker>> Restore(const Options& options,
                                                              absl::string_view bytes);
  // Open and closed cases dropped by Restore (process or stage gone).
  uint64_t restore_dropped() const { return restore_dropped_; }
  CaseTracker(const CaseTracker&) = delete;
  CaseTracker& operator=(const CaseTracker&) = delete;

  ingest::Verdict Handle(const ingest::DecodedEvent& event) override;
  // As Handle on each event in order, pipelined: the event and its id
  // strings (up to 3 x kPrefetchDistance ahead), the index words of event
  // i + kPrefetchDistance and the case record of event
  // i + kPrefetchDistance / 2 start loading before event i is handled, so
  // the cache misses of several events overlap, not only those of one.
  // The sink's too, if it WantsStepHints (asked once per call): an
  // event's CaseStep goes to CaseSink::PrefetchStep first and to
  // CaseStepped kStepLag steps later (sooner when another fact comes, and
  // all by the end of the call), so the sink sees the same facts in the
  // same order as from Handle, some of them a few events later within the
  // call.
  void HandleBatch(absl::Span<const ingest::DecodedEvent* const> events,
                   ingest::Verdict* verdicts) override;
  void Tick(absl::Time wall_now) override;

  // Fires every deadline and expiry due at the clock's now.
  void AdvanceTimers() { AdvanceTimersTo(NowMicros()); }

  // For readers on any thread.
  uint64_t open_cases() const { return open_gauge_.load(std::memory_order_relaxed); }
  // Remembered event ids / closed cases forgotten before dedup_horizon to
  // stay within max_dedup_ids / max_closed_cases.
  uint64_t event_ids_forgotten() const { return event_ids_forgotten_.Get(); }
  uint64_t closed_cases_forgotten() const { return closed_cases_forgotten_.Get(); }
  // Open cases evicted to stay within max_open_cases, of `process` / of all.
  uint64_t evicted(int process) const { return evicted_[static_cast<size_t>(process)].Get(); }
  uint64_t evicted() const;
  // The view built at the last Tick (an empty one before): any thread.
  std::shared_ptr<const OpenCasesView> PublishedView() const {
    std::lock_guard<std::mutex> lock(view_mu_);
    return view_;
  }

 private:
  // 64 bytes, one cache line.
  struct alignas(64) Case {
    int64_t entered_us = 0;  // entry into the current stage
    int64_t started_us = 0;
    int64_t last_event_us = 0;
    uint64_t visited = 0;  // bit s: the case has been in stage s
    DimsId dims = 0;
    uint16_t process = 0;
    int8_t stage = -1;
    bool over_sla : 1 = false;
    // The stay's deadline is on the case's timer: it entered the stage out of
    // order, into its StageAgeIndex's heap, where no breach frontier walks.
    bool deadline_timed : 1 = false;
    StoredId id;  // in id_store_
  };
  static_assert(sizeof(Case) == 64, "one per open case: keep it small");
  struct Seen {
    int64_t at_us;  // "now" when the event was accepted
    uint64_t key;   // the event id's hash
  };
  struct Closed {
    int64_t at_us;  // "now" when the case closed
    uint64_t key;   // the case's key
    DimsId dims;
    uint16_t process;
  };
  // 8-byte index words in a 64-byte cache line. The tables' large arrays
  // are 2 MiB pages (line-aligned); small ones fit in cache anyway.
  static constexpr size_t kWordsPerLine = 8;
  // What was seen in the last while (event ids, closed cases): records in
  // arrival order in a ring, plus a hash index by key. The oldest are
  // forgotten by a pop from the ring, without touching the index: an index
  // word whose record has left the ring is dead and skipped, and dead words
  // go when the index is rebuilt from the ring as it fills. Forgetting thus
  // costs no cache miss, where erasing from a hash set costs one per record
  // (a record is forgotten about a horizon after it was last touched).
  // Index words: fingerprint (key >> 32, never 0) << 32 | ring position
  // (low 32 bits); a match is confirmed against the record's full key.
  template <typename Record>
  class RecentSet {
   public:
    RecentSet() : ring_(MakeHugePageArray<Record>(16)), index_(16, 0) {}
    bool empty() const { return head_ == tail_; }
    size_t size() const { return static_cast<size_t>(tail_ - head_); }
    const Record& front() const { return ring_[head_ & ring_mask_]; }
    // Oldest first.
    template <typename Fn>
    void ForEach(Fn&& fn) const {
      for (uint64_t p = head_; p < tail_; ++p) fn(ring_[p & ring_mask_]);
    }
    // The ring is read at its head and written at its tail, a line every
    // few records, at about one record an event: too sparse for the
    // hardware prefetcher, so each new line was a miss (the head's stalled
    // ForgetOld; §21). Both are started kRingAhead records ahead.
    void pop_front() {
      ++head_;
      __builtin_prefetch(&ring_[(head_ + kRingAhead) & ring_mask_]);
      front_at_ = empty() ? kNoFront : front().at_us;
    }
    // Pops every record from the front up to the first at_us after
    // `cutoff` (ForgetOld), as pop_front does. Most calls pop nothing: the
    // front's time kept apart makes that one compare, where the ring's
    // front was ~8 instructions, twice per event (§37).
    void PopThrough(int64_t cutoff) {
      while (front_at_ <= cutoff) pop_front();
    }
    void Prefetch(uint64_t key) const { __builtin_prefetch(&index_[Home(key)]); }
    // A line at a time (word_line.h): the probe's words are those before
    // the line's first empty one (a fingerprint is never 0, so an empty
    // word is one whose high half is 0), and only those whose fingerprint
    // matches are read one by one. Word by word, a miss (most lookups)
    // walked ~10 words at ~8 instructions each (§33).
    const Record* Find(uint64_t key) const {
      const uint32_t fp = Fingerprint(key);
      for (size_t line = Home(key);; line = (line + kWordsPerLine) & index_mask_) {
        const uint64_t* words = &index_[line];
        const uint32_t empty = word_line::HighEqualMask(words, 0);
        for (uint32_t hits = word_line::HighEqualMask(words, fp) & word_line::BeforeFirst(empty);
             hits != 0; hits &= hits - 1) {
          const uint64_t word = words[__builtin_ctz(hits)];
          const uint32_t age = static_cast<uint32_t>(word) - static_cast<uint32_t>(head_);
          if (age >= size()) continue;  // dead
          const Record& record = ring_[(head_ + age) & ring_mask_];
          if (record.key == key) return &record;
        }
        if (empty != 0) return nullptr;
      }
    }
    // `record.key` must not be in the set.
    void Push(const Record& record) {
      if (size() == ring_mask_ + 1) GrowRing();
      // At most 3/4 of the index in use (live or dead), so probes stay short.
      if ((used_ + 1) * 4 > index_.size() * 3) Rebuild();
      if (empty()) front_at_ = record.at_us;
      ring_[tail_ & ring_mask_] = record;
      __builtin_prefetch(&ring_[(tail_ + kRingAhead) & ring_mask_], /*rw=*/1);
      Index(record.key, tail_++);
    }

   private:
    static constexpr uint64_t kRingAhead = 32;
    static constexpr int64_t kNoFront = std::numeric_limits<int64_t>::max();
    static uint32_t Fingerprint(uint64_t key) {
      const uint32_t fp = static_cast<uint32_t>(key >> 32);
      return fp == 0 ? 1 : fp;
    }
    // An index word: the key's fingerprint, then the record's ring position.
    static uint64_t IndexWord(uint64_t key, uint64_t position) {
      return uint64_t{Fingerprint(key)} << 32 | static_cast<uint32_t>(position);
    }
    // A probe starts at a cache line's first word (kWordsPerLine words a
    // line), so it stays within the one line prefetched unless that line is
    // full: started anywhere in the line, ~40% of probes ran into the next
    // one, a second miss nobody had prefetched (§21).
    size_t Home(uint64_t key) const { return key & index_mask_ & ~(kWordsPerLine - 1); }
    // Into the probe's first empty or dead word (a dead one is reused).
    // Word by word: a line's scan for "empty or dead" (both halves of each
    // word) cost more than this walk, which usually ends within a few
    // words (§33).
    void Index(uint64_t key, uint64_t position) {
      size_t i = Home(key);
      while (index_[i] != 0) {
        const uint32_t age = static_cast<uint32_t>(index_[i]) - static_cast<uint32_t>(head_);
        if (age >= size()) break;  // reuse a dead word
        i = (i + 1) & index_mask_;
      }
      if (index_[i] == 0) ++used_;
      index_[i] = IndexWord(key, position);
    }
    // Out of line, as Rebuild: rare, and inlined into Push they made every
    // Remember save and restore the registers they use.
    ABSL_ATTRIBUTE_NOINLINE void GrowRing() {
      // Not value-initialized: only what is written becomes resident.
      const uint64_t capacity = 2 * (ring_mask_ + 1);
      auto ring = MakeHugePageArray<Record>(capacity);
      for (uint64_t p = head_; p < tail_; ++p) ring[p & (capacity - 1)] = ring_[p & ring_mask_];
      ring_ = std::move(ring);
      ring_mask_ = capacity - 1;
    }
    // A fresh index of the live records, at most half full: grows, stays or
    // shrinks with them.
    ABSL_ATTRIBUTE_NOINLINE void Rebuild() {
      size_t capacity = 16;
      while (capacity < 2 * (size() + 1)) capacity *= 2;
      index_.assign(capacity, 0);
      index_mask_ = capacity - 1;
      used_ = 0;
      for (uint64_t p = head_; p < tail_; ++p) IndexFresh(ring_[p & ring_mask_].key, p);
    }
    // Index, into a rebuilt index: it has no dead word to reuse, so the
    // probe stops at the first empty word without Index's age check of each
    // word it passes (a rebuild re-indexes every live record).
    void IndexFresh(uint64_t key, uint64_t position) {
      size_t i = Home(key);
      while (index_[i] != 0) i = (i + 1) & index_mask_;
      ++used_;
      index_[i] = IndexWord(key, position);
    }

    HugePageArray<Record> ring_;
    uint64_t ring_mask_ = 15;
    uint64_t head_ = 0;  // positions only grow; & ring_mask_ indexes ring_
    uint64_t tail_ = 0;
    int64_t front_at_ = kNoFront;  // front().at_us; kNoFront when empty
    HugeVector<uint64_t> index_;   // 0: empty
    size_t index_mask_ = 15;
    size_t used_ = 0;  // non-zero words of index_
  };
  // A set of non-zero 64-bit words: open addressing, linear probing, a
  // word's home position taken from its high 32 bits, rounded down to a
  // cache line's first word. A probe sequence usually stays within that
  // line (eight words), so a lookup costs one
  // cache miss where absl's tables take two (control bytes, then slots);
  // with hundreds of thousands of cases, misses are what an event costs.
  // Callers walk a probe sequence themselves: Start(tag), At(i), Next(i),
  // or a line at a time: Line(start), NextLine(start).
  class WordSet {
   public:
    WordSet();
    size_t size() const { return size_; }
    size_t capacity() const { return mask_ + 1; }
    // At a cache line's first word, as RecentSet's Home.
    size_t Start(uint32_t tag) const { return tag & mask_ & ~(kWordsPerLine - 1); }
    size_t Next(size_t i) const { return (i + 1) & mask_; }
    uint64_t At(size_t i) const { return words_[i]; }
    // The line at `start` (a Start or NextLine), for word_line's scans: a
    // word is empty iff its low half (slot + 1) is 0.
    const uint64_t* Line(size_t start) const { return &words_[start]; }
    size_t NextLine(size_t start) const { return (start + kWordsPerLine) & mask_; }
    void Prefetch(uint32_t tag) const { __builtin_prefetch(&words_[Start(tag)]); }
    // `word` (non-zero) must not be in the set.
    void Insert(uint64_t word);
    // Removes `word` if present.
    void Erase(uint64_t word);

   private:
    static uint32_t Tag(uint64_t word) { return static_cast<uint32_t>(word >> 32); }
    void Grow();
    HugeVector<uint64_t> words_;  // 0: empty
    size_t mask_;
    size_t size_ = 0;
  };

  // How many events ahead HandleBatch starts an event's loads (bench/RESULTS.md §10).
  static constexpr size_t kPrefetchDistance = 8;
  // How many steps HandleBatch holds back: each is reported this many
  // steps after the sink's PrefetchStep for it (bench/RESULTS.md §20).
  static constexpr size_t kStepLag = 4;
  // Reports an event's step: at once, or in HandleBatch for a sink that
  // WantsStepHints after a PrefetchStep, held back until kStepLag later
  // steps or any other fact (FlushSteps) come, so the sink sees every fact
  // in the same order.
  void ReportStep(const CaseStep& step);
  void FlushSteps();
  // The sink for the one-fact calls: the steps held back go first.
  CaseSink& Sink() {
    FlushSteps();
    return *sink_;
  }
  // What an event is looked up by: pure functions of the event.
  struct EventKeys {
    uint64_t id_hash;  // of the event id
    uint64_t key;      // CaseKey
  };
  EventKeys KeysOf(const ingest::DecodedEvent& event) const;
  // Starts loading the index words every event's lookups read first (the
  // event ids' and the open cases').
  void PrefetchIndexes(const EventKeys& keys) const;
  // What the lookups read is loaded by the time they read it: `loaded`
  // says how much of it the caller has prefetched already (HandleBatch,
  // events ahead); the rest is prefetched here, as early as it can be.
  enum class Loaded { kNothing, kIndexes, kIndexesAndRecord };
  // `open_at`: for kIndexesAndRecord, what PrefetchCase returned for the
  // event (a hint for FindOpen; otherwise HandleKeyed takes its own).
  ingest::Verdict HandleKeyed(const ingest::DecodedEvent& event, const EventKeys& keys,
                              Loaded loaded, size_t open_at);
  // 64-bit hash of (process id, case id), stable across runs and configs.
  uint64_t CaseKey(int process, absl::string_view case_id) const;
  // `open_at` as FindOpen's.
  ingest::Verdict StageEntered(const ingest::DecodedEvent& event, uint64_t key, size_t open_at,
                               int64_t at_us, int64_t now_us);
  ingest::Verdict Close(const ingest::DecodedEvent& event, uint64_t key, size_t open_at,
                        int64_t at_us, int64_t now_us);
  void CostOrFeedback(const ingest::DecodedEvent& event, uint64_t key, size_t open_at,
                      int64_t at_us);
  // A step of `c` at `at_us` with no facts yet.
  static CaseStep StepOf(const Case& c, int64_t at_us);
  // Enter and exit add their facts to `step`; the caller reports it.
  void EnterStage(uint32_t slot, int stage, int64_t at_us, int64_t now_us, bool rework,
                  CaseStep* step);
  void ExitStage(Case& c, int64_t at_us, ExitOutcome outcome, CaseStep* step);
  // Enters the case's current stay (stage, entered_us) in its stage's
  // StageAgeIndex under a new token: on the breach frontier's ring, or
  // deadline_timed (the caller arms the case's timer for it).
  void AddStay(uint32_t slot, Case& c);
  void Release(uint32_t slot, uint64_t key, int64_t closed_us);
  // Closes the open case as expired (at `at_us`): it leaves its stage
  // without an outcome.
  void Expire(uint32_t slot, int64_t at_us, int64_t now_us);
  // Expires the open case that has waited longest in its stage, counted as
  // an eviction; false when no case is open.
  bool EvictOldest(int64_t at_us, int64_t now_us);
  // Schedules the case's timer (a new entry; the one armed before goes
  // stale): its expiry, or its deadline while not breached if that is timed,
  // whichever is first, but at most kMaxTimerAheadUs after now.
  void Arm(uint32_t slot, const Case& c, int64_t now_us);
  // When the case's timer has work: its expiry, or its timed deadline while
  // not breached, whichever is first.
  int64_t TimerDueMicros(const Case& c) const {
    const int64_t expires_us = c.last_event_us + ttl_us_;
    return c.deadline_timed && !c.over_sla ? std::min(expires_us, c.entered_us + SlaMicros(c))
                                           : expires_us;
  }
  // Tokens for stays and timers, never 0 (a free slot).
  uint32_t NextToken();
  // A new token for the case's stay; its stage-age entry before is stale.
  uint32_t NewToken(uint32_t slot);
  // No word of open_ (an index past any table).
  static constexpr size_t kNoWord = ~size_t{0};
  // The slot of the open case `case_id` of `process` (whose key is `key`), or
  // -1. `open_at`: where in open_ the case's word likely is (PrefetchCase's
  // answer, perhaps stale: checked) or kNoWord; only the speed depends on it.
  int64_t FindOpen(uint64_t key, int process, absl::string_view case_id,
                   size_t open_at = kNoWord) const;
  // FindOpen without a hint: the probe of open_.
  int64_t ProbeOpen(uint64_t key, int process, absl::string_view case_id) const;
  // Starts loading the record of the open case `key`, if there is one, and
  // returns where its word is in open_ (the first with its tag); else loads
  // the closed cases' index word for it (a new or a closed case) and
  // returns kNoWord.
  size_t PrefetchCase(uint64_t key) const;
  int64_t SlaMicros(const Case& c) const {
    return sla_us_[c.process][static_cast<size_t>(c.stage)];
  }
  // Inline: most events have no timer work, and the call itself (with the
  // registers the work needs saved and restored) was ~17 instructions per
  // event of ~50 (§37).
  void AdvanceTimersTo(int64_t now_us) {
    if (now_us > next_deadline_us_ || now_us >= wheel_next_us_ ||
        (!due_this_second_.empty() && due_this_second_.front().due_us < now_us)) {
      FireDue(now_us);
    }
  }
  // AdvanceTimersTo's work, when there is some.
  void FireDue(int64_t now_us);
  void PushDue(int64_t due_us, const TimerEntry& entry);
  // Queues (in due_this_second_) the in-order stays whose deadline passed.
  void WalkBreachFrontiers(int64_t now_us);
  void FireTimer(const TimerEntry& entry, int64_t now_us);
  // A stay whose deadline passed, found by a breach frontier.
  void FireDeadline(const TimerEntry& entry);
  // Reports that `c` passed its deadline in its current stay.
  void Breach(Case& c, int64_t deadline_us);
  void Remember(uint64_t id_hash, int64_t now_us);
  // `record.key` must not be remembered already.
  void RememberClosed(const Closed& record);
  void ForgetOld(int64_t now_us);
  int64_t NowMicros() const { return clock_->NowMicros(); }
  StageAgeIndex& AgesOf(const Case& c) {
    return stage_ages_[c.process][static_cast<size_t>(c.stage)];
  }
  bool IsLiveStay(uint32_t slot, uint32_t token) const { return tokens_[slot] == token; }
  void PublishView(int64_t now_us);
  absl::Status RestoreState(absl::string_view bytes);
  // A free slot for a new case (its record reset).
  uint32_t NewSlot();

  const model::Config& config_;
  Clock* clock_;
  // clock_ if it is an EventTimeClock (a final class), else null.
  EventTimeClock* event_clock_;
  CaseSink* sink_;
  DimensionTable* dims_;
  const size_t max_dedup_ids_;
  const size_t max_closed_cases_;
  const size_t max_breaching_per_stage_;
  const size_t max_open_cases_;
  const int64_t ttl_us_;
  const int64_t horizon_us_;
  std::vector<std::vector<int64_t>> sla_us_;  // [process][stage]
  // StableHashStart of each case key's seed (StableHash64 of the process
  // id): the seed's part of the hash, once per process, not per event.
  std::vector<uint64_t> process_starts_;

  // The steps ReportStep holds back.
  bool defer_steps_ = false;  // within HandleBatch, for a sink that WantsStepHints
  LagRing<CaseStep, kStepLag> held_;

  CaseIdStore id_store_;
  HugeVector<Case> cases_;
  // Per slot: the token of the case's current stay (in its StageAgeIndex);
  // 0 when the slot is free. Apart from the records so that a stale index
  // entry (most entries: a case usually moves on before its deadline) is
  // dropped without touching them.
  HugeVector<uint32_t> tokens_;
  // Per slot: the token of the case's live timer entry; 0 when free.
  HugeVector<uint32_t> timer_tokens_;
  std::vector<uint32_t> free_slots_;
  // Open cases: (low 32 bits of the key) << 32 | (slot + 1).
  WordSet open_;
  uint32_t next_token_ = 1;

  RecentSet<Closed> closed_;
  RecentSet<Seen> seen_ids_;
  SingleWriterCounter event_ids_forgotten_;
  SingleWriterCounter closed_cases_forgotten_;
  std::vector<SingleWriterCounter> evicted_;  // [process]

  TimingWheel wheel_;
  // wheel_.next_second() in microseconds: whether the wheel has a second
  // to sweep is one comparison per timer check, not a division.
  int64_t wheel_next_us_ = 0;
  // Timers whose second the wheel has already swept but that were not yet
  // due when it did (a deadline later in the current second), as a min-heap
  // on the exact microsecond they fall due. Checked at every AdvanceTimers
  // (every event and every 100 ms tick) at the cost of one comparison, so a
  // breach is reported within a tick of its deadline, not at the next second.
  // A deadline due at the same microsecond as the case's expiry comes
  // first: a case at its deadline when it expires breached it.
  enum TimerKind : uint8_t { kDeadline = 0, kCaseTimer = 1 };
  struct DueEntry {
    int64_t due_us;
    TimerEntry entry;
    bool operator>(const DueEntry& o) const {
      return due_us != o.due_us ? due_us > o.due_us : entry.kind > o.entry.kind;
    }
  };
  // Also the stays a breach frontier found past their deadline and the
  // timers the wheel found due, for the same call to fire in due order.
  std::vector<DueEntry> due_this_second_;
  // No in-order stay's deadline passes before this: the least of the
  // breach frontiers' (entry time + SLA), a lower bound. One comparison per
  // timer check while no deadline passes.
  int64_t next_deadline_us_ = StageAgeIndex::kNoLimit;
  // Per (process, stage), in that order: a lower bound on when the stage's
  // breach frontier's next deadline passes (its frontier_entered() + SLA),
  // lowered by AddStay and made exact when WalkBreachFrontiers looks at the
  // stage. A walk looks only at the stages whose bound has passed: walking
  // every stage's frontier each time next_deadline_us_ passed cost ~430
  // instructions per walk, a walk every ~18 events (§28, §33). The bound
  // only ever rises by a walk, and a frontier's deadline only falls by an
  // entry (AddStay), so a stage skipped has nothing due: the walk reports
  // what walking them all did, in the same order.
  struct FrontierDue {
    int64_t due_us;
    uint32_t process;
    uint32_t stage;
  };
  std::vector<FrontierDue> frontier_due_;
  std::vector<uint32_t> first_frontier_;                // [process]: its stage 0's in frontier_due_
  std::vector<std::vector<StageAgeIndex>> stage_ages_;  // [process][stage]
  std::vector<StageAgeIndex::Stay> stays_;              // reused by PublishView
  std::atomic<uint64_t> open_gauge_{0};

  uint64_t restore_dropped_ = 0;

  // Swapped in whole by the worker at each Tick, read by any thread. A
  // std::mutex rather than absl::Mutex: Debian's Abseil is not built for
  // ThreadSanitizer, so an absl::Mutex's ordering is invisible to it (and
  // libstdc++'s atomic shared_ptr trips TSan too).
  mutable std::mutex view_mu_;
  std::shared_ptr<const OpenCasesView> view_;  // guarded by view_mu_
};

}  // namespace kpid::cases
