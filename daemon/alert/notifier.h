// Delivery of alerts to Alertmanager (API v2, POST /api/v2/alerts).
//
//   auto notifier = AlertmanagerNotifier::Start({.urls = config.alertmanagers});
//   (*notifier)->Send({firing_alert, resolved_alert});   // never blocks
//
// The rule engine decides what to send and when (firing alerts are re-sent
// every resend interval with endsAt ahead of now; a resolve carries endsAt =
// the resolve time); the notifier only delivers: one sender thread per
// Alertmanager, each with a bounded queue, retries with exponential backoff
// while an Alertmanager is down or answers 5xx, so an alert raised during an
// outage still arrives when it comes back. A newer notification of the same
// alert (same labels) replaces a queued older one; when a queue is full the
// oldest entry is dropped and counted.
//
// Delivery rules per Alertmanager: everything queued (up to max_batch alerts)
// goes in one POST; 2xx delivers the batch; 4xx other than 408/429 means the
// batch itself is bad (Alertmanager has already kept the valid alerts of it),
// so it is logged, counted as failed and not retried; 408, 429, 5xx,
// connection errors and timeouts are retried with exponential backoff
// (initial_backoff doubling up to max_backoff, with jitter) while newer
// notifications keep queueing. A batch being retried stays in the queue, so a
// newer notification of the same alert replaces it for the next attempt.
//
// Thread-safe: Send, Collect and Stop may be called from any thread. Send
// only takes a short per-Alertmanager lock; network I/O happens on the
// sender threads.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "daemon/common/mutex.h"
#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"

namespace kpid::alert {

struct AlertNotification {
  std::map<std::string, std::string> labels;  // alertname, process, stage, ... (identity)
  std::map<std::string, std::string> annotations;
  absl::Time starts_at;
  absl::Time ends_at;
  std::string generator_url;
};

// The seam tests fake.
class AlertSink {
 public:
  virtual ~AlertSink() = default;
  // Queues `alerts` for every Alertmanager; never blocks.
  virtual void Send(std::vector<AlertNotification> alerts) = 0;
};

class AlertmanagerNotifier : public AlertSink, public prometheus::Collectable {
 public:
  struct Options {
    std::vector<std::string> urls;  // base URLs, e.g. http://127.0.0.1:9093
    size_t queue_capacity = 10000;  // per Alertmanager, in alerts
    absl::Duration timeout = absl::Seconds(10);
    absl::Duration initial_backoff = absl::Milliseconds(100);
    absl::Duration max_backoff = absl::Seconds(30);
    size_t max_batch = 500;  // alerts per POST
  };

  static absl::StatusOr<std::unique_ptr<AlertmanagerNotifier>> Start(Options options);
  ~AlertmanagerNotifier() override;  // Stop(absl::Seconds(5))

  void Send(std::vector<AlertNotification> alerts) override;

  // Stops the senders after at most `drain` spent delivering what is queued
  // (a retry waiting on its backoff is tried at once; a POST still running at
  // the deadline is aborted). What is still queued then is dropped and
  // counted. Idempotent; Send after Stop only counts drops.
  void Stop(absl::Duration drain);

  // kpid_notifications_total{receiver, result="sent|failed|dropped"}: alerts
  // delivered, alerts in failed attempts (a batch of 3 failing twice counts
  // 6), and alerts dropped from a full queue or undelivered at Stop;
  // kpid_notification_queue_length{receiver} (including a batch in retry).
  // `receiver` is the configured URL.
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  struct Receiver;
  explicit AlertmanagerNotifier(Options options);
  std::vector<std::unique_ptr<Receiver>> receivers_;
  Options options_;
  kpid::Mutex stop_mu_;  // serializes Stop (it joins the senders)
};

// The Alertmanager v2 JSON body for `alerts` (a JSON array of
// {labels, annotations, startsAt, endsAt, generatorURL}, RFC 3339 times in
// UTC with millisecond precision, e.g. 2026-11-27T14:00:00.000Z). A time left
// at absl::Time() (the Unix epoch) or infinite is omitted, which Alertmanager
// reads as "now" for startsAt and "unknown" for endsAt; so is an empty
// generatorURL.
std::string AlertsToJson(const std::vector<AlertNotification>& alerts);

}  // namespace kpid::alert
