#include "daemon/alert/notifier.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <list>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/random/random.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "daemon/common/log.h"
#include "daemon/common/mutex.h"
#include "daemon/export/metric_builder.h"

namespace kpid::alert {
namespace {

using LabelSet = std::map<std::string, std::string>;

constexpr absl::string_view kAlertsPath = "/api/v2/alerts";
// Consecutive failures between two "still failing" warnings: with the default
// backoff capped at 30 s, about one line every five minutes of an outage.
constexpr int kLogEveryNthFailure = 10;
constexpr size_t kMaxLoggedBody = 512;

// An unset (zero-initialized) or infinite time is left out of the JSON.
bool IsSet(absl::Time t) {
  return t != absl::Time() && t != absl::InfinitePast() && t != absl::InfiniteFuture();
}

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime("%Y-%m-%d%ET%H:%M:%E3SZ", t, absl::UTCTimeZone());
}

void FillStruct(const std::map<std::string, std::string>& values, google::protobuf::Struct* out) {
  auto& fields = *out->mutable_fields();
  for (const auto& [key, value] : values) fields[key].set_string_value(value);
}

// "http://host:port/prefix/" -> origin "http://host:port", path
// "/prefix/api/v2/alerts".
absl::Status ParseUrl(const std::string& url, std::string* origin, std::string* path) {
  const size_t scheme_end = url.find("://");
  const absl::string_view scheme =
      scheme_end == std::string::npos ? "" : absl::string_view(url).substr(0, scheme_end);
  if (scheme != "http" && scheme != "https") {
    return absl::InvalidArgumentError(
        absl::StrCat("alertmanager url \"", url, "\": expected http:// or https://"));
  }
  if (url.find_first_of("?#") != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("alertmanager url \"", url, "\": no query or fragment allowed"));
  }
  const size_t host_begin = scheme_end + 3;
  const size_t path_begin = std::min(url.find('/', host_begin), url.size());
  if (path_begin == host_begin) {
    return absl::InvalidArgumentError(absl::StrCat("alertmanager url \"", url, "\": no host"));
  }
  *origin = url.substr(0, path_begin);
  absl::string_view prefix = absl::string_view(url).substr(path_begin);
  while (absl::ConsumeSuffix(&prefix, "/")) {
  }
  *path = absl::StrCat(prefix, kAlertsPath);
  return absl::OkStatus();
}

std::chrono::microseconds ToChrono(absl::Duration d) {
  return absl::ToChronoMicroseconds(std::max(d, absl::ZeroDuration()));
}

}  // namespace

std::string AlertsToJson(const std::vector<AlertNotification>& alerts) {
  google::protobuf::ListValue list;
  for (const AlertNotification& alert : alerts) {
    auto& fields = *list.add_values()->mutable_struct_value()->mutable_fields();
    FillStruct(alert.labels, fields["labels"].mutable_struct_value());
    FillStruct(alert.annotations, fields["annotations"].mutable_struct_value());
    if (IsSet(alert.starts_at)) fields["startsAt"].set_string_value(Rfc3339(alert.starts_at));
    if (IsSet(alert.ends_at)) fields["endsAt"].set_string_value(Rfc3339(alert.ends_at));
    if (!alert.generator_url.empty()) fields["generatorURL"].set_string_value(alert.generator_url);
  }
  std::string json;
  const auto status = google::protobuf::util::MessageToJsonString(list, &json);
  if (!status.ok()) {  // Struct of strings: cannot happen, but never send half a body.
    log::Error("cannot encode alerts as JSON", {{"error", status.ToString()}});
    return "[]";
  }
  return json;
}

// One Alertmanager: its queue, its sender thread and its counters.
//
// The queue holds every alert not yet delivered, oldest first, at most one
// per label set. The sender posts a copy of the first max_batch entries; on
// success or on a 4xx it removes the entries it posted unless a newer Send
// replaced them meanwhile (seq tells). A batch in retry thus stays queued,
// is deduplicated against newer Sends, and is what overflow drops first.
struct AlertmanagerNotifier::Receiver {
  struct Entry {
    uint64_t seq;
    AlertNotification alert;
  };
  using Queue = std::list<Entry>;

  Receiver(std::string url, std::string origin, std::string path, const Options& options)
      : url(std::move(url)),
        path(std::move(path)),
        options(options),
        client(std::make_unique<httplib::Client>(origin)) {}

  // Queues `alert` for Send; true when this starts an overflow episode
  // (the caller logs it, after unlocking).
  bool Enqueue(AlertNotification alert) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    bool overflow_started = false;
    auto it = index.find(alert.labels);
    if (it != index.end()) {
      queue.erase(it->second);
      index.erase(it);
    }
    queue.push_back({next_seq++, std::move(alert)});
    index.emplace(queue.back().alert.labels, std::prev(queue.end()));
    while (queue.size() > options.queue_capacity) {
      index.erase(queue.front().alert.labels);
      queue.pop_front();
      ++dropped;
      if (!overflow_logged) overflow_logged = overflow_started = true;
    }
    return overflow_started;
  }

  // Removes the posted entries that no newer Send has replaced.
  void RemovePosted(const std::vector<std::pair<LabelSet, uint64_t>>& posted)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    for (const auto& [labels, seq] : posted) {
      auto it = index.find(labels);
      if (it == index.end() || it->second->seq != seq) continue;
      queue.erase(it->second);
      index.erase(it);
    }
  }

  enum class Outcome { kSent, kRejected, kRetry };

  // Network I/O, without the lock.
  Outcome Post(const std::string& body, absl::Duration timeout, std::string* error) {
    client->set_connection_timeout(ToChrono(timeout));
    client->set_read_timeout(ToChrono(timeout));
    client->set_write_timeout(ToChrono(timeout));
    try {
      httplib::Result result = client->Post(path, body, "application/json");
      if (!result) {
        *error = absl::StrCat("request failed: ", httplib::to_string(result.error()));
        return Outcome::kRetry;
      }
      const int status = result->status;
      if (status >= 200 && status < 300) return Outcome::kSent;
      absl::string_view response = result->body;
      *error = absl::StrCat("HTTP ", status, ": ", response.substr(0, kMaxLoggedBody));
      const bool bad_request = status >= 400 && status < 500 && status != 408 && status != 429;
      return bad_request ? Outcome::kRejected : Outcome::kRetry;
    } catch (const std::exception& e) {  // httplib is not documented as throwing; be safe
      *error = e.what();
      return Outcome::kRetry;
    }
  }

  // Waits until `until`, or until Stop is first called (a retry in backoff
  // gets one immediate attempt when draining starts).
  void Backoff(absl::Time until) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    const bool was_stopping = stopping;
    while (!hard_stop && stopping == was_stopping) {
      const absl::Time deadline = stopping ? std::min(until, drain_deadline) : until;
      if (absl::Now() >= deadline) break;
      cv.WaitWithDeadline(&mu, deadline);
    }
  }

  void Run() ABSL_LOCKS_EXCLUDED(mu) {
    absl::BitGen random;
    absl::Duration backoff = options.initial_backoff;
    int failures = 0;  // consecutive failed attempts
    absl::Time failing_since;
    mu.Lock();
    while (true) {
      while (queue.empty() && !stopping) cv.Wait(&mu);
      if (hard_stop || queue.empty() || (stopping && absl::Now() >= drain_deadline)) break;

      std::vector<AlertNotification> batch;
      std::vector<std::pair<LabelSet, uint64_t>> posted;
      for (auto it = queue.begin(); it != queue.end() && batch.size() < options.max_batch; ++it) {
        batch.push_back(it->alert);
        posted.emplace_back(it->alert.labels, it->seq);
      }
      const absl::Duration timeout =
          stopping ? std::min(options.timeout, drain_deadline - absl::Now()) : options.timeout;
      const size_t n = batch.size();

      mu.Unlock();
      std::string error;
      const Outcome outcome = Post(AlertsToJson(batch), timeout, &error);
      mu.Lock();

      if (outcome != Outcome::kRetry) RemovePosted(posted);
      if (outcome == Outcome::kSent) {
        sent += n;
        overflow_logged = false;
      } else {
        failed += n;
      }
      const bool aborted = hard_stop;  // by Stop: reported at the end
      const size_t queued = queue.size();
      mu.Unlock();  // log without blocking Send

      switch (outcome) {
        case Outcome::kSent:
          if (failures > 0) {
            log::Info("alertmanager delivery recovered",
                      {{"receiver", url},
                       {"failed_attempts", absl::StrCat(failures)},
                       {"outage", absl::FormatDuration(absl::Trunc(absl::Now() - failing_since,
                                                                   absl::Milliseconds(1)))}});
          }
          failures = 0;
          backoff = options.initial_backoff;
          break;
        case Outcome::kRejected:
          log::Error("alertmanager rejected alerts; dropping the batch",
                     {{"receiver", url}, {"alerts", absl::StrCat(n)}, {"error", error}});
          break;
        case Outcome::kRetry:
          if (aborted) break;
          if (failures == 0) failing_since = absl::Now();
          ++failures;
          if (failures == 1 || failures % kLogEveryNthFailure == 0) {
            log::Warn("alertmanager delivery failed; retrying",
                      {{"receiver", url},
                       {"error", error},
                       {"attempts", absl::StrCat(failures)},
                       {"queued", absl::StrCat(queued)}});
          }
          break;
      }

      mu.Lock();
      if (outcome == Outcome::kRetry) {
        // Equal jitter: half the backoff plus up to another half.
        const absl::Duration delay = backoff / 2 + absl::Uniform(random, 0.0, 1.0) * (backoff / 2);
        backoff = std::min(backoff * 2, options.max_backoff);
        Backoff(absl::Now() + delay);
      }
    }
    const size_t undelivered = queue.size();
    dropped += undelivered;
    queue.clear();
    index.clear();
    done = true;
    cv.SignalAll();
    mu.Unlock();
    if (undelivered > 0) {
      log::Warn("alerts not delivered at shutdown",
                {{"receiver", url}, {"alerts", absl::StrCat(undelivered)}});
    }
  }

  const std::string url;   // as configured: the `receiver` label
  const std::string path;  // request path, with any prefix of the URL
  const Options& options;
  // Only the sender thread posts; Stop may call client->stop() to abort.
  const std::unique_ptr<httplib::Client> client;
  std::thread thread;

  mutable kpid::Mutex mu;
  kpid::CondVar cv;  // queue grew, stop requested, sender done
  Queue queue ABSL_GUARDED_BY(mu);
  std::map<LabelSet, Queue::iterator> index ABSL_GUARDED_BY(mu);
  uint64_t next_seq ABSL_GUARDED_BY(mu) = 0;
  uint64_t sent ABSL_GUARDED_BY(mu) = 0;
  uint64_t failed ABSL_GUARDED_BY(mu) = 0;
  uint64_t dropped ABSL_GUARDED_BY(mu) = 0;
  bool overflow_logged ABSL_GUARDED_BY(mu) = false;  // once per overflow episode
  bool stopping ABSL_GUARDED_BY(mu) = false;
  bool hard_stop ABSL_GUARDED_BY(mu) = false;
  bool done ABSL_GUARDED_BY(mu) = false;
  absl::Time drain_deadline ABSL_GUARDED_BY(mu) = absl::InfiniteFuture();
};

absl::StatusOr<std::unique_ptr<AlertmanagerNotifier>> AlertmanagerNotifier::Start(Options options) {
  if (options.queue_capacity == 0 || options.max_batch == 0) {
    return absl::InvalidArgumentError("alertmanager: queue_capacity and max_batch must be > 0");
  }
  if (options.initial_backoff <= absl::ZeroDuration() ||
      options.max_backoff < options.initial_backoff || options.timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "alertmanager: need 0 < initial_backoff <= max_backoff and timeout > 0");
  }
  std::unique_ptr<AlertmanagerNotifier> notifier(new AlertmanagerNotifier(std::move(options)));
  for (const std::string& url : notifier->options_.urls) {
    std::string origin, path;
    if (absl::Status s = ParseUrl(url, &origin, &path); !s.ok()) return s;
    auto receiver = std::make_unique<Receiver>(url, origin, path, notifier->options_);
    if (!receiver->client->is_valid()) {
      return absl::InvalidArgumentError(absl::StrCat("alertmanager url \"", url, "\": invalid"));
    }
    notifier->receivers_.push_back(std::move(receiver));
  }
  for (auto& receiver : notifier->receivers_) {
    Receiver* r = receiver.get();
    r->thread = std::thread([r] { r->Run(); });
  }
  return notifier;
}

AlertmanagerNotifier::AlertmanagerNotifier(Options options) : options_(std::move(options)) {}

AlertmanagerNotifier::~AlertmanagerNotifier() { Stop(absl::Seconds(5)); }

void AlertmanagerNotifier::Send(std::vector<AlertNotification> alerts) {
  if (alerts.empty()) return;
  for (size_t i = 0; i < receivers_.size(); ++i) {
    Receiver& r = *receivers_[i];
    const bool last = i + 1 == receivers_.size();
    bool overflow_started = false;
    {
      kpid::MutexLock lock(&r.mu);
      if (r.done) {
        r.dropped += alerts.size();
        continue;
      }
      for (AlertNotification& alert : alerts) {
        overflow_started |= r.Enqueue(last ? std::move(alert) : alert);
      }
      r.cv.SignalAll();
    }
    if (overflow_started) {
      log::Warn("alert queue full, dropping oldest",
                {{"receiver", r.url}, {"capacity", absl::StrCat(options_.queue_capacity)}});
    }
  }
}

void AlertmanagerNotifier::Stop(absl::Duration drain) {
  kpid::MutexLock stop_lock(&stop_mu_);
  const absl::Time deadline = absl::Now() + drain;
  for (auto& r : receivers_) {
    kpid::MutexLock lock(&r->mu);
    if (!r->stopping) {
      r->stopping = true;
      r->drain_deadline = deadline;
    }
    r->cv.SignalAll();
  }
  for (auto& r : receivers_) {
    if (!r->thread.joinable()) continue;  // Start failed before the senders ran
    bool abort = false;
    {
      kpid::MutexLock lock(&r->mu);
      while (!r->done && absl::Now() < r->drain_deadline) {
        r->cv.WaitWithDeadline(&r->mu, r->drain_deadline);
      }
      if (!r->done) {
        r->hard_stop = true;
        r->cv.SignalAll();
        abort = true;
      }
    }
    // A POST still in flight at the deadline: shut its socket down.
    if (abort) r->client->stop();
  }
  for (auto& r : receivers_) {
    if (r->thread.joinable()) r->thread.join();
  }
}

std::vector<prometheus::MetricFamily> AlertmanagerNotifier::Collect() const {
  using exporter::AddCounter;
  using exporter::AddGauge;
  using exporter::Family;
  using prometheus::MetricType;
  auto notifications = Family("kpid_notifications_total",
                              "Alerts sent to Alertmanager, by result: sent (delivered), failed "
                              "(in a failed attempt), dropped (queue full or undelivered at stop).",
                              MetricType::Counter);
  auto queue_length = Family("kpid_notification_queue_length",
                             "Alerts waiting for delivery to Alertmanager.", MetricType::Gauge);
  for (const auto& r : receivers_) {
    kpid::MutexLock lock(&r->mu);
    AddCounter(&notifications, {{"receiver", r->url}, {"result", "sent"}},
               static_cast<double>(r->sent));
    AddCounter(&notifications, {{"receiver", r->url}, {"result", "failed"}},
               static_cast<double>(r->failed));
    AddCounter(&notifications, {{"receiver", r->url}, {"result", "dropped"}},
               static_cast<double>(r->dropped));
    AddGauge(&queue_length, {{"receiver", r->url}}, static_cast<double>(r->queue.size()));
  }
  return {std::move(notifications), std::move(queue_length)};
}

}  // namespace kpid::alert
