// Test helpers for integration tests that run kpid's real binaries.
//
//   Subprocess kpid({KPID_BINARY, "--config", path}, "/tmp/t/kpid.log");
//   ASSERT_TRUE(WaitFor([&] { return HttpGet(port, "/readyz").status == 200; },
//   absl::Seconds(20))); kpid.Signal(SIGTERM); EXPECT_EQ(kpid.Wait(absl::Seconds(10)), 0);
#pragma once

#include <sys/types.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace kpid::testing {

// A child process whose stdout and stderr go to `log_path`. The destructor
// kills it (SIGKILL) if it is still running.
class Subprocess {
 public:
  Subprocess(const std::vector<std::string>& argv, const std::string& log_path);
  ~Subprocess();
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  pid_t pid() const { return pid_; }
  bool running();
  void Signal(int signal);
  // Exit code, 128 + signal when killed by one, or -1 on timeout.
  int Wait(absl::Duration timeout);

 private:
  pid_t pid_ = -1;
  int exit_code_ = -1;
};

// Runs to completion; returns the exit code and fills `output` with
// stdout+stderr.
int RunCommand(const std::vector<std::string>& argv, std::string* output,
               absl::Duration timeout = absl::Seconds(60));

// Polls `condition` every 50 ms until true or the timeout passes.
bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout);

// A TCP port on 127.0.0.1 that was free a moment ago.
int FreePort();

// A fresh directory under $TMPDIR, removed by nobody (CI machines are fresh).
std::string MakeTempDir(const std::string& prefix);

std::string ReadFileOrEmpty(const std::string& path);
void WriteFileOrDie(const std::string& path, const std::string& contents);

struct HttpResponse {
  int status = 0;  // 0: no connection
  std::string body;
};
HttpResponse HttpGet(int port, const std::string& path);
// The PEM files of a TLS client.
struct TlsClientFiles {
  std::string ca_cert;      // the server's certificate must chain to it (and name 127.0.0.1)
  std::string client_cert;  // optional: for mutual TLS, with client_key
  std::string client_key;
};
// GET over TLS to 127.0.0.1; status 0 also when the handshake fails. Sets
// SIGPIPE to be ignored in the calling process.
HttpResponse HttpsGet(int port, const std::string& path, const TlsClientFiles& tls);
// An empty-bodied POST with `headers` (e.g. {"Authorization", "Bearer x"}).
HttpResponse HttpPost(int port, const std::string& path,
                      const std::map<std::string, std::string>& headers = {});

// Samples of a Prometheus text exposition, keyed by the series with its
// labels sorted by name: `name` or `name{a="1",b="2"}`.
using MetricSamples = std::map<std::string, double>;
MetricSamples ParseMetrics(const std::string& exposition);
// Value of a series, or -1 when absent.
double Sample(const MetricSamples& samples, const std::string& series);

}  // namespace kpid::testing
