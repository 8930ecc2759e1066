#include "bench/engine_fixture.h"

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "tools/loadgen/simulator.h"

namespace kpid::bench {
namespace {

// As PROCESSES_YAML in bench/e2e_ingest.py.
constexpr char kE2EConfig[] = R"(
kafka: {brokers: "127.0.0.1:9092", topic: bench-events}
clock: event
windows: [5m, 1h, 24h, 7d]
retention: 15d
dimensions: {names: [region, channel], max_series_per_process: 1000}
processes:
  - id: lead_to_cash
    stages:
      - {id: lead,  sla: 1h,  simulate: {median: 20m, fallout: 0.30}}
      - {id: mql,   sla: 24h, simulate: {median: 8h,  fallout: 0.40}}
      - {id: sql,   sla: 48h, simulate: {median: 20h, fallout: 0.25}}
      - {id: demo,  sla: 72h, simulate: {median: 30h, fallout: 0.20, rework: 0.05}}
      - {id: quote, sla: 48h, simulate: {median: 24h, fallout: 0.35, rework: 0.10}}
    simulate:
      arrivals_per_hour: 3600
      deal_median: 24000
      deal_sigma: 0.7
      cost_per_case: 350
      feedback_odds: 0.3
      attributes:
        region: [emea, amer, apac]
        channel: [web, partner, outbound]
)";

// kE2EConfig plus fulfillment, shorter and busier, so the stream mixes
// long-lived and short-lived cases.
constexpr char kFulfillment[] = R"(  - id: fulfillment
    stages:
      - {id: order,   sla: 15m, simulate: {median: 5m,  fallout: 0.02}}
      - {id: pick,    sla: 4h,  simulate: {median: 1h,  fallout: 0.01}}
      - {id: pack,    sla: 2h,  simulate: {median: 30m, fallout: 0.01}}
      - {id: ship,    sla: 24h, simulate: {median: 8h,  fallout: 0.01}}
      - {id: deliver, sla: 72h, simulate: {median: 30h, fallout: 0.03}}
    simulate:
      arrivals_per_hour: 7200
      deal_median: 80
      deal_sigma: 0.5
      cost_per_case: 6
      feedback_odds: 0.2
      attributes:
        region: [emea, amer, apac]
        channel: [web, app, store]
)";

const std::string& MixedConfig() {
  static const std::string* yaml = new std::string(absl::StrCat(kE2EConfig, kFulfillment));
  return *yaml;
}

// e2e_ingest.py's processes_yaml(3600, compress_time): "sla: 1h" and
// "median: 20m" (not deal_median) become milliseconds divided by `compress_time` (which must
// divide them), arrivals_per_hour is multiplied by it.
std::string CompressTime(std::string yaml, int64_t compress_time) {
  std::string out;
  size_t at = 0;
  for (;;) {
    size_t next = std::string::npos;
    size_t key_end = 0;
    for (const std::string key : {"{sla: ", " sla: ", "{median: ", " median: "}) {
      const size_t found = yaml.find(key, at);
      if (found < next) {
        next = found;
        key_end = found + key.size();
      }
    }
    if (next == std::string::npos) break;
    size_t unit = key_end;
    while (unit < yaml.size() && std::isdigit(static_cast<unsigned char>(yaml[unit]))) ++unit;
    const int64_t n = std::stoll(yaml.substr(key_end, unit - key_end));
    const int64_t ms = n * (yaml[unit] == 'h' ? 3'600'000 : yaml[unit] == 'm' ? 60'000 : 1'000);
    if (ms % compress_time != 0) std::abort();
    absl::StrAppend(&out, yaml.substr(at, key_end - at), ms / compress_time, "ms");
    at = unit + 1;
  }
  out += yaml.substr(at);
  const std::string arrivals = "arrivals_per_hour: 3600\n";
  const size_t found = out.find(arrivals);
  if (found == std::string::npos) std::abort();
  out.replace(found, arrivals.size(),
              absl::StrCat("arrivals_per_hour: ", 3600 * compress_time, "\n"));
  return out;
}

model::Config Parse(absl::string_view yaml) {
  absl::StatusOr<model::Config> c = model::ParseConfig(yaml, "engine_fixture.yaml");
  if (!c.ok()) {
    std::fprintf(stderr, "%s\n", std::string(c.status().message()).c_str());
    std::abort();
  }
  return *std::move(c);
}

}  // namespace

const model::Config& EngineConfig() {
  static const model::Config* config = new model::Config(Parse(MixedConfig()));
  return *config;
}

const model::Config& ShortCasesConfig() {
  static const model::Config* config = [] {
    // Every duration of MixedConfig() 60 times shorter ("h" -> "m", "m" -> "s"):
    // same shape, ~60 times fewer cases open at once.
    std::string yaml = MixedConfig();
    size_t line = 0;
    for (size_t i = 0; i < yaml.size(); ++i) {
      if (yaml[i] == '\n') line = i + 1;
      const bool stage_line = yaml.compare(line, 12, "      - {id:") == 0;
      if (stage_line && i > 0 && std::isdigit(static_cast<unsigned char>(yaml[i - 1])) &&
          (yaml[i] == 'h' || yaml[i] == 'm')) {
        yaml[i] = yaml[i] == 'h' ? 'm' : 's';
      }
    }
    return new model::Config(Parse(yaml));
  }();
  return *config;
}

const model::Config& ManyDimsConfig() {
  static const model::Config* config = [] {
    std::string yaml = MixedConfig();
    std::string regions = "region: [";
    std::string channels = "channel: [";
    for (int i = 0; i < 30; ++i) {
      absl::StrAppend(&regions, i == 0 ? "" : ", ", "r", i);
      absl::StrAppend(&channels, i == 0 ? "" : ", ", "c", i);
    }
    regions += "]";
    channels += "]";
    for (const char* from : {"region: [emea, amer, apac]", "channel: [web, partner, outbound]",
                             "channel: [web, app, store]"}) {
      const std::string to = absl::string_view(from).substr(0, 6) == "region" ? regions : channels;
      for (size_t at = yaml.find(from); at != std::string::npos; at = yaml.find(from)) {
        yaml.replace(at, std::string(from).size(), to);
      }
    }
    return new model::Config(Parse(yaml));
  }();
  return *config;
}

const model::Config& E2EConfig() {
  static const model::Config* config = new model::Config(Parse(kE2EConfig));
  return *config;
}

const model::Config& E2ELiveConfig() {
  static const model::Config* config =
      new model::Config(Parse(CompressTime(kE2EConfig, /*compress_time=*/150'000)));
  return *config;
}

WireEvents::WireEvents(const std::vector<ingest::DecodedEvent>& events) {
  starts_.reserve(events.size() + 1);
  starts_.push_back(0);
  for (const ingest::DecodedEvent& event : events) {
    if (!event.proto.AppendToString(&bytes_)) std::abort();
    starts_.push_back(bytes_.size());
  }
}

void RefillDecoded(ingest::EventDecoder& decoder, absl::string_view value,
                   ingest::DecodedEvent* to) {
  if (decoder.Decode(value, /*json_content_type=*/false, to).has_value()) std::abort();
}

std::vector<ingest::DecodedEvent> SimulateEvents(const model::Config& config, uint64_t seed,
                                                 int64_t count) {
  loadgen::SimulatorOptions options;
  options.seed = seed;
  options.max_events = count;
  loadgen::Simulator sim(config, options);
  std::vector<ingest::DecodedEvent> events(static_cast<size_t>(count));
  ingest::EventDecoder decoder(config);
  kpid::v1::ProcessEvent event;
  std::string bytes;
  for (ingest::DecodedEvent& out : events) {
    if (!sim.Next(&event) || !event.SerializeToString(&bytes)) std::abort();
    RefillDecoded(decoder, bytes, &out);
    out.OwnAttributes();  // the decoder is gone when the events are read
  }
  return events;
}

void FillSeries(const model::Config& config, int series_per_process, absl::Time now,
                cases::DimensionTable* dims, aggregate::AggregateShard* shard) {
  const std::string region_key = "region", channel_key = "channel";
  std::string region, channel;
  const ingest::Attribute attributes[] = {{&region_key, &region}, {&channel_key, &channel}};
  for (size_t pi = 0; pi < config.processes.size(); ++pi) {
    const int p = static_cast<int>(pi);
    const int stages = static_cast<int>(config.processes[pi].stages.size());
    for (int k = 0; k < series_per_process; ++k) {
      region = absl::StrCat("region-", k / 25);
      channel = absl::StrCat("channel-", k % 25);
      const cases::DimsId d = dims->Resolve(p, attributes);
      // One case a day over two days, the last one within the 5m window.
      for (int day = 1; day >= 0; --day) {
        const absl::Time at = now - absl::Hours(24 * day) - absl::Seconds(k % 240);
        shard->CaseStarted(p, d, at);
        for (int s = 0; s < stages; ++s) {
          shard->StageEntered(p, s, d, at, /*rework=*/s == 3);
          shard->BacklogChanged(p, s, d, +1, 0);
          if (s + 1 < stages) {
            shard->StageExited(p, s, d, at, cases::ExitOutcome::kAdvanced,
                               absl::Minutes(10 + k % 50), /*sla_met=*/k % 7 != 0);
            shard->BacklogChanged(p, s, d, -1, 0);
            shard->Transition(p, s, s + 1, at);
          }
        }
        shard->SlaBreached(p, stages - 1, d, at);
        shard->BacklogChanged(p, stages - 1, d, 0, +1);
        shard->CaseCompleted(p, d, at, 1000 + k, absl::Hours(30));
        shard->Cost(p, d, at, 35);
        shard->Feedback(p, d, at, k % 11);
      }
    }
  }
}

void FactRecorder::CaseStepped(const cases::CaseStep& step) {
  Add({.kind = Fact::Kind::kStep, .at = step.at, .step = step});
}

void FactRecorder::CaseStarted(int p, cases::DimsId d, absl::Time at) {
  Add({.kind = Fact::Kind::kStarted, .process = p, .dims = d, .at = at});
}

void FactRecorder::StageEntered(int p, int s, cases::DimsId d, absl::Time at, bool rework) {
  Add({.kind = Fact::Kind::kEntered,
       .flag = rework,
       .process = p,
       .stage = s,
       .dims = d,
       .at = at});
}

void FactRecorder::StageExited(int p, int s, cases::DimsId d, absl::Time at,
                               cases::ExitOutcome outcome, absl::Duration cycle, bool sla_met) {
  Add({.kind = Fact::Kind::kExited,
       .flag = sla_met,
       .outcome = outcome,
       .process = p,
       .stage = s,
       .dims = d,
       .at = at,
       .duration = cycle});
}

void FactRecorder::Transition(int p, int from, int to, absl::Time at) {
  Add({.kind = Fact::Kind::kTransition, .process = p, .stage = from, .to_stage = to, .at = at});
}

void FactRecorder::CaseCompleted(int p, cases::DimsId d, absl::Time at, double amount,
                                 absl::Duration lead) {
  Add({.kind = Fact::Kind::kCompleted,
       .process = p,
       .dims = d,
       .at = at,
       .duration = lead,
       .amount = amount});
}

void FactRecorder::CaseFallout(int p, cases::DimsId d, absl::Time at) {
  Add({.kind = Fact::Kind::kFallout, .process = p, .dims = d, .at = at});
}

void FactRecorder::CaseExpired(int p, int s, cases::DimsId d, absl::Time at) {
  Add({.kind = Fact::Kind::kExpired, .process = p, .stage = s, .dims = d, .at = at});
}

void FactRecorder::Cost(int p, cases::DimsId d, absl::Time at, double amount) {
  Add({.kind = Fact::Kind::kCost, .process = p, .dims = d, .at = at, .amount = amount});
}

void FactRecorder::Feedback(int p, cases::DimsId d, absl::Time at, double score) {
  Add({.kind = Fact::Kind::kFeedback, .process = p, .dims = d, .at = at, .amount = score});
}

void FactRecorder::SlaBreached(int p, int s, cases::DimsId d, absl::Time deadline) {
  Add({.kind = Fact::Kind::kBreached, .process = p, .stage = s, .dims = d, .at = deadline});
}

void FactRecorder::BacklogChanged(int p, int s, cases::DimsId d, int open, int over) {
  Add({.kind = Fact::Kind::kBacklog,
       .process = p,
       .stage = s,
       .open_delta = open,
       .over_sla_delta = over,
       .dims = d});
}

void Replay(const Fact& f, cases::CaseSink& sink) {
  switch (f.kind) {
    case Fact::Kind::kStep: {
      cases::CaseStep step = f.step;
      step.at = f.at;
      return sink.CaseStepped(step);
    }
    case Fact::Kind::kStarted:
      return sink.CaseStarted(f.process, f.dims, f.at);
    case Fact::Kind::kEntered:
      return sink.StageEntered(f.process, f.stage, f.dims, f.at, f.flag);
    case Fact::Kind::kExited:
      return sink.StageExited(f.process, f.stage, f.dims, f.at, f.outcome, f.duration, f.flag);
    case Fact::Kind::kTransition:
      return sink.Transition(f.process, f.stage, f.to_stage, f.at);
    case Fact::Kind::kCompleted:
      return sink.CaseCompleted(f.process, f.dims, f.at, f.amount, f.duration);
    case Fact::Kind::kFallout:
      return sink.CaseFallout(f.process, f.dims, f.at);
    case Fact::Kind::kExpired:
      return sink.CaseExpired(f.process, f.stage, f.dims, f.at);
    case Fact::Kind::kCost:
      return sink.Cost(f.process, f.dims, f.at, f.amount);
    case Fact::Kind::kFeedback:
      return sink.Feedback(f.process, f.dims, f.at, f.amount);
    case Fact::Kind::kBreached:
      return sink.SlaBreached(f.process, f.stage, f.dims, f.at);
    case Fact::Kind::kBacklog:
      return sink.BacklogChanged(f.process, f.stage, f.dims, f.open_delta, f.over_sla_delta);
  }
}

}  // namespace kpid::bench
