#include "tests/testing/process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <memory>
#include <sstream>
#include <stdexcept>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "httplib.h"

namespace kpid::testing {

Subprocess::Subprocess(const std::vector<std::string>& argv, const std::string& log_path) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_ = ::fork();
  if (pid_ == 0) {
    const int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, STDOUT_FILENO);
      ::dup2(fd, STDERR_FILENO);
    }
    // The test runner may have signals blocked; the child must not inherit that.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  if (pid_ < 0) throw std::runtime_error("fork failed");
}

Subprocess::~Subprocess() {
  if (running()) {
    Signal(SIGKILL);
    Wait(absl::Seconds(5));
  }
}

bool Subprocess::running() {
  if (exit_code_ >= 0 || pid_ <= 0) return false;
  int status = 0;
  const pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == 0) return true;
  exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return false;
}

void Subprocess::Signal(int signal) {
  if (running()) ::kill(pid_, signal);
}

int Subprocess::Wait(absl::Duration timeout) {
  WaitFor([&] { return !running(); }, timeout);
  return exit_code_;
}

int RunCommand(const std::vector<std::string>& argv, std::string* output, absl::Duration timeout) {
  const std::string log = absl::StrCat(MakeTempDir("cmd"), "/out.log");
  Subprocess process(argv, log);
  const int rc = process.Wait(timeout);
  if (output != nullptr) *output = ReadFileOrEmpty(log);
  return rc;
}

bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (true) {
    if (condition()) return true;
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(50));
  }
}

int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

std::string MakeTempDir(const std::string& prefix) {
  const char* base = std::getenv("TMPDIR");
  std::string pattern = absl::StrCat(base ? base : "/tmp", "/kpid-", prefix, "-XXXXXX");
  if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  return pattern;
}

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void WriteFileOrDie(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary);
  out << contents;
  if (!out) throw std::runtime_error("cannot write " + path);
}

HttpResponse HttpGet(int port, const std::string& path) {
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(2);
  client.set_read_timeout(10);
  auto result = client.Get(path);
  if (!result) return {};
  return {result->status, result->body};
}

HttpResponse HttpPost(int port, const std::string& path,
                      const std::map<std::string, std::string>& headers) {
  httplib::Client client("127.0.0.1", port);
  client.set_connection_timeout(2);
  client.set_read_timeout(10);
  httplib::Headers h(headers.begin(), headers.end());
  auto result = client.Post(path, h, "", "text/plain");
  if (!result) return {};
  return {result->status, result->body};
}

HttpResponse HttpsGet(int port, const std::string& path, const TlsClientFiles& tls) {
  // OpenSSL writes with write(): a server that drops the handshake (mutual
  // TLS without a client certificate) would kill the test with SIGPIPE.
  ::signal(SIGPIPE, SIG_IGN);
  std::unique_ptr<httplib::SSLClient> client =
      tls.client_cert.empty() ? std::make_unique<httplib::SSLClient>("127.0.0.1", port)
                              : std::make_unique<httplib::SSLClient>(
                                    "127.0.0.1", port, tls.client_cert, tls.client_key);
  client->set_ca_cert_path(tls.ca_cert.c_str());
  client->enable_server_certificate_verification(true);
  client->set_connection_timeout(2);
  client->set_read_timeout(10);
  auto result = client->Get(path);
  if (!result) return {};
  return {result->status, result->body};
}

namespace {

// Rewrites `name{b="2",a="1"}` as `name{a="1",b="2"}`, so tests can name a
// series without caring in which order the exporter wrote its labels.
std::string NormalizeSeries(absl::string_view series) {
  const size_t open = series.find('{');
  if (open == absl::string_view::npos) return std::string(series);
  std::vector<std::string> labels;
  size_t i = open + 1;
  while (i < series.size() && series[i] != '}') {
    const size_t eq = series.find('=', i);
    if (eq == absl::string_view::npos || eq + 1 >= series.size()) break;
    size_t j = eq + 2;  // past ="
    while (j < series.size() && series[j] != '"') j += (series[j] == '\\') ? 2 : 1;
    labels.emplace_back(series.substr(i, j + 1 - i));
    i = j + 1;
    if (i < series.size() && series[i] == ',') ++i;
  }
  std::sort(labels.begin(), labels.end());
  return absl::StrCat(series.substr(0, open), "{", absl::StrJoin(labels, ","), "}");
}

}  // namespace

MetricSamples ParseMetrics(const std::string& exposition) {
  MetricSamples samples;
  for (absl::string_view line : absl::StrSplit(exposition, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    // The value follows the last space outside the label braces.
    const size_t close = line.rfind('}');
    const size_t space = line.find(' ', close == absl::string_view::npos ? 0 : close);
    if (space == absl::string_view::npos) continue;
    double value = 0;
    absl::string_view rest = line.substr(space + 1);
    rest = rest.substr(0, rest.find(' '));  // drop a timestamp
    if (rest == "NaN") {
      value = std::numeric_limits<double>::quiet_NaN();
    } else if (!absl::SimpleAtod(rest, &value)) {
      continue;
    }
    samples[NormalizeSeries(line.substr(0, space))] = value;
  }
  return samples;
}

double Sample(const MetricSamples& samples, const std::string& series) {
  auto it = samples.find(series);
  return it == samples.end() ? -1 : it->second;
}

}  // namespace kpid::testing
