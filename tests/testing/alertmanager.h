// A real Alertmanager (Debian's prometheus-alertmanager) on loopback, routing
// every alert to a webhook receiver served in the test process.
//
//   Webhook webhook;
//   AlertmanagerProcess am(MakeTempDir("am"), webhook.port());
//   ... point kpid or a notifier at am.url() ...
//   std::unique_ptr<google::protobuf::Struct> a = webhook.Find("firing", labels);
#pragma once

#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "google/protobuf/struct.pb.h"
#include "tests/testing/process.h"

namespace httplib {
class Server;
}

namespace kpid::testing {

// A Struct field holding an object of strings, as a map.
std::map<std::string, std::string> StringMap(const google::protobuf::Value& value);

// Records every notification Alertmanager posts to /hook.
class Webhook {
 public:
  Webhook();
  ~Webhook();
  int port() const { return port_; }

  // The first alert of a notification with group status `status` ("firing"
  // or "resolved") whose labels are exactly `labels`, or null.
  std::unique_ptr<google::protobuf::Struct> Find(const std::string& status,
                                                 const std::map<std::string, std::string>& labels);
  // How many alerts with exactly `labels` arrived with that status.
  int Count(const std::string& status, const std::map<std::string, std::string>& labels);

 private:
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = -1;
  absl::Mutex mu_;
  std::vector<google::protobuf::Struct> payloads_ ABSL_GUARDED_BY(mu_);
};

// prometheus-alertmanager with group_wait/group_interval of 1 s, resolved
// notifications on, clustering off. Start() waits until /-/ready answers.
class AlertmanagerProcess {
 public:
  AlertmanagerProcess(std::string dir, int webhook_port);
  ~AlertmanagerProcess();

  // False (with the log in `why`) when it did not become ready in 30 s.
  bool Start(std::string* why);
  // SIGTERM and wait; true on a clean exit.
  bool Stop();

  int port() const { return port_; }
  std::string url() const;
  std::string Log() const;

 private:
  std::string dir_;
  int port_;
  std::unique_ptr<Subprocess> process_;
};

}  // namespace kpid::testing
