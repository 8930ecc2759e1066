// A kpid daemon run by an integration test, its config written from a
// template into the test's folder.
//
//   KpidProcess kpid(KPID_BINARY, dir, kConfigTemplate, {{"$ALERTMANAGER", am.url()}});
//   ASSERT_TRUE(kpid.Start()) << kpid.Log();
//   TestProducer producer(kpid.EmbeddedBrokers());
//   MetricSamples m = ParseMetrics(HttpGet(kpid.http_port(), "/metrics").body);
//   kpid.Stop();  // SIGTERM; EXPECTs a clean exit within 10 s
//
// In the template "$DIR" stands for the folder and "$PORT" for the HTTP
// port, a free loopback port chosen at every start: a port can be taken
// between FreePort and kpid's bind (by kpid's own embedded broker, or a test
// running beside it), and kpid then exits at once, so Start tries another.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "tests/testing/process.h"

namespace kpid::testing {

class KpidProcess {
 public:
  KpidProcess(std::string binary, std::string dir, std::string config_template,
              std::vector<std::pair<std::string, std::string>> substitutions = {});
  ~KpidProcess();
  KpidProcess(const KpidProcess&) = delete;
  KpidProcess& operator=(const KpidProcess&) = delete;

  // Writes `<dir>/kpid.yaml`, starts kpid and waits until /readyz answers
  // 200. False when kpid exited or was not ready within `timeout`; Log()
  // says why. A restart after Stop or Kill gets a new log file.
  bool Start(absl::Duration timeout = absl::Seconds(30));
  // SIGTERM; true when kpid exited 0 within `timeout` (DESIGN §5: it drains
  // and exits 0).
  bool Stop(absl::Duration timeout = absl::Seconds(10));
  // SIGKILL, as a crash.
  void Kill();
  bool running();
  Subprocess& process() { return *process_; }

  int http_port() const { return http_port_; }
  const std::string& dir() const { return dir_; }
  std::string config_path() const { return dir_ + "/kpid.yaml"; }
  // The bootstrap address `kafka.bootstrap_file: $DIR/bootstrap` received
  // from kpid's embedded broker (empty before it is written).
  std::string EmbeddedBrokers() const;
  // The log of the latest start.
  std::string Log() const;
  // The HTTP body of GET /metrics, parsed.
  MetricSamples Metrics() const;

 private:
  std::string log_path() const;

  std::string binary_;
  std::string dir_;
  std::string config_template_;
  std::vector<std::pair<std::string, std::string>> substitutions_;
  std::unique_ptr<Subprocess> process_;
  int http_port_ = 0;
  int starts_ = 0;
};

}  // namespace kpid::testing
