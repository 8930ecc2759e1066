// Frozen copy of daemon/cases/case_tracker.cc as of commit 059da4d (before the
// hot-path work), kept so bench/ can measure old against new in one run.
// Not used by the daemon; do not fix or extend it.
#include "bench/baseline/legacy_case_tracker.h"

#include <algorithm>
#include <functional>
#include <string_view>

namespace kpid::bench_legacy {
namespace {

using ingest::DecodedEvent;
using ingest::Verdict;
using kpid::v1::ProcessEvent;
using model::RejectReason;

constexpr int64_t kMicrosPerSecond = 1'000'000;

// Floor division, so deadlines before 1970 land in the right second.
int64_t SecondOf(int64_t micros) {
  return micros >= 0 ? micros / kMicrosPerSecond
                     : -((-micros + kMicrosPerSecond - 1) / kMicrosPerSecond);
}

absl::Time TimeOf(int64_t micros) { return absl::FromUnixMicros(micros); }

}  // namespace

CaseTracker::CaseTracker(const Options& options)
    : config_(*options.config),
      clock_(options.clock),
      sink_(options.sink),
      dims_(options.dimensions),
      max_dedup_ids_(options.max_dedup_ids),
      ttl_us_(absl::ToInt64Microseconds(options.config->case_ttl)),
      horizon_us_(absl::ToInt64Microseconds(options.config->dedup_horizon)) {
  for (const model::ProcessConfig& process : config_.processes) {
    std::vector<int64_t> slas;
    for (const model::StageConfig& stage : process.stages) {
      slas.push_back(absl::ToInt64Microseconds(stage.sla));
    }
    sla_us_.push_back(std::move(slas));
  }
}

const std::string& CaseTracker::KeyOf(const DecodedEvent& event) {
  key_.clear();
  key_.push_back(static_cast<char>(event.process_index & 0xff));
  key_.push_back(static_cast<char>((event.process_index >> 8) & 0xff));
  key_.append(event.proto.case_id());
  return key_;
}

Verdict CaseTracker::Handle(const DecodedEvent& event) {
  const int64_t at_us = absl::ToUnixMicros(event.occurred_at);
  clock_->Observe(event.occurred_at);
  // Deadlines that passed before this event count first: a case still open
  // at its deadline breached it, whatever this event does to it.
  AdvanceTimers();
  const int64_t now_us = NowMicros();
  ForgetOld(now_us);

  const uint64_t id_hash = std::hash<std::string_view>{}(
      std::string_view(event.proto.event_id().data(), event.proto.event_id().size()));
  if (seen_ids_.contains(id_hash)) return Verdict::Duplicate();

  Verdict verdict = Verdict::Accepted();
  switch (event.proto.kind()) {
    case ProcessEvent::STAGE_ENTERED:
      verdict = StageEntered(event, at_us);
      break;
    case ProcessEvent::CASE_COMPLETED:
    case ProcessEvent::CASE_FALLOUT:
      verdict = Close(event, at_us, now_us);
      break;
    case ProcessEvent::COST:
    case ProcessEvent::FEEDBACK:
      CostOrFeedback(event, at_us);
      break;
    default:
      // The decoder lets only known kinds through.
      return Verdict::Rejected(RejectReason::kUnknownKind);
  }
  if (verdict.kind == Verdict::Kind::kAccepted) {
    seen_ids_.insert(id_hash);
    seen_order_.emplace_back(now_us, id_hash);
    while (seen_ids_.size() > max_dedup_ids_) {
      seen_ids_.erase(seen_order_.front().second);
      seen_order_.pop_front();
      dedup_evictions_.Add();
    }
  }
  return verdict;
}

Verdict CaseTracker::StageEntered(const DecodedEvent& event, int64_t at_us) {
  const std::string& key = KeyOf(event);
  const int stage = event.stage_index;
  auto it = open_.find(key);
  if (it == open_.end()) {
    if (closed_.contains(key)) return Verdict::Rejected(RejectReason::kCaseClosed);
    uint32_t slot;
    if (!free_slots_.empty()) {
      slot = free_slots_.back();
      free_slots_.pop_back();
      case_keys_[slot] = key;
    } else {
      slot = static_cast<uint32_t>(cases_.size());
      cases_.emplace_back();
      case_keys_.push_back(key);
    }
    open_.emplace(key, slot);
    Case& c = cases_[slot];
    c = Case{};
    c.open = true;
    c.process = static_cast<uint16_t>(event.process_index);
    c.dims = dims_->Resolve(event.process_index, event.attributes);
    c.started_us = at_us;
    c.last_event_us = at_us;
    c.life = next_token_++;
    open_gauge_.store(open_.size(), std::memory_order_relaxed);
    sink_->CaseStarted(c.process, c.dims, TimeOf(at_us));
    EnterStage(slot, stage, at_us, /*rework=*/false);
    wheel_.Schedule({slot, c.life, kExpiry, SecondOf(at_us + ttl_us_)});
    return Verdict::Accepted();
  }
  const uint32_t slot = it->second;
  Case& c = cases_[slot];
  if (c.stage == stage) return Verdict::Rejected(RejectReason::kSameStage);
  c.last_event_us = std::max(c.last_event_us, at_us);
  const int from = c.stage;
  ExitStage(c, at_us, ExitOutcome::kAdvanced);
  sink_->Transition(c.process, from, stage, TimeOf(at_us));
  EnterStage(slot, stage, at_us, /*rework=*/(c.visited >> stage) & 1);
  return Verdict::Accepted();
}

void CaseTracker::EnterStage(uint32_t slot, int stage, int64_t at_us, bool rework) {
  Case& c = cases_[slot];
  c.stage = static_cast<int16_t>(stage);
  c.entered_us = at_us;
  c.visited |= uint64_t{1} << stage;
  c.stay = next_token_++;
  c.over_sla = false;
  sink_->StageEntered(c.process, stage, c.dims, TimeOf(at_us), rework);
  sink_->BacklogChanged(c.process, stage, c.dims, +1, 0);
  const int64_t deadline_us = at_us + sla_us_[c.process][static_cast<size_t>(stage)];
  wheel_.Schedule({slot, c.stay, kSlaDeadline, SecondOf(deadline_us)});
}

void CaseTracker::ExitStage(Case& c, int64_t at_us, ExitOutcome outcome) {
  // An exit stamped before its entry (producer clock skew) counts as instant.
  const int64_t cycle_us = std::max<int64_t>(0, at_us - c.entered_us);
  const bool sla_met = cycle_us <= sla_us_[c.process][static_cast<size_t>(c.stage)];
  sink_->StageExited(c.process, c.stage, c.dims, TimeOf(at_us), outcome,
                     absl::Microseconds(cycle_us), sla_met);
  sink_->BacklogChanged(c.process, c.stage, c.dims, -1, c.over_sla ? -1 : 0);
  c.over_sla = false;
}

Verdict CaseTracker::Close(const DecodedEvent& event, int64_t at_us, int64_t now_us) {
  const std::string& key = KeyOf(event);
  auto it = open_.find(key);
  if (it == open_.end()) {
    return Verdict::Rejected(closed_.contains(key) ? RejectReason::kCaseClosed
                                                   : RejectReason::kUnknownCase);
  }
  const uint32_t slot = it->second;
  Case& c = cases_[slot];
  const bool completed = event.proto.kind() == ProcessEvent::CASE_COMPLETED;
  ExitStage(c, at_us, completed ? ExitOutcome::kAdvanced : ExitOutcome::kFallout);
  if (completed) {
    sink_->CaseCompleted(c.process, c.dims, TimeOf(at_us), event.proto.amount(),
                         absl::Microseconds(std::max<int64_t>(0, at_us - c.started_us)));
  } else {
    sink_->CaseFallout(c.process, c.dims, TimeOf(at_us));
  }
  Release(slot, now_us);
  return Verdict::Accepted();
}

void CaseTracker::Release(uint32_t slot, int64_t closed_us) {
  Case& c = cases_[slot];
  const std::string& key = case_keys_[slot];
  open_.erase(key);
  closed_[key] = Closed{closed_us, c.process, c.dims};
  closed_order_.emplace_back(closed_us, key);
  c.open = false;
  free_slots_.push_back(slot);
  open_gauge_.store(open_.size(), std::memory_order_relaxed);
}

void CaseTracker::CostOrFeedback(const DecodedEvent& event, int64_t at_us) {
  const std::string& key = KeyOf(event);
  DimsId dims;
  if (auto open = open_.find(key); open != open_.end()) {
    Case& c = cases_[open->second];
    c.last_event_us = std::max(c.last_event_us, at_us);
    dims = c.dims;
  } else if (auto closed = closed_.find(key); closed != closed_.end()) {
    dims = closed->second.dims;
  } else {
    dims = dims_->Resolve(event.process_index, event.attributes);
  }
  if (event.proto.kind() == ProcessEvent::COST) {
    sink_->Cost(event.process_index, dims, TimeOf(at_us), event.proto.amount());
  } else {
    sink_->Feedback(event.process_index, dims, TimeOf(at_us), event.proto.score());
  }
}

void CaseTracker::Tick(absl::Time wall_now) {
  clock_->Tick(wall_now);
  AdvanceTimers();
}

void CaseTracker::AdvanceTimers() {
  const int64_t now_us = NowMicros();
  const int64_t now_s = SecondOf(now_us);
  if (now_s < wheel_.next_second()) return;
  wheel_.Advance(now_s, [&](const TimerEntry& entry) { FireTimer(entry, now_us); });
}

void CaseTracker::FireTimer(const TimerEntry& entry, int64_t now_us) {
  Case& c = cases_[entry.slot];
  if (!c.open) return;
  if (entry.kind == kSlaDeadline) {
    if (c.stay != entry.token) return;  // the case has left that stage
    const int64_t deadline_us = c.entered_us + sla_us_[c.process][static_cast<size_t>(c.stage)];
    if (now_us <= deadline_us) {
      // Due this second but not yet past: exactly at the deadline is met.
      wheel_.Schedule({entry.slot, entry.token, kSlaDeadline, SecondOf(deadline_us) + 1});
      return;
    }
    c.over_sla = true;
    sink_->SlaBreached(c.process, c.stage, c.dims, TimeOf(deadline_us));
    sink_->BacklogChanged(c.process, c.stage, c.dims, 0, +1);
    return;
  }
  if (c.life != entry.token) return;
  const int64_t expires_us = c.last_event_us + ttl_us_;
  if (now_us <= expires_us) {
    wheel_.Schedule({entry.slot, entry.token, kExpiry, SecondOf(expires_us) + 1});
    return;
  }
  sink_->CaseExpired(c.process, c.stage, c.dims, TimeOf(expires_us));
  sink_->BacklogChanged(c.process, c.stage, c.dims, -1, c.over_sla ? -1 : 0);
  Release(entry.slot, now_us);
}

void CaseTracker::ForgetOld(int64_t now_us) {
  const int64_t cutoff = now_us - horizon_us_;
  while (!closed_order_.empty() && closed_order_.front().first <= cutoff) {
    auto it = closed_.find(closed_order_.front().second);
    // The id may have started anew and closed again since; only the latest counts.
    if (it != closed_.end() && it->second.closed_us == closed_order_.front().first) {
      closed_.erase(it);
    }
    closed_order_.pop_front();
  }
  while (!seen_order_.empty() && seen_order_.front().first <= cutoff) {
    seen_ids_.erase(seen_order_.front().second);
    seen_order_.pop_front();
  }
}

}  // namespace kpid::bench_legacy
