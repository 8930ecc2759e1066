// AlertmanagerNotifier against a real Alertmanager (Debian's
// prometheus-alertmanager) on loopback, routing to a webhook receiver served
// by this test: a firing alert and its resolve reach the receiver, and an
// alert sent while Alertmanager is down arrives once it is back.
#include "tests/testing/alertmanager.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <signal.h>
#include <unistd.h>

#include <memory>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "daemon/alert/notifier.h"
#include "gtest/gtest.h"
#include "tests/testing/process.h"

namespace kpid::testing {
namespace {

using alert::AlertmanagerNotifier;
using alert::AlertNotification;
using google::protobuf::Struct;

constexpr absl::Duration kWait = absl::Seconds(30);

class AlertmanagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    alertmanager_ =
        std::make_unique<AlertmanagerProcess>(MakeTempDir("alertmanager"), webhook_.port());
    StartAlertmanager();
    AlertmanagerNotifier::Options options;
    options.urls = {alertmanager_->url()};
    options.initial_backoff = absl::Milliseconds(100);
    options.max_backoff = absl::Seconds(1);
    options.timeout = absl::Seconds(5);
    auto notifier = AlertmanagerNotifier::Start(options);
    ASSERT_TRUE(notifier.ok()) << notifier.status();
    notifier_ = std::move(*notifier);
  }

  void TearDown() override {
    if (notifier_) notifier_->Stop(absl::Seconds(1));
  }

  std::string Log() { return alertmanager_->Log(); }
  void StartAlertmanager() {
    std::string why;
    ASSERT_TRUE(alertmanager_->Start(&why)) << why;
  }
  void StopAlertmanager() { EXPECT_TRUE(alertmanager_->Stop()) << Log(); }

  double Notifications(const std::string& result) {
    for (const auto& family : notifier_->Collect()) {
      if (family.name != "kpid_notifications_total") continue;
      for (const auto& m : family.metric) {
        for (const auto& l : m.label) {
          if (l.name == "result" && l.value == result) return m.counter.value;
        }
      }
    }
    return -1;
  }

  static AlertNotification QuoteAlert(absl::Time now) {
    AlertNotification a;
    a.labels = {{"alertname", "QuoteSlaAttainmentLow"},
                {"process", "lead_to_cash"},
                {"stage", "quote"},
                {"severity", "page"}};
    a.annotations = {{"summary", "Quote SLA attainment 0.91 < 95%"}};
    a.starts_at = now;
    a.ends_at = now + absl::Minutes(5);
    a.generator_url = "http://127.0.0.1:9464/alerts";
    return a;
  }

  Webhook webhook_;
  std::unique_ptr<AlertmanagerProcess> alertmanager_;
  std::unique_ptr<AlertmanagerNotifier> notifier_;
};

absl::Time ParseRfc3339(const std::string& s) {
  absl::Time t;
  std::string error;
  EXPECT_TRUE(absl::ParseTime(absl::RFC3339_full, s, &t, &error)) << s << ": " << error;
  return t;
}

TEST_F(AlertmanagerTest, FiringThenResolvedReachTheReceiver) {
  const absl::Time now = absl::Now();
  AlertNotification alert = QuoteAlert(now);
  notifier_->Send({alert});

  std::unique_ptr<Struct> firing;
  ASSERT_TRUE(
      WaitFor([&] { return (firing = webhook_.Find("firing", alert.labels)) != nullptr; }, kWait))
      << Log();
  const auto& f = firing->fields();
  EXPECT_EQ(f.at("status").string_value(), "firing");
  EXPECT_EQ(StringMap(f.at("annotations")), alert.annotations);
  EXPECT_EQ(f.at("generatorURL").string_value(), alert.generator_url);
  EXPECT_LT(absl::AbsDuration(ParseRfc3339(f.at("startsAt").string_value()) - now),
            absl::Milliseconds(1));

  alert.ends_at = absl::Now();
  notifier_->Send({alert});
  std::unique_ptr<Struct> resolved;
  ASSERT_TRUE(WaitFor(
      [&] { return (resolved = webhook_.Find("resolved", alert.labels)) != nullptr; }, kWait))
      << Log();
  EXPECT_EQ(resolved->fields().at("status").string_value(), "resolved");
  EXPECT_LT(absl::AbsDuration(ParseRfc3339(resolved->fields().at("endsAt").string_value()) -
                              alert.ends_at),
            absl::Milliseconds(1));
  EXPECT_EQ(Notifications("sent"), 2);
  EXPECT_EQ(Notifications("failed"), 0);
  EXPECT_EQ(Notifications("dropped"), 0);
}

TEST_F(AlertmanagerTest, AlertSentWhileAlertmanagerIsDownArrivesWhenItIsBack) {
  StopAlertmanager();
  const AlertNotification alert = QuoteAlert(absl::Now());
  notifier_->Send({alert});
  // Refused, retried with backoff; the alert waits in the queue.
  ASSERT_TRUE(WaitFor([&] { return Notifications("failed") >= 2; }, kWait));
  absl::SleepFor(absl::Seconds(2));
  EXPECT_EQ(Notifications("sent"), 0);
  EXPECT_EQ(webhook_.Find("firing", alert.labels), nullptr);

  StartAlertmanager();  // same port, same storage
  ASSERT_TRUE(WaitFor([&] { return webhook_.Find("firing", alert.labels) != nullptr; }, kWait))
      << Log();
  EXPECT_EQ(Notifications("sent"), 1);
  EXPECT_EQ(Notifications("dropped"), 0);
}

}  // namespace
}  // namespace kpid::testing
