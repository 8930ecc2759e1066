// ProcessEvents for integration tests, as Kafka records.
//
//   producer.Send("events", EventRecord({.process = "sales", .event_id = "e1", .case_id = "c1",
//                                        .kind = ProcessEvent::STAGE_ENTERED, .stage = "lead",
//                                        .occurred_at = absl::FromUnixSeconds(t)}));
#pragma once

#include <string>

#include "absl/time/time.h"
#include "kpid/v1/event.pb.h"
#include "tests/testing/kafka_client.h"

namespace kpid::testing {

struct EventFields {
  std::string process;
  std::string event_id;
  std::string case_id;
  v1::ProcessEvent::Kind kind = v1::ProcessEvent::STAGE_ENTERED;
  std::string stage;  // empty: unset (CASE_COMPLETED, CASE_FALLOUT, ...)
  absl::Time occurred_at;
  double amount = 0;
};

// The event in protobuf, keyed by its case id as producers must (DESIGN §2:
// a case stays on one partition).
KafkaRecord EventRecord(const EventFields& fields);

}  // namespace kpid::testing
