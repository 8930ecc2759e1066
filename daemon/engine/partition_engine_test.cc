// A partition engine checkpointed after N events and restored continues
// exactly as one that never stopped: the same verdicts, the same /metrics,
// the same counts.
#include "daemon/engine/partition_engine.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "daemon/aggregate/shard_set.h"
#include "daemon/export/engine_metrics.h"
#include "daemon/export/text_writer.h"
#include "daemon/ingest/event_decoder.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/process.h"

namespace kpid::engine {
namespace {

using ingest::Verdict;
using kpid::v1::ProcessEvent;
using ::testing::HasSubstr;

constexpr int64_t kT0 = 1772323200;  // 2026-03-01T00:00:00Z; times below are seconds after it

constexpr char kConfig[] = R"(
clock: event
windows: [1h, 24h]
case_ttl: 2h
dedup_horizon: 1h
dimensions: {names: [region], max_series_per_process: 100}
processes:
  - id: sales
    stages:
      - {id: lead, sla: 1h}
      - {id: demo, sla: 2h}
)";

struct Step {
  ProcessEvent::Kind kind;
  std::string case_id;
  std::string stage;
  int64_t t;
  std::string event_id = "";
  std::string region = "emea";
  double amount = 0;
  std::string process = "sales";
};

// Before the checkpoint.
std::vector<Step> StreamA() {
  using K = ProcessEvent;
  return {
      {K::STAGE_ENTERED, "c1", "lead", 0},
      {K::STAGE_ENTERED, "c2", "lead", 10, "", "amer"},
      {K::STAGE_ENTERED, "c3", "lead", 20},
      {K::STAGE_ENTERED, "c1", "demo", 100, "e-c1-demo"},  // lead exited after 100 s: met
      {K::CASE_COMPLETED, "c3", "", 200, "", "", 50},      // closed at 200
      {K::STAGE_ENTERED, "c4", "lead", 300},
      {K::CASE_FALLOUT, "c4", "", 400},
  };
}

// After it.
std::vector<Step> StreamB() {
  using K = ProcessEvent;
  return {
      {K::STAGE_ENTERED, "c1", "demo", 100, "e-c1-demo"},  // the same id: duplicate
      {K::STAGE_ENTERED, "c3", "lead", 500},               // closed at 200: case_closed
      {K::STAGE_ENTERED, "c5", "lead", 600},
      // c2 entered lead at 10 (SLA 1h): its deadline 3610 passes by this event's time alone.
      {K::STAGE_ENTERED, "c5", "demo", 3700},
      {K::CASE_COMPLETED, "c1", "", 3800, "", "", 70},
  };
}

// An engine with its own watermark board (one partition), fed like ingest
// feeds it.
struct Harness {
  explicit Harness(const model::Config& config)
      : config(config), engine(std::make_unique<PartitionEngine>(Options())) {}
  PartitionEngine::Options Options() {
    return {.config = &config,
            .partition = 2,
            .board = &board,
            .max_open_cases = 0,
            .writer = nullptr,
            .state_path = ""};
  }
  void Restore(const std::string& bytes) {
    auto restored = PartitionEngine::Restore(Options(), bytes);
    ASSERT_TRUE(restored.ok()) << restored.status();
    engine = *std::move(restored);
  }
  // The verdict of each step, counted in the engine's stats as ingest does.
  std::vector<std::string> Run(const std::vector<Step>& steps, ingest::EventDecoder& decoder) {
    std::vector<std::string> verdicts;
    for (const Step& step : steps) {
      ProcessEvent e;
      e.set_event_id(step.event_id.empty() ? absl::StrCat("ev-", step.case_id, "-", step.t)
                                           : step.event_id);
      e.set_process(step.process);
      e.set_case_id(step.case_id);
      e.set_kind(step.kind);
      e.set_stage(step.stage);
      e.set_amount(step.amount);
      e.mutable_occurred_at()->set_seconds(kT0 + step.t);
      (*e.mutable_attributes())["region"] = step.region;
      ingest::DecodedEvent decoded;
      auto rejection = decoder.Decode(e.SerializeAsString(), false, &decoded);
      EXPECT_FALSE(rejection.has_value()) << rejection->detail;
      ingest::PartitionStats& stats = engine->stats();
      stats.messages.Add();
      const Verdict v = engine->Handle(decoded);
      switch (v.kind) {
        case Verdict::Kind::kAccepted:
          stats.consumed.Add();
          stats.watermark_ms.Observe((kT0 + step.t) * 1000);
          break;
        case Verdict::Kind::kDuplicate:
          stats.duplicate.Add();
          break;
        case Verdict::Kind::kRejected:
          stats.rejected[static_cast<size_t>(v.reason)].Add();
          break;
      }
      engine->Tick(absl::Now());
      verdicts.push_back(
          absl::StrCat(static_cast<int>(v.kind), "/", model::RejectReasonName(v.reason)));
    }
    return verdicts;
  }
  // /metrics of this engine alone, windows ending at `now`.
  std::string Metrics(absl::Time now) {
    clock.Set(now);
    auto metrics = std::make_shared<exporter::EngineMetrics>(
        &config, aggregate::FixedShards({&engine->shard()}, {&engine->table()}), &clock);
    return exporter::RenderText({metrics});
  }

  const model::Config& config;
  cases::WatermarkBoard board;
  cases::ManualClock clock;
  std::unique_ptr<PartitionEngine> engine;
};

class PartitionEngineTest : public ::testing::Test {
 protected:
  PartitionEngineTest() : config_(*model::ParseConfig(kConfig, "t.yaml")), decoder_(config_) {}
  model::Config config_;
  ingest::EventDecoder decoder_;
};

TEST_F(PartitionEngineTest, RestoredEngineContinuesExactlyAsTheOriginal) {
  Harness original(config_), restored(config_);
  original.Run(StreamA(), decoder_);
  restored.Run(StreamA(), decoder_);
  const std::string checkpoint = restored.engine->Serialize(/*next_offset=*/7);
  restored.Restore(checkpoint);
  EXPECT_EQ(restored.engine->next_offset(), 7);
  EXPECT_EQ(restored.engine->tracker().open_cases(), 2u);  // c1 (demo), c2 (lead)

  const std::vector<std::string> expected = original.Run(StreamB(), decoder_);
  EXPECT_EQ(restored.Run(StreamB(), decoder_), expected);
  const absl::Time end = absl::FromUnixSeconds(kT0 + 3900);
  EXPECT_EQ(restored.Metrics(end), original.Metrics(end));
  EXPECT_EQ(restored.engine->Serialize(12), original.engine->Serialize(12));

  // The scenario did what it is meant to, so the equalities above mean something.
  EXPECT_EQ(expected[0], "1/empty");        // duplicate event id, remembered across the restore
  EXPECT_EQ(expected[1], "2/case_closed");  // c3 closed before the checkpoint
  // Series as testing::ParseMetrics keys them: labels sorted by name.
  const testing::MetricSamples m = testing::ParseMetrics(restored.Metrics(end));
  // Started: c1 c2 c3 c4 (A) + c5 (B) = 5; completed c3, c1 = 2; fallout c4 = 1.
  EXPECT_EQ(
      testing::Sample(m, "kpid_process_cases_started_total{process=\"sales\",region=\"emea\"}") +
          testing::Sample(m, "kpid_process_cases_started_total{process=\"sales\",region=\"amer\"}"),
      5);
  EXPECT_EQ(
      testing::Sample(m, "kpid_process_cases_completed_total{process=\"sales\",region=\"emea\"}"),
      2);
  // Revenue 50 (c3) + 70 (c1) = 120.
  EXPECT_EQ(testing::Sample(m, "kpid_process_revenue_total{process=\"sales\",region=\"emea\"}"),
            120);
  // c2's lead deadline (10 + 3600 = 3610) passed while restored, with no event of c2: one breach.
  EXPECT_EQ(
      testing::Sample(
          m, "kpid_stage_sla_breaches_total{process=\"sales\",region=\"amer\",stage=\"lead\"}"),
      1);
  // Counts: 7 + 5 messages; accepted 7 + 3; one duplicate; one case_closed.
  const ingest::PartitionStats& s = restored.engine->stats();
  EXPECT_EQ(s.messages.Get(), 12u);
  EXPECT_EQ(s.consumed.Get(), 10u);
  EXPECT_EQ(s.duplicate.Get(), 1u);
  EXPECT_EQ(s.rejected[static_cast<size_t>(model::RejectReason::kCaseClosed)].Get(), 1u);
  EXPECT_EQ(s.watermark_ms.Get(), (kT0 + 3800) * 1000);
}

TEST_F(PartitionEngineTest, RestoredClockResumesAtTheSavedEventTime) {
  Harness saved(config_), restored(config_);
  saved.Run(StreamA(), decoder_);
  restored.Restore(saved.engine->Serialize(7));
  // The last event of StreamA was at 400: the board (readers' clock) is there
  // before any new event.
  EXPECT_EQ(restored.board.MaxMicros(), (kT0 + 400) * 1'000'000);
}

TEST_F(PartitionEngineTest, DamagedStateGivesAnErrorNeverACrash) {
  Harness saved(config_);
  saved.Run(StreamA(), decoder_);
  const std::string bytes = saved.engine->Serialize(7);
  Harness into(config_);
  for (size_t n = 0; n < bytes.size(); n += 7) {
    EXPECT_FALSE(PartitionEngine::Restore(into.Options(), bytes.substr(0, n)).ok()) << n;
  }
  std::string flipped = bytes;
  for (size_t i = 0; i < flipped.size(); i += 13) {
    flipped[i] = static_cast<char>(flipped[i] ^ 0x5a);
    (void)PartitionEngine::Restore(into.Options(), flipped);  // any result but a crash
    flipped[i] = bytes[i];
  }
}

TEST_F(PartitionEngineTest, AnotherPartitionsStateIsRefused) {
  Harness saved(config_);
  saved.Run(StreamA(), decoder_);
  PartitionEngine::Options other = saved.Options();
  other.partition = 5;
  auto restored = PartitionEngine::Restore(other, saved.engine->Serialize(7));
  ASSERT_FALSE(restored.ok());
  EXPECT_THAT(restored.status().message(), HasSubstr("of partition 2, expected 5"));
}

// A reload: stage trial and process support removed, stage qualify added at
// trial's index (matched by id, never by index), lead and demo kept.
constexpr char kConfigBeforeReload[] = R"(
clock: event
windows: [1h, 24h]
case_ttl: 2h
dedup_horizon: 1h
dimensions: {names: [region], max_series_per_process: 100}
processes:
  - id: sales
    stages:
      - {id: lead, sla: 1h}
      - {id: trial, sla: 1h}
      - {id: demo, sla: 2h}
  - id: support
    stages:
      - {id: open, sla: 1h}
)";
constexpr char kConfigAfterReload[] = R"(
clock: event
windows: [1h, 24h]
case_ttl: 2h
dedup_horizon: 1h
dimensions: {names: [region], max_series_per_process: 100}
processes:
  - id: sales
    stages:
      - {id: lead, sla: 1h}
      - {id: qualify, sla: 1h}
      - {id: demo, sla: 2h}
)";

TEST(PartitionEngineReshapeTest, KeptStagesKeepTheirStateNewOnesStartEmptyRemovedOnesAreCounted) {
  using K = ProcessEvent;
  const model::Config before = *model::ParseConfig(kConfigBeforeReload, "before.yaml");
  const model::Config after = *model::ParseConfig(kConfigAfterReload, "after.yaml");
  ingest::EventDecoder decode_before(before);
  ingest::EventDecoder decode_after(after);
  Harness old_shape(before);
  old_shape.Run({{K::STAGE_ENTERED, "c1", "lead", 0},
                 {K::STAGE_ENTERED, "c2", "lead", 10},
                 {K::STAGE_ENTERED, "c3", "lead", 20},
                 {K::STAGE_ENTERED, "c1", "trial", 100},
                 {K::STAGE_ENTERED, "c2", "demo", 200},
                 {K::STAGE_ENTERED, "s1", "open", 300, "", "emea", 0, "support"},
                 {K::STAGE_ENTERED, "s2", "open", 310, "", "emea", 0, "support"}},
                decode_before);
  ASSERT_EQ(old_shape.engine->tracker().open_cases(), 5u);  // c1 c2 c3 s1 s2

  Harness new_shape(after);
  PartitionEngine::Dropped dropped;
  auto reshaped = old_shape.engine->Reshape(new_shape.Options(), /*next_offset=*/7, &dropped);
  ASSERT_TRUE(reshaped.ok()) << reshaped.status();
  new_shape.engine = *std::move(reshaped);
  // c1 sat in trial, s1 and s2 in support: dropped. c2 (demo) and c3 (lead) stay.
  EXPECT_EQ(dropped.open_cases, 3u);
  EXPECT_EQ(new_shape.engine->tracker().open_cases(), 2u);
  // support's interned combinations: all empty (id 0), __other__ (id 1), {emea}.
  EXPECT_EQ(dropped.series, 3u);
  EXPECT_EQ(new_shape.engine->next_offset(), 7);
  // The old engine is left as it was (readers may still hold it).
  EXPECT_EQ(old_shape.engine->tracker().open_cases(), 5u);

  new_shape.Run({{K::STAGE_ENTERED, "c4", "lead", 400},
                 {K::STAGE_ENTERED, "c3", "qualify", 500},
                 // c1 was dropped with trial: this starts a new case.
                 {K::STAGE_ENTERED, "c1", "qualify", 600},
                 {K::CASE_COMPLETED, "c2", "", 700, "", "emea", 50}},
                decode_after);
  const std::string text = new_shape.Metrics(absl::FromUnixSeconds(kT0 + 800));
  const testing::MetricSamples m = testing::ParseMetrics(text);
  auto stage = [&m](const std::string& family, const std::string& stage) {
    return testing::Sample(
        m, absl::StrCat(family, "{process=\"sales\",region=\"emea\",stage=\"", stage, "\"}"));
  };
  // lead: c1 c2 c3 before the reload, c4 after = 4; exits c1 (100) c2 (200), c3 (500) = 3.
  EXPECT_EQ(stage("kpid_stage_entered_total", "lead"), 4);
  EXPECT_EQ(testing::Sample(m,
                            "kpid_stage_exited_total{outcome=\"advanced\",process=\"sales\","
                            "region=\"emea\",stage=\"lead\"}"),
            3);
  // qualify started empty: c3 and the new c1, both after = 2, both still in it.
  EXPECT_EQ(stage("kpid_stage_entered_total", "qualify"), 2);
  EXPECT_EQ(stage("kpid_stage_backlog", "qualify"), 2);
  // demo kept: c2 entered before (1); completed after, so its backlog is 0.
  EXPECT_EQ(stage("kpid_stage_entered_total", "demo"), 1);
  EXPECT_EQ(stage("kpid_stage_backlog", "demo"), 0);
  EXPECT_EQ(stage("kpid_stage_backlog", "lead"), 1);  // c4
  // Started: c1 c2 c3 before, c4 and c1 again after = 5; completed c2 with 50.
  EXPECT_EQ(
      testing::Sample(m, "kpid_process_cases_started_total{process=\"sales\",region=\"emea\"}"), 5);
  EXPECT_EQ(
      testing::Sample(m, "kpid_process_cases_completed_total{process=\"sales\",region=\"emea\"}"),
      1);
  EXPECT_EQ(testing::Sample(m, "kpid_process_revenue_total{process=\"sales\",region=\"emea\"}"),
            50);
  // Nothing of trial or support remains.
  EXPECT_THAT(text, ::testing::Not(HasSubstr("trial")));
  EXPECT_THAT(text, ::testing::Not(HasSubstr("support")));
  // Ingest's counts carry over: 7 messages before, 4 after, all accepted.
  EXPECT_EQ(new_shape.engine->stats().messages.Get(), 11u);
  EXPECT_EQ(new_shape.engine->stats().consumed.Get(), 11u);
}

// clock: wall: an event a producer stamped 10 min ahead of the wall clock is
// accepted (max_future_skew 1h) but must not move the shard's head past now
// plus one 5 s bucket, or the 5m window would read the 10080 s history
// buckets (DESIGN §3). The clock is real here, so the placed event may or may
// not have reached the read's last bucket: 2 or 3 entries.
TEST(PartitionEngineWallClockTest, EventAheadOfTheWallClockKeepsTheFiveMinuteWindow) {
  const model::Config config = *model::ParseConfig(R"(
windows: [5m, 1h, 24h, 7d]
processes:
  - id: sales
    stages:
      - {id: lead, sla: 1h}
)",
                                                   "t.yaml");
  ingest::EventDecoder decoder(config);
  PartitionEngine::Options options;
  options.config = &config;
  PartitionEngine engine(options);
  const int64_t now_s = absl::ToUnixSeconds(absl::Now());
  int n = 0;
  for (const int64_t at : {now_s - 120, now_s - 60, now_s + 600}) {
    ProcessEvent e;
    e.set_event_id(absl::StrCat("e", ++n));
    e.set_process("sales");
    e.set_case_id(absl::StrCat("c", n));
    e.set_kind(ProcessEvent::STAGE_ENTERED);
    e.set_stage("lead");
    e.mutable_occurred_at()->set_seconds(at);
    ingest::DecodedEvent decoded;
    ASSERT_FALSE(decoder.Decode(e.SerializeAsString(), false, &decoded).has_value());
    ASSERT_EQ(engine.Handle(decoded).kind, Verdict::Kind::kAccepted);
  }
  const absl::Time end = absl::Now();
  ASSERT_TRUE(engine.shard().latest().has_value());
  EXPECT_LE(*engine.shard().latest(), absl::ToUnixSeconds(end) + 5);
  const aggregate::WindowSpan span = engine.shard().Resolve(/*window=*/0, end);
  EXPECT_EQ(span.level, 0);  // the 5 s level, not history
  const uint64_t entered = engine.shard().ReadAllDimsWindow(0, span).stages[0].entered;
  EXPECT_GE(entered, 2u);
  EXPECT_LE(entered, 3u);
}

}  // namespace
}  // namespace kpid::engine
