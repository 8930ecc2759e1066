#include "daemon/alert/notifier.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <httplib.h>

#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace kpid::alert {
namespace {

using google::protobuf::ListValue;
using google::protobuf::Struct;

// An alert as an Alertmanager received it.
struct ReceivedAlert {
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> annotations;
  std::set<std::string> keys;  // top-level fields present
  std::string starts_at, ends_at, generator_url;
};

std::map<std::string, std::string> StringMap(const Struct& s) {
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : s.fields()) out[k] = v.string_value();
  return out;
}

// Parses a v2 body back, failing the test when it is not a JSON array of objects.
std::vector<ReceivedAlert> ParseAlerts(const std::string& body) {
  ListValue list;
  const auto status = google::protobuf::util::JsonStringToMessage(body, &list);
  EXPECT_TRUE(status.ok()) << status.ToString() << " in " << body;
  std::vector<ReceivedAlert> alerts;
  for (const auto& value : list.values()) {
    EXPECT_EQ(value.kind_case(), google::protobuf::Value::kStructValue) << body;
    const auto& fields = value.struct_value().fields();
    ReceivedAlert a;
    for (const auto& [k, v] : fields) a.keys.insert(k);
    if (fields.contains("labels")) a.labels = StringMap(fields.at("labels").struct_value());
    if (fields.contains("annotations")) {
      a.annotations = StringMap(fields.at("annotations").struct_value());
    }
    if (fields.contains("startsAt")) a.starts_at = fields.at("startsAt").string_value();
    if (fields.contains("endsAt")) a.ends_at = fields.at("endsAt").string_value();
    if (fields.contains("generatorURL")) a.generator_url = fields.at("generatorURL").string_value();
    alerts.push_back(std::move(a));
  }
  return alerts;
}

AlertNotification Alert(const std::string& name, const std::string& summary = "s") {
  AlertNotification a;
  a.labels = {{"alertname", name}, {"severity", "page"}};
  a.annotations = {{"summary", summary}};
  a.starts_at = absl::FromUnixSeconds(1795788000);  // 2026-11-27T14:00:00Z
  a.ends_at = a.starts_at + absl::Minutes(5);
  return a;
}

// An in-process Alertmanager stand-in on 127.0.0.1: answers POSTs with
// scripted statuses, can hang requests, and records what it received.
class FakeAlertmanager {
 public:
  struct Request {
    std::string path, content_type;
    int status = 0;  // what it answered
    std::vector<ReceivedAlert> alerts;
  };

  // port 0: any free port.
  explicit FakeAlertmanager(int port = 0) {
    server_.Post(".*", [this](const httplib::Request& req, httplib::Response& res) {
      Request r{req.path, req.get_header_value("Content-Type"), 0, ParseAlerts(req.body)};
      absl::MutexLock lock(&mu_);
      ++hung_;
      const absl::Time give_up = absl::Now() + absl::Seconds(20);
      while (hang_ && absl::Now() < give_up) cv_.WaitWithDeadline(&mu_, give_up);
      --hung_;
      if (!script_.empty()) {
        r.status = script_.front();
        script_.erase(script_.begin());
      } else {
        r.status = default_status_;
      }
      res.status = r.status;
      res.set_content(r.status == 400 ? "bad alert labels" : "", "text/plain");
      requests_.push_back(std::move(r));
    });
    if (port == 0) {
      port_ = server_.bind_to_any_port("127.0.0.1");
    } else if (server_.bind_to_port("127.0.0.1", port)) {
      port_ = port;
    }
    EXPECT_GT(port_, 0) << "cannot listen on 127.0.0.1:" << port;
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    // httplib's stop() is a no-op until the accept loop runs.
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (!server_.is_running() && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(1));
  }

  ~FakeAlertmanager() {
    Hang(false);
    server_.stop();
    thread_.join();
  }

  int port() const { return port_; }
  std::string url() const { return absl::StrCat("http://127.0.0.1:", port_); }

  // The next answers, then `status` for ever.
  void Script(std::vector<int> statuses) {
    absl::MutexLock lock(&mu_);
    script_ = std::move(statuses);
  }
  void SetDefault(int status) {
    absl::MutexLock lock(&mu_);
    default_status_ = status;
  }
  // While true, requests wait (up to 20 s) before they are answered.
  void Hang(bool hang) {
    absl::MutexLock lock(&mu_);
    hang_ = hang;
    cv_.SignalAll();
  }
  int hung() {
    absl::MutexLock lock(&mu_);
    return hung_;
  }
  std::vector<Request> requests() {
    absl::MutexLock lock(&mu_);
    return requests_;
  }

 private:
  httplib::Server server_;
  std::thread thread_;
  int port_ = -1;
  absl::Mutex mu_;
  absl::CondVar cv_;
  std::vector<int> script_ ABSL_GUARDED_BY(mu_);
  int default_status_ ABSL_GUARDED_BY(mu_) = 200;
  bool hang_ ABSL_GUARDED_BY(mu_) = false;
  int hung_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Request> requests_ ABSL_GUARDED_BY(mu_);
};

// A loopback port nobody listens on (a moment ago).
int ClosedPort() {
  FakeAlertmanager am;
  return am.port();
}

bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout = absl::Seconds(10)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!condition()) {
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return true;
}

// A sample of the notifier's metrics; -1 when absent.
double Metric(const AlertmanagerNotifier& n, const std::string& family, const std::string& url,
              const std::string& result = "") {
  for (const auto& f : n.Collect()) {
    if (f.name != family) continue;
    for (const auto& m : f.metric) {
      std::map<std::string, std::string> labels;
      for (const auto& l : m.label) labels[l.name] = l.value;
      if (labels["receiver"] != url || (!result.empty() && labels["result"] != result)) continue;
      return f.type == prometheus::MetricType::Counter ? m.counter.value : m.gauge.value;
    }
  }
  return -1;
}
double Sent(const AlertmanagerNotifier& n, const std::string& url) {
  return Metric(n, "kpid_notifications_total", url, "sent");
}
double Failed(const AlertmanagerNotifier& n, const std::string& url) {
  return Metric(n, "kpid_notifications_total", url, "failed");
}
double Dropped(const AlertmanagerNotifier& n, const std::string& url) {
  return Metric(n, "kpid_notifications_total", url, "dropped");
}
double Queued(const AlertmanagerNotifier& n, const std::string& url) {
  return Metric(n, "kpid_notification_queue_length", url);
}

// Small backoffs keep the retry tests fast.
AlertmanagerNotifier::Options FastOptions(std::vector<std::string> urls) {
  AlertmanagerNotifier::Options o;
  o.urls = std::move(urls);
  o.initial_backoff = absl::Milliseconds(20);
  o.max_backoff = absl::Milliseconds(200);
  o.timeout = absl::Seconds(5);
  return o;
}

std::unique_ptr<AlertmanagerNotifier> StartOrDie(AlertmanagerNotifier::Options options) {
  auto n = AlertmanagerNotifier::Start(std::move(options));
  EXPECT_TRUE(n.ok()) << n.status();
  return n.ok() ? std::move(*n) : nullptr;
}

TEST(AlertsToJson, WritesTheV2BodyWithRfc3339Times) {
  AlertNotification full;
  full.labels = {
      {"alertname", "QuoteSlaAttainmentLow"}, {"process", "lead_to_cash"}, {"stage", "quote"}};
  full.annotations = {{"summary", "Quote \"SLA\" 0.9 < 95%\nsee runbook \\ é"}};
  full.starts_at = absl::FromUnixMillis(1795788000123);  // 2026-11-27T14:00:00.123Z
  full.ends_at = absl::FromUnixSeconds(1795788300);
  full.generator_url = "http://kpid:9464/alerts?rule=QuoteSlaAttainmentLow";
  AlertNotification bare;
  bare.labels = {{"alertname", "Bare"}};

  const std::string json = AlertsToJson({full, bare});
  const std::vector<ReceivedAlert> alerts = ParseAlerts(json);
  ASSERT_EQ(alerts.size(), 2u) << json;
  EXPECT_EQ(alerts[0].keys,
            (std::set<std::string>{"labels", "annotations", "startsAt", "endsAt", "generatorURL"}));
  EXPECT_EQ(alerts[0].labels, full.labels);
  EXPECT_EQ(alerts[0].annotations, full.annotations);
  EXPECT_EQ(alerts[0].starts_at, "2026-11-27T14:00:00.123Z");
  EXPECT_EQ(alerts[0].ends_at, "2026-11-27T14:05:00.000Z");
  EXPECT_EQ(alerts[0].generator_url, full.generator_url);
  // Unset times and an empty generator URL are left out, not sent as 1970.
  EXPECT_EQ(alerts[1].keys, (std::set<std::string>{"labels", "annotations"}));
  EXPECT_EQ(alerts[1].labels, bare.labels);
  EXPECT_TRUE(alerts[1].annotations.empty());

  EXPECT_EQ(AlertsToJson({}), "[]");
}

TEST(AlertmanagerNotifier, RejectsBadUrlsAndOptions) {
  for (const char* url : {"127.0.0.1:9093", "ftp://127.0.0.1", "http://", "http://h:1/?x=1"}) {
    auto n = AlertmanagerNotifier::Start({.urls = {url}});
    EXPECT_EQ(n.status().code(), absl::StatusCode::kInvalidArgument) << url;
  }
  EXPECT_FALSE(AlertmanagerNotifier::Start({.urls = {}, .queue_capacity = 0}).ok());
  AlertmanagerNotifier::Options no_backoff;
  no_backoff.initial_backoff = absl::ZeroDuration();
  EXPECT_FALSE(AlertmanagerNotifier::Start(no_backoff).ok());
  // No Alertmanager configured: Send is a no-op.
  auto none = StartOrDie({});
  none->Send({Alert("A")});
  EXPECT_TRUE(none->Collect()[0].metric.empty());
}

TEST(AlertmanagerNotifier, DeliversToEveryAlertmanagerWithItsPathPrefix) {
  FakeAlertmanager a, b;
  const std::string url_b = b.url() + "/am/";
  auto n = StartOrDie(FastOptions({a.url(), url_b}));
  n->Send({Alert("A", "first")});
  ASSERT_TRUE(WaitFor([&] { return Sent(*n, a.url()) == 1 && Sent(*n, url_b) == 1; }));
  for (FakeAlertmanager* am : {&a, &b}) {
    const auto requests = am->requests();
    ASSERT_EQ(requests.size(), 1u);
    EXPECT_EQ(requests[0].path, am == &a ? "/api/v2/alerts" : "/am/api/v2/alerts");
    EXPECT_EQ(requests[0].content_type, "application/json");
    ASSERT_EQ(requests[0].alerts.size(), 1u);
    EXPECT_EQ(requests[0].alerts[0].labels.at("alertname"), "A");
    EXPECT_EQ(requests[0].alerts[0].annotations.at("summary"), "first");
  }
  EXPECT_EQ(Failed(*n, a.url()), 0);
  EXPECT_EQ(Dropped(*n, a.url()), 0);
  EXPECT_EQ(Queued(*n, a.url()), 0);
}

TEST(AlertmanagerNotifier, BatchesWhatQueuedDuringAPost) {
  FakeAlertmanager am;
  am.Hang(true);
  auto n = StartOrDie(FastOptions({am.url()}));
  n->Send({Alert("A")});
  ASSERT_TRUE(WaitFor([&] { return am.hung() == 1; }));
  n->Send({Alert("B")});
  n->Send({Alert("C")});
  n->Send({Alert("D")});
  EXPECT_EQ(Queued(*n, am.url()), 4);  // A is in flight, still queued until answered
  am.Hang(false);
  ASSERT_TRUE(WaitFor([&] { return Sent(*n, am.url()) == 4; }));
  const auto requests = am.requests();
  ASSERT_EQ(requests.size(), 2u);
  ASSERT_EQ(requests[1].alerts.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(requests[1].alerts[i].labels.at("alertname"), std::string(1, 'B' + i));
  }
  EXPECT_EQ(Queued(*n, am.url()), 0);
}

TEST(AlertmanagerNotifier, RetriesServerErrorsUntilAccepted) {
  FakeAlertmanager am;
  am.Script({503, 429, 500});
  auto n = StartOrDie(FastOptions({am.url()}));
  n->Send({Alert("A"), Alert("B")});
  ASSERT_TRUE(WaitFor([&] { return Sent(*n, am.url()) == 2; }));
  absl::SleepFor(absl::Milliseconds(300));  // nothing more is sent
  const auto requests = am.requests();
  ASSERT_EQ(requests.size(), 4u);
  for (const auto& r : requests) EXPECT_EQ(r.alerts.size(), 2u);
  EXPECT_EQ(requests.back().status, 200);
  EXPECT_EQ(Sent(*n, am.url()), 2);
  EXPECT_EQ(Failed(*n, am.url()), 6);  // three failed attempts of two alerts
  EXPECT_EQ(Queued(*n, am.url()), 0);
}

TEST(AlertmanagerNotifier, DeliversOnceTheAlertmanagerComesUp) {
  const int port = ClosedPort();
  const std::string url = absl::StrCat("http://127.0.0.1:", port);
  auto n = StartOrDie(FastOptions({url}));
  n->Send({Alert("A")});
  ASSERT_TRUE(WaitFor([&] { return Failed(*n, url) >= 2; }));
  EXPECT_EQ(Queued(*n, url), 1);
  FakeAlertmanager am(port);
  ASSERT_TRUE(WaitFor([&] { return Sent(*n, url) == 1; }));
  ASSERT_EQ(am.requests().size(), 1u);
  EXPECT_EQ(am.requests()[0].alerts[0].labels.at("alertname"), "A");
}

TEST(AlertmanagerNotifier, NewerNotificationReplacesTheQueuedOneWhileStuck) {
  FakeAlertmanager am;
  am.SetDefault(503);
  auto n = StartOrDie(FastOptions({am.url()}));
  n->Send({Alert("X", "v1")});
  ASSERT_TRUE(WaitFor([&] { return Failed(*n, am.url()) >= 1; }));
  n->Send({Alert("X", "v2")});
  n->Send({Alert("Y", "y")});
  n->Send({Alert("X", "v3")});
  EXPECT_EQ(Queued(*n, am.url()), 2);
  // Once an attempt carried v3, let the next one through.
  ASSERT_TRUE(WaitFor([&] {
    for (const auto& r : am.requests()) {
      for (const auto& a : r.alerts) {
        if (a.annotations.at("summary") == "v3") return true;
      }
    }
    return false;
  }));
  am.SetDefault(200);
  ASSERT_TRUE(WaitFor([&] { return Sent(*n, am.url()) == 2; }));
  std::vector<FakeAlertmanager::Request> accepted;
  for (const auto& r : am.requests()) {
    if (r.status == 200) accepted.push_back(r);
  }
  ASSERT_EQ(accepted.size(), 1u);
  std::map<std::string, std::string> summaries;
  for (const auto& a : accepted[0].alerts)
    summaries[a.labels.at("alertname")] = a.annotations.at("summary");
  EXPECT_EQ(summaries, (std::map<std::string, std::string>{{"X", "v3"}, {"Y", "y"}}));
  EXPECT_EQ(Queued(*n, am.url()), 0);
  EXPECT_EQ(Dropped(*n, am.url()), 0);
}

TEST(AlertmanagerNotifier, DropsTheOldestWhenTheQueueIsFull) {
  const int port = ClosedPort();
  const std::string url = absl::StrCat("http://127.0.0.1:", port);
  auto options = FastOptions({url});
  options.queue_capacity = 5;
  auto n = StartOrDie(options);
  std::vector<AlertNotification> alerts;
  for (int i = 0; i < 12; ++i) alerts.push_back(Alert(absl::StrCat("A", i)));
  n->Send(alerts);
  EXPECT_EQ(Dropped(*n, url), 7);
  EXPECT_EQ(Queued(*n, url), 5);
  n->Send({Alert("A11", "again")});  // replaces, drops nothing
  EXPECT_EQ(Dropped(*n, url), 7);

  FakeAlertmanager am(port);
  // The five survivors arrive. A batch copied just before "again" replaced
  // A11 may still reach Alertmanager with the old A11; the replacement then
  // follows in a second request (6 sent): never lost, never stale last.
  ASSERT_TRUE(WaitFor([&] { return Queued(*n, url) == 0 && Sent(*n, url) >= 5; }))
      << "sent " << Sent(*n, url) << ", queued " << Queued(*n, url);
  std::set<std::string> names;
  std::string last_a11;
  for (const auto& r : am.requests()) {
    for (const auto& a : r.alerts) {
      names.insert(a.labels.at("alertname"));
      if (a.labels.at("alertname") == "A11") last_a11 = a.annotations.at("summary");
    }
  }
  EXPECT_EQ(names, (std::set<std::string>{"A7", "A8", "A9", "A10", "A11"}));
  EXPECT_EQ(last_a11, "again");
  EXPECT_LE(Sent(*n, url), 6);
  EXPECT_EQ(Dropped(*n, url), 7);
}

TEST(AlertmanagerNotifier, BadRequestDropsTheBatchWithoutRetry) {
  FakeAlertmanager am;
  am.Script({400});
  auto n = StartOrDie(FastOptions({am.url()}));
  n->Send({Alert("A"), Alert("B")});
  ASSERT_TRUE(WaitFor([&] { return Failed(*n, am.url()) == 2; }));
  absl::SleepFor(absl::Milliseconds(300));  // > 10 backoffs: a retry would have happened
  EXPECT_EQ(am.requests().size(), 1u);
  EXPECT_EQ(Queued(*n, am.url()), 0);
  EXPECT_EQ(Sent(*n, am.url()), 0);
  // The sender carries on with the next alerts.
  n->Send({Alert("C")});
  ASSERT_TRUE(WaitFor([&] { return Sent(*n, am.url()) == 1; }));
  EXPECT_EQ(Failed(*n, am.url()), 2);
}

TEST(AlertmanagerNotifier, SendNeverBlocksOnAHungAlertmanager) {
  FakeAlertmanager am;
  am.Hang(true);
  auto n = StartOrDie(FastOptions({am.url()}));
  n->Send({Alert("first")});
  ASSERT_TRUE(WaitFor([&] { return am.hung() == 1; }));
  const absl::Time start = absl::Now();
  for (int i = 0; i < 2000; ++i) n->Send({Alert(absl::StrCat("A", i))});
  EXPECT_EQ(Queued(*n, am.url()), 2001);  // Collect does not block either
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
  am.Hang(false);
  ASSERT_TRUE(WaitFor([&] { return Sent(*n, am.url()) == 2001; }));
  // The backlog went out in batches of at most max_batch (500).
  const auto requests = am.requests();
  ASSERT_EQ(requests.size(), 5u);
  for (size_t i = 1; i < requests.size(); ++i) EXPECT_EQ(requests[i].alerts.size(), 500u);
}

TEST(AlertmanagerNotifier, ConcurrentSendersLoseNothing) {
  FakeAlertmanager a, b;
  auto n = StartOrDie(FastOptions({a.url(), b.url()}));
  std::vector<std::thread> senders;
  for (int t = 0; t < 4; ++t) {
    senders.emplace_back([&, t] {
      for (int i = 0; i < 250; ++i) {
        n->Send({Alert(absl::StrCat("T", t, "-", i))});
        if (i % 50 == 0) n->Collect();
      }
    });
  }
  for (auto& s : senders) s.join();
  ASSERT_TRUE(WaitFor([&] { return Sent(*n, a.url()) == 1000 && Sent(*n, b.url()) == 1000; }));
  for (FakeAlertmanager* am : {&a, &b}) {
    std::set<std::string> names;
    for (const auto& r : am->requests()) {
      for (const auto& alert : r.alerts) names.insert(alert.labels.at("alertname"));
    }
    EXPECT_EQ(names.size(), 1000u);
  }
}

TEST(AlertmanagerNotifier, StopDrainsTheQueue) {
  FakeAlertmanager am;
  am.Script({503, 503});
  auto n = StartOrDie(FastOptions({am.url()}));
  n->Send({Alert("A")});
  n->Stop(absl::Seconds(10));
  EXPECT_EQ(Sent(*n, am.url()), 1);
  EXPECT_EQ(Queued(*n, am.url()), 0);
  n->Send({Alert("late")});  // after Stop: counted, not sent
  EXPECT_EQ(Dropped(*n, am.url()), 1);
}

TEST(AlertmanagerNotifier, StopRetriesAtOnceInsteadOfWaitingOutTheBackoff) {
  FakeAlertmanager am;
  am.Script({503});
  auto options = FastOptions({am.url()});
  options.initial_backoff = options.max_backoff = absl::Seconds(60);
  auto n = StartOrDie(options);
  n->Send({Alert("A")});
  ASSERT_TRUE(WaitFor([&] { return Failed(*n, am.url()) == 1; }));
  const absl::Time start = absl::Now();
  n->Stop(absl::Seconds(10));
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_EQ(Sent(*n, am.url()), 1);
}

TEST(AlertmanagerNotifier, StopGivesUpAfterTheDrainTime) {
  FakeAlertmanager am;
  am.Hang(true);
  auto n = StartOrDie(FastOptions({am.url()}));
  n->Send({Alert("A")});
  ASSERT_TRUE(WaitFor([&] { return am.hung() == 1; }));
  const absl::Time start = absl::Now();
  n->Stop(absl::Milliseconds(200));  // the POST in flight is aborted
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  EXPECT_EQ(Sent(*n, am.url()), 0);
  EXPECT_EQ(Dropped(*n, am.url()), 1);
  EXPECT_EQ(Queued(*n, am.url()), 0);
}

}  // namespace
}  // namespace kpid::alert
