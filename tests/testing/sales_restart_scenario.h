// The events of the restart tests (restart_test, state_topic_test): one
// process "sales" with stages lead (sla 1h) and quote (sla 2d), cases c0..c6,
// event times in seconds after kSalesT0. Each test writes its own second
// batch and hand-computes its expectations from both.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kpid/v1/event.pb.h"
#include "tests/testing/kafka_client.h"

namespace kpid::testing {

inline constexpr int64_t kSalesT0 = 1793491200;  // 2026-11-01T00:00:00Z

// A "sales" event at kSalesT0 + t.
KafkaRecord SalesEvent(const std::string& event_id, const std::string& case_id,
                       v1::ProcessEvent::Kind kind, const std::string& stage, int64_t t,
                       double amount = 0);

// 11 messages, 10 accepted: c0..c5 enter lead at 0, 60, ..., 300; c0..c2
// enter quote at 600..602; c3 falls out at 700; then a duplicate of c0's
// first event id.
std::vector<KafkaRecord> SalesBatchA();

}  // namespace kpid::testing
