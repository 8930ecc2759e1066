// kpi-loadgen: seeded synthetic kpid.v1.ProcessEvent streams for the
// processes of a kpid config, to a file or to Kafka (docs/loadgen.md).
//
//   kpi-loadgen --config examples/lead_to_cash.yaml --events 100000 --output events.bin
//   kpi-loadgen --config examples/lead_to_cash.yaml --bootstrap-file /tmp/kpid.bootstrap
//       --start now --speedup 60 --progress
#include <algorithm>
#include <csignal>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "daemon/common/duration.h"
#include "daemon/common/flag_args.h"
#include "daemon/common/log.h"
#include "daemon/model/config.h"
#include "tools/loadgen/simulator.h"
#include "tools/loadgen/sink.h"

ABSL_FLAG(std::string, config, "", "kpid config file whose processes to simulate (required)");
ABSL_FLAG(uint64_t, seed, 1, "random seed; same seed, start and config give the same events");
ABSL_FLAG(int64_t, events, 0, "stop after this many events; 0 = run until SIGINT/SIGTERM");
ABSL_FLAG(double, rate, 0, "at most this many events per wall-clock second; 0 = no limit");
ABSL_FLAG(double, speedup, 0,
          "when > 0, event time runs this many times faster than wall time (with --rate: "
          "whichever is slower); 0 = as fast as possible");
ABSL_FLAG(bool, no_future, false,
          "never send an event before the wall clock reaches its event time: with --start in "
          "the past and --speedup, the stream runs fast until it catches up with now, then in "
          "real time (what a live demo wants)");
ABSL_FLAG(std::string, start, "2026-01-01T00:00:00Z",
          "event time at which the simulation starts: RFC 3339, or \"now\"");
ABSL_FLAG(std::string, format, "protobuf",
          "protobuf (binary kpid.v1.ProcessEvent) or json (canonical proto3 JSON)");
ABSL_FLAG(std::string, output, "",
          "write to this file instead of Kafka (\"-\" = stdout): protobuf varint-length-"
          "delimited, json one object per line");
ABSL_FLAG(std::string, brokers, "", "produce to these Kafka brokers (host:port[,host:port])");
ABSL_FLAG(std::string, bootstrap_file, "",
          "produce to the broker whose address is in this file (kpid's embedded broker), "
          "waiting up to --timeout for it to appear");
ABSL_FLAG(std::string, topic, "", "Kafka topic; default: the config's kafka.topic");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(30),
          "Kafka: wait this long for the bootstrap file, for brokers to answer, for each "
          "delivery (message.timeout.ms) and for the final flush");
ABSL_FLAG(std::vector<std::string>, processes, {},
          "comma-separated ids of the processes to simulate; default: all");
ABSL_FLAG(bool, progress, false, "log a progress line every 5 seconds");

namespace {

using kpid::loadgen::EventCounts;
using kpid::loadgen::EventSink;
using kpid::loadgen::Simulator;
using kpid::loadgen::SimulatorOptions;

// Flags in the order --help lists them.
constexpr absl::string_view kFlagOrder[] = {
    "config", "seed",           "events",  "rate",  "speedup", "no_future", "start",   "format",
    "output", "bootstrap_file", "brokers", "topic", "timeout", "processes", "progress"};

constexpr absl::string_view kUsage =
    "Usage: kpi-loadgen --config FILE [flags]\n"
    "\n"
    "Simulates the processes of a kpid config (arrivals, time in stage, fallout,\n"
    "rework, deal sizes: the `simulate:` keys) and writes the resulting\n"
    "kpid.v1.ProcessEvent stream, in event-time order, to a file or to Kafka\n"
    "(key = case_id). Without --output, --brokers or --bootstrap-file it produces\n"
    "to the config's kafka section. Same seed + start + config = same bytes.\n"
    "See docs/loadgen.md.\n";

constexpr char kTimeFormat[] = "%Y-%m-%dT%H:%M:%E*SZ";

// Set by SIGINT / SIGTERM; the main loop stops, flushes and exits 0. A second
// signal (say, a flush to a dead broker taking too long) kills at once.
volatile std::sig_atomic_t stop_requested = 0;

void OnSignal(int sig) {
  stop_requested = 1;
  std::signal(sig, SIG_DFL);
}

void PrintHelp() {
  std::string text(kUsage);
  absl::StrAppend(&text, "\nFlags (--name=value or --name value; '-' and '_' are the same):\n");
  for (absl::string_view name : kFlagOrder) {
    const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
    if (flag == nullptr) continue;
    std::string shown = absl::StrReplaceAll(name, {{"_", "-"}});
    std::string def = flag->DefaultValue();
    absl::StrAppend(&text, "  --", shown, "\n      ", flag->Help());
    if (!def.empty()) absl::StrAppend(&text, " (default: ", def, ")");
    absl::StrAppend(&text, "\n");
  }
  absl::StrAppend(&text, "  --help\n      show this help\n");
  std::fputs(text.c_str(), stdout);
}

int Fail(absl::string_view message) {
  kpid::log::Error(message);
  return 1;
}

void Count(kpid::v1::ProcessEvent::Kind kind, EventCounts* counts) {
  ++counts->total;
  switch (kind) {
    case kpid::v1::ProcessEvent::STAGE_ENTERED:
      ++counts->stage_entered;
      break;
    case kpid::v1::ProcessEvent::CASE_COMPLETED:
      ++counts->case_completed;
      break;
    case kpid::v1::ProcessEvent::CASE_FALLOUT:
      ++counts->case_fallout;
      break;
    case kpid::v1::ProcessEvent::COST:
      ++counts->cost;
      break;
    case kpid::v1::ProcessEvent::FEEDBACK:
      ++counts->feedback;
      break;
    default:
      break;
  }
}

int Run() {
  const std::string config_path = absl::GetFlag(FLAGS_config);
  if (config_path.empty()) return Fail("--config is required (see --help)");
  absl::StatusOr<kpid::model::Config> config = kpid::model::LoadConfigFile(config_path);
  if (!config.ok()) {
    std::fprintf(stderr, "%s\n", std::string(config.status().message()).c_str());
    return 1;
  }

  SimulatorOptions options;
  options.seed = absl::GetFlag(FLAGS_seed);
  options.max_events = absl::GetFlag(FLAGS_events);
  options.processes = absl::GetFlag(FLAGS_processes);
  if (options.max_events < 0) return Fail("--events must be >= 0");
  const std::string start = absl::GetFlag(FLAGS_start);
  if (start == "now") {
    options.start = absl::Now();
  } else {
    std::string err;
    if (!absl::ParseTime(absl::RFC3339_full, start, &options.start, &err)) {
      return Fail(absl::StrCat("--start \"", start, "\": want RFC 3339 or \"now\": ", err));
    }
  }
  const double rate = absl::GetFlag(FLAGS_rate);
  const double speedup = absl::GetFlag(FLAGS_speedup);
  const bool no_future = absl::GetFlag(FLAGS_no_future);
  if (!(rate >= 0)) return Fail("--rate must be >= 0");
  if (!(speedup >= 0)) return Fail("--speedup must be >= 0");
  const absl::Duration timeout = absl::GetFlag(FLAGS_timeout);
  if (timeout <= absl::ZeroDuration()) return Fail("--timeout must be > 0");
  absl::StatusOr<kpid::loadgen::Format> format =
      kpid::loadgen::ParseFormat(absl::GetFlag(FLAGS_format));
  if (!format.ok()) return Fail(absl::StrCat("--format: ", format.status().message()));
  if (absl::Status s = Simulator::CheckOptions(*config, options); !s.ok()) {
    return Fail(s.message());
  }

  // Destination: a file, explicit brokers, a bootstrap file, or the config's kafka.
  const std::string output = absl::GetFlag(FLAGS_output);
  std::string brokers = absl::GetFlag(FLAGS_brokers);
  std::string bootstrap_file = absl::GetFlag(FLAGS_bootstrap_file);
  if ((!output.empty()) + (!brokers.empty()) + (!bootstrap_file.empty()) > 1) {
    return Fail("give at most one of --output, --brokers, --bootstrap-file");
  }
  absl::StatusOr<std::unique_ptr<EventSink>> sink;
  std::string destination;
  if (!output.empty()) {
    sink = kpid::loadgen::OpenFileSink(output, *format);
    destination = output;
  } else {
    if (brokers.empty() && bootstrap_file.empty()) {
      if (config->kafka.embedded()) {
        bootstrap_file = config->kafka.bootstrap_file;
        if (bootstrap_file.empty()) {
          return Fail(
              "no destination: give --output, --brokers or --bootstrap-file (the config's "
              "embedded broker has no kafka.bootstrap_file)");
        }
      } else {
        brokers = config->kafka.brokers;
      }
    }
    if (!bootstrap_file.empty()) {
      kpid::log::Info("waiting for bootstrap file", {{"path", bootstrap_file}});
      absl::StatusOr<std::string> address =
          kpid::loadgen::ReadBootstrapFile(bootstrap_file, timeout);
      if (!address.ok()) return Fail(address.status().message());
      brokers = *address;
    }
    kpid::loadgen::KafkaSinkOptions kafka;
    kafka.brokers = brokers;
    kafka.topic = absl::GetFlag(FLAGS_topic);
    if (kafka.topic.empty()) kafka.topic = config->kafka.topic;
    kafka.format = *format;
    kafka.timeout = timeout;
    kafka.properties = config->kafka.properties;
    sink = kpid::loadgen::OpenKafkaSink(kafka);
    destination = absl::StrCat("kafka://", brokers, "/", kafka.topic);
  }
  if (!sink.ok()) return Fail(sink.status().message());

  struct sigaction action = {};
  action.sa_handler = OnSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);

  Simulator sim(*config, options);
  kpid::log::Info("generating",
                  {{"destination", destination},
                   {"format", absl::GetFlag(FLAGS_format)},
                   {"seed", absl::StrCat(options.seed)},
                   {"start", absl::FormatTime(kTimeFormat, options.start, absl::UTCTimeZone())}});

  EventCounts counts;  // events written (the simulator's may include one more)
  const bool progress = absl::GetFlag(FLAGS_progress);
  const absl::Time wall_start = absl::Now();
  const absl::Duration progress_every = absl::Seconds(5);
  absl::Time next_progress = wall_start + progress_every;
  int64_t events_at_last_progress = 0;
  absl::Time last_progress = wall_start;
  auto maybe_progress = [&](absl::Time now) {
    if (!progress || now < next_progress) return;
    const int64_t total = counts.total;
    const double rate_now =
        (total - events_at_last_progress) / absl::ToDoubleSeconds(now - last_progress);
    kpid::log::Info("progress", {{"events", absl::StrCat(total)},
                                 {"events_per_second", absl::StrFormat("%.0f", rate_now)},
                                 {"open_cases", absl::StrCat(sim.open_cases())},
                                 {"event_time",
                                  absl::FormatTime(kTimeFormat, sim.now(), absl::UTCTimeZone())}});
    events_at_last_progress = total;
    last_progress = now;
    next_progress = now + progress_every;
  };

  absl::Status status;
  kpid::v1::ProcessEvent event;
  const int64_t start_us = absl::ToUnixMicros(options.start);
  while (!stop_requested && sim.Next(&event)) {
    // Earliest wall time for this event: the slower of --rate and --speedup.
    absl::Time due = wall_start;
    if (rate > 0) due = wall_start + absl::Seconds(counts.total / rate);
    if (speedup > 0) {
      const int64_t event_us =
          event.occurred_at().seconds() * 1000000 + event.occurred_at().nanos() / 1000 - start_us;
      due = std::max(due, wall_start + absl::Microseconds(event_us / speedup));
    }
    if (no_future) {
      due = std::max(due, absl::FromUnixSeconds(event.occurred_at().seconds()) +
                              absl::Nanoseconds(event.occurred_at().nanos()));
    }
    absl::Time now = absl::Now();
    while (!stop_requested && due > now + absl::Milliseconds(1)) {
      (*sink)->Poll(std::min(due - now, absl::Milliseconds(100)));
      now = absl::Now();
      maybe_progress(now);
    }
    if (stop_requested) break;
    status = (*sink)->Write(event);
    if (!status.ok()) break;
    Count(event.kind(), &counts);
    if ((counts.total & 1023) == 0) maybe_progress(absl::Now());
  }
  absl::Status closed = (*sink)->Close();
  if (status.ok()) status = closed;
  const double seconds = absl::ToDoubleSeconds(absl::Now() - wall_start);
  kpid::log::Info("summary", {{"events", absl::StrCat(counts.total)},
                              {"stage_entered", absl::StrCat(counts.stage_entered)},
                              {"case_completed", absl::StrCat(counts.case_completed)},
                              {"case_fallout", absl::StrCat(counts.case_fallout)},
                              {"cost", absl::StrCat(counts.cost)},
                              {"feedback", absl::StrCat(counts.feedback)},
                              {"seconds", absl::StrFormat("%.3f", seconds)},
                              {"events_per_second",
                               absl::StrFormat("%.0f", seconds > 0 ? counts.total / seconds : 0.0)},
                              {"interrupted", stop_requested ? "true" : "false"}});
  if (!status.ok()) {
    kpid::log::Error("failed", {{"error", status.message()}});
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(kUsage);
  std::vector<std::string> storage;
  std::vector<char*> args = kpid::NormalizeFlagArgs(argc, argv, &storage);
  for (size_t i = 1; i < args.size(); ++i) {
    const absl::string_view arg = args[i];
    if (arg == "--") break;
    if (arg == "--help" || arg == "-help" || arg == "-h" || arg == "--helpfull" ||
        arg == "--helpshort") {
      PrintHelp();
      return 0;
    }
  }
  std::vector<char*> positional =
      absl::ParseCommandLine(static_cast<int>(args.size()), args.data());
  if (positional.size() > 1) {
    return Fail(absl::StrCat("unexpected argument \"", positional[1], "\" (see --help)"));
  }
  return Run();
}
