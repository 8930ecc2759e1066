// EventDecoder::Decode throughput, per core, for binary protobuf and JSON
// values, beside the raw Protobuf parse each one wraps (ParseFromArray into
// the decoder's kpid.internal.ProcessEventView, JsonStringToMessage) so the
// decoder's own overhead shows as a ratio (the example output below is from
// before the view, when the decoder parsed into ProcessEvent itself):
//
//   build/bench/decode_benchmark --benchmark_repetitions=10 --benchmark_min_time=0.5
//       --benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=true
//   ...
//   decode overhead (same run; Decode items/s as a fraction of the parse alone):
//     protobuf Decode   1.39M/s  Parse   1.68M/s  Decode/Parse 0.83  (decoder overhead +125 ns)
//     json     Decode   41.6k/s  Parse   40.0k/s  Decode/Parse 1.04  (decoder overhead -979 ns)
//   parse variants (same run; items/s as a fraction of BM_ParseProtobuf's):
//     Clear() first (decoder before)   1.88M/s  Parse   1.98M/s  ratio 0.95  (+28 ns)
//     on an arena                      1.99M/s  Parse   1.98M/s  ratio 1.00  (-2 ns)
//
// Input: 512 distinct events shaped like kpi-loadgen's lead-to-cash and
// fulfillment streams (STAGE_ENTERED mostly, then completions with an amount,
// fallouts with a reason, COST, FEEDBACK; every event carries its case's two
// dimension attributes), encoded once and cycled. Each benchmark is one
// thread: items/s is what one ingest worker's core can decode.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/median_reporter.h"
#include "benchmark/benchmark.h"
#include "daemon/ingest/event_decoder.h"
#include "daemon/model/config.h"
#include "google/protobuf/arena.h"
#include "google/protobuf/util/json_util.h"
#include "kpid/internal/event_view.pb.h"
#include "kpid/v1/event.pb.h"

namespace kpid::ingest {
namespace {

using kpid::v1::ProcessEvent;

constexpr char kConfig[] = R"(
kafka: {brokers: "127.0.0.1:9092", topic: process-events}
clock: event
windows: [5m, 1h, 24h, 7d]
dimensions: {names: [region, channel, warehouse, carrier]}
processes:
  - id: lead_to_cash
    stages:
      - {id: lead,  sla: 1h}
      - {id: mql,   sla: 24h}
      - {id: sql,   sla: 48h}
      - {id: demo,  sla: 72h}
      - {id: quote, sla: 48h}
  - id: fulfillment
    stages:
      - {id: order,   sla: 15m}
      - {id: pick,    sla: 4h}
      - {id: pack,    sla: 2h}
      - {id: ship,    sla: 24h}
      - {id: deliver, sla: 72h}
)";

constexpr int kEventCount = 512;  // distinct events, cycled

struct ProcessShape {
  const char* id;
  std::vector<const char*> stages;
  std::pair<const char*, std::vector<const char*>> dim1, dim2;
};

// Deterministic events in kpi-loadgen's shape (ids, case ids, attributes).
std::vector<ProcessEvent> MakeEvents() {
  const std::vector<ProcessShape> shapes = {
      {"lead_to_cash",
       {"lead", "mql", "sql", "demo", "quote"},
       {"region", {"emea", "amer", "apac"}},
       {"channel", {"web", "partner", "outbound"}}},
      {"fulfillment",
       {"order", "pick", "pack", "ship", "deliver"},
       {"warehouse", {"ams1", "fra2", "dub1"}},
       {"carrier", {"dhl", "ups", "postnl"}}},
  };
  const char* const reasons[] = {"lost", "rejected", "abandoned", "no_budget"};
  std::mt19937_64 rng(1);
  std::uniform_real_distribution<double> uniform(0, 1);
  std::vector<ProcessEvent> events;
  int64_t micros = 1767225600LL * 1000000;  // 2026-01-01T00:00:00Z
  for (int i = 0; i < kEventCount; ++i) {
    const ProcessShape& shape = shapes[rng() % shapes.size()];
    ProcessEvent e;
    e.set_event_id(absl::StrCat("1-1767225600-", 4000000 + i));
    e.set_process(shape.id);
    e.set_case_id(absl::StrCat(shape.id, "-", 93829357 + rng() % 100000));
    micros += static_cast<int64_t>(rng() % 2000000);
    e.mutable_occurred_at()->set_seconds(micros / 1000000);
    e.mutable_occurred_at()->set_nanos(static_cast<int32_t>(micros % 1000000) * 1000);
    (*e.mutable_attributes())[shape.dim1.first] =
        shape.dim1.second[rng() % shape.dim1.second.size()];
    (*e.mutable_attributes())[shape.dim2.first] =
        shape.dim2.second[rng() % shape.dim2.second.size()];
    const double u = uniform(rng);
    if (u < 0.72) {
      e.set_kind(ProcessEvent::STAGE_ENTERED);
      e.set_stage(shape.stages[rng() % shape.stages.size()]);
    } else if (u < 0.80) {
      e.set_kind(ProcessEvent::CASE_COMPLETED);
      e.set_amount(std::round(24000 * std::exp(0.7 * (uniform(rng) - 0.5)) * 100) / 100);
    } else if (u < 0.90) {
      e.set_kind(ProcessEvent::CASE_FALLOUT);
      e.set_reason(reasons[rng() % std::size(reasons)]);
    } else if (u < 0.95) {
      e.set_kind(ProcessEvent::COST);
      e.set_amount(350);
    } else {
      e.set_kind(ProcessEvent::FEEDBACK);
      e.set_score(static_cast<double>(rng() % 11));
    }
    events.push_back(std::move(e));
  }
  return events;
}

struct Corpus {
  model::Config config;
  std::vector<std::string> protobuf;
  std::vector<std::string> json;
  size_t protobuf_bytes = 0;
  size_t json_bytes = 0;
};

const Corpus& GetCorpus() {
  static const Corpus* corpus = [] {
    auto* c = new Corpus;
    absl::StatusOr<model::Config> config = model::ParseConfig(kConfig, "decode_benchmark.yaml");
    if (!config.ok()) {
      std::fprintf(stderr, "%s\n", std::string(config.status().message()).c_str());
      std::abort();
    }
    c->config = *std::move(config);
    for (const ProcessEvent& e : MakeEvents()) {
      std::string binary;
      e.SerializeToString(&binary);
      c->protobuf_bytes += binary.size();
      c->protobuf.push_back(std::move(binary));
      std::string json;
      if (!google::protobuf::util::MessageToJsonString(e, &json).ok()) std::abort();
      c->json_bytes += json.size();
      c->json.push_back(std::move(json));
    }
    return c;
  }();
  return *corpus;
}

// Every value must decode, or the benchmark would time the rejection path.
bool AllDecode(const std::vector<std::string>& values, benchmark::State& state) {
  EventDecoder decoder(GetCorpus().config);
  DecodedEvent out;
  for (const std::string& value : values) {
    if (std::optional<Rejection> r = decoder.Decode(value, false, &out)) {
      state.SkipWithError(r->detail.c_str());
      return false;
    }
  }
  return true;
}

void Finish(benchmark::State& state, size_t corpus_bytes) {
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(
      static_cast<int64_t>(static_cast<double>(state.iterations()) * corpus_bytes / kEventCount));
  state.counters["value_bytes"] = static_cast<double>(corpus_bytes) / kEventCount;
}

void BM_DecodeProtobuf(benchmark::State& state) {
  const Corpus& corpus = GetCorpus();
  if (!AllDecode(corpus.protobuf, state)) return;
  EventDecoder decoder(corpus.config);
  DecodedEvent out;
  size_t i = 0;
  for (auto _ : state) {
    std::optional<Rejection> r = decoder.Decode(corpus.protobuf[i], false, &out);
    benchmark::DoNotOptimize(r);
    benchmark::DoNotOptimize(out.stage_index);
    i = (i + 1) % kEventCount;
  }
  Finish(state, corpus.protobuf_bytes);
}
BENCHMARK(BM_DecodeProtobuf);

// The parse alone into a reused `Message`, as the decoder reuses its own.
template <typename Message>
void ParseReused(benchmark::State& state) {
  const Corpus& corpus = GetCorpus();
  Message event;
  size_t i = 0;
  for (auto _ : state) {
    const std::string& value = corpus.protobuf[i];
    bool ok = event.ParseFromArray(value.data(), static_cast<int>(value.size()));
    benchmark::DoNotOptimize(ok);
    i = (i + 1) % kEventCount;
  }
  Finish(state, corpus.protobuf_bytes);
}

// Baseline: the parse alone into the public ProcessEvent (attributes a map).
void BM_ParseProtobuf(benchmark::State& state) { ParseReused<ProcessEvent>(state); }
BENCHMARK(BM_ParseProtobuf);

// The parse alone into the decoder's own message (kpid.internal.
// ProcessEventView: attributes as repeated entries, kept across parses):
// against BM_ParseProtobuf, what the view saves (the map's nodes, freed and
// allocated again every parse).
void BM_ParseView(benchmark::State& state) { ParseReused<kpid::internal::ProcessEventView>(state); }
BENCHMARK(BM_ParseView);

// A new case's attribute lookups, as DimensionTable::Resolve makes them: one
// per configured dimension name (four here, two of them in each event), in
// events that are in the cache, as a worker's just-decoded run is. Arg 0:
// ProcessEvent's map (Map::find, what Resolve did before the view); arg 1:
// the decoded event's entries (FindAttribute's scan).
void BM_FindAttributes(benchmark::State& state) {
  const Corpus& corpus = GetCorpus();
  const bool view = state.range(0) == 1;
  std::vector<ProcessEvent> maps(kEventCount);
  std::vector<DecodedEvent> views(kEventCount);
  EventDecoder decoder(corpus.config);
  for (int e = 0; e < kEventCount; ++e) {
    if (!maps[e].ParseFromString(corpus.protobuf[e]) ||
        decoder.Decode(corpus.protobuf[e], false, &views[e]).has_value()) {
      std::abort();
    }
  }
  const std::vector<std::string>& names = corpus.config.dimensions.names;
  size_t i = 0, found = 0;
  for (auto _ : state) {
    for (const std::string& name : names) {
      if (view) {
        const std::string* value = FindAttribute(views[i].attributes, name);
        found += value != nullptr ? value->size() : 0;
      } else {
        auto it = maps[i].attributes().find(name);
        found += it != maps[i].attributes().end() ? it->second.size() : 0;
      }
    }
    i = (i + 1) % kEventCount;
  }
  benchmark::DoNotOptimize(found);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_FindAttributes)->ArgName("view")->Arg(0)->Arg(1);

// Frozen copy of the decoder's parse before session 3: Clear() and then
// ParseFromArray, which clears again (the second Clear() walks the attribute
// map's buckets once more). Against BM_ParseProtobuf: what dropping it saved.
void BM_ParseProtobufClearFirst(benchmark::State& state) {
  const Corpus& corpus = GetCorpus();
  ProcessEvent event;
  size_t i = 0;
  for (auto _ : state) {
    const std::string& value = corpus.protobuf[i];
    event.Clear();
    bool ok = event.ParseFromArray(value.data(), static_cast<int>(value.size()));
    benchmark::DoNotOptimize(ok);
    i = (i + 1) % kEventCount;
  }
  Finish(state, corpus.protobuf_bytes);
}
BENCHMARK(BM_ParseProtobufClearFirst);

// The same parse into a message on a protobuf Arena (64 KiB initial block,
// reset once half full, so no malloc at all): against BM_ParseProtobuf it
// shows what an arena would save the decoder (the free and re-malloc of the
// timestamp and the attribute map nodes per message). Measured in session 3
// (bench/RESULTS.md §5b): nothing, so the decoder does not use one.
void BM_ParseProtobufArena(benchmark::State& state) {
  const Corpus& corpus = GetCorpus();
  std::vector<char> block(64 * 1024);
  google::protobuf::ArenaOptions options;
  options.initial_block = block.data();
  options.initial_block_size = block.size();
  google::protobuf::Arena arena(options);
  auto* event = google::protobuf::Arena::CreateMessage<ProcessEvent>(&arena);
  size_t i = 0;
  for (auto _ : state) {
    if (arena.SpaceUsed() > block.size() / 2) {
      arena.Reset();
      event = google::protobuf::Arena::CreateMessage<ProcessEvent>(&arena);
    }
    const std::string& value = corpus.protobuf[i];
    bool ok = event->ParseFromArray(value.data(), static_cast<int>(value.size()));
    benchmark::DoNotOptimize(ok);
    i = (i + 1) % kEventCount;
  }
  Finish(state, corpus.protobuf_bytes);
}
BENCHMARK(BM_ParseProtobufArena);

void BM_DecodeJson(benchmark::State& state) {
  const Corpus& corpus = GetCorpus();
  if (!AllDecode(corpus.json, state)) return;
  EventDecoder decoder(corpus.config);
  DecodedEvent out;
  size_t i = 0;
  for (auto _ : state) {
    std::optional<Rejection> r = decoder.Decode(corpus.json[i], false, &out);
    benchmark::DoNotOptimize(r);
    benchmark::DoNotOptimize(out.stage_index);
    i = (i + 1) % kEventCount;
  }
  Finish(state, corpus.json_bytes);
}
BENCHMARK(BM_DecodeJson);

// Baseline: Protobuf's JSON parser alone, with the decoder's options.
void BM_ParseJson(benchmark::State& state) {
  const Corpus& corpus = GetCorpus();
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  ProcessEvent event;
  size_t i = 0;
  for (auto _ : state) {
    const std::string& value = corpus.json[i];
    event.Clear();
    auto status = google::protobuf::util::JsonStringToMessage(
        google::protobuf::StringPiece(value.data(), value.size()), &event, options);
    benchmark::DoNotOptimize(status);
    i = (i + 1) % kEventCount;
  }
  Finish(state, corpus.json_bytes);
}
BENCHMARK(BM_ParseJson);

// The console output plus, at the end, Decode's throughput as a fraction of
// its baseline's from the same run (medians when --benchmark_repetitions > 1).
class RatioReporter : public bench::MedianReporter {
 private:
  void PrintRatios() override {
    std::printf("\ndecode overhead (same run; Decode items/s as a fraction of the parse alone):\n");
    PrintRatio("protobuf", "BM_DecodeProtobuf", "BM_ParseView");
    PrintRatio("json", "BM_DecodeJson", "BM_ParseJson");
    std::printf("parse variants (same run; items/s as a fraction of BM_ParseProtobuf's):\n");
    PrintVariant("Clear() first (decoder before)", "BM_ParseProtobufClearFirst");
    PrintVariant("on an arena", "BM_ParseProtobufArena");
    PrintVariant("into the view (the decoder's)", "BM_ParseView");
  }

  void PrintVariant(const char* label, const std::string& variant) {
    const double v = Rate(variant + "//1"), p = Rate("BM_ParseProtobuf//1");
    if (v <= 0 || p <= 0) return;
    std::printf("  %-30s %9s  Parse %9s  ratio %.2f  (%+.0f ns)\n", label, PerSecond(v).c_str(),
                PerSecond(p).c_str(), v / p, 1e9 / v - 1e9 / p);
  }

  static std::string PerSecond(double rate) {
    return rate >= 1e6 ? absl::StrFormat("%.2fM/s", rate / 1e6)
                       : absl::StrFormat("%.1fk/s", rate / 1e3);
  }

  void PrintRatio(const char* label, const std::string& decode, const std::string& parse) {
    const double d = Rate(decode + "//1"), p = Rate(parse + "//1");
    if (d <= 0 || p <= 0) return;
    std::printf("  %-8s Decode %9s  Parse %9s  Decode/Parse %.2f  (decoder overhead %+.0f ns)\n",
                label, PerSecond(d).c_str(), PerSecond(p).c_str(), d / p, 1e9 / d - 1e9 / p);
  }
};

}  // namespace
}  // namespace kpid::ingest

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  kpid::ingest::RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
