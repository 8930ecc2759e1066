#include "tests/testing/sales_restart_scenario.h"

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "tests/testing/events.h"

namespace kpid::testing {

KafkaRecord SalesEvent(const std::string& event_id, const std::string& case_id,
                       v1::ProcessEvent::Kind kind, const std::string& stage, int64_t t,
                       double amount) {
  return EventRecord({.process = "sales",
                      .event_id = event_id,
                      .case_id = case_id,
                      .kind = kind,
                      .stage = stage,
                      .occurred_at = absl::FromUnixSeconds(kSalesT0 + t),
                      .amount = amount});
}

std::vector<KafkaRecord> SalesBatchA() {
  using K = v1::ProcessEvent;
  std::vector<KafkaRecord> records;
  for (int i = 0; i < 6; ++i) {
    records.push_back(SalesEvent(absl::StrCat("a-lead-", i), absl::StrCat("c", i), K::STAGE_ENTERED,
                                 "lead", i * 60));
  }
  for (int i = 0; i < 3; ++i) {
    records.push_back(SalesEvent(absl::StrCat("a-quote-", i), absl::StrCat("c", i),
                                 K::STAGE_ENTERED, "quote", 600 + i));
  }
  records.push_back(SalesEvent("a-fall-3", "c3", K::CASE_FALLOUT, "", 700));
  records.push_back(SalesEvent("a-lead-0", "c0", K::STAGE_ENTERED, "lead", 0));  // duplicate id
  return records;
}

}  // namespace kpid::testing
