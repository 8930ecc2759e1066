// The rule engine's alert sink across reloads: the Alertmanager notifier of
// the running config, rebuilt when a reload changes `alertmanagers` or
// `alerting`.
//
//   auto delivery = AlertDelivery::Start(config);   // no alertmanagers: drops alerts
//   engine options: .sink = delivery->get();  /metrics: the delivery's Collect()
//   absl::Status s = (*delivery)->Rebuild(new_config, absl::Seconds(5));
//
// Rebuild starts the new notifier first (an error leaves everything as it
// was), makes it the sink, then gives the old one at most `drain` to deliver
// what it had queued (a resolve, a page in retry) before stopping it; what it
// could not deliver by then is dropped and counted by the old notifier, whose
// counters leave /metrics with it: kpid_notifications_total of a receiver
// starts again from 0, a counter reset Prometheus' rate() handles. The rule
// engine should then re-send its firing alerts (RuleEngine::RedeliverFiring)
// so a new Alertmanager knows them at once.
//
// Thread-safe: Send and Collect from any thread; Rebuild and Stop from one
// thread at a time (the reloader's, then the main thread's at shutdown).
// Send never waits for a Rebuild's drain.
#pragma once

#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "daemon/alert/notifier.h"
#include "daemon/model/config.h"
#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"

namespace kpid::reload {

class AlertDelivery : public alert::AlertSink, public prometheus::Collectable {
 public:
  static absl::StatusOr<std::unique_ptr<AlertDelivery>> Start(const model::Config& config);
  ~AlertDelivery() override;  // Stop(absl::Seconds(5)) if not stopped

  // To the current notifier; dropped when no Alertmanager is configured.
  void Send(std::vector<alert::AlertNotification> alerts) override;
  std::vector<prometheus::MetricFamily> Collect() const override;

  absl::Status Rebuild(const model::Config& config, absl::Duration drain);
  void Stop(absl::Duration drain);

 private:
  AlertDelivery() = default;
  // Null when `config` names no Alertmanager.
  static absl::StatusOr<std::shared_ptr<alert::AlertmanagerNotifier>> StartNotifier(
      const model::Config& config);

  mutable absl::Mutex mu_;
  // Shared so a Send or Collect in flight keeps the old one alive past a swap.
  std::shared_ptr<alert::AlertmanagerNotifier> notifier_ ABSL_GUARDED_BY(mu_);
};

}  // namespace kpid::reload
