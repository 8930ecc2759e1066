#include "daemon/reload/alert_delivery.h"

#include "absl/strings/str_join.h"
#include "daemon/common/log.h"

namespace kpid::reload {

absl::StatusOr<std::shared_ptr<alert::AlertmanagerNotifier>> AlertDelivery::StartNotifier(
    const model::Config& config) {
  if (config.alertmanagers.empty()) return nullptr;
  alert::AlertmanagerNotifier::Options options;
  options.urls = config.alertmanagers;
  options.queue_capacity = static_cast<size_t>(config.alerting.queue_capacity);
  options.timeout = config.alerting.timeout;
  absl::StatusOr<std::unique_ptr<alert::AlertmanagerNotifier>> started =
      alert::AlertmanagerNotifier::Start(std::move(options));
  if (!started.ok()) return started.status();
  return std::shared_ptr<alert::AlertmanagerNotifier>(*std::move(started));
}

absl::StatusOr<std::unique_ptr<AlertDelivery>> AlertDelivery::Start(const model::Config& config) {
  absl::StatusOr<std::shared_ptr<alert::AlertmanagerNotifier>> notifier = StartNotifier(config);
  if (!notifier.ok()) return notifier.status();
  std::unique_ptr<AlertDelivery> delivery(new AlertDelivery());
  absl::MutexLock lock(&delivery->mu_);
  delivery->notifier_ = *std::move(notifier);
  return delivery;
}

AlertDelivery::~AlertDelivery() { Stop(absl::Seconds(5)); }

void AlertDelivery::Send(std::vector<alert::AlertNotification> alerts) {
  std::shared_ptr<alert::AlertmanagerNotifier> notifier;
  {
    absl::MutexLock lock(&mu_);
    notifier = notifier_;
  }
  if (notifier != nullptr) notifier->Send(std::move(alerts));
}

std::vector<prometheus::MetricFamily> AlertDelivery::Collect() const {
  std::shared_ptr<alert::AlertmanagerNotifier> notifier;
  {
    absl::MutexLock lock(&mu_);
    notifier = notifier_;
  }
  if (notifier == nullptr) return {};
  return notifier->Collect();
}

absl::Status AlertDelivery::Rebuild(const model::Config& config, absl::Duration drain) {
  absl::StatusOr<std::shared_ptr<alert::AlertmanagerNotifier>> next = StartNotifier(config);
  if (!next.ok()) return next.status();
  std::shared_ptr<alert::AlertmanagerNotifier> old;
  {
    absl::MutexLock lock(&mu_);
    old = std::exchange(notifier_, *std::move(next));
  }
  log::Info("alert delivery rebuilt",
            {{"alertmanagers", absl::StrJoin(config.alertmanagers, ",")}});
  // Outside the lock: Send goes to the new notifier while the old one drains.
  if (old != nullptr) old->Stop(drain);
  return absl::OkStatus();
}

void AlertDelivery::Stop(absl::Duration drain) {
  std::shared_ptr<alert::AlertmanagerNotifier> notifier;
  {
    absl::MutexLock lock(&mu_);
    notifier = notifier_;
  }
  // Stays the sink (Send after Stop only counts drops) and on /metrics.
  if (notifier != nullptr) notifier->Stop(drain);
}

}  // namespace kpid::reload
