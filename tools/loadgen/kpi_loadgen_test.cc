// End-to-end tests of the kpi-loadgen binary: seeded runs to files, JSON
// output, pacing, signals, and Kafka (an in-process mock cluster).
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tools/loadgen/kafka_test_util.h"
#include "tools/loadgen/sink.h"

namespace kpid::loadgen {
namespace {

using kpid::v1::ProcessEvent;
using ::testing::HasSubstr;

constexpr char kBinary[] = KPI_LOADGEN_BINARY;

constexpr absl::string_view kConfig = R"yaml(
kafka: {brokers: embedded, topic: loadgen-events, bootstrap_file: /nonexistent/kpid.bootstrap}
dimensions: {names: [region, channel]}
processes:
  - id: sales
    stages:
      - {id: lead, sla: 1h, simulate: {median: 20m, fallout: 0.3}}
      - {id: quote, sla: 2h, simulate: {fallout: 0.2, rework: 0.1}}
    simulate:
      arrivals_per_hour: 3600
      cost_per_case: 100
      feedback_odds: 0.5
      attributes: {region: [emea, amer]}
  - id: support
    stages: [{id: open, sla: 30m}]
    simulate: {arrivals_per_hour: 600}
)yaml";

// Per process: ctest -j2 runs two tests of this suite at once, and a shared
// config file was truncated by one while the other read it.
std::string TempPath(absl::string_view name) {
  return absl::StrCat(::testing::TempDir(), "/kpi_loadgen_test_", getpid(), "_", name);
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string ConfigPath() {
  static const std::string path = [] {
    const std::string p = TempPath("config.yaml");
    std::ofstream(p) << kConfig;
    return p;
  }();
  return path;
}

struct Result {
  int exit_code = -1;
  std::string out;
  std::string err;
  absl::Duration took;
};

// Starts kpi-loadgen with `args`; stdout and stderr go to files.
class Process {
 public:
  explicit Process(std::vector<std::string> args) {
    static int counter = 0;
    const std::string tag = absl::StrCat(getpid(), "_", counter++);
    out_path_ = TempPath(absl::StrCat(tag, ".out"));
    err_path_ = TempPath(absl::StrCat(tag, ".err"));
    args.insert(args.begin(), kBinary);
    // Everything the child needs is ready before fork: the mock cluster's
    // threads make allocating in the child unsafe.
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    started_ = absl::Now();
    pid_ = fork();
    if (pid_ == 0) {
      const int out = open(out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      const int err = open(err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(out, 1);
      dup2(err, 2);
      execv(kBinary, argv.data());
      _exit(127);
    }
  }

  void Signal(int sig) { kill(pid_, sig); }

  Result Wait() {
    int status = 0;
    waitpid(pid_, &status, 0);
    Result r;
    r.took = absl::Now() - started_;
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r.out = ReadAll(out_path_);
    r.err = ReadAll(err_path_);
    return r;
  }

 private:
  pid_t pid_;
  absl::Time started_;
  std::string out_path_;
  std::string err_path_;
};

Result RunLoadgen(std::vector<std::string> args) { return Process(std::move(args)).Wait(); }

std::vector<ProcessEvent> ParseJsonLines(const std::string& text) {
  std::vector<ProcessEvent> out;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    ProcessEvent e;
    auto status = google::protobuf::util::JsonStringToMessage(std::string(line), &e);
    EXPECT_TRUE(status.ok()) << status.ToString() << ": " << line;
    out.push_back(std::move(e));
  }
  return out;
}

std::string Bytes(const ProcessEvent& e) {
  std::string s;
  SerializeDeterministic(e, &s);
  return s;
}

TEST(KpiLoadgenTest, SameSeedGivesSameBytes) {
  const std::string a = TempPath("a.bin"), b = TempPath("b.bin"), c = TempPath("c.bin");
  const std::vector<std::string> common = {"--config", ConfigPath(), "--events", "20000"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args = common;
    args.insert(args.end(), extra.begin(), extra.end());
    return args;
  };
  Result ra = RunLoadgen(with({"--seed", "5", "--output", a}));
  ASSERT_EQ(ra.exit_code, 0) << ra.err;
  Result rb = RunLoadgen(with({"--seed=5", "--output=" + b}));
  ASSERT_EQ(rb.exit_code, 0) << rb.err;
  Result rc = RunLoadgen(with({"--seed", "6", "--output", c}));
  ASSERT_EQ(rc.exit_code, 0) << rc.err;

  const std::string bytes = ReadAll(a);
  EXPECT_EQ(bytes, ReadAll(b));
  EXPECT_NE(bytes, ReadAll(c));
  absl::StatusOr<std::vector<ProcessEvent>> events = ReadDelimitedEvents(bytes);
  ASSERT_TRUE(events.ok()) << events.status();
  EXPECT_EQ(events->size(), 20000u);
  EXPECT_THAT(ra.err, HasSubstr("msg=summary events=20000 stage_entered="));
  EXPECT_THAT(ra.err, HasSubstr("events_per_second="));

  // The same stream on stdout ("--output -").
  Result stdout_run = RunLoadgen(with({"--seed", "5", "--output", "-"}));
  ASSERT_EQ(stdout_run.exit_code, 0) << stdout_run.err;
  EXPECT_EQ(stdout_run.out, bytes);
}

TEST(KpiLoadgenTest, JsonParsesBackToTheSameEvents) {
  const std::string json = TempPath("events.json"), bin = TempPath("events.bin");
  Result rj = RunLoadgen({"--config", ConfigPath(), "--events", "3000", "--format", "json",
                          "--output", json, "--processes", "sales"});
  ASSERT_EQ(rj.exit_code, 0) << rj.err;
  Result rb = RunLoadgen(
      {"--config", ConfigPath(), "--events", "3000", "--output", bin, "--processes=sales"});
  ASSERT_EQ(rb.exit_code, 0) << rb.err;

  const std::vector<ProcessEvent> from_json = ParseJsonLines(ReadAll(json));
  absl::StatusOr<std::vector<ProcessEvent>> from_bin = ReadDelimitedEvents(ReadAll(bin));
  ASSERT_TRUE(from_bin.ok());
  ASSERT_EQ(from_json.size(), 3000u);
  ASSERT_EQ(from_bin->size(), 3000u);
  for (size_t i = 0; i < from_json.size(); ++i) {
    EXPECT_EQ(from_json[i].process(), "sales");
    EXPECT_EQ(Bytes(from_json[i]), Bytes((*from_bin)[i]));
  }
}

TEST(KpiLoadgenTest, HelpAndBadFlags) {
  Result help = RunLoadgen({"--help"});
  EXPECT_EQ(help.exit_code, 0);
  for (const char* flag :
       {"--config", "--seed", "--events", "--rate", "--speedup", "--start", "--format", "--output",
        "--brokers", "--bootstrap-file", "--topic", "--timeout", "--processes", "--progress"}) {
    EXPECT_THAT(help.out, HasSubstr(absl::StrCat("  ", flag, "\n"))) << flag;
  }
  EXPECT_THAT(help.out, ::testing::Not(HasSubstr("--flagfile")));

  Result no_config = RunLoadgen({"--events", "1"});
  EXPECT_EQ(no_config.exit_code, 1);
  EXPECT_THAT(no_config.err, HasSubstr("--config is required"));

  Result bad_config = RunLoadgen({"--config", "/nonexistent.yaml"});
  EXPECT_NE(bad_config.exit_code, 0);

  Result unknown_process =
      RunLoadgen({"--config", ConfigPath(), "--processes", "nope", "--output", "-"});
  EXPECT_EQ(unknown_process.exit_code, 1);
  EXPECT_THAT(unknown_process.err, HasSubstr("nope"));

  Result bad_start =
      RunLoadgen({"--config", ConfigPath(), "--start", "yesterday", "--output", "-"});
  EXPECT_EQ(bad_start.exit_code, 1);
  EXPECT_THAT(bad_start.err, HasSubstr("--start"));

  Result bad_format = RunLoadgen({"--config", ConfigPath(), "--format", "xml", "--output", "-"});
  EXPECT_EQ(bad_format.exit_code, 1);

  Result two_outputs =
      RunLoadgen({"--config", ConfigPath(), "--output", "-", "--brokers", "127.0.0.1:9092"});
  EXPECT_EQ(two_outputs.exit_code, 1);
}

TEST(KpiLoadgenTest, StartSetsEventTime) {
  Result r = RunLoadgen({"--config", ConfigPath(), "--events", "50", "--format", "json", "--output",
                         "-", "--start", "2030-06-01T12:00:00Z"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::vector<ProcessEvent> events = ParseJsonLines(r.out);
  ASSERT_EQ(events.size(), 50u);
  const int64_t start = absl::ToUnixSeconds(
      absl::FromCivil(absl::CivilSecond(2030, 6, 1, 12, 0, 0), absl::UTCTimeZone()));
  EXPECT_GE(events.front().occurred_at().seconds(), start);
  EXPECT_LT(events.back().occurred_at().seconds(), start + 3600);
}

TEST(KpiLoadgenTest, RateAndSpeedupPace) {
  Result rated = RunLoadgen({"--config", ConfigPath(), "--events", "300", "--rate", "1000",
                             "--output", TempPath("rated.bin")});
  ASSERT_EQ(rated.exit_code, 0) << rated.err;
  EXPECT_GE(rated.took, absl::Milliseconds(290));

  // 1 hour of event time at 7200x: at least half a second.
  const std::string path = TempPath("speedup.json");
  Result fast = RunLoadgen({"--config", ConfigPath(), "--events", "1500", "--speedup", "7200",
                            "--format", "json", "--output", path});
  ASSERT_EQ(fast.exit_code, 0) << fast.err;
  const std::vector<ProcessEvent> events = ParseJsonLines(ReadAll(path));
  ASSERT_EQ(events.size(), 1500u);
  const double event_seconds = events.back().occurred_at().seconds() - 1767225600.0;
  EXPECT_GE(absl::ToDoubleSeconds(fast.took), event_seconds / 7200 - 0.05);
  EXPECT_GT(event_seconds / 7200, 0.1);
}

TEST(KpiLoadgenTest, SigtermStopsCleanly) {
  const std::string path = TempPath("sigterm.bin");
  Process p({"--config", ConfigPath(), "--rate", "2000", "--output", path, "--progress"});
  absl::SleepFor(absl::Milliseconds(800));
  p.Signal(SIGTERM);
  Result r = p.Wait();
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("interrupted=true"));
  absl::StatusOr<std::vector<ProcessEvent>> events = ReadDelimitedEvents(ReadAll(path));
  ASSERT_TRUE(events.ok()) << events.status();
  EXPECT_GT(events->size(), 100u);
  EXPECT_THAT(r.err, HasSubstr(absl::StrCat("msg=summary events=", events->size(), " ")));
}

TEST(KpiLoadgenTest, ProducesToKafkaThroughABootstrapFile) {
  testing::MockKafka kafka("loadgen-events", 2);
  const std::string bootstrap = TempPath("kpid.bootstrap");
  std::ofstream(bootstrap) << kafka.bootstraps() << "\n";
  Result r = RunLoadgen({"--config", ConfigPath(), "--events", "400", "--format", "json",
                         "--bootstrap-file", bootstrap, "--timeout", "10s"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("msg=summary events=400 "));
  std::vector<testing::MockKafka::Message> got = kafka.Consume(400, absl::Seconds(20));
  ASSERT_EQ(got.size(), 400u);
  std::set<std::string> ids;
  for (const testing::MockKafka::Message& m : got) {
    EXPECT_EQ(m.content_type, "application/json");
    ProcessEvent e;
    ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(m.value, &e).ok()) << m.value;
    EXPECT_EQ(m.key, e.case_id());
    ids.insert(e.event_id());
  }
  EXPECT_EQ(ids.size(), 400u);
}

TEST(KpiLoadgenTest, ProducesToKafkaBrokersGivenOnTheCommandLine) {
  testing::MockKafka kafka("other-topic", 1);
  Result r = RunLoadgen({"--config", ConfigPath(), "--events", "100", "--brokers",
                         kafka.bootstraps(), "--topic", "other-topic"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::vector<testing::MockKafka::Message> got = kafka.Consume(100, absl::Seconds(20));
  ASSERT_EQ(got.size(), 100u);
  ProcessEvent e;
  ASSERT_TRUE(e.ParseFromString(got[0].value));
  EXPECT_EQ(got[0].key, e.case_id());
  EXPECT_EQ(got[0].content_type, "");
}

TEST(KpiLoadgenTest, UnreachableBrokerFailsClearly) {
  Result r = RunLoadgen(
      {"--config", ConfigPath(), "--events", "10", "--brokers", "127.0.0.1:1", "--timeout", "2s"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_LT(r.took, absl::Seconds(15));
  EXPECT_THAT(r.err, HasSubstr("cannot reach kafka brokers 127.0.0.1:1 within 2s"));
}

TEST(KpiLoadgenTest, MissingBootstrapFileFailsClearly) {
  // The config's own bootstrap_file (the default destination) never appears.
  Result r = RunLoadgen({"--config", ConfigPath(), "--events", "10", "--timeout", "1s"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.err, HasSubstr("no broker address in /nonexistent/kpid.bootstrap after 1s"));
}

}  // namespace
}  // namespace kpid::loadgen
