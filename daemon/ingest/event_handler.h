// The seam between ingest and what consumes decoded events (the case
// tracker). One handler per worker; all calls come from that worker's thread,
// so a handler is the single writer of its state and needs no lock.
#pragma once

#include <functional>
#include <memory>

#include "absl/time/time.h"
#include "daemon/ingest/event_decoder.h"
#include "daemon/model/reject_reason.h"

namespace kpid::ingest {

struct Verdict {
  enum class Kind { kAccepted, kDuplicate, kRejected };
  Kind kind = Kind::kAccepted;
  model::RejectReason reason = model::RejectReason::kEmpty;  // kRejected only

  static Verdict Accepted() { return {}; }
  static Verdict Duplicate() { return {Kind::kDuplicate}; }
  static Verdict Rejected(model::RejectReason r) { return {Kind::kRejected, r}; }
};

class EventHandler {
 public:
  virtual ~EventHandler() = default;

  // One valid event, in partition order. Must not block.
  virtual Verdict Handle(const DecodedEvent& event) = 0;

  // Called about every 100 ms of wall time, with or without events, so timers
  // (SLA deadlines, expiry) fire on a quiet partition too.
  virtual void Tick(absl::Time wall_now) { (void)wall_now; }
};

// Makes the handler of worker `worker_index`; called once per worker at start.
using EventHandlerFactory = std::function<std::unique_ptr<EventHandler>(int worker_index)>;

}  // namespace kpid::ingest
