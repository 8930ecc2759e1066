#include "daemon/reload/alert_delivery.h"

#include <set>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace kpid::reload {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

// The receivers on /metrics (nothing listens on these ports: what matters
// here is which notifier is the sink, not delivery).
std::set<std::string> Receivers(const AlertDelivery& delivery) {
  std::set<std::string> receivers;
  for (const auto& family : delivery.Collect()) {
    for (const auto& metric : family.metric) {
      for (const auto& label : metric.label) {
        if (label.name == "receiver") receivers.insert(label.value);
      }
    }
  }
  return receivers;
}

model::Config WithAlertmanagers(std::vector<std::string> urls) {
  model::Config config;
  config.alertmanagers = std::move(urls);
  return config;
}

TEST(AlertDeliveryTest, RebuildSwitchesTheSinkAndItsMetrics) {
  auto delivery = AlertDelivery::Start(WithAlertmanagers({}));
  ASSERT_TRUE(delivery.ok()) << delivery.status();
  EXPECT_THAT(Receivers(**delivery), IsEmpty());
  (*delivery)->Send({{}});  // no Alertmanager: dropped, nothing to count

  ASSERT_TRUE(
      (*delivery)->Rebuild(WithAlertmanagers({"http://127.0.0.1:1"}), absl::ZeroDuration()).ok());
  EXPECT_THAT(Receivers(**delivery), ElementsAre("http://127.0.0.1:1"));

  ASSERT_TRUE(
      (*delivery)->Rebuild(WithAlertmanagers({"http://127.0.0.1:2"}), absl::ZeroDuration()).ok());
  EXPECT_THAT(Receivers(**delivery), ElementsAre("http://127.0.0.1:2"));

  ASSERT_TRUE((*delivery)->Rebuild(WithAlertmanagers({}), absl::ZeroDuration()).ok());
  EXPECT_THAT(Receivers(**delivery), IsEmpty());
}

}  // namespace
}  // namespace kpid::reload
