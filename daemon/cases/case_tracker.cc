#include "daemon/cases/case_tracker.h"

#include <algorithm>
#include <functional>
#include <optional>
#include <string>
#include <tuple>

#include "absl/base/attributes.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "daemon/cases/stable_hash.h"
#include "daemon/common/log.h"
#include "daemon/common/state_codec.h"

namespace kpid::cases {
namespace {

using ingest::DecodedEvent;
using ingest::Verdict;
using kpid::v1::ProcessEvent;
using model::RejectReason;

constexpr int64_t kMicrosPerSecond = 1'000'000;

// A case's timer is re-armed at least this often (in "now" time) even when
// its expiry is further off. Timer entries cannot be cancelled, so this
// bounds how long the entry of a closed case (waiting for an expiry up to
// case_ttl ahead) lingers: with a 30-day case_ttl, entries of closed cases
// would otherwise pile up for a month. Re-arming costs one timer firing per
// open case per day.
constexpr int64_t kMaxTimerAheadUs = int64_t{86400} * kMicrosPerSecond;

// Floor division, so deadlines before 1970 land in the right second.
int64_t SecondOf(int64_t micros) {
  return micros >= 0 ? micros / kMicrosPerSecond
                     : -((-micros + kMicrosPerSecond - 1) / kMicrosPerSecond);
}

absl::Time TimeOf(int64_t micros) { return absl::FromUnixMicros(micros); }

uint64_t EventIdHash(const std::string& event_id) { return StableHash64(event_id); }

// An open case in open_: the low 32 bits of its key (to place it and to
// rule out most non-matches without reading its record) and slot + 1 (so
// the word is never 0).
uint32_t OpenTag(uint64_t key) { return static_cast<uint32_t>(key); }
uint64_t OpenWord(uint64_t key, uint32_t slot) {
  return uint64_t{OpenTag(key)} << 32 | (uint64_t{slot} + 1);
}
uint32_t SlotOf(uint64_t open_word) { return static_cast<uint32_t>(open_word) - 1; }

// A step starts as a copy of this rather than value-initialized: GCC 12
// clears an 88-byte struct with `rep stos` (~2% of the tracker's time per
// event, §21: its start-up costs more than the stores) but copies one with
// vector moves.
constexpr CaseStep kNoStep{};

}  // namespace

ABSL_ATTRIBUTE_ALWAYS_INLINE inline CaseStep CaseTracker::StepOf(const Case& c, int64_t at_us) {
  CaseStep step = kNoStep;
  step.process = c.process;
  step.dims = c.dims;
  step.at = TimeOf(at_us);
  return step;
}

CaseTracker::WordSet::WordSet() : words_(16, 0), mask_(15) {}

void CaseTracker::WordSet::Insert(uint64_t word) {
  // At most 3/4 full, so probe sequences stay short.
  if ((size_ + 1) * 4 > words_.size() * 3) Grow();
  size_t i = Start(Tag(word));
  for (;; i = NextLine(i)) {
    if (const uint32_t empty = word_line::LowEqualMask(&words_[i], 0); empty != 0) {
      i += static_cast<size_t>(__builtin_ctz(empty));
      break;
    }
  }
  words_[i] = word;
  ++size_;
}

void CaseTracker::WordSet::Erase(uint64_t word) {
  size_t i = Start(Tag(word));
  while (words_[i] != word) {
    if (words_[i] == 0) return;
    i = Next(i);
  }
  // Backward-shift deletion (no tombstones): pull later words of the probe
  // run into the hole when their home position allows it.
  size_t hole = i;
  for (size_t j = Next(i); words_[j] != 0; j = Next(j)) {
    const size_t home = Start(Tag(words_[j]));
    // Can the word at j move to the hole, i.e. is its home not in (hole, j]?
    const bool movable = hole <= j ? (home <= hole || home > j) : (home <= hole && home > j);
    if (movable) {
      words_[hole] = words_[j];
      hole = j;
    }
  }
  words_[hole] = 0;
  --size_;
}

void CaseTracker::WordSet::Grow() {
  HugeVector<uint64_t> old(2 * words_.size(), 0);
  old.swap(words_);
  mask_ = words_.size() - 1;
  for (uint64_t word : old) {
    if (word == 0) continue;
    size_t i = Start(Tag(word));
    while (words_[i] != 0) i = Next(i);
    words_[i] = word;
  }
}

CaseTracker::CaseTracker(const Options& options)
    : config_(*options.config),
      clock_(options.clock),
      event_clock_(dynamic_cast<EventTimeClock*>(options.clock)),
      sink_(options.sink),
      dims_(options.dimensions),
      max_dedup_ids_(options.max_dedup_ids != 0
                         ? options.max_dedup_ids
                         : static_cast<size_t>(options.config->max_dedup_ids)),
      max_closed_cases_(options.max_closed_cases != 0
                            ? options.max_closed_cases
                            : static_cast<size_t>(options.config->max_closed_cases)),
      max_breaching_per_stage_(options.max_breaching_per_stage),
      max_open_cases_(options.max_open_cases != 0
                          ? options.max_open_cases
                          : static_cast<size_t>(options.config->max_open_cases)),
      ttl_us_(absl::ToInt64Microseconds(options.config->case_ttl)),
      horizon_us_(absl::ToInt64Microseconds(options.config->dedup_horizon)),
      evicted_(options.config->processes.size()) {
  auto view = std::make_shared<OpenCasesView>();
  view->evicted.assign(config_.processes.size(), 0);
  for (const model::ProcessConfig& process : config_.processes) {
    std::vector<int64_t> slas;
    for (const model::StageConfig& stage : process.stages) {
      slas.push_back(absl::ToInt64Microseconds(stage.sla));
    }
    sla_us_.push_back(std::move(slas));
    // By id, not index: remembered closed cases keep their meaning across a
    // restore into a config whose processes moved.
    process_starts_.push_back(StableHashStart(StableHash64(process.id)));
    stage_ages_.emplace_back(process.stages.size());
    first_frontier_.push_back(static_cast<uint32_t>(frontier_due_.size()));
    for (size_t s = 0; s < process.stages.size(); ++s) {
      frontier_due_.push_back({StageAgeIndex::kNoLimit, static_cast<uint32_t>(sla_us_.size() - 1),
                               static_cast<uint32_t>(s)});
    }
    view->oldest_entered.emplace_back(process.stages.size());
  }
  view_ = std::move(view);  // before any other thread can see the tracker
}

CaseTracker::~CaseTracker() {
  // Ids past the pool's largest block are allocated one by one.
  for (size_t slot = 0; slot < cases_.size(); ++slot) {
    if (tokens_[slot] != 0) id_store_.Release(&cases_[slot].id);
  }
}

uint64_t CaseTracker::CaseKey(int process, absl::string_view case_id) const {
  return StableHash64From(case_id, process_starts_[static_cast<size_t>(process)]);
}

// Inline (the hint's check) with the probe out of line: the call was ~19
// instructions per event (§37).
ABSL_ATTRIBUTE_ALWAYS_INLINE inline int64_t CaseTracker::FindOpen(uint64_t key, int process,
                                                                  absl::string_view case_id,
                                                                  size_t open_at) const {
  // The word PrefetchCase matched, events ago: the case's, unless the table
  // changed since (or the tag was another case's). An open case has one
  // word, so a word whose record is the case's is the answer, wherever it
  // is; else the probe. Saves the probe of most events (§28).
  if (open_at < open_.capacity()) {
    const uint64_t word = open_.At(open_at);
    if (word != 0 && static_cast<uint32_t>(word >> 32) == OpenTag(key)) {
      const Case& c = cases_[SlotOf(word)];
      if (c.process == process && CaseIdStore::Equals(c.id, case_id)) return SlotOf(word);
    }
  }
  return ProbeOpen(key, process, case_id);
}

int64_t CaseTracker::ProbeOpen(uint64_t key, int process, absl::string_view case_id) const {
  const uint32_t tag = OpenTag(key);
  // 32 bits of the key first: the record (another cache miss) only for a
  // likely match, then the id itself, so two ids never share a record. A
  // line at a time (word_line.h): the words before its first empty one.
  for (size_t line = open_.Start(tag);; line = open_.NextLine(line)) {
    const uint64_t* words = open_.Line(line);
    const uint32_t empty = word_line::LowEqualMask(words, 0);
    for (uint32_t hits = word_line::HighEqualMask(words, tag) & word_line::BeforeFirst(empty);
         hits != 0; hits &= hits - 1) {
      const uint64_t word = words[__builtin_ctz(hits)];
      const Case& c = cases_[SlotOf(word)];
      if (c.process == process && CaseIdStore::Equals(c.id, case_id)) return SlotOf(word);
    }
    if (empty != 0) return -1;
  }
}

// Always inlined, as PrefetchIndexes: out of line, GCC 12 at -O2 found a
// function whose only effect was a prefetch pure, and dropped every call of
// it (its void result unused), so the record was never prefetched.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline size_t CaseTracker::PrefetchCase(uint64_t key) const {
  const uint32_t tag = OpenTag(key);
  for (size_t i = open_.Start(tag);; i = open_.Next(i)) {
    const uint64_t word = open_.At(i);
    if (word == 0) break;
    if (static_cast<uint32_t>(word >> 32) == tag) {
      __builtin_prefetch(&cases_[SlotOf(word)]);
      return i;
    }
  }
  // Likely not open: a new case or one closed, so the closed cases' index
  // is read next. Only then: most events are of open cases, and fetching
  // that line for them too took a line fill of its own per event.
  closed_.Prefetch(key);
  return kNoWord;
}

// Inlined into HandleBatch's loop: the call was ~10 instructions per event
// (§37).
ABSL_ATTRIBUTE_ALWAYS_INLINE inline CaseTracker::EventKeys CaseTracker::KeysOf(
    const DecodedEvent& event) const {
  return {EventIdHash(event.proto.event_id()), CaseKey(event.process_index, event.proto.case_id())};
}

ABSL_ATTRIBUTE_ALWAYS_INLINE inline void CaseTracker::PrefetchIndexes(const EventKeys& keys) const {
  seen_ids_.Prefetch(keys.id_hash);
  open_.Prefetch(OpenTag(keys.key));
}

Verdict CaseTracker::Handle(const DecodedEvent& event) {
  return HandleKeyed(event, KeysOf(event), Loaded::kNothing, kNoWord);
}

namespace {

// The event itself, then the ids' string objects (a decoded event's strings
// live apart from it), then their bytes: what KeysOf will hash.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline void PrefetchEvent(const DecodedEvent& event) {
  const char* bytes = reinterpret_cast<const char*>(&event);
  for (size_t line = 0; line < sizeof(DecodedEvent); line += 64) __builtin_prefetch(bytes + line);
}
ABSL_ATTRIBUTE_ALWAYS_INLINE inline void PrefetchIdObjects(const DecodedEvent& event) {
  __builtin_prefetch(&event.proto.event_id());
  __builtin_prefetch(&event.proto.case_id());
}
ABSL_ATTRIBUTE_ALWAYS_INLINE inline void PrefetchIdBytes(const DecodedEvent& event) {
  __builtin_prefetch(event.proto.event_id().data());
  __builtin_prefetch(event.proto.case_id().data());
}

}  // namespace

void CaseTracker::HandleBatch(absl::Span<const DecodedEvent* const> events, Verdict* verdicts) {
  // Stages ahead of the event handled, each using the loads the one before
  // started: the event at kEventAhead, the ids' string objects at
  // kIdsAhead, their bytes at kBytesAhead, the keys and index words at
  // kAhead, then at kRecordAhead the case record, found through its
  // open-case word. Prefetches only hint: state changed by the events in
  // between costs a miss, never a wrong answer.
  constexpr size_t kAhead = kPrefetchDistance;
  constexpr size_t kRecordAhead = kAhead / 2;
  constexpr size_t kEventAhead = 3 * kAhead;
  constexpr size_t kIdsAhead = 2 * kAhead;
  constexpr size_t kBytesAhead = kAhead + kAhead / 2;
  EventKeys ahead[kAhead];  // a ring: the keys of events i .. i + kAhead - 1
  // The same ring: what PrefetchCase found for events i .. i + kRecordAhead - 1.
  size_t open_at[kAhead];
  const size_t n = events.size();
  for (size_t j = 0; j < std::min(n, kEventAhead); ++j) PrefetchEvent(*events[j]);
  for (size_t j = 0; j < std::min(n, kIdsAhead); ++j) PrefetchIdObjects(*events[j]);
  for (size_t j = 0; j < std::min(n, kBytesAhead); ++j) PrefetchIdBytes(*events[j]);
  for (size_t j = 0; j < std::min(n, kAhead); ++j) {
    ahead[j] = KeysOf(*events[j]);
    PrefetchIndexes(ahead[j]);
  }
  defer_steps_ = sink_->WantsStepHints();
  for (size_t i = 0; i < n; ++i) {
    if (i + kEventAhead < n) PrefetchEvent(*events[i + kEventAhead]);
    if (i + kIdsAhead < n) PrefetchIdObjects(*events[i + kIdsAhead]);
    if (i + kBytesAhead < n) PrefetchIdBytes(*events[i + kBytesAhead]);
    if (i + kRecordAhead < n) {
      open_at[(i + kRecordAhead) % kAhead] = PrefetchCase(ahead[(i + kRecordAhead) % kAhead].key);
    }
    EventKeys& slot = ahead[i % kAhead];  // event i's, then event i + kAhead's
    const EventKeys keys = slot;
    if (i + kAhead < n) {
      slot = KeysOf(*events[i + kAhead]);
      PrefetchIndexes(slot);
    }
    // Not prefetched again in HandleKeyed: that cost ~45 instructions per
    // event (3.5% of the tracker's; mostly a second probe of the open-case
    // index line, §24). Only a batch's first kRecordAhead events had their
    // record's load started by no earlier iteration.
    verdicts[i] = i < kRecordAhead ? HandleKeyed(*events[i], keys, Loaded::kIndexes, kNoWord)
                                   : HandleKeyed(*events[i], keys, Loaded::kIndexesAndRecord,
                                                 open_at[i % kAhead]);
  }
  FlushSteps();
  defer_steps_ = false;
}

ABSL_ATTRIBUTE_ALWAYS_INLINE inline void CaseTracker::ReportStep(const CaseStep& step) {
  if (!defer_steps_) {
    sink_->CaseStepped(step);
    return;
  }
  sink_->PrefetchStep(step);
  held_.Push(step, [this](const CaseStep& held) { sink_->CaseStepped(held); });
}

void CaseTracker::FlushSteps() {
  held_.Flush([this](const CaseStep& held) { sink_->CaseStepped(held); });
}

Verdict CaseTracker::HandleKeyed(const DecodedEvent& event, const EventKeys& keys, Loaded loaded,
                                 size_t open_at) {
  const int64_t at_us = UnixMicros(event.occurred_at);
  const uint64_t id_hash = keys.id_hash;
  const uint64_t key = keys.key;
  // The lookups below likely miss the cache: start their loads now, so
  // they overlap each other and the timer work.
  if (loaded == Loaded::kNothing) PrefetchIndexes(keys);
  // The daemon's `clock: event` through its own type: calls known at
  // compile time, inlined, not two virtual calls per event (§37).
  int64_t now_us;
  if (event_clock_ != nullptr) {
    event_clock_->ObserveMicros(at_us);
    now_us = event_clock_->NowMicros();
  } else {
    clock_->ObserveMicros(at_us);
    now_us = NowMicros();
  }
  // Deadlines that passed before this event count first: a case still open
  // at its deadline breached it, whatever this event does to it.
  AdvanceTimersTo(now_us);
  // The case's record is the next likely miss: start loading it too.
  if (loaded != Loaded::kIndexesAndRecord) open_at = PrefetchCase(key);
  ForgetOld(now_us);

  if (seen_ids_.Find(id_hash) != nullptr) return Verdict::Duplicate();

  Verdict verdict = Verdict::Accepted();
  switch (event.proto.kind()) {
    case ProcessEvent::STAGE_ENTERED:
      verdict = StageEntered(event, key, open_at, at_us, now_us);
      break;
    case ProcessEvent::CASE_COMPLETED:
    case ProcessEvent::CASE_FALLOUT:
      verdict = Close(event, key, open_at, at_us, now_us);
      break;
    case ProcessEvent::COST:
    case ProcessEvent::FEEDBACK:
      CostOrFeedback(event, key, open_at, at_us);
      break;
    default:
      // The decoder lets only known kinds through.
      return Verdict::Rejected(RejectReason::kUnknownKind);
  }
  if (verdict.kind == Verdict::Kind::kAccepted) Remember(id_hash, now_us);
  return verdict;
}

// Forgetting before pushing keeps the ring within the bound: pushing first
// would double a ring whose capacity is exactly the bound.
void CaseTracker::Remember(uint64_t id_hash, int64_t now_us) {
  while (seen_ids_.size() >= max_dedup_ids_) {
    seen_ids_.pop_front();
    event_ids_forgotten_.Add();
  }
  seen_ids_.Push({now_us, id_hash});
}

void CaseTracker::RememberClosed(const Closed& record) {
  while (closed_.size() >= max_closed_cases_) {
    closed_.pop_front();
    closed_cases_forgotten_.Add();
  }
  closed_.Push(record);
}

// Inlined into EnterStage, its one caller per event: the call was ~14
// instructions per stage entry (§37).
ABSL_ATTRIBUTE_ALWAYS_INLINE inline void CaseTracker::AddStay(uint32_t slot, Case& c) {
  const uint32_t token = NewToken(slot);
  StageAgeIndex& ages = AgesOf(c);
  const bool in_order = ages.Enter({c.entered_us, slot, token},
                                   [this](uint32_t s, uint32_t t) { return IsLiveStay(s, t); });
  c.deadline_timed = !in_order;
  // The deadline bounds move only when the stay became its stage's breach
  // frontier (the stage had no stay pending): otherwise the frontier's stay
  // entered no later, so its deadline, already bounded, comes first.
  if (in_order && ages.frontier_entered() == c.entered_us) {
    const int64_t deadline_us = c.entered_us + SlaMicros(c);
    next_deadline_us_ = std::min(next_deadline_us_, deadline_us);
    int64_t& due_us =
        frontier_due_[first_frontier_[c.process] + static_cast<uint32_t>(c.stage)].due_us;
    due_us = std::min(due_us, deadline_us);
  }
}

ABSL_ATTRIBUTE_ALWAYS_INLINE inline void CaseTracker::EnterStage(uint32_t slot, int stage,
                                                                 int64_t at_us, int64_t now_us,
                                                                 bool rework, CaseStep* step) {
  Case& c = cases_[slot];
  c.stage = static_cast<int8_t>(stage);
  c.entered_us = at_us;
  c.visited |= uint64_t{1} << stage;
  c.over_sla = false;
  step->entry_stage = stage;
  step->rework = rework;
  AddStay(slot, c);
  if (c.deadline_timed) Arm(slot, c, now_us);
}

Verdict CaseTracker::StageEntered(const DecodedEvent& event, uint64_t key, size_t open_at,
                                  int64_t at_us, int64_t now_us) {
  const int stage = event.stage_index;
  const int64_t found = FindOpen(key, event.process_index, event.proto.case_id(), open_at);
  if (found < 0) {
    if (closed_.Find(key) != nullptr) return Verdict::Rejected(RejectReason::kCaseClosed);
    while (open_.size() >= max_open_cases_) {
      if (!EvictOldest(at_us, now_us)) break;
    }
    const uint32_t slot = NewSlot();
    Case& c = cases_[slot];
    id_store_.Assign(&c.id, event.proto.case_id());
    c.process = static_cast<uint16_t>(event.process_index);
    c.dims = dims_->Resolve(event.process_index, event.attributes);
    c.started_us = at_us;
    c.last_event_us = at_us;
    open_.Insert(OpenWord(key, slot));
    open_gauge_.store(open_.size(), std::memory_order_relaxed);
    CaseStep step = StepOf(c, at_us);
    step.started = true;
    EnterStage(slot, stage, at_us, now_us, /*rework=*/false, &step);
    ReportStep(step);
    if (!c.deadline_timed) Arm(slot, c, now_us);  // for its expiry
    return Verdict::Accepted();
  }
  const uint32_t slot = static_cast<uint32_t>(found);
  Case& c = cases_[slot];
  if (c.stage == stage) return Verdict::Rejected(RejectReason::kSameStage);
  c.last_event_us = std::max(c.last_event_us, at_us);
  CaseStep step = StepOf(c, at_us);
  ExitStage(c, at_us, ExitOutcome::kAdvanced, &step);
  EnterStage(slot, stage, at_us, now_us, /*rework=*/(c.visited >> stage) & 1, &step);
  ReportStep(step);
  return Verdict::Accepted();
}

bool CaseTracker::EvictOldest(int64_t at_us, int64_t now_us) {
  auto is_live = [this](uint32_t s, uint32_t t) { return IsLiveStay(s, t); };
  auto entered_at = [this](uint32_t s) { return cases_[s].entered_us; };
  // Every open case is live in the index of its stage: the oldest of their
  // oldest is the longest wait. Ties go to the first process, then stage.
  std::optional<StageAgeIndex::Stay> oldest;
  for (std::vector<StageAgeIndex>& stages : stage_ages_) {
    for (StageAgeIndex& ages : stages) {
      if (ages.live() == 0) continue;
      const std::optional<StageAgeIndex::Stay> stay = ages.OldestLive(is_live, entered_at);
      if (stay && (!oldest || stay->entered_us < oldest->entered_us)) oldest = stay;
    }
  }
  if (!oldest) return false;
  const Case& c = cases_[oldest->slot];
  evicted_[c.process].Add();
  // Sparse: an attack evicts at the rate of new cases.
  if (const uint64_t n = evicted(); (n & (n - 1)) == 0) {
    const model::ProcessConfig& process = config_.processes[c.process];
    log::Warn("max_open_cases reached: evicted the longest-waiting open case",
              {{"process", process.id},
               {"stage", process.stages[static_cast<size_t>(c.stage)].id},
               {"case_id", CaseIdStore::View(c.id)},
               {"waited", absl::FormatDuration(absl::Microseconds(now_us - c.entered_us))},
               {"max_open_cases", absl::StrCat(max_open_cases_)},
               {"evicted", absl::StrCat(n)}});
  }
  Expire(oldest->slot, at_us, now_us);
  return true;
}

uint64_t CaseTracker::evicted() const {
  uint64_t total = 0;
  for (const SingleWriterCounter& n : evicted_) total += n.Get();
  return total;
}

uint32_t CaseTracker::NewSlot() {
  uint32_t slot;
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
  } else {
    slot = static_cast<uint32_t>(cases_.size());
    cases_.emplace_back();
    tokens_.push_back(0);
    timer_tokens_.push_back(0);
  }
  cases_[slot] = Case{};
  return slot;
}

uint32_t CaseTracker::NextToken() {
  const uint32_t token = next_token_++;
  if (next_token_ == 0) next_token_ = 1;  // 0 marks a free slot
  return token;
}

uint32_t CaseTracker::NewToken(uint32_t slot) { return tokens_[slot] = NextToken(); }

void CaseTracker::Arm(uint32_t slot, const Case& c, int64_t now_us) {
  const int64_t due_us = std::min(TimerDueMicros(c), now_us + kMaxTimerAheadUs);
  const TimerEntry entry{slot, timer_tokens_[slot] = NextToken(), kCaseTimer, SecondOf(due_us)};
  if (entry.due < wheel_.next_second()) {
    PushDue(due_us, entry);
  } else {
    wheel_.Schedule(entry);
  }
}

void CaseTracker::ExitStage(Case& c, int64_t at_us, ExitOutcome outcome, CaseStep* step) {
  // An exit stamped before its entry (producer clock skew) counts as instant.
  const int64_t cycle_us = std::max<int64_t>(0, at_us - c.entered_us);
  step->exit_stage = c.stage;
  step->outcome = outcome;
  step->cycle_time = absl::Microseconds(cycle_us);
  step->sla_met = cycle_us <= SlaMicros(c);
  step->exit_over_sla = c.over_sla;
  AgesOf(c).Leave();
  c.over_sla = false;
}

Verdict CaseTracker::Close(const DecodedEvent& event, uint64_t key, size_t open_at, int64_t at_us,
                           int64_t now_us) {
  const int64_t found = FindOpen(key, event.process_index, event.proto.case_id(), open_at);
  if (found < 0) {
    return Verdict::Rejected(closed_.Find(key) != nullptr ? RejectReason::kCaseClosed
                                                          : RejectReason::kUnknownCase);
  }
  // Release remembers the case as closed: its index line loads while the
  // sink takes the step.
  closed_.Prefetch(key);
  const uint32_t slot = static_cast<uint32_t>(found);
  Case& c = cases_[slot];
  const bool completed = event.proto.kind() == ProcessEvent::CASE_COMPLETED;
  CaseStep step = StepOf(c, at_us);
  ExitStage(c, at_us, completed ? ExitOutcome::kAdvanced : ExitOutcome::kFallout, &step);
  if (completed) {
    step.close = CaseStep::Close::kCompleted;
    step.amount = event.proto.amount();
    step.lead_time = absl::Microseconds(std::max<int64_t>(0, at_us - c.started_us));
  } else {
    step.close = CaseStep::Close::kFallout;
  }
  ReportStep(step);
  Release(slot, key, now_us);
  return Verdict::Accepted();
}

void CaseTracker::Release(uint32_t slot, uint64_t key, int64_t closed_us) {
  Case& c = cases_[slot];
  open_.Erase(OpenWord(key, slot));
  // Not remembered as closed before: it was open.
  RememberClosed({closed_us, key, c.dims, c.process});
  id_store_.Release(&c.id);
  tokens_[slot] = 0;  // its pending timer and stage-age entries are stale
  timer_tokens_[slot] = 0;
  free_slots_.push_back(slot);
  open_gauge_.store(open_.size(), std::memory_order_relaxed);
}

void CaseTracker::CostOrFeedback(const DecodedEvent& event, uint64_t key, size_t open_at,
                                 int64_t at_us) {
  DimsId dims;
  if (const int64_t found = FindOpen(key, event.process_index, event.proto.case_id(), open_at);
      found >= 0) {
    Case& c = cases_[static_cast<size_t>(found)];
    c.last_event_us = std::max(c.last_event_us, at_us);
    dims = c.dims;
  } else if (const Closed* closed = closed_.Find(key); closed != nullptr) {
    dims = closed->dims;
  } else {
    dims = dims_->Resolve(event.process_index, event.attributes);
  }
  if (event.proto.kind() == ProcessEvent::COST) {
    Sink().Cost(event.process_index, dims, TimeOf(at_us), event.proto.amount());
  } else {
    Sink().Feedback(event.process_index, dims, TimeOf(at_us), event.proto.score());
  }
}

void CaseTracker::Tick(absl::Time wall_now) {
  clock_->Tick(wall_now);
  const int64_t now_us = NowMicros();
  AdvanceTimersTo(now_us);
  PublishView(now_us);
}

void CaseTracker::PublishView(int64_t now_us) {
  auto view = std::make_shared<OpenCasesView>();
  view->as_of = TimeOf(now_us);
  view->oldest_entered.resize(stage_ages_.size());
  for (const SingleWriterCounter& n : evicted_) view->evicted.push_back(n.Get());
  view->event_ids_forgotten = event_ids_forgotten_.Get();
  view->closed_cases_forgotten = closed_cases_forgotten_.Get();
  auto is_live = [this](uint32_t s, uint32_t t) { return IsLiveStay(s, t); };
  auto entered_at = [this](uint32_t s) { return cases_[s].entered_us; };
  for (size_t p = 0; p < stage_ages_.size(); ++p) {
    view->oldest_entered[p].resize(stage_ages_[p].size());
    for (size_t s = 0; s < stage_ages_[p].size(); ++s) {
      StageAgeIndex& ages = stage_ages_[p][s];
      if (ages.live() == 0) continue;
      // Over SLA: now - entered > sla, i.e. entered before now - sla.
      const int64_t sla_us = sla_us_[p][s];
      stays_.clear();
      ages.Oldest(max_breaching_per_stage_, now_us - sla_us, is_live, entered_at, &stays_);
      for (const StageAgeIndex::Stay& stay : stays_) {
        const Case& c = cases_[stay.slot];
        view->breaching.push_back({std::string(CaseIdStore::View(c.id)), static_cast<int>(p),
                                   static_cast<int>(s), TimeOf(stay.entered_us),
                                   TimeOf(stay.entered_us + sla_us), c.dims});
      }
      if (stays_.empty()) ages.Oldest(1, StageAgeIndex::kNoLimit, is_live, entered_at, &stays_);
      if (!stays_.empty()) view->oldest_entered[p][s] = TimeOf(stays_.front().entered_us);
    }
  }
  std::sort(view->breaching.begin(), view->breaching.end(),
            [](const BreachingCase& a, const BreachingCase& b) {
              return std::tie(a.entered_at, a.process, a.stage, a.case_id) <
                     std::tie(b.entered_at, b.process, b.stage, b.case_id);
            });
  std::shared_ptr<const OpenCasesView> published = std::move(view);
  {
    std::lock_guard<std::mutex> lock(view_mu_);
    view_.swap(published);
  }
  // `published` now holds the old view: freed here, outside the lock, unless
  // a reader still holds it.
}

void CaseTracker::FireDue(int64_t now_us) {
  // What is due goes to due_this_second_ first (passed deadlines, timers
  // whose second comes), to fire in due order there: on a jump, facts come
  // in the order their deadlines and expiries passed.
  // Strictly past: exactly at a deadline is still met.
  if (now_us > next_deadline_us_) WalkBreachFrontiers(now_us);
  if (now_us >= wheel_next_us_) {
    wheel_.Advance(
        SecondOf(now_us),
        [&](const TimerEntry& entry) {
          if (timer_tokens_[entry.slot] != entry.token) return;  // closed, or re-armed since
          const int64_t due_us = TimerDueMicros(cases_[entry.slot]);
          if (due_us < now_us) {
            PushDue(due_us, entry);
          } else {
            FireTimer(entry, now_us);  // re-arms it
          }
        },
        [this](const TimerEntry& entry) {
          // Both, without waiting for the token to tell whether the record is
          // needed: that would serialize the misses.
          __builtin_prefetch(&timer_tokens_[entry.slot]);
          __builtin_prefetch(&cases_[entry.slot]);
        });
    wheel_next_us_ = wheel_.next_second() * kMicrosPerSecond;
  }
  // A re-armed entry is due later than now, so this ends.
  while (!due_this_second_.empty() && due_this_second_.front().due_us < now_us) {
    std::pop_heap(due_this_second_.begin(), due_this_second_.end(), std::greater<>());
    const TimerEntry entry = due_this_second_.back().entry;
    due_this_second_.pop_back();
    if (entry.kind == kDeadline) {
      FireDeadline(entry);
    } else {
      FireTimer(entry, now_us);
    }
  }
}

void CaseTracker::PushDue(int64_t due_us, const TimerEntry& entry) {
  due_this_second_.push_back({due_us, entry});
  std::push_heap(due_this_second_.begin(), due_this_second_.end(), std::greater<>());
}

void CaseTracker::WalkBreachFrontiers(int64_t now_us) {
  auto is_live = [this](uint32_t s, uint32_t t) { return IsLiveStay(s, t); };
  auto entered_at = [this](uint32_t s) { return cases_[s].entered_us; };
  auto ahead = [this](uint32_t s) { __builtin_prefetch(&tokens_[s]); };
  auto deadline = [](int64_t entered_us, int64_t sla_us) {
    return entered_us == StageAgeIndex::kNoLimit ? StageAgeIndex::kNoLimit : entered_us + sla_us;
  };
  int64_t next_us = StageAgeIndex::kNoLimit;
  for (FrontierDue& frontier : frontier_due_) {
    // Not yet due by its lower bound: nothing of the stage has passed.
    if (frontier.due_us < now_us) {
      StageAgeIndex& ages = stage_ages_[frontier.process][frontier.stage];
      const int64_t sla_us = sla_us_[frontier.process][frontier.stage];
      int64_t first_us = ages.frontier_entered();
      if (deadline(first_us, sla_us) < now_us) {
        first_us = ages.PassedBefore(
            now_us - sla_us, is_live, entered_at, ahead, [&](const StageAgeIndex::Stay& stay) {
              const int64_t due_us = stay.entered_us + sla_us;
              PushDue(due_us, {stay.slot, stay.token, kDeadline, SecondOf(due_us)});
            });
      }
      frontier.due_us = deadline(first_us, sla_us);
    }
    next_us = std::min(next_us, frontier.due_us);
  }
  next_deadline_us_ = next_us;
}

void CaseTracker::FireDeadline(const TimerEntry& entry) {
  // Left that stay, or closed.
  if (tokens_[entry.slot] != entry.token) return;
  Case& c = cases_[entry.slot];
  const int64_t deadline_us = c.entered_us + SlaMicros(c);
  // A case that expires before its deadline never breaches it; its timer,
  // due by its expiry, closes it in this same call.
  if (!c.over_sla && deadline_us <= c.last_event_us + ttl_us_) Breach(c, deadline_us);
}

void CaseTracker::Breach(Case& c, int64_t deadline_us) {
  c.over_sla = true;
  Sink().SlaBreached(c.process, c.stage, c.dims, TimeOf(deadline_us));
  Sink().BacklogChanged(c.process, c.stage, c.dims, 0, +1);
}

void CaseTracker::FireTimer(const TimerEntry& entry, int64_t now_us) {
  // Closed, or re-armed since: most entries end here.
  if (timer_tokens_[entry.slot] != entry.token) return;
  Case& c = cases_[entry.slot];
  const int64_t deadline_us = c.entered_us + SlaMicros(c);
  const int64_t expires_us = c.last_event_us + ttl_us_;
  // Exactly at the deadline is met; a case that expires before its deadline
  // never breaches it. An in-order stay's deadline is its breach frontier's
  // (FireDeadline): due no later than the expiry, it fires first.
  if (c.deadline_timed && !c.over_sla && now_us > deadline_us && deadline_us <= expires_us) {
    Breach(c, deadline_us);
    if (now_us > expires_us && expires_us > deadline_us) {
      PushDue(expires_us, entry);  // expires later in this check, in due order
      return;
    }
  }
  if (now_us > expires_us) {
    Expire(entry.slot, expires_us, now_us);
    return;
  }
  // Not yet due (later this second, activity since it was armed, a
  // re-arm), or past a timed deadline and now waiting for expiry.
  Arm(entry.slot, c, now_us);
}

void CaseTracker::Expire(uint32_t slot, int64_t at_us, int64_t now_us) {
  Case& c = cases_[slot];
  Sink().CaseExpired(c.process, c.stage, c.dims, TimeOf(at_us));
  Sink().BacklogChanged(c.process, c.stage, c.dims, -1, c.over_sla ? -1 : 0);
  AgesOf(c).Leave();
  Release(slot, CaseKey(c.process, CaseIdStore::View(c.id)), now_us);
}

void CaseTracker::ForgetOld(int64_t now_us) {
  const int64_t cutoff = now_us - horizon_us_;
  closed_.PopThrough(cutoff);
  seen_ids_.PopThrough(cutoff);
}

// ---------------------------------------------------------------- state

namespace {

constexpr absl::string_view kMagic = "KPCT";
// Restored times beyond this (about the years 828 to 3112) are corrupt:
// arithmetic on them (+ case_ttl, + sla) must not overflow.
constexpr int64_t kMaxAbsMicros = int64_t{1} << 55;

}  // namespace

std::string CaseTracker::Serialize() const {
  StateEncoder e;
  e.Raw(kMagic);
  e.Varint(kStateVersion);
  e.Varint(event_ids_forgotten_.Get());
  e.Varint(config_.processes.size());
  for (const model::ProcessConfig& process : config_.processes) {
    e.String(process.id);
    e.Varint(process.stages.size());
    for (const model::StageConfig& stage : process.stages) e.String(stage.id);
  }
  e.Varint(open_.size());
  for (size_t slot = 0; slot < cases_.size(); ++slot) {
    if (tokens_[slot] == 0) continue;
    const Case& c = cases_[slot];
    e.Varint(c.process);
    e.Varint(static_cast<uint64_t>(c.stage));
    e.String(CaseIdStore::View(c.id));
    e.Varint(c.dims);
    e.Signed(c.entered_us);
    e.Signed(c.started_us);
    e.Signed(c.last_event_us);
    e.Varint(c.visited);
    e.Varint(c.over_sla ? 1 : 0);
  }
  e.Varint(closed_.size());
  closed_.ForEach([&](const Closed& r) {
    e.Signed(r.at_us);
    e.Fixed64(r.key);
    e.Varint(r.process);
    e.Varint(r.dims);
  });
  e.Varint(seen_ids_.size());
  seen_ids_.ForEach([&](const Seen& r) {
    e.Signed(r.at_us);
    e.Fixed64(r.key);
  });
  return e.Take();
}

absl::StatusOr<std::unique_ptr<CaseTracker>> CaseTracker::Restore(const Options& options,
                                                                  absl::string_view bytes) {
  auto tracker = std::make_unique<CaseTracker>(options);
  if (absl::Status status = tracker->RestoreState(bytes); !status.ok()) return status;
  return tracker;
}

absl::Status CaseTracker::RestoreState(absl::string_view bytes) {
  StateDecoder d(bytes);
  auto corrupt = [&d](absl::string_view what) {
    return absl::DataLossError(
        absl::StrCat("case tracker state: ", what, " (near byte ", d.position(), ")"));
  };
  if (!d.Raw(kMagic)) return absl::InvalidArgumentError("not kpid case tracker state");
  const uint64_t version = d.Varint();
  if (!d.ok()) return corrupt("truncated");
  if (version != kStateVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "case tracker state: format version ", version, "; this build reads ", kStateVersion));
  }
  event_ids_forgotten_.Add(d.Varint());
  auto time = [&d]() {
    const int64_t t = d.Signed();
    if (t > kMaxAbsMicros || t < -kMaxAbsMicros) d.Invalidate();
    return t;
  };

  // Serialized process and stage indexes -> this config's (-1: gone).
  const size_t process_count = d.Count(2);  // an id and a stage count each
  std::vector<int> process_map(process_count, -1);
  std::vector<std::vector<int>> stage_map(process_count);
  for (size_t p = 0; p < process_count && d.ok(); ++p) {
    const std::string id = d.String();
    const size_t stages = d.Count();
    if (stages > model::kMaxStages) return corrupt("too many stages");
    std::vector<std::string> stage_ids(stages);
    for (std::string& s : stage_ids) s = d.String();
    stage_map[p].assign(stages, -1);
    for (size_t q = 0; q < config_.processes.size(); ++q) {
      const model::ProcessConfig& process = config_.processes[q];
      if (process.id != id) continue;
      process_map[p] = static_cast<int>(q);
      for (size_t s = 0; s < stages; ++s) {
        for (size_t t = 0; t < process.stages.size(); ++t) {
          if (process.stages[t].id == stage_ids[s]) stage_map[p][s] = static_cast<int>(t);
        }
      }
    }
  }
  if (!d.ok()) return corrupt("truncated or malformed processes");

  const int64_t now_us = NowMicros();
  const size_t open_count = d.Count(9);  // the fields below take 9 bytes at least
  for (size_t i = 0; i < open_count && d.ok(); ++i) {
    const size_t p = d.Below(process_count);
    if (!d.ok()) break;
    const size_t stage = d.Below(stage_map[p].size());
    const std::string case_id = d.String();
    const uint64_t dims = d.Varint();
    const int64_t entered_us = time();
    const int64_t started_us = time();
    const int64_t last_event_us = time();
    const uint64_t visited = d.Varint();
    const uint64_t over_sla = d.Below(2);
    if (!d.ok()) break;
    const int process = process_map[p];
    const int to_stage = stage_map[p][stage];
    if (process < 0 || to_stage < 0) {
      ++restore_dropped_;
      continue;
    }
    if (dims >= dims_->Size(process)) return corrupt("case dims beyond the dimension table");
    const uint64_t key = CaseKey(process, case_id);
    if (FindOpen(key, process, case_id) >= 0) return corrupt("case listed twice");
    const uint32_t slot = NewSlot();
    Case& c = cases_[slot];
    id_store_.Assign(&c.id, case_id);
    c.process = static_cast<uint16_t>(process);
    c.stage = static_cast<int8_t>(to_stage);
    c.dims = static_cast<DimsId>(dims);
    c.entered_us = entered_us;
    c.started_us = started_us;
    c.last_event_us = last_event_us;
    c.over_sla = over_sla != 0;
    for (size_t s = 0; s < stage_map[p].size(); ++s) {
      if ((visited >> s) & 1 && stage_map[p][s] >= 0) c.visited |= uint64_t{1} << stage_map[p][s];
    }
    c.visited |= uint64_t{1} << to_stage;
    open_.Insert(OpenWord(key, slot));
    AddStay(slot, c);
    Arm(slot, c, now_us);
  }
  open_gauge_.store(open_.size(), std::memory_order_relaxed);
  if (!d.ok()) return corrupt("truncated or malformed open cases");

  const size_t closed_count = d.Count(11);
  for (size_t i = 0; i < closed_count && d.ok(); ++i) {
    const int64_t at_us = time();
    const uint64_t key = d.Fixed64();
    const size_t p = d.Below(process_count);
    const uint64_t dims = d.Varint();
    if (!d.ok()) break;
    const int process = process_map[p];
    if (process < 0) {
      ++restore_dropped_;
      continue;
    }
    if (dims >= dims_->Size(process)) return corrupt("closed case dims beyond the dimension table");
    if (closed_.Find(key) != nullptr) return corrupt("closed case listed twice");
    RememberClosed({at_us, key, static_cast<DimsId>(dims), static_cast<uint16_t>(process)});
  }
  if (!d.ok()) return corrupt("truncated or malformed closed cases");

  const size_t seen_count = d.Count(9);
  for (size_t i = 0; i < seen_count && d.ok(); ++i) {
    const int64_t at_us = time();
    const uint64_t key = d.Fixed64();
    if (!d.ok()) break;
    if (seen_ids_.Find(key) != nullptr) return corrupt("event id listed twice");
    Remember(key, at_us);
  }
  if (!d.ok()) return corrupt("truncated or malformed event ids");
  if (d.remaining() != 0) return corrupt("trailing bytes");
  return absl::OkStatus();
}

}  // namespace kpid::cases
