#include "tests/testing/events.h"

namespace kpid::testing {

KafkaRecord EventRecord(const EventFields& fields) {
  v1::ProcessEvent e;
  e.set_event_id(fields.event_id);
  e.set_process(fields.process);
  e.set_case_id(fields.case_id);
  e.set_kind(fields.kind);
  e.set_stage(fields.stage);
  e.set_amount(fields.amount);
  const int64_t seconds = absl::ToUnixSeconds(fields.occurred_at);
  e.mutable_occurred_at()->set_seconds(seconds);
  e.mutable_occurred_at()->set_nanos(static_cast<int32_t>(
      absl::ToInt64Nanoseconds(fields.occurred_at - absl::FromUnixSeconds(seconds))));
  KafkaRecord record;
  record.key = fields.case_id;
  record.value = e.SerializeAsString();
  return record;
}

}  // namespace kpid::testing
