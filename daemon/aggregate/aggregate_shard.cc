#include "daemon/aggregate/aggregate_shard.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "absl/base/attributes.h"
#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "daemon/common/state_codec.h"
#include "daemon/common/unix_time.h"

namespace kpid::aggregate {
namespace {

constexpr int64_t kNoBucket = std::numeric_limits<int64_t>::min();
constexpr int64_t kNoTime = std::numeric_limits<int64_t>::min();
// Facts further than this from 1970 (about 31 million years) are dropped, so
// bucket arithmetic never overflows.
constexpr int64_t kMaxAbsSeconds = int64_t{1} << 50;

constexpr uint32_t kChunkBits = 8;
constexpr uint32_t kChunkSize = 1u << kChunkBits;
constexpr uint32_t kMaxChunks = AggregateShard::kMaxDims / kChunkSize;

// A distribution bucket of one series: [lo, hi, bins...], 64-byte aligned;
// bins outside [lo, hi] are zero, and so are those of the 32-bin blocks the
// writer's SeriesState does not mark used. Readers use lo and hi; the writer
// never reads them (nor the bins of a block it has not written in the
// bucket): it keeps its own copy beside the other series' of the slot, so a
// fresh bucket's series costs no read of a line ~4 KB from the last one.
// Reusing the bucket zeroes the blocks used rather than the whole range
// between lo and hi (hundreds of bins when exits took minutes to days).
constexpr size_t kBinsAt = 2;
static_assert(Distribution::kNumBins <= 32 * 32, "one bit per 32-bin block in a uint32_t");
static_assert(Distribution::kNumBins <= 0xffff, "bin indexes fit a uint16_t");
constexpr size_t kLineWords = 64 / sizeof(uint32_t);
constexpr size_t kBinStride =
    (kBinsAt + Distribution::kNumBins + kLineWords - 1) / kLineWords * kLineWords;
constexpr uint32_t kNoBinLo = Distribution::kNumBins;

// A read retries a slot that was reused under it; the retry then sees the
// new bucket and skips it, so two attempts suffice; three for margin.
constexpr int kReadAttempts = 3;

constexpr char kMagic[] = "KPAG";

// Single-writer add: a load and a store instead of a locked read-modify-write.
// `order` is release where a reader's acquire load of this counter must also
// see the writes before it (see the file comment of aggregate_shard.h).
template <typename T>
void Bump(std::atomic<T>& a, T n, std::memory_order order = std::memory_order_relaxed) {
  a.store(a.load(std::memory_order_relaxed) + n, order);
}

// Bucket values (counts, sums, bins, bin ranges) are stored with release and
// loaded with acquire; bucket stamps likewise. That is what makes the
// seqlock-style reads of ReadSlot work without standalone fences (which
// ThreadSanitizer does not model): if a reader's acquire load of a value
// reads a store made after the writer reset the slot's stamp to kNoBucket,
// it synchronizes with that store, so the reset happens-before the reader's
// next load of the stamp, which therefore cannot see the old bucket any more.
// On x86 both are plain moves; the write path costs the same as relaxed.
constexpr std::memory_order kPublish = std::memory_order_release;
constexpr std::memory_order kObserve = std::memory_order_acquire;

template <typename T>
void BumpBucket(std::atomic<T>& a, T n) {
  Bump(a, n, kPublish);
}

// Reads one bucket slot consistently: true when `load` ran against the slot
// holding `bucket` and the slot was not reused meanwhile.
template <typename Fn>
bool ReadSlot(const std::atomic<int64_t>& stamp, int64_t bucket, Fn&& load) {
  for (int attempt = 0; attempt < kReadAttempts; ++attempt) {
    // Acquire: pairs with the writer's release store of `bucket` (made after
    // it zeroed the slot), so we see those zeros and not the previous bucket.
    if (stamp.load(std::memory_order_acquire) != bucket) return false;
    // `load` reads with acquire (kObserve): if it saw any store of a later
    // reuse of the slot, the stamp load below sees that reuse's kNoBucket or
    // a later stamp (see kPublish); acquire also keeps this stamp load after
    // those loads.
    load();
    if (stamp.load(std::memory_order_acquire) == bucket) return true;
  }
  return false;
}

struct StageBucket {
  std::atomic<uint32_t> entered{0};
  std::atomic<uint32_t> advanced{0};
  std::atomic<uint32_t> fallout{0};
  std::atomic<uint32_t> sla_met{0};  // stored after advanced/fallout
  std::atomic<uint32_t> rework{0};   // stored after entered
  std::atomic<uint32_t> sla_breaches{0};

  // One store per field: a loop over an initializer_list of their addresses
  // built the list on the stack for every bucket, ~4x the instructions, and
  // a finest bucket is prepared about once per step in the engine streams.
  void Clear() {
    entered.store(0, kPublish);
    advanced.store(0, kPublish);
    fallout.store(0, kPublish);
    sla_met.store(0, kPublish);
    rework.store(0, kPublish);
    sla_breaches.store(0, kPublish);
  }
  void LoadInto(StageWindowCounts* c) const {
    // sla_met and rework first: their stores come after the exit's and the
    // entry's, so (acquire) the exits and entries read next include every
    // one these counted: sla_met <= exited, rework <= entered.
    c->sla_met = sla_met.load(kObserve);
    c->rework = rework.load(kObserve);
    c->entered = entered.load(kObserve);
    c->advanced = advanced.load(kObserve);
    c->fallout = fallout.load(kObserve);
    c->sla_breaches = sla_breaches.load(kObserve);
  }
};

struct ProcessBucket {
  std::atomic<uint32_t> started{0};
  std::atomic<uint32_t> completed{0};  // stored after revenue
  std::atomic<uint32_t> fallout{0};
  std::atomic<uint32_t> score_count{0};  // stored after score_sum
  std::atomic<uint32_t> cost_count{0};   // stored after cost
  std::atomic<double> revenue{0};
  std::atomic<double> cost{0};
  std::atomic<double> score_sum{0};

  void Clear() {  // as StageBucket::Clear
    started.store(0, kPublish);
    completed.store(0, kPublish);
    fallout.store(0, kPublish);
    score_count.store(0, kPublish);
    cost_count.store(0, kPublish);
    revenue.store(0, kPublish);
    cost.store(0, kPublish);
    score_sum.store(0, kPublish);
  }
  void LoadInto(ProcessWindowCounts* c) const {
    // The counts first: their stores come after the sums', so the sums read
    // next include what these counted.
    c->completed = completed.load(kObserve);
    c->score_count = score_count.load(kObserve);
    c->cost_count = cost_count.load(kObserve);
    c->started = started.load(kObserve);
    c->fallout = fallout.load(kObserve);
    c->revenue = revenue.load(kObserve);
    c->cost = cost.load(kObserve);
    c->score_sum = score_sum.load(kObserve);
  }
};

// Totals are independent monotonic counters: relaxed everywhere (readers want
// some recent value of each, as SingleWriterCounter).
struct AtomicHistogram {
  std::atomic<double> sum{0};  // first: it shares a line with the fields before it
  std::array<std::atomic<uint64_t>, LatencyHistogram::kBuckets> buckets{};

  // `bin` is Distribution::BinOf(seconds).
  void Observe(double seconds, int bin) {
    Bump(buckets[static_cast<size_t>(LatencyHistogram::BucketOfBinned(seconds, bin))], uint64_t{1});
    Bump(sum, seconds);
  }
  LatencyHistogram Get() const {
    LatencyHistogram h;
    for (size_t i = 0; i < buckets.size(); ++i) {
      h.buckets[i] = buckets[i].load(std::memory_order_relaxed);
    }
    h.sum = sum.load(std::memory_order_relaxed);
    return h;
  }
  void Set(const LatencyHistogram& h) {
    for (size_t i = 0; i < buckets.size(); ++i) {
      buckets[i].store(h.buckets[i], std::memory_order_relaxed);
    }
    sum.store(h.sum, std::memory_order_relaxed);
  }
};

// What an entry, an exit and the backlog changes around them update shares
// one cache line.
struct alignas(64) AtomicStageTotals {
  std::atomic<uint64_t> entered{0}, exited_advanced{0}, exited_fallout{0}, sla_met{0},
      sla_missed{0}, rework{0};
  std::atomic<int64_t> backlog{0}, backlog_over_sla{0};
  std::atomic<uint64_t> sla_breaches{0}, expired{0};
  AtomicHistogram cycle_time;

  StageTotals Get() const {
    constexpr auto r = std::memory_order_relaxed;
    StageTotals t;
    t.entered = entered.load(r);
    t.exited_advanced = exited_advanced.load(r);
    t.exited_fallout = exited_fallout.load(r);
    t.sla_met = sla_met.load(r);
    t.sla_missed = sla_missed.load(r);
    t.rework = rework.load(r);
    t.sla_breaches = sla_breaches.load(r);
    t.expired = expired.load(r);
    t.backlog = backlog.load(r);
    t.backlog_over_sla = backlog_over_sla.load(r);
    t.cycle_time = cycle_time.Get();
    return t;
  }
  void Set(const StageTotals& t) {
    constexpr auto r = std::memory_order_relaxed;
    entered.store(t.entered, r);
    exited_advanced.store(t.exited_advanced, r);
    exited_fallout.store(t.exited_fallout, r);
    sla_met.store(t.sla_met, r);
    sla_missed.store(t.sla_missed, r);
    rework.store(t.rework, r);
    sla_breaches.store(t.sla_breaches, r);
    expired.store(t.expired, r);
    backlog.store(t.backlog, r);
    backlog_over_sla.store(t.backlog_over_sla, r);
    cycle_time.Set(t.cycle_time);
  }
};

struct AtomicProcessTotals {
  std::atomic<uint64_t> started{0}, completed{0}, fallout{0}, expired{0}, score_count{0},
      cost_count{0};
  std::atomic<double> revenue{0}, cost{0}, score_sum{0};
  AtomicHistogram lead_time;

  ProcessTotals Get() const {
    constexpr auto r = std::memory_order_relaxed;
    ProcessTotals t;
    t.started = started.load(r);
    t.completed = completed.load(r);
    t.fallout = fallout.load(r);
    t.expired = expired.load(r);
    t.score_count = score_count.load(r);
    t.cost_count = cost_count.load(r);
    t.revenue = revenue.load(r);
    t.cost = cost.load(r);
    t.score_sum = score_sum.load(r);
    t.lead_time = lead_time.Get();
    return t;
  }
  void Set(const ProcessTotals& t) {
    constexpr auto r = std::memory_order_relaxed;
    started.store(t.started, r);
    completed.store(t.completed, r);
    fallout.store(t.fallout, r);
    expired.store(t.expired, r);
    score_count.store(t.score_count, r);
    cost_count.store(t.cost_count, r);
    revenue.store(t.revenue, r);
    cost.store(t.cost, r);
    score_sum.store(t.score_sum, r);
    lead_time.Set(t.lead_time);
  }
};

struct FreeDeleter {
  void operator()(uint32_t* p) const { std::free(p); }
};

// Series of a process's distributions: one per stage plus lead time.
constexpr size_t kSeriesWords = (model::kMaxStages + 1 + 63) / 64;

// One distribution slot of a process: the bucket it holds, its pool, and
// which of its series have dense bins prepared for that bucket; two lines.
//
// The pool holds the bucket's first kPoolEntries distinct (series, bin)
// pairs with their counts, of all series together: a bucket with a few
// facts (a finest bucket mostly has one or two when every partition's shard
// walks a day of event time per second of replay; RESULTS §29) needs no
// dense bins at all, so no line ~4 KB away per series, no zeroing of the
// previous bucket's bins and no first touch of calloc's pages. Once the
// pool is full, every later fact of the bucket goes to the dense bins (also
// one whose pair the pool holds: readers add both), as does a count that
// would not fit the pool's 16 bits.
//
// A series' dense bins are prepared (their used bins zeroed, their range
// emptied) when the bucket's first fact of that series that the pool does
// not take arrives, not when the bucket opens: the 16 partitions' shards of
// an e2e replay each open a finest bucket every event or two, and an event
// has at most two distribution facts of the process's stages + 1 series. A
// series not prepared has no dense part, and readers never touch its bins
// (they may hold an older bucket's, or be calloc's untouched pages, which a
// read would map to the zero page; see SeriesState).
constexpr uint32_t kPoolEntries = 24;
constexpr uint32_t kPoolCountBits = 16;
constexpr uint32_t kPoolMaxCount = (1u << kPoolCountBits) - 1;
static_assert((model::kMaxStages + 1) * Distribution::kNumBins <= (1u << (32 - kPoolCountBits)),
              "a pool entry's key (series, bin) fits its upper bits");

struct alignas(64) DistSlot {
  std::atomic<int64_t> stamp{kNoBucket};
  // Bit series % 64 of word series / 64: the series' dense bins are
  // prepared. Cleared (release) between the stamp's kNoBucket and the new
  // bucket; a bit is set (release) after its series was prepared.
  std::array<std::atomic<uint64_t>, kSeriesWords> ready{};
  // Entries of `pool` in use: set to 0 (release) between the stamp's
  // kNoBucket and the new bucket, stored (release) after each new entry.
  // Entries past it hold an older bucket's pairs and are never read.
  std::atomic<uint16_t> pooled{0};
  // Writer only (readers never touch it): how many entries the pool takes
  // in this bucket, kPoolEntries or 0. A slot whose last bucket overflowed
  // its pool starts the next one with none: its facts go straight to the
  // dense bins, as before the pool, instead of first searching a full pool
  // for each (the coarse levels, and every level of a dense stream); one
  // whose last bucket would have fit the pool gets it back (see
  // PrepareDistSlot). Which form a fact takes changes no read.
  uint16_t pool_cap = kPoolEntries;
  // (series * kNumBins + bin) << kPoolCountBits | count, each stored
  // (release) whole: a reader sees a pair with some count it had in this
  // bucket.
  std::array<std::atomic<uint32_t>, kPoolEntries> pool{};

  static size_t Word(int series) { return static_cast<size_t>(series) / 64; }
  static uint64_t Bit(int series) { return uint64_t{1} << (static_cast<unsigned>(series) % 64); }
  static uint32_t Key(int series, int bin) {
    return static_cast<uint32_t>(series * Distribution::kNumBins + bin);
  }
  // For readers, inside ReadSlot: acquire pairs with the release store that
  // set the bit, made after the series' bins were zeroed for this bucket.
  bool Ready(int series) const { return (ready[Word(series)].load(kObserve) & Bit(series)) != 0; }
  // For the writer: the index of `key`'s entry among the first `pooled`,
  // or `pooled` if none.
  uint32_t FindPooled(uint32_t pooled, uint32_t key) const {
#if defined(__SSE2__)
    // Four entries per compare; the pool is a multiple of four long, and
    // entries at `pooled` and past it (an older bucket's) never count. Plain
    // loads: the writer reads back its own stores (no other thread writes).
    static_assert(kPoolEntries % 4 == 0);
    static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t) &&
                      std::atomic<uint32_t>::is_always_lock_free,
                  "the pool's entries are read as plain 32-bit words");
    const __m128i want = _mm_set1_epi32(static_cast<int>(key << kPoolCountBits));
    const __m128i key_bits = _mm_set1_epi32(static_cast<int>(~kPoolMaxCount));
    for (uint32_t i = 0; i < pooled; i += 4) {
      const __m128i entries = _mm_loadu_si128(reinterpret_cast<const __m128i*>(&pool[i]));
      const int hits = _mm_movemask_ps(
          _mm_castsi128_ps(_mm_cmpeq_epi32(_mm_and_si128(entries, key_bits), want)));
      if (hits != 0)
        return std::min(pooled,
                        i + static_cast<uint32_t>(std::countr_zero(static_cast<unsigned>(hits))));
    }
    return pooled;
#else
    uint32_t i = 0;
    while (i < pooled && pool[i].load(std::memory_order_relaxed) >> kPoolCountBits != key) ++i;
    return i;
#endif
  }
  // For readers, inside ReadSlot: fn(bin, count) for each pool entry of
  // `series`. Acquire: pairs with the release store of `pooled` made after
  // each entry, so the entries below it are this bucket's (or, read from a
  // later reuse, fail the stamp's second check).
  template <typename Fn>
  void ForEachPooled(int series, Fn&& fn) const {
    const uint32_t used = std::min<uint32_t>(pooled.load(kObserve), kPoolEntries);
    const uint32_t first = Key(series, 0);
    for (uint32_t i = 0; i < used; ++i) {
      const uint32_t entry = pool[i].load(kObserve);
      const uint32_t key = entry >> kPoolCountBits;
      if (key - first < static_cast<uint32_t>(Distribution::kNumBins)) {
        fn(key - first, entry & kPoolMaxCount);
      }
    }
  }
};
static_assert(sizeof(DistSlot) == 128, "two lines");

// The writer's own view of one series of a distribution slot (never read by
// readers): which 32-bin blocks it wrote since the series was last prepared
// (zeroed when it is prepared again) and the [lo, hi] it published. The
// writer reads neither its header nor a bin of an unmarked block (zero:
// zeroed, or never written): besides the cache misses, a read of calloc's
// untouched pages maps the shared zero page, and the write that follows
// must then flush that mapping from every core running one of kpid's
// threads (an IPI per page; a quarter of the workers' CPU while history
// filled up, end to end, RESULTS §13).
struct SeriesState {
  uint32_t used_blocks = 0;
  uint16_t lo = static_cast<uint16_t>(kNoBinLo);
  uint16_t hi = 0;
};

}  // namespace

// All series of one (process, dims). Built by the writer, then published with
// a release store of its pointer; never moved or freed while readers may run.
// What every fact reads first (the arrays' addresses, the epoch, the
// version) is on the record's first two lines, so PrefetchStep starts the
// record with two prefetches.
struct alignas(64) AggregateShard::DimsRecord {
  DimsRecord(int stages, int slots)
      : stamps(static_cast<size_t>(slots)),
        process_buckets(static_cast<size_t>(slots)),
        stage_buckets(static_cast<size_t>(slots) * static_cast<size_t>(stages)),
        stage_totals(static_cast<size_t>(stages)) {
    // Relaxed: made visible to readers by the release store of the pointer.
    for (auto& s : stamps) s.store(kNoBucket, std::memory_order_relaxed);
  }

  std::vector<std::atomic<int64_t>> stamps;  // per slot: the bucket it holds
  std::vector<ProcessBucket> process_buckets;
  std::vector<StageBucket> stage_buckets;  // [slot * stages + stage]
  std::vector<AtomicStageTotals> stage_totals;
  uint64_t prepared_epoch = 0;  // writer only: see AggregateShard::epoch_
  // Bumped (release) after every fact that changed the record: see
  // AggregateShard::SeriesVersion. Next to prepared_epoch, which every fact
  // reads: the store costs no extra line.
  std::atomic<uint64_t> version{1};
  AtomicProcessTotals process_totals;

  size_t bytes() const {
    return sizeof(*this) + stamps.size() * sizeof(stamps[0]) +
           process_buckets.size() * sizeof(ProcessBucket) +
           stage_buckets.size() * sizeof(StageBucket) +
           stage_totals.size() * sizeof(AtomicStageTotals);
  }
};

struct AggregateShard::Chunk {
  std::array<std::atomic<DimsRecord*>, kChunkSize> records{};
};

struct AggregateShard::ProcessState {
  ProcessState(const model::ProcessConfig& config, int total_slots)
      : id(config.id),
        stages(static_cast<int>(config.stages.size())),
        transitions(static_cast<size_t>(stages) * static_cast<size_t>(stages)),
        chunks(new std::atomic<Chunk*>[kMaxChunks]()),
        dist_slots(static_cast<size_t>(total_slots)),
        series_state(static_cast<size_t>(total_slots) * static_cast<size_t>(stages + 1)),
        bins_len(static_cast<size_t>(total_slots) * static_cast<size_t>(stages + 1) * kBinStride) {
    for (const model::StageConfig& s : config.stages) stage_ids.push_back(s.id);
    // calloc: zero pages the kernel hands out lazily, so buckets and bin
    // ranges never used cost no memory. One line more, to align.
    raw_bins.reset(static_cast<uint32_t*>(std::calloc(bins_len + kLineWords, sizeof(uint32_t))));
    if (raw_bins == nullptr) throw std::bad_alloc();
    const uintptr_t at = reinterpret_cast<uintptr_t>(raw_bins.get());
    bins = raw_bins.get() + (64 - at % 64) % 64 / sizeof(uint32_t);
  }
  ~ProcessState() {
    for (uint32_t c = 0; c < kMaxChunks; ++c) {
      Chunk* chunk = chunks[c].load(std::memory_order_relaxed);
      if (chunk == nullptr) continue;
      for (auto& r : chunk->records) delete r.load(std::memory_order_relaxed);
      delete chunk;
    }
  }

  // Series `series` of slot `slot`: a stage index, or `stages` for lead time.
  size_t series_index(int slot, int series) const {
    return static_cast<size_t>(slot) * static_cast<size_t>(stages + 1) +
           static_cast<size_t>(series);
  }
  uint32_t* dist(int slot, int series) const {
    return bins + series_index(slot, series) * kBinStride;
  }

  std::string id;
  std::vector<std::string> stage_ids;
  // Exits and breaches so far: lets the rule engine re-evaluate a process's
  // rules as soon as something they read has changed (single writer,
  // relaxed: a reader that misses the latest bump catches it on its next
  // poll).
  std::atomic<uint64_t> changes{0};
  int stages;
  std::vector<std::atomic<uint64_t>> transitions;  // [from * stages + to]
  std::unique_ptr<std::atomic<Chunk*>[]> chunks;   // kMaxChunks
  // One past the largest DimsId with a record; release store after the
  // record's pointer, so readers that load it (acquire) find the pointers.
  std::atomic<uint32_t> dims_end{0};
  std::vector<DistSlot> dist_slots;       // per slot, all dims-less distributions
  std::vector<SeriesState> series_state;  // writer only; [series_index(slot, series)]
  uint64_t dist_prepared_epoch = 0;       // writer only: see AggregateShard::epoch_
  size_t bins_len;
  std::unique_ptr<uint32_t[], FreeDeleter> raw_bins;
  uint32_t* bins;  // in raw_bins, aligned; accessed through std::atomic_ref
};

AggregateShard::AggregateShard(const model::Config& config)
    : layout_(config), latest_(kNoTime), cursors_(layout_.levels().size()) {
  for (const model::ProcessConfig& p : config.processes) {
    processes_.push_back(std::make_unique<ProcessState>(p, layout_.total_slots()));
  }
}

AggregateShard::~AggregateShard() = default;

// ---------------------------------------------------------------- writer

inline AggregateShard::ProcessState* AggregateShard::WriterProcess(int process, int stage) {
  if (process < 0 || process >= process_count()) {
    Bump(dropped_, uint64_t{1});
    return nullptr;
  }
  ProcessState* p = processes_[static_cast<size_t>(process)].get();
  if (stage < 0 || stage >= p->stages) {
    Bump(dropped_, uint64_t{1});
    return nullptr;
  }
  return p;
}

// Inline: most steps are of another record than the previous one (~20
// records in the engine streams), and a call per step to find it was ~5% of
// the aggregator's samples; only building a record is a call.
inline AggregateShard::DimsRecord* AggregateShard::WriterRecord(ProcessState& p, DimsId dims) {
  if (&p == last_process_ && dims == last_dims_) return last_record_;
  if (dims >= kMaxDims) {
    Bump(dropped_, uint64_t{1});
    return nullptr;
  }
  // Relaxed loads: the writer reads back its own stores.
  const Chunk* chunk = p.chunks[dims >> kChunkBits].load(std::memory_order_relaxed);
  DimsRecord* record =
      chunk == nullptr ? nullptr
                       : chunk->records[dims & (kChunkSize - 1)].load(std::memory_order_relaxed);
  if (record == nullptr) record = BuildWriterRecord(p, dims);
  last_process_ = &p;
  last_dims_ = dims;
  last_record_ = record;
  return record;
}

AggregateShard::DimsRecord* AggregateShard::BuildWriterRecord(ProcessState& p, DimsId dims) {
  std::atomic<Chunk*>& chunk_ptr = p.chunks[dims >> kChunkBits];
  Chunk* chunk = chunk_ptr.load(std::memory_order_relaxed);
  if (chunk == nullptr) {
    chunk = new Chunk();
    // Release: readers that load the pointer (acquire) see its null entries.
    chunk_ptr.store(chunk, std::memory_order_release);
  }
  auto* record = new DimsRecord(p.stages, layout_.total_slots());
  ++records_;
  // Release: readers that load the pointer (acquire) see it fully built.
  chunk->records[dims & (kChunkSize - 1)].store(record, std::memory_order_release);
  if (dims + 1 > p.dims_end.load(std::memory_order_relaxed)) {
    p.dims_end.store(dims + 1, std::memory_order_release);
  }
  return record;
}

void AggregateShard::LimitHeadTo(const cases::Clock* wall_clock) {
  wall_clock_ = wall_clock;
  // Refreshed from the clock by the first fact.
  head_limit_ = wall_clock == nullptr ? std::numeric_limits<int64_t>::max()
                                      : std::numeric_limits<int64_t>::min();
}

int64_t AggregateShard::LimitedSeconds(int64_t at_s) {
  int64_t finest = std::numeric_limits<int64_t>::max();
  for (const Level& l : layout_.levels()) finest = std::min(finest, l.width);
  head_limit_ = absl::ToUnixSeconds(wall_clock_->Now()) + finest;
  return std::min(at_s, head_limit_);
}

// Steps `c` to the bucket of `at_s` (at or after c.end): bucket by bucket,
// without dividing, when it is a few buckets on (at the e2e stream's density
// the finest level mostly jumps one to three buckets, RESULTS §32); else
// divides.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline void AggregateShard::MoveCursor(Cursor& c, const Level& l,
                                                                    int64_t at_s) {
  constexpr int64_t kSteppedBuckets = 4;
  if (c.end != kNoTime && at_s - c.end < kSteppedBuckets * l.width) {
    do {
      ++c.bucket;
      c.start = c.end;
      c.end += l.width;
      c.slot = c.slot + 1 == l.offset + l.slots ? l.offset : c.slot + 1;
    } while (at_s >= c.end);
  } else {
    c.bucket = FloorDiv(at_s, l.width);
    c.start = c.bucket * l.width;
    c.end = c.start + l.width;
    c.slot = l.offset + static_cast<int>(FloorMod(c.bucket, l.slots));
  }
}

// Inline: at the e2e density most steps move the head, mostly level 0's
// alone; the loop over the levels stays a call (AdvanceHeadLevels).
ABSL_ATTRIBUTE_ALWAYS_INLINE inline bool AggregateShard::AdvanceHead(int64_t at_s) {
  if (at_s > kMaxAbsSeconds || at_s < -kMaxAbsSeconds) return false;
  if (at_s >= coarse_to_) {
    AdvanceHeadLevels(at_s);
    return true;
  }
  head_ = at_s;
  latest_.store(at_s, std::memory_order_relaxed);
  // Only level 0 (the finest, with the configured windows) moves: the
  // others' head buckets and their common range stay, so no loop over the
  // levels. Callers pass a time at or past hot_to_, which is then
  // first.end.
  Cursor& first = cursors_[0];
  if (at_s >= first.end) {
    MoveCursor(first, layout_.levels()[0], at_s);
    first.moved_epoch = ++epoch_;
  }
  hot_from_ = std::max(coarse_from_, first.start);
  hot_to_ = std::min(coarse_to_, first.end);
  return true;
}

void AggregateShard::AdvanceHeadLevels(int64_t at_s) {
  head_ = at_s;
  latest_.store(at_s, std::memory_order_relaxed);
  const std::vector<Level>& levels = layout_.levels();
  const uint64_t next_epoch = epoch_ + 1;
  Cursor& first = cursors_[0];
  bool moved = false;
  coarse_from_ = std::numeric_limits<int64_t>::min();
  coarse_to_ = std::numeric_limits<int64_t>::max();
  for (size_t i = 0; i < levels.size(); ++i) {
    Cursor& c = cursors_[i];
    if (at_s >= c.end) {
      moved = true;
      c.moved_epoch = next_epoch;
      MoveCursor(c, levels[i], at_s);
    }
    if (i > 0) {
      coarse_from_ = std::max(coarse_from_, c.start);
      coarse_to_ = std::min(coarse_to_, c.end);
    }
  }
  hot_from_ = std::max(coarse_from_, first.start);
  hot_to_ = std::min(coarse_to_, first.end);
  if (moved) epoch_ = next_epoch;
}

// Only the levels whose head moved since the record was last prepared: the
// others' head slots are the ones it stamped then (ForEachOlderSlot never
// restamps a head slot with another bucket: a level keeps only buckets
// within its slot count of the head). Mostly the finest level alone, so a
// fresh bucket costs the record one stamp line instead of one per level.
void AggregateShard::PrepareHead(ProcessState& p, DimsRecord& r) {
  for (const Cursor& c : cursors_) {
    if (c.moved_epoch > r.prepared_epoch) PrepareSlot(r, p.stages, c.slot, c.bucket);
  }
  r.prepared_epoch = epoch_;
}

// As PrepareHead; the series themselves are prepared by their first fact.
void AggregateShard::PrepareHeadDist(ProcessState& p) {
  for (const Cursor& c : cursors_) {
    if (c.moved_epoch > p.dist_prepared_epoch) PrepareDistSlot(p, c.slot, c.bucket);
  }
  p.dist_prepared_epoch = epoch_;
}

template <typename Fn>
void AggregateShard::ForEachSlot(absl::Time at, ProcessState& p, DimsRecord& r, bool with_dist,
                                 Fn&& fn, uint64_t facts) {
  int64_t at_s = UnixSeconds(at);
  if (at_s > head_limit_) at_s = LimitedSeconds(at_s);
  if (at_s >= hot_from_ && at_s < hot_to_) {
    if (at_s > head_) {
      head_ = at_s;
      latest_.store(at_s, std::memory_order_relaxed);
    }
  } else if (at_s < hot_from_) {
    ForEachOlderSlot(at_s, p, r, with_dist, fn, facts);
    return;
  } else if (!AdvanceHead(at_s)) {
    Bump(dropped_, facts);
    return;
  }
  if (r.prepared_epoch != epoch_) PrepareHead(p, r);
  if (with_dist && p.dist_prepared_epoch != epoch_) PrepareHeadDist(p);
  for (const Cursor& c : cursors_) fn(c.slot);
}

template <typename Fn>
void AggregateShard::ForEachOlderSlot(int64_t at_s, ProcessState& p, DimsRecord& r, bool with_dist,
                                      Fn& fn, uint64_t facts) {
  if (at_s < -kMaxAbsSeconds) {
    Bump(dropped_, facts);
    return;
  }
  // cursors_[i].bucket is the head's bucket at level i.
  const std::vector<Level>& levels = layout_.levels();
  const Level& history = levels.back();
  if (FloorDiv(at_s, history.width) <= cursors_.back().bucket - history.slots) {
    Bump(late_, facts);
    return;
  }
  for (size_t i = 0; i < levels.size(); ++i) {
    const Level& l = levels[i];
    const int64_t bucket = FloorDiv(at_s, l.width);
    // Older than this level keeps: not added to it.
    if (bucket <= cursors_[i].bucket - l.slots) continue;
    const int slot = l.offset + static_cast<int>(FloorMod(bucket, l.slots));
    PrepareSlot(r, p.stages, slot, bucket);
    if (with_dist) PrepareDistSlot(p, slot, bucket);
    fn(slot);
  }
}

void AggregateShard::Changed(DimsRecord& r) {
  // Release: after every store of the fact, which a reader that loads the
  // new version (acquire) then sees.
  Bump(r.version, uint64_t{1}, kPublish);
}

void AggregateShard::PrepareSlot(DimsRecord& r, int stages, int slot, int64_t bucket) {
  std::atomic<int64_t>& stamp = r.stamps[static_cast<size_t>(slot)];
  if (stamp.load(std::memory_order_relaxed) == bucket) return;
  // The slot held an older bucket (a newer one cannot be there: the level
  // only takes buckets within `slots` of the head). Seqlock-style reuse:
  // kNoBucket first; the zeros below are release stores, so a reader that
  // sees any of them also sees kNoBucket (ReadSlot's second stamp load).
  // The buckets' addresses first, into registers: GCC reloads a vector's
  // data pointer from the record after every atomic store, which was a
  // third of this function's instructions when indexed per store.
  ProcessBucket* const process = &r.process_buckets[static_cast<size_t>(slot)];
  StageBucket* const first =
      r.stage_buckets.data() + static_cast<size_t>(slot) * static_cast<size_t>(stages);
  StageBucket* const end = first + stages;
  stamp.store(kNoBucket, std::memory_order_relaxed);
  process->Clear();
  for (StageBucket* b = first; b != end; ++b) b->Clear();
  // Release: a reader that loads `bucket` (acquire) sees the zeros.
  stamp.store(bucket, std::memory_order_release);
}

void AggregateShard::PrepareDistSlot(ProcessState& p, int slot, int64_t bucket) {
  DistSlot& d = p.dist_slots[static_cast<size_t>(slot)];
  if (d.stamp.load(std::memory_order_relaxed) == bucket) return;
  // As PrepareSlot, but no series is touched: the pool takes the bucket's
  // first facts, and a series' dense bins are prepared by its first fact
  // the pool does not take (AddToDist); it has none until then. The cleared
  // bits and count are release stores: a reader whose load of them reads
  // this reuse's zero also sees kNoBucket (ReadSlot's second stamp load).
  // Would the last bucket's facts have fit the pool? With a pool, if no
  // series needed dense bins; without, if the dense bins' ranges [lo, hi]
  // (the writer's SeriesState, still the last bucket's) span kPoolEntries
  // bins or fewer, all series together. Once per bucket, not per fact.
  uint64_t any_dense = 0;
  for (const std::atomic<uint64_t>& word : d.ready)
    any_dense |= word.load(std::memory_order_relaxed);
  bool fitted = any_dense == 0;
  if (!fitted && d.pool_cap == 0) {
    uint32_t dense_bins = 0;
    for (int series = 0; series <= p.stages && dense_bins <= kPoolEntries; ++series) {
      if ((d.ready[DistSlot::Word(series)].load(std::memory_order_relaxed) &
           DistSlot::Bit(series)) != 0) {
        const SeriesState& state = p.series_state[p.series_index(slot, series)];
        dense_bins += state.hi < state.lo ? kPoolEntries + 1 : uint32_t{state.hi} - state.lo + 1;
      }
    }
    fitted = dense_bins <= kPoolEntries;
  }
  d.pool_cap = fitted ? kPoolEntries : 0;
  d.stamp.store(kNoBucket, std::memory_order_relaxed);
  for (std::atomic<uint64_t>& word : d.ready) word.store(0, kPublish);
  d.pooled.store(0, kPublish);
  // Release: a reader that loads `bucket` (acquire) sees the cleared bits
  // and the empty pool, so nothing of the previous bucket.
  d.stamp.store(bucket, std::memory_order_release);
}

void AggregateShard::PrepareDistSeries(ProcessState& p, int slot, int series) {
  SeriesState& state = p.series_state[p.series_index(slot, series)];
  uint32_t* d = p.dist(slot, series);
  // Only the bins used need zeroing: those in [lo, hi] of the blocks used
  // (stores only: see SeriesState). A finest bucket mostly got one or two
  // facts of a series, so this is a store or two, not a block's 32 (whose
  // misses filled the store buffer: most of this function's time).
  for (uint32_t blocks = state.used_blocks; blocks != 0; blocks &= blocks - 1) {
    const uint32_t first = 32 * static_cast<uint32_t>(std::countr_zero(blocks));
    const uint32_t end = std::min<uint32_t>(first + 32, uint32_t{state.hi} + 1);
    for (uint32_t b = std::max<uint32_t>(first, state.lo); b < end; ++b) {
      std::atomic_ref<uint32_t>(d[kBinsAt + b]).store(0, kPublish);
    }
  }
  state = SeriesState();
  std::atomic_ref<uint32_t>(d[0]).store(kNoBinLo, kPublish);
  std::atomic_ref<uint32_t>(d[1]).store(0, kPublish);
  // Release, after the zeros: a reader that sees the bit (acquire) reads
  // this bucket's bins from here on, never the previous bucket's. The bit
  // is cleared only by the slot's next reuse, after its kNoBucket.
  std::atomic<uint64_t>& ready =
      p.dist_slots[static_cast<size_t>(slot)].ready[DistSlot::Word(series)];
  ready.store(ready.load(std::memory_order_relaxed) | DistSlot::Bit(series), kPublish);
}

// Always inlined into the per-slot writes (a call per level and exit or
// completion otherwise); its rare part, PrepareDistSeries, stays a call.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline void AggregateShard::AddToDist(ProcessState& p, int slot,
                                                                   int series, int bin,
                                                                   uint32_t n) {
  DistSlot& slot_state = p.dist_slots[static_cast<size_t>(slot)];
  // Relaxed: the writer reads back its own stores. The slot's first line
  // is the one PrepareDistSlot stamped; hot for the head buckets.
  const uint32_t pooled = slot_state.pooled.load(std::memory_order_relaxed);
  if (pooled < slot_state.pool_cap) {
    const uint32_t key = DistSlot::Key(series, bin);
    const uint32_t i = slot_state.FindPooled(pooled, key);
    if (i < pooled) {
      const uint32_t entry = slot_state.pool[i].load(std::memory_order_relaxed);
      if ((entry & kPoolMaxCount) + uint64_t{n} <= kPoolMaxCount) {
        slot_state.pool[i].store(entry + n, kPublish);
        return;
      }
    } else if (n <= kPoolMaxCount) {
      slot_state.pool[i].store(key << kPoolCountBits | n, kPublish);
      // Release, after the entry: a reader that loads the new count sees it.
      slot_state.pooled.store(static_cast<uint16_t>(pooled + 1), kPublish);
      return;
    }
  }
  if ((slot_state.ready[DistSlot::Word(series)].load(std::memory_order_relaxed) &
       DistSlot::Bit(series)) == 0) {
    PrepareDistSeries(p, slot, series);
  }
  SeriesState& state = p.series_state[p.series_index(slot, series)];
  uint32_t* d = p.dist(slot, series);
  const uint32_t b = static_cast<uint32_t>(bin);
  const uint32_t block = 1u << (b / 32);
  // A reader may miss a bin still being added (an in-flight fact), never
  // read another bucket's bins (ReadSlot; kPublish).
  std::atomic_ref<uint32_t> count(d[kBinsAt + b]);
  uint32_t before = 0;  // a bin of a block not written in this bucket is zero
  if ((state.used_blocks & block) != 0) {
    before = count.load(std::memory_order_relaxed);
  } else {
    state.used_blocks |= block;
  }
  if (before == 0) {
    // A bin used before in this bucket is already within [lo, hi]: the
    // header line is written once per bin and bucket at most.
    if (b < state.lo) {
      state.lo = static_cast<uint16_t>(b);
      std::atomic_ref<uint32_t>(d[0]).store(b, kPublish);
    }
    if (b > state.hi) {
      state.hi = static_cast<uint16_t>(b);
      std::atomic_ref<uint32_t>(d[1]).store(b, kPublish);
    }
  }
  count.store(before + n, kPublish);
}

// Always inlined: into CaseStepped's per-slot lambda (see there) as into
// the one-fact calls.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline int AggregateShard::AddExitTotals(ProcessState& p,
                                                                      DimsRecord& r, int stage,
                                                                      bool advanced, bool sla_met,
                                                                      absl::Duration cycle_time) {
  AtomicStageTotals& t = r.stage_totals[static_cast<size_t>(stage)];
  Bump(p.changes, uint64_t{1});
  Bump(advanced ? t.exited_advanced : t.exited_fallout, uint64_t{1});
  Bump(sla_met ? t.sla_met : t.sla_missed, uint64_t{1});
  const double seconds = DoubleSeconds(cycle_time);
  const int bin = Distribution::BinOf(seconds);
  t.cycle_time.Observe(seconds, bin);
  return bin;
}

ABSL_ATTRIBUTE_ALWAYS_INLINE inline void AggregateShard::AddExitToSlot(ProcessState& p,
                                                                       DimsRecord& r, int slot,
                                                                       int stage, bool advanced,
                                                                       bool sla_met, int bin) {
  StageBucket& b = r.stage_buckets[static_cast<size_t>(slot * p.stages + stage)];
  BumpBucket(advanced ? b.advanced : b.fallout, 1u);
  if (sla_met) BumpBucket(b.sla_met, 1u);  // after the exit
  AddToDist(p, slot, stage, bin, 1);
}

ABSL_ATTRIBUTE_ALWAYS_INLINE inline void AggregateShard::AddEntryTotals(DimsRecord& r, int stage,
                                                                        bool rework) {
  AtomicStageTotals& t = r.stage_totals[static_cast<size_t>(stage)];
  Bump(t.entered, uint64_t{1});
  if (rework) Bump(t.rework, uint64_t{1});
}

ABSL_ATTRIBUTE_ALWAYS_INLINE inline void AggregateShard::AddEntryToSlot(const ProcessState& p,
                                                                        DimsRecord& r, int slot,
                                                                        int stage, bool rework) {
  StageBucket& b = r.stage_buckets[static_cast<size_t>(slot * p.stages + stage)];
  BumpBucket(b.entered, 1u);
  if (rework) BumpBucket(b.rework, 1u);  // after entered
}

ABSL_ATTRIBUTE_ALWAYS_INLINE inline int AggregateShard::AddCompletionTotals(
    DimsRecord& r, double amount, absl::Duration lead_time) {
  AtomicProcessTotals& t = r.process_totals;
  Bump(t.revenue, amount);
  Bump(t.completed, uint64_t{1});
  const double seconds = DoubleSeconds(lead_time);
  const int bin = Distribution::BinOf(seconds);
  t.lead_time.Observe(seconds, bin);
  return bin;
}

ABSL_ATTRIBUTE_ALWAYS_INLINE inline void AggregateShard::AddCompletionToSlot(
    ProcessState& p, DimsRecord& r, int slot, double amount, int bin) {
  ProcessBucket& b = r.process_buckets[static_cast<size_t>(slot)];
  BumpBucket(b.revenue, amount);
  BumpBucket(b.completed, 1u);  // after revenue
  AddToDist(p, slot, p.stages, bin, 1);
}

void AggregateShard::CaseStepped(const cases::CaseStep& step) {
  using cases::CaseStep;
  const bool exits = step.exit_stage != CaseStep::kNoStage;
  const bool enters = step.entry_stage != CaseStep::kNoStage;
  const bool completed = step.close == CaseStep::Close::kCompleted;
  const bool fallout = step.close == CaseStep::Close::kFallout;
  ProcessState* p = step.process >= 0 && step.process < process_count()
                        ? processes_[static_cast<size_t>(step.process)].get()
                        : nullptr;
  auto bad_stage = [&](bool present, int stage) {
    return present && (stage < 0 || stage >= p->stages);
  };
  if (p == nullptr || p->stages == 0 || step.dims >= kMaxDims ||
      bad_stage(exits, step.exit_stage) || bad_stage(enters, step.entry_stage)) {
    // What is dropped is counted per fact, as the one-fact calls count it.
    CaseSink::CaseStepped(step);
    return;
  }
  // Each fact placed in the buckets counts once in late() (or dropped())
  // when its time is out of range, as when reported alone.
  const uint64_t placed =
      uint64_t{step.started} + uint64_t{exits} + uint64_t{enters} + uint64_t{completed || fallout};
  if (placed == 0) return;
  DimsRecord& r = *WriterRecord(*p, step.dims);
  const size_t stages = static_cast<size_t>(p->stages);
  const size_t exit_stage = static_cast<size_t>(step.exit_stage);
  const size_t entry_stage = static_cast<size_t>(step.entry_stage);
  const bool advanced = step.outcome == cases::ExitOutcome::kAdvanced;

  if (step.started) Bump(r.process_totals.started, uint64_t{1});
  int exit_bin = 0;
  if (exits) {
    exit_bin = AddExitTotals(*p, r, step.exit_stage, advanced, step.sla_met, step.cycle_time);
    AtomicStageTotals& t = r.stage_totals[exit_stage];
    Bump(t.backlog, int64_t{-1});
    if (step.exit_over_sla) Bump(t.backlog_over_sla, int64_t{-1});
    if (enters) Bump(p->transitions[exit_stage * stages + entry_stage], uint64_t{1});
  }
  if (enters) {
    AddEntryTotals(r, step.entry_stage, step.rework);
    Bump(r.stage_totals[entry_stage].backlog, int64_t{1});
  }
  int lead_bin = 0;
  if (completed) {
    lead_bin = AddCompletionTotals(r, step.amount, step.lead_time);
  } else if (fallout) {
    Bump(r.process_totals.fallout, uint64_t{1});
  }

  // Always inlined: GCC 12 kept this lambda out of line (ForEachSlot calls
  // it from two places), a call per level and event, and the aggregator
  // alone then took up to ~1.2x the CPU per event of one call per fact.
  ForEachSlot(
      step.at, *p, r, /*with_dist=*/exits || completed,
      [&](int slot) ABSL_ATTRIBUTE_ALWAYS_INLINE {
        ProcessBucket& pb = r.process_buckets[static_cast<size_t>(slot)];
        if (step.started) BumpBucket(pb.started, 1u);
        if (exits) AddExitToSlot(*p, r, slot, step.exit_stage, advanced, step.sla_met, exit_bin);
        if (enters) AddEntryToSlot(*p, r, slot, step.entry_stage, step.rework);
        if (completed) {
          AddCompletionToSlot(*p, r, slot, step.amount, lead_bin);
        } else if (fallout) {
          BumpBucket(pb.fallout, 1u);
        }
      },
      placed);
  Changed(r);
}

// Always inlined: out of line, GCC 12 finds a function whose only effect
// is prefetches pure and drops every call of it (as CaseTracker::PrefetchCase).
ABSL_ATTRIBUTE_ALWAYS_INLINE inline void AggregateShard::PrefetchStepSlots(const Hinted& h) {
  const ProcessState& p = *h.process;
  const DimsRecord& r = *h.record;
  const bool exits = h.exit_stage != cases::CaseStep::kNoStage;
  const bool enters = h.entry_stage != cases::CaseStep::kNoStage;
  auto prefetch_lines = [](const void* at, size_t bytes) {
    const char* line = static_cast<const char*>(at);
    for (size_t offset = 0; offset < bytes; offset += 64) __builtin_prefetch(line + offset, 1);
  };
  // The exit's totals and cycle-time histogram: four lines.
  if (exits) {
    prefetch_lines(&r.stage_totals[static_cast<size_t>(h.exit_stage)], sizeof(AtomicStageTotals));
  }
  if (enters) __builtin_prefetch(&r.stage_totals[static_cast<size_t>(h.entry_stage)], 1);
  if (h.completed) prefetch_lines(&r.process_totals, sizeof(AtomicProcessTotals));
  for (const Cursor& c : cursors_) {
    const size_t slot = static_cast<size_t>(c.slot);
    __builtin_prefetch(&r.stamps[slot], 1);
    if (h.process_facts) __builtin_prefetch(&r.process_buckets[slot], 1);
    const size_t stages = static_cast<size_t>(p.stages);
    if (exits) {
      __builtin_prefetch(&r.stage_buckets[slot * stages + static_cast<size_t>(h.exit_stage)], 1);
    }
    if (enters) {
      __builtin_prefetch(&r.stage_buckets[slot * stages + static_cast<size_t>(h.entry_stage)], 1);
    }
  }
}

// Lines only; nothing is stored or prepared, and a record not yet built is
// left alone (the first fact builds it). Two stages, one hint apart: the
// record's first lines now (its address is in the chunk tables, which stay
// cached), then at the next hint the lines the step will write at the
// head slots, whose addresses need those first lines. By then the record
// has had an event's work in the tracker to arrive, where one stage would
// stall on it. The lines are those of the head buckets as they are now: a
// step that lands elsewhere (the head moved on, an older time) only misses
// as it did without the hint.
void AggregateShard::PrefetchStep(const cases::CaseStep& step) {
  if (hinted_.record != nullptr) PrefetchStepSlots(hinted_);
  hinted_.record = nullptr;
  if (step.process < 0 || step.process >= process_count() || step.dims >= kMaxDims) return;
  ProcessState& p = *processes_[static_cast<size_t>(step.process)];
  const Chunk* chunk = p.chunks[step.dims >> kChunkBits].load(std::memory_order_relaxed);
  if (chunk == nullptr) return;
  DimsRecord* r = chunk->records[step.dims & (kChunkSize - 1)].load(std::memory_order_relaxed);
  if (r == nullptr) return;
  const char* head = reinterpret_cast<const char*>(r);
  __builtin_prefetch(head, 1);
  __builtin_prefetch(head + 64, 1);
  auto stage_or_none = [&](int stage) {
    return stage >= 0 && stage < p.stages ? stage : cases::CaseStep::kNoStage;
  };
  hinted_ = {.process = &p,
             .record = r,
             .exit_stage = stage_or_none(step.exit_stage),
             .entry_stage = stage_or_none(step.entry_stage),
             .process_facts = step.started || step.close != cases::CaseStep::Close::kNone,
             .completed = step.close == cases::CaseStep::Close::kCompleted};
}

void AggregateShard::CaseStarted(int process, DimsId dims, absl::Time at) {
  ProcessState* p = WriterProcess(process, 0);
  if (p == nullptr) return;
  DimsRecord* r = WriterRecord(*p, dims);
  if (r == nullptr) return;
  Bump(r->process_totals.started, uint64_t{1});
  ForEachSlot(at, *p, *r, /*with_dist=*/false, [&](int slot) {
    BumpBucket(r->process_buckets[static_cast<size_t>(slot)].started, 1u);
  });
  Changed(*r);
}

void AggregateShard::StageEntered(int process, int stage, DimsId dims, absl::Time at, bool rework) {
  ProcessState* p = WriterProcess(process, stage);
  if (p == nullptr) return;
  DimsRecord* r = WriterRecord(*p, dims);
  if (r == nullptr) return;
  AddEntryTotals(*r, stage, rework);
  ForEachSlot(at, *p, *r, /*with_dist=*/false,
              [&](int slot) { AddEntryToSlot(*p, *r, slot, stage, rework); });
  Changed(*r);
}

void AggregateShard::StageExited(int process, int stage, DimsId dims, absl::Time at,
                                 cases::ExitOutcome outcome, absl::Duration cycle_time,
                                 bool sla_met) {
  ProcessState* p = WriterProcess(process, stage);
  if (p == nullptr) return;
  DimsRecord* r = WriterRecord(*p, dims);
  if (r == nullptr) return;
  const bool advanced = outcome == cases::ExitOutcome::kAdvanced;
  const int bin = AddExitTotals(*p, *r, stage, advanced, sla_met, cycle_time);
  ForEachSlot(at, *p, *r, /*with_dist=*/true,
              [&](int slot) { AddExitToSlot(*p, *r, slot, stage, advanced, sla_met, bin); });
  Changed(*r);
}

void AggregateShard::Transition(int process, int from_stage, int to_stage, absl::Time) {
  ProcessState* p = WriterProcess(process, from_stage);
  if (p == nullptr) return;
  if (to_stage < 0 || to_stage >= p->stages) {
    Bump(dropped_, uint64_t{1});
    return;
  }
  Bump(p->transitions[static_cast<size_t>(from_stage * p->stages + to_stage)], uint64_t{1});
}

void AggregateShard::CaseCompleted(int process, DimsId dims, absl::Time at, double amount,
                                   absl::Duration lead_time) {
  ProcessState* p = WriterProcess(process, 0);
  if (p == nullptr) return;
  DimsRecord* r = WriterRecord(*p, dims);
  if (r == nullptr) return;
  const int bin = AddCompletionTotals(*r, amount, lead_time);
  ForEachSlot(at, *p, *r, /*with_dist=*/true,
              [&](int slot) { AddCompletionToSlot(*p, *r, slot, amount, bin); });
  Changed(*r);
}

void AggregateShard::CaseFallout(int process, DimsId dims, absl::Time at) {
  ProcessState* p = WriterProcess(process, 0);
  if (p == nullptr) return;
  DimsRecord* r = WriterRecord(*p, dims);
  if (r == nullptr) return;
  Bump(r->process_totals.fallout, uint64_t{1});
  ForEachSlot(at, *p, *r, /*with_dist=*/false, [&](int slot) {
    BumpBucket(r->process_buckets[static_cast<size_t>(slot)].fallout, 1u);
  });
  Changed(*r);
}

void AggregateShard::CaseExpired(int process, int stage, DimsId dims, absl::Time) {
  ProcessState* p = WriterProcess(process, stage);
  if (p == nullptr) return;
  DimsRecord* r = WriterRecord(*p, dims);
  if (r == nullptr) return;
  Bump(r->process_totals.expired, uint64_t{1});
  Bump(r->stage_totals[static_cast<size_t>(stage)].expired, uint64_t{1});
  Changed(*r);
}

void AggregateShard::Cost(int process, DimsId dims, absl::Time at, double amount) {
  ProcessState* p = WriterProcess(process, 0);
  if (p == nullptr) return;
  DimsRecord* r = WriterRecord(*p, dims);
  if (r == nullptr) return;
  Bump(r->process_totals.cost, amount);
  Bump(r->process_totals.cost_count, uint64_t{1});
  ForEachSlot(at, *p, *r, /*with_dist=*/false, [&](int slot) {
    ProcessBucket& b = r->process_buckets[static_cast<size_t>(slot)];
    BumpBucket(b.cost, amount);
    BumpBucket(b.cost_count, 1u);  // after cost
  });
  Changed(*r);
}

void AggregateShard::Feedback(int process, DimsId dims, absl::Time at, double score) {
  ProcessState* p = WriterProcess(process, 0);
  if (p == nullptr) return;
  DimsRecord* r = WriterRecord(*p, dims);
  if (r == nullptr) return;
  Bump(r->process_totals.score_sum, score);
  Bump(r->process_totals.score_count, uint64_t{1});
  ForEachSlot(at, *p, *r, /*with_dist=*/false, [&](int slot) {
    ProcessBucket& b = r->process_buckets[static_cast<size_t>(slot)];
    BumpBucket(b.score_sum, score);
    BumpBucket(b.score_count, 1u);  // after score_sum
  });
  Changed(*r);
}

void AggregateShard::SlaBreached(int process, int stage, DimsId dims, absl::Time deadline) {
  ProcessState* p = WriterProcess(process, stage);
  if (p == nullptr) return;
  DimsRecord* r = WriterRecord(*p, dims);
  if (r == nullptr) return;
  Bump(p->changes, uint64_t{1});
  Bump(r->stage_totals[static_cast<size_t>(stage)].sla_breaches, uint64_t{1});
  ForEachSlot(deadline, *p, *r, /*with_dist=*/false, [&](int slot) {
    BumpBucket(r->stage_buckets[static_cast<size_t>(slot * p->stages + stage)].sla_breaches, 1u);
  });
  Changed(*r);
}

void AggregateShard::BacklogChanged(int process, int stage, DimsId dims, int open_delta,
                                    int over_sla_delta) {
  ProcessState* p = WriterProcess(process, stage);
  if (p == nullptr) return;
  DimsRecord* r = WriterRecord(*p, dims);
  if (r == nullptr) return;
  AtomicStageTotals& t = r->stage_totals[static_cast<size_t>(stage)];
  Bump(t.backlog, int64_t{open_delta});
  Bump(t.backlog_over_sla, int64_t{over_sla_delta});
  Changed(*r);
}

// ---------------------------------------------------------------- readers

uint64_t AggregateShard::ChangeCount(int process) const {
  const ProcessState* p = ReaderProcess(process);
  return p == nullptr ? 0 : p->changes.load(std::memory_order_relaxed);
}

int AggregateShard::stage_count(int process) const {
  const ProcessState* p = ReaderProcess(process);
  return p == nullptr ? 0 : p->stages;
}

const std::string& AggregateShard::process_id(int process) const {
  return processes_.at(static_cast<size_t>(process))->id;
}

const std::string& AggregateShard::stage_id(int process, int stage) const {
  return processes_.at(static_cast<size_t>(process))->stage_ids.at(static_cast<size_t>(stage));
}

absl::optional<int64_t> AggregateShard::latest() const {
  const int64_t latest = latest_.load(std::memory_order_relaxed);
  if (latest == kNoTime) return absl::nullopt;
  return latest;
}

const AggregateShard::ProcessState* AggregateShard::ReaderProcess(int process) const {
  if (process < 0 || process >= process_count()) return nullptr;
  return processes_[static_cast<size_t>(process)].get();
}

const AggregateShard::DimsRecord* AggregateShard::ReaderRecord(const ProcessState& p,
                                                               DimsId dims) const {
  if (dims >= kMaxDims) return nullptr;
  // Acquire: pairs with the writer's release stores of the pointers, so the
  // chunk and the record are seen fully built.
  const Chunk* chunk = p.chunks[dims >> kChunkBits].load(std::memory_order_acquire);
  if (chunk == nullptr) return nullptr;
  return chunk->records[dims & (kChunkSize - 1)].load(std::memory_order_acquire);
}

uint64_t AggregateShard::SeriesVersion(int process, DimsId dims) const {
  const ProcessState* p = ReaderProcess(process);
  if (p == nullptr) return 0;
  const DimsRecord* r = ReaderRecord(*p, dims);
  // Acquire: pairs with the writer's release bump, made after its bucket
  // writes, so a read that follows sees every change this version counts.
  return r == nullptr ? 0 : r->version.load(std::memory_order_acquire);
}

void AggregateShard::SeriesVersions(int process, std::vector<uint64_t>* out) const {
  out->clear();
  const ProcessState* p = ReaderProcess(process);
  if (p == nullptr) return;
  out->resize(p->dims_end.load(std::memory_order_acquire), 0);
  for (DimsId d = 0; d < out->size(); ++d) {
    // Acquire, as SeriesVersion.
    if (const DimsRecord* r = ReaderRecord(*p, d)) {
      (*out)[d] = r->version.load(std::memory_order_acquire);
    }
  }
}

std::vector<DimsId> AggregateShard::ListDims(int process) const {
  std::vector<DimsId> ids;
  const ProcessState* p = ReaderProcess(process);
  if (p == nullptr) return ids;
  const uint32_t end = p->dims_end.load(std::memory_order_acquire);
  for (DimsId d = 0; d < end; ++d) {
    if (ReaderRecord(*p, d) != nullptr) ids.push_back(d);
  }
  return ids;
}

void AggregateShard::ReadRecordSlots(const ProcessState& p, const DimsRecord& r,
                                     const WindowSpan& span, size_t stage_begin, size_t stage_end,
                                     bool with_process, SeriesWindow* out) const {
  if (span.empty() || span.level >= static_cast<int>(layout_.levels().size())) return;
  const Level& l = layout_.levels()[static_cast<size_t>(span.level)];
  const size_t stages = static_cast<size_t>(p.stages);
  out->stages.resize(stages);
  const size_t s_begin = std::min(stage_begin, stages);
  const size_t s_end = std::min(stage_end, stages);
  ProcessWindowCounts process;
  // One slot's values, merged once its stamp checks out: a scrape reads
  // every series' windows, so no allocation here.
  absl::InlinedVector<StageWindowCounts, 8> stage(stages);
  const int64_t first = std::max(span.first, span.last - l.slots + 1);
  // The slot of `bucket`, l.offset + FloorMod(bucket, l.slots), stepped
  // along instead of divided for each of the ~61 buckets.
  int64_t ring = FloorMod(first, l.slots);
  for (int64_t bucket = first; bucket <= span.last;
       ++bucket, ring = ring + 1 == l.slots ? 0 : ring + 1) {
    const size_t slot = static_cast<size_t>(l.offset + ring);
    const bool ok = ReadSlot(r.stamps[slot], bucket, [&] {
      if (with_process) {
        r.process_buckets[slot].LoadInto(&process);
        // Entries are counted per stage only: the writer touches one counter.
        process.stage_entries = 0;
        for (size_t s = 0; s < stages; ++s) {
          process.stage_entries += r.stage_buckets[slot * stages + s].entered.load(kObserve);
        }
      }
      for (size_t s = s_begin; s < s_end; ++s) {
        r.stage_buckets[slot * stages + s].LoadInto(&stage[s]);
      }
    });
    if (!ok) continue;
    if (with_process) out->process.Merge(process);
    for (size_t s = s_begin; s < s_end; ++s) out->stages[s].Merge(stage[s]);
  }
}

StageWindowCounts AggregateShard::ReadStageWindow(int process, int stage, DimsId dims,
                                                  const WindowSpan& span) const {
  const ProcessState* p = ReaderProcess(process);
  if (p == nullptr || stage < 0 || stage >= p->stages) return {};
  const DimsRecord* r = ReaderRecord(*p, dims);
  if (r == nullptr) return {};
  SeriesWindow w;
  ReadRecordSlots(*p, *r, span, static_cast<size_t>(stage), static_cast<size_t>(stage) + 1,
                  /*with_process=*/false, &w);
  return w.stages.empty() ? StageWindowCounts{} : w.stages[static_cast<size_t>(stage)];
}

ProcessWindowCounts AggregateShard::ReadProcessWindow(int process, DimsId dims,
                                                      const WindowSpan& span) const {
  const ProcessState* p = ReaderProcess(process);
  if (p == nullptr) return {};
  const DimsRecord* r = ReaderRecord(*p, dims);
  if (r == nullptr) return {};
  SeriesWindow w;
  ReadRecordSlots(*p, *r, span, 0, 0, /*with_process=*/true, &w);
  return w.process;
}

SeriesWindow AggregateShard::ReadSeriesWindow(int process, DimsId dims,
                                              const WindowSpan& span) const {
  SeriesWindow w;
  const ProcessState* p = ReaderProcess(process);
  if (p == nullptr) return w;
  w.stages.resize(static_cast<size_t>(p->stages));
  const DimsRecord* r = ReaderRecord(*p, dims);
  if (r != nullptr) ReadRecordSlots(*p, *r, span, 0, w.stages.size(), /*with_process=*/true, &w);
  return w;
}

void AggregateShard::AddSeriesWindow(int process, DimsId dims, const WindowSpan& span,
                                     SeriesWindow* out) const {
  const ProcessState* p = ReaderProcess(process);
  if (p == nullptr) return;
  out->stages.resize(std::max(out->stages.size(), static_cast<size_t>(p->stages)));
  const DimsRecord* r = ReaderRecord(*p, dims);
  if (r != nullptr)
    ReadRecordSlots(*p, *r, span, 0, out->stages.size(), /*with_process=*/true, out);
}

SeriesWindow AggregateShard::ReadAllDimsWindow(int process, const WindowSpan& span) const {
  SeriesWindow w;
  const ProcessState* p = ReaderProcess(process);
  if (p == nullptr) return w;
  w.stages.resize(static_cast<size_t>(p->stages));
  const uint32_t end = p->dims_end.load(std::memory_order_acquire);
  for (DimsId d = 0; d < end; ++d) {
    if (const DimsRecord* r = ReaderRecord(*p, d)) {
      ReadRecordSlots(*p, *r, span, 0, w.stages.size(), /*with_process=*/true, &w);
    }
  }
  return w;
}

Distribution AggregateShard::ReadDist(int process, int series, const WindowSpan& span) const {
  Distribution out;
  const ProcessState* p = ReaderProcess(process);
  if (p == nullptr || series < 0 || series > p->stages || span.empty() ||
      span.level >= static_cast<int>(layout_.levels().size())) {
    return out;
  }
  const Level& l = layout_.levels()[static_cast<size_t>(span.level)];
  std::array<uint32_t, Distribution::kNumBins> copy;
  std::array<std::pair<uint32_t, uint32_t>, kPoolEntries> pooled;
  uint32_t lo = 0, hi = 0, pooled_count = 0;
  for (int64_t bucket = std::max(span.first, span.last - l.slots + 1); bucket <= span.last;
       ++bucket) {
    const int slot = l.offset + static_cast<int>(FloorMod(bucket, l.slots));
    const DistSlot& slot_state = p->dist_slots[static_cast<size_t>(slot)];
    uint32_t* d = p->dist(slot, series);
    const bool ok = ReadSlot(slot_state.stamp, bucket, [&] {
      pooled_count = 0;
      slot_state.ForEachPooled(series, [&](uint32_t bin, uint32_t n) {
        pooled[pooled_count++] = {bin, n};
      });
      if (!slot_state.Ready(series)) {
        // No dense bins of this series in the bucket (yet).
        lo = kNoBinLo;
        hi = 0;
        return;
      }
      lo = std::atomic_ref<uint32_t>(d[0]).load(kObserve);
      hi = std::min<uint32_t>(std::atomic_ref<uint32_t>(d[1]).load(kObserve), kNoBinLo - 1);
      for (uint32_t b = lo; b <= hi; ++b) {
        copy[b] = std::atomic_ref<uint32_t>(d[kBinsAt + b]).load(kObserve);
      }
    });
    if (!ok) continue;
    for (uint32_t i = 0; i < pooled_count; ++i) {
      out.AddToBin(static_cast<int>(pooled[i].first), pooled[i].second);
    }
    for (uint32_t b = lo; b <= hi; ++b) out.AddToBin(static_cast<int>(b), copy[b]);
  }
  return out;
}

Distribution AggregateShard::ReadCycleTimes(int process, int stage, const WindowSpan& span) const {
  if (stage < 0 || stage >= stage_count(process)) return {};
  return ReadDist(process, stage, span);
}

Distribution AggregateShard::ReadLeadTimes(int process, const WindowSpan& span) const {
  return ReadDist(process, stage_count(process), span);
}

void AggregateShard::ReadTotalsInto(const ProcessState& p, const DimsRecord& r,
                                    SeriesTotals* out) const {
  out->stages.resize(static_cast<size_t>(p.stages));
  out->process.Merge(r.process_totals.Get());
  for (size_t s = 0; s < out->stages.size(); ++s) out->stages[s].Merge(r.stage_totals[s].Get());
}

StageTotals AggregateShard::ReadStageTotals(int process, int stage, DimsId dims) const {
  const ProcessState* p = ReaderProcess(process);
  if (p == nullptr || stage < 0 || stage >= p->stages) return {};
  const DimsRecord* r = ReaderRecord(*p, dims);
  if (r == nullptr) return {};
  return r->stage_totals[static_cast<size_t>(stage)].Get();
}

ProcessTotals AggregateShard::ReadProcessTotals(int process, DimsId dims) const {
  const ProcessState* p = ReaderProcess(process);
  if (p == nullptr) return {};
  const DimsRecord* r = ReaderRecord(*p, dims);
  if (r == nullptr) return {};
  return r->process_totals.Get();
}

SeriesTotals AggregateShard::ReadSeriesTotals(int process, DimsId dims) const {
  SeriesTotals t;
  const ProcessState* p = ReaderProcess(process);
  if (p == nullptr) return t;
  t.stages.resize(static_cast<size_t>(p->stages));
  if (const DimsRecord* r = ReaderRecord(*p, dims)) ReadTotalsInto(*p, *r, &t);
  return t;
}

void AggregateShard::AddSeriesTotals(int process, DimsId dims, SeriesTotals* out) const {
  const ProcessState* p = ReaderProcess(process);
  if (p == nullptr) return;
  out->stages.resize(std::max(out->stages.size(), static_cast<size_t>(p->stages)));
  if (const DimsRecord* r = ReaderRecord(*p, dims)) ReadTotalsInto(*p, *r, out);
}

SeriesTotals AggregateShard::ReadAllDimsTotals(int process) const {
  SeriesTotals t;
  const ProcessState* p = ReaderProcess(process);
  if (p == nullptr) return t;
  t.stages.resize(static_cast<size_t>(p->stages));
  const uint32_t end = p->dims_end.load(std::memory_order_acquire);
  for (DimsId d = 0; d < end; ++d) {
    if (const DimsRecord* r = ReaderRecord(*p, d)) ReadTotalsInto(*p, *r, &t);
  }
  return t;
}

uint64_t AggregateShard::ReadTransitions(int process, int from_stage, int to_stage) const {
  const ProcessState* p = ReaderProcess(process);
  if (p == nullptr || from_stage < 0 || from_stage >= p->stages || to_stage < 0 ||
      to_stage >= p->stages) {
    return 0;
  }
  return p->transitions[static_cast<size_t>(from_stage * p->stages + to_stage)].load(
      std::memory_order_relaxed);
}

size_t AggregateShard::AllocatedBytes() const {
  size_t bytes = sizeof(*this);
  for (const auto& p : processes_) {
    bytes += sizeof(ProcessState) + p->transitions.size() * sizeof(std::atomic<uint64_t>) +
             kMaxChunks * sizeof(std::atomic<Chunk*>) + p->dist_slots.size() * sizeof(DistSlot) +
             p->bins_len * sizeof(uint32_t);
    for (uint32_t c = 0; c < kMaxChunks; ++c) {
      const Chunk* chunk = p->chunks[c].load(std::memory_order_acquire);
      if (chunk == nullptr) continue;
      bytes += sizeof(Chunk);
      for (const auto& r : chunk->records) {
        if (const DimsRecord* record = r.load(std::memory_order_acquire)) bytes += record->bytes();
      }
    }
  }
  return bytes;
}

// ---------------------------------------------------------------- state

namespace {

using Encoder = StateEncoder;
using Decoder = StateDecoder;

void EncodeHistogram(const LatencyHistogram& h, Encoder* e) {
  e->Varint(h.buckets.size());
  for (uint64_t b : h.buckets) e->Varint(b);
  e->Double(h.sum);
}

LatencyHistogram DecodeHistogram(Decoder* d) {
  LatencyHistogram h;
  if (d->Count() != h.buckets.size()) {
    d->Invalidate();
    return h;
  }
  for (uint64_t& b : h.buckets) b = d->Varint();
  h.sum = d->Double();
  return h;
}

void EncodeStageTotals(const StageTotals& t, Encoder* e) {
  for (uint64_t v : {t.entered, t.exited_advanced, t.exited_fallout, t.sla_met, t.sla_missed,
                     t.rework, t.sla_breaches, t.expired}) {
    e->Varint(v);
  }
  e->Signed(t.backlog);
  e->Signed(t.backlog_over_sla);
  EncodeHistogram(t.cycle_time, e);
}

StageTotals DecodeStageTotals(Decoder* d) {
  StageTotals t;
  for (uint64_t* v : {&t.entered, &t.exited_advanced, &t.exited_fallout, &t.sla_met, &t.sla_missed,
                      &t.rework, &t.sla_breaches, &t.expired}) {
    *v = d->Varint();
  }
  t.backlog = d->Signed();
  t.backlog_over_sla = d->Signed();
  t.cycle_time = DecodeHistogram(d);
  return t;
}

// Version 1 had no cost counts: they restore as 0.
void EncodeProcessTotals(const ProcessTotals& t, Encoder* e) {
  for (uint64_t v : {t.started, t.completed, t.fallout, t.expired, t.score_count, t.cost_count}) {
    e->Varint(v);
  }
  for (double v : {t.revenue, t.cost, t.score_sum}) e->Double(v);
  EncodeHistogram(t.lead_time, e);
}

ProcessTotals DecodeProcessTotals(Decoder* d, uint64_t version) {
  ProcessTotals t;
  for (uint64_t* v : {&t.started, &t.completed, &t.fallout, &t.expired, &t.score_count}) {
    *v = d->Varint();
  }
  if (version >= 2) t.cost_count = d->Varint();
  for (double* v : {&t.revenue, &t.cost, &t.score_sum}) *v = d->Double();
  t.lead_time = DecodeHistogram(d);
  return t;
}

void EncodeProcessBucket(const ProcessWindowCounts& c, Encoder* e) {
  for (uint64_t v : {c.started, c.completed, c.fallout, c.score_count, c.cost_count}) {
    e->Varint(v);
  }
  for (double v : {c.revenue, c.cost, c.score_sum}) e->Double(v);
}

ProcessWindowCounts DecodeProcessBucket(Decoder* d, uint64_t version) {
  ProcessWindowCounts c;
  for (uint64_t* v : {&c.started, &c.completed, &c.fallout, &c.score_count}) *v = d->U32();
  if (version >= 2) c.cost_count = d->U32();
  for (double* v : {&c.revenue, &c.cost, &c.score_sum}) *v = d->Double();
  return c;
}

void EncodeStageBucket(const StageWindowCounts& c, Encoder* e) {
  for (uint64_t v : {c.entered, c.advanced, c.fallout, c.sla_met, c.rework, c.sla_breaches}) {
    e->Varint(v);
  }
}

StageWindowCounts DecodeStageBucket(Decoder* d) {
  StageWindowCounts c;
  for (uint64_t* v :
       {&c.entered, &c.advanced, &c.fallout, &c.sla_met, &c.rework, &c.sla_breaches}) {
    *v = d->U32();
  }
  return c;
}

absl::Status Corrupt(const Decoder& d, absl::string_view what) {
  return absl::DataLossError(
      absl::StrCat("aggregate state: ", what, " (near byte ", d.position(), ")"));
}

}  // namespace

// Format, version 2 (varints unless noted; signed values zigzag; doubles as
// 8 little-endian bytes; strings length-prefixed):
//   "KPAG" version
//   levels: count, (width seconds, slots)...            informational
//   latest (signed; int64 min = none), late, dropped
//   processes: count, then per process:
//     id, stages: count, ids...
//     transitions: count, (from, to, n)...              non-zero only
//     records: count, then per record:
//       dims, process totals, stage totals x stages
//       buckets: count, (width, bucket, process bucket, stage bucket x stages)...
//     distribution buckets: count, then per bucket:
//       width, bucket, (non-zero bins: count, (bin, n)...) x (stages + 1)
// where process totals = started, completed, fallout, expired, score_count,
// cost_count, revenue (double), cost (double), score_sum (double), lead-time
// histogram; process bucket = started, completed, fallout, score_count,
// cost_count, revenue, cost, score_sum (doubles). Version 1 is the same
// without the two cost_count fields; Restore reads both (cost counts of
// version 1 state restore as 0).
std::string AggregateShard::Serialize() const {
  Encoder e;
  e.Raw(kMagic);
  e.Varint(kStateVersion);
  const std::vector<Level>& levels = layout_.levels();
  e.Varint(levels.size());
  for (const Level& l : levels) {
    e.Varint(static_cast<uint64_t>(l.width));
    e.Varint(static_cast<uint64_t>(l.slots));
  }
  const int64_t latest = latest_.load(std::memory_order_relaxed);
  e.Signed(latest);
  e.Varint(late());
  e.Varint(dropped());
  // Is `bucket` one the level still keeps (a stale slot is not state)?
  auto kept = [&](const Level& l, int64_t bucket) {
    return bucket != kNoBucket && latest != kNoTime && bucket <= FloorDiv(latest, l.width) &&
           bucket > FloorDiv(latest, l.width) - l.slots;
  };

  e.Varint(processes_.size());
  for (size_t pi = 0; pi < processes_.size(); ++pi) {
    const ProcessState* p = processes_[pi].get();
    const size_t stages = static_cast<size_t>(p->stages);
    e.String(p->id);
    e.Varint(stages);
    for (const std::string& id : p->stage_ids) e.String(id);

    std::vector<std::array<uint64_t, 3>> transitions;
    for (size_t i = 0; i < p->transitions.size(); ++i) {
      const uint64_t n = p->transitions[i].load(std::memory_order_relaxed);
      if (n != 0) transitions.push_back({i / stages, i % stages, n});
    }
    e.Varint(transitions.size());
    for (const auto& t : transitions) {
      for (uint64_t v : t) e.Varint(v);
    }

    const std::vector<DimsId> dims = ListDims(static_cast<int>(pi));
    e.Varint(dims.size());
    ProcessWindowCounts process;
    std::vector<StageWindowCounts> stage(stages);
    for (DimsId id : dims) {
      const DimsRecord& r = *ReaderRecord(*p, id);
      e.Varint(id);
      EncodeProcessTotals(r.process_totals.Get(), &e);
      for (const AtomicStageTotals& t : r.stage_totals) EncodeStageTotals(t.Get(), &e);
      Encoder buckets;
      size_t bucket_count = 0;
      for (const Level& l : levels) {
        for (int i = 0; i < l.slots; ++i) {
          const size_t slot = static_cast<size_t>(l.offset + i);
          const int64_t bucket = r.stamps[slot].load(std::memory_order_acquire);
          if (!kept(l, bucket)) continue;
          const bool ok = ReadSlot(r.stamps[slot], bucket, [&] {
            r.process_buckets[slot].LoadInto(&process);
            for (size_t s = 0; s < stages; ++s) {
              r.stage_buckets[slot * stages + s].LoadInto(&stage[s]);
            }
          });
          if (!ok) continue;
          ++bucket_count;
          buckets.Varint(static_cast<uint64_t>(l.width));
          buckets.Signed(bucket);
          EncodeProcessBucket(process, &buckets);
          for (const StageWindowCounts& c : stage) EncodeStageBucket(c, &buckets);
        }
      }
      e.Varint(bucket_count);
      e.Raw(buckets.Take());
    }

    Encoder dists;
    size_t dist_count = 0;
    std::vector<std::vector<std::pair<uint32_t, uint32_t>>> bins(stages + 1);
    for (const Level& l : levels) {
      for (int i = 0; i < l.slots; ++i) {
        const int slot = l.offset + i;
        const DistSlot& slot_state = p->dist_slots[static_cast<size_t>(slot)];
        const int64_t bucket = slot_state.stamp.load(std::memory_order_acquire);
        if (!kept(l, bucket)) continue;
        const bool ok = ReadSlot(slot_state.stamp, bucket, [&] {
          for (size_t series = 0; series <= stages; ++series) {
            bins[series].clear();
            slot_state.ForEachPooled(static_cast<int>(series), [&](uint32_t bin, uint32_t n) {
              if (n != 0) bins[series].emplace_back(bin, n);
            });
            if (!slot_state.Ready(static_cast<int>(series))) continue;  // no dense bins
            uint32_t* d = p->dist(slot, static_cast<int>(series));
            const uint32_t lo = std::atomic_ref<uint32_t>(d[0]).load(kObserve);
            const uint32_t hi =
                std::min<uint32_t>(std::atomic_ref<uint32_t>(d[1]).load(kObserve), kNoBinLo - 1);
            for (uint32_t b = lo; b <= hi; ++b) {
              const uint32_t n = std::atomic_ref<uint32_t>(d[kBinsAt + b]).load(kObserve);
              if (n != 0) bins[series].emplace_back(b, n);
            }
          }
        });
        if (!ok) continue;
        // Each bin once, ascending, as the dense bins alone would give them:
        // the pool's pairs and the dense bins of one bucket add up.
        for (auto& series : bins) {
          std::sort(series.begin(), series.end());
          size_t kept_bins = 0;
          for (size_t i = 0; i < series.size(); ++i) {
            if (kept_bins > 0 && series[kept_bins - 1].first == series[i].first) {
              series[kept_bins - 1].second += series[i].second;
            } else {
              series[kept_bins++] = series[i];
            }
          }
          series.resize(kept_bins);
        }
        ++dist_count;
        dists.Varint(static_cast<uint64_t>(l.width));
        dists.Signed(bucket);
        for (const auto& series : bins) {
          dists.Varint(series.size());
          for (const auto& [bin, n] : series) {
            dists.Varint(bin);
            dists.Varint(n);
          }
        }
      }
    }
    e.Varint(dist_count);
    e.Raw(dists.Take());
  }
  return e.Take();
}

absl::StatusOr<std::unique_ptr<AggregateShard>> AggregateShard::Restore(const model::Config& config,
                                                                        absl::string_view bytes) {
  auto shard = std::make_unique<AggregateShard>(config);
  Decoder d(bytes);
  if (!d.Raw(kMagic))
    return absl::InvalidArgumentError("aggregate state: not kpid aggregate state");
  const uint64_t version = d.Varint();
  if (!d.ok()) return Corrupt(d, "truncated");
  if (version < 1 || version > kStateVersion) {
    return absl::FailedPreconditionError(absl::StrCat("aggregate state: format version ", version,
                                                      "; this build reads 1 to ", kStateVersion));
  }
  const size_t level_count = d.Count();
  for (size_t i = 0; i < level_count && d.ok(); ++i) {
    d.Varint();  // width
    d.Varint();  // slots
  }
  const int64_t latest = d.Signed();
  const uint64_t late = d.Varint();
  const uint64_t dropped = d.Varint();
  if (!d.ok()) return Corrupt(d, "truncated header");
  if (latest != kNoTime && (latest > kMaxAbsSeconds || latest < -kMaxAbsSeconds)) {
    return Corrupt(d, "latest time out of range");
  }
  shard->latest_.store(latest, std::memory_order_relaxed);
  if (latest != kNoTime) shard->AdvanceHead(latest);
  shard->late_.store(late, std::memory_order_relaxed);
  shard->dropped_.store(dropped, std::memory_order_relaxed);
  const std::vector<Level>& levels = shard->layout_.levels();

  // The slot of `bucket` in the level with buckets of `width`, if the
  // restored shard keeps that bucket; -1 otherwise.
  auto slot_of = [&](uint64_t width, int64_t bucket) {
    if (latest == kNoTime || width == 0 || width > static_cast<uint64_t>(kMaxAbsSeconds)) return -1;
    const int level = shard->layout_.LevelWithWidth(static_cast<int64_t>(width));
    if (level < 0) return -1;
    const Level& l = levels[static_cast<size_t>(level)];
    const int64_t head = FloorDiv(latest, l.width);
    if (bucket > head || bucket <= head - l.slots) return -1;
    return l.offset + static_cast<int>(FloorMod(bucket, l.slots));
  };

  const size_t process_count = d.Count();
  for (size_t pi = 0; pi < process_count && d.ok(); ++pi) {
    const std::string id = d.String();
    const size_t stages = d.Count();
    if (stages > model::kMaxStages) return Corrupt(d, "too many stages");
    std::vector<std::string> stage_ids(stages);
    for (std::string& s : stage_ids) s = d.String();
    if (!d.ok()) break;
    // Map to the new config by id; unknown processes and stages are dropped.
    ProcessState* p = nullptr;
    for (auto& candidate : shard->processes_) {
      if (candidate->id == id) p = candidate.get();
    }
    std::vector<int> stage_map(stages, -1);
    if (p != nullptr) {
      for (size_t s = 0; s < stages; ++s) {
        for (int t = 0; t < p->stages; ++t) {
          if (p->stage_ids[static_cast<size_t>(t)] == stage_ids[s]) stage_map[s] = t;
        }
      }
    }
    auto mapped = [&](uint64_t s) { return s < stages ? stage_map[static_cast<size_t>(s)] : -1; };

    const size_t transition_count = d.Count();
    for (size_t i = 0; i < transition_count && d.ok(); ++i) {
      const int from = mapped(d.Varint());
      const int to = mapped(d.Varint());
      const uint64_t n = d.Varint();
      if (p != nullptr && from >= 0 && to >= 0) {
        p->transitions[static_cast<size_t>(from * p->stages + to)].store(n,
                                                                         std::memory_order_relaxed);
      }
    }

    const size_t record_count = d.Count();
    for (size_t ri = 0; ri < record_count && d.ok(); ++ri) {
      const uint64_t dims = d.Varint();
      const ProcessTotals process_totals = DecodeProcessTotals(&d, version);
      std::vector<StageTotals> stage_totals(stages);
      for (StageTotals& t : stage_totals) t = DecodeStageTotals(&d);
      if (!d.ok()) break;
      DimsRecord* r = nullptr;
      if (p != nullptr && dims < kMaxDims) {
        r = shard->WriterRecord(*p, static_cast<DimsId>(dims));
        r->process_totals.Set(process_totals);
        for (size_t s = 0; s < stages; ++s) {
          if (stage_map[s] >= 0) {
            r->stage_totals[static_cast<size_t>(stage_map[s])].Set(stage_totals[s]);
          }
        }
      }
      const size_t bucket_count = d.Count();
      for (size_t bi = 0; bi < bucket_count && d.ok(); ++bi) {
        const uint64_t width = d.Varint();
        const int64_t bucket = d.Signed();
        const ProcessWindowCounts pc = DecodeProcessBucket(&d, version);
        std::vector<StageWindowCounts> sc(stages);
        for (StageWindowCounts& c : sc) c = DecodeStageBucket(&d);
        const int slot = slot_of(width, bucket);
        if (!d.ok() || r == nullptr || slot < 0) continue;
        const int64_t held = r->stamps[static_cast<size_t>(slot)].load(std::memory_order_relaxed);
        if (held != kNoBucket && held > bucket) continue;  // a newer bucket won the slot
        shard->PrepareSlot(*r, p->stages, slot, bucket);
        ProcessBucket& b = r->process_buckets[static_cast<size_t>(slot)];
        BumpBucket(b.started, static_cast<uint32_t>(pc.started));
        BumpBucket(b.completed, static_cast<uint32_t>(pc.completed));
        BumpBucket(b.fallout, static_cast<uint32_t>(pc.fallout));
        BumpBucket(b.score_count, static_cast<uint32_t>(pc.score_count));
        BumpBucket(b.cost_count, static_cast<uint32_t>(pc.cost_count));
        BumpBucket(b.revenue, pc.revenue);
        BumpBucket(b.cost, pc.cost);
        BumpBucket(b.score_sum, pc.score_sum);
        for (size_t s = 0; s < stages; ++s) {
          if (stage_map[s] < 0) continue;
          StageBucket& sb = r->stage_buckets[static_cast<size_t>(slot * p->stages + stage_map[s])];
          BumpBucket(sb.entered, static_cast<uint32_t>(sc[s].entered));
          BumpBucket(sb.advanced, static_cast<uint32_t>(sc[s].advanced));
          BumpBucket(sb.fallout, static_cast<uint32_t>(sc[s].fallout));
          BumpBucket(sb.sla_met, static_cast<uint32_t>(sc[s].sla_met));
          BumpBucket(sb.rework, static_cast<uint32_t>(sc[s].rework));
          BumpBucket(sb.sla_breaches, static_cast<uint32_t>(sc[s].sla_breaches));
        }
      }
    }

    const size_t dist_count = d.Count();
    for (size_t di = 0; di < dist_count && d.ok(); ++di) {
      const uint64_t width = d.Varint();
      const int64_t bucket = d.Signed();
      const int slot = slot_of(width, bucket);
      bool use = d.ok() && p != nullptr && slot >= 0;
      if (use) {
        const int64_t held =
            p->dist_slots[static_cast<size_t>(slot)].stamp.load(std::memory_order_relaxed);
        use = held == kNoBucket || held <= bucket;
        if (use) shard->PrepareDistSlot(*p, slot, bucket);
      }
      for (size_t series = 0; series <= stages && d.ok(); ++series) {
        // The last series is lead time, whatever the stage count.
        const int to = series == stages ? (p == nullptr ? -1 : p->stages) : mapped(series);
        const size_t nonzero = d.Count();
        for (size_t i = 0; i < nonzero && d.ok(); ++i) {
          const uint64_t bin = d.Varint();
          const uint32_t n = d.U32();
          if (bin >= static_cast<uint64_t>(Distribution::kNumBins)) return Corrupt(d, "bad bin");
          if (use && to >= 0) shard->AddToDist(*p, slot, to, static_cast<int>(bin), n);
        }
      }
    }
  }
  if (!d.ok()) return Corrupt(d, "truncated or malformed");
  if (d.remaining() != 0) return Corrupt(d, "trailing bytes");
  return shard;
}

}  // namespace kpid::aggregate
