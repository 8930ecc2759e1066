#include "daemon/export/engine_metrics.h"

#include <cmath>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "daemon/aggregate/aggregate_shard.h"
#include "daemon/cases/clock.h"
#include "daemon/cases/dimension_table.h"
#include "daemon/export/text_writer.h"
#include "daemon/ingest/event_view_testing.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/text_serializer.h"
#include "tests/testing/process.h"

namespace kpid::exporter {
namespace {

using cases::ExitOutcome;
using ::testing::HasSubstr;
using testing::MetricSamples;
using testing::ParseMetrics;

const absl::Time kNow = absl::FromUnixSeconds(1767225600);
constexpr int kLeadToCash = 0, kSupport = 1;
constexpr int kLead = 0, kQuote = 1;

model::Config TestConfig() {
  model::Config c;
  c.windows = {absl::Minutes(5), absl::Hours(1), absl::Hours(24)};
  c.retention = absl::Hours(48);
  c.dimensions.names = {"region", "channel"};
  // Two combinations per process and worker (all-empty and __other__ come on top).
  c.dimensions.max_series_per_process = 2;
  model::ProcessConfig ltc;
  ltc.id = "lead_to_cash";
  ltc.stages = {{"lead", absl::Hours(1), {}}, {"quote", absl::Hours(24), {}}};
  model::ProcessConfig support;
  support.id = "support";
  support.stages = {{"open", absl::Minutes(30), {}}, {"resolved", absl::Hours(1), {}}};
  c.processes = {ltc, support};
  return c;
}

ingest::OwnedAttributes Dims(const std::string& region, const std::string& channel) {
  return ingest::MakeAttributes({{"region", region}, {"channel", channel}});
}

// A dimension value that needs every escape of the text format.
const char kOddRegion[] = "we\"ird\\x\ny";

// Two workers, two processes, several dimension combinations (one of them
// in both workers under different DimsIds, one needing escapes, one folded
// into __other__), facts in every window and outside the short ones.
class EngineMetricsTest : public ::testing::Test {
 protected:
  EngineMetricsTest() : config_(TestConfig()), clock_(kNow) {
    for (int w = 0; w < 2; ++w) {
      tables_.push_back(std::make_unique<cases::DimensionTable>(config_));
      shards_.push_back(std::make_unique<aggregate::AggregateShard>(config_));
    }
    cases::DimensionTable& t0 = *tables_[0];
    cases::DimensionTable& t1 = *tables_[1];
    aggregate::AggregateShard& s0 = *shards_[0];
    aggregate::AggregateShard& s1 = *shards_[1];

    // Worker 0, lead_to_cash, emea/web: a case started 10 s ago that left
    // `lead` after 30 min within SLA, and completed 5 s ago for 0.1.
    const cases::DimsId emea0 = t0.Resolve(kLeadToCash, Dims("emea", "web"));
    s0.CaseStarted(kLeadToCash, emea0, kNow - absl::Seconds(10));
    s0.StageEntered(kLeadToCash, kLead, emea0, kNow - absl::Seconds(10), false);
    s0.StageExited(kLeadToCash, kLead, emea0, kNow - absl::Seconds(5), ExitOutcome::kAdvanced,
                   absl::Minutes(30), true);
    s0.Transition(kLeadToCash, kLead, kQuote, kNow - absl::Seconds(5));
    s0.StageEntered(kLeadToCash, kQuote, emea0, kNow - absl::Seconds(5), false);
    s0.StageExited(kLeadToCash, kQuote, emea0, kNow - absl::Seconds(5), ExitOutcome::kAdvanced,
                   absl::Seconds(1), true);
    s0.CaseCompleted(kLeadToCash, emea0, kNow - absl::Seconds(5), 0.1, absl::Hours(2));
    s0.Cost(kLeadToCash, emea0, kNow - absl::Seconds(5), 0.2);
    s0.Feedback(kLeadToCash, emea0, kNow - absl::Seconds(5), 9);

    // Worker 1: the odd region first, so emea/web gets another DimsId here.
    const cases::DimsId odd1 = t1.Resolve(kLeadToCash, Dims(kOddRegion, "sh\\op"));
    const cases::DimsId emea1 = t1.Resolve(kLeadToCash, Dims("emea", "web"));
    EXPECT_NE(odd1, emea1);
    // emea/web: started and completed 2 h ago for 0.2 (in 1d only); one in
    // `quote` now, past its deadline.
    s1.CaseStarted(kLeadToCash, emea1, kNow - absl::Hours(2));
    s1.CaseCompleted(kLeadToCash, emea1, kNow - absl::Hours(2), 0.2, absl::Hours(3));
    s1.BacklogChanged(kLeadToCash, kQuote, emea1, +1, +1);
    s1.SlaBreached(kLeadToCash, kQuote, emea1, kNow - absl::Minutes(1));
    // The odd region: a fallout from `lead` 30 min ago after 2 h (SLA missed).
    s1.CaseStarted(kLeadToCash, odd1, kNow - absl::Hours(3));
    s1.StageEntered(kLeadToCash, kLead, odd1, kNow - absl::Hours(3), false);
    s1.StageExited(kLeadToCash, kLead, odd1, kNow - absl::Minutes(30), ExitOutcome::kFallout,
                   absl::Hours(2), false);
    s1.CaseFallout(kLeadToCash, odd1, kNow - absl::Minutes(30));
    // A third combination for support folds into __other__.
    for (const char* region : {"a", "b", "c"}) {
      const cases::DimsId d = t1.Resolve(kSupport, Dims(region, "x"));
      s1.CaseStarted(kSupport, d, kNow - absl::Minutes(1));
      s1.StageEntered(kSupport, 0, d, kNow - absl::Minutes(1), false);
      s1.BacklogChanged(kSupport, 0, d, +1, 0);
    }

    std::vector<const aggregate::AggregateShard*> shards;
    std::vector<const cases::DimensionTable*> tables;
    for (int w = 0; w < 2; ++w) {
      shards.push_back(shards_[static_cast<size_t>(w)].get());
      tables.push_back(tables_[static_cast<size_t>(w)].get());
    }
    metrics_ = std::make_shared<EngineMetrics>(&config_, shards, tables, &clock_);
  }

  std::string Direct() const { return RenderText({metrics_}); }

  model::Config config_;
  cases::ManualClock clock_;
  std::vector<std::unique_ptr<cases::DimensionTable>> tables_;
  std::vector<std::unique_ptr<aggregate::AggregateShard>> shards_;
  std::shared_ptr<EngineMetrics> metrics_;
};

TEST_F(EngineMetricsTest, DirectTextHasTheSamplesOfCollectThroughTextSerializer) {
  const MetricSamples direct = ParseMetrics(Direct());
  const MetricSamples reference =
      ParseMetrics(prometheus::TextSerializer().Serialize(metrics_->Collect()));
  ASSERT_GT(reference.size(), 300u);
  ASSERT_EQ(direct.size(), reference.size());
  for (auto d = direct.begin(), r = reference.begin(); d != direct.end(); ++d, ++r) {
    ASSERT_EQ(d->first, r->first);
    // prometheus-cpp 1.0 prints 16 significant digits; the direct text the
    // shortest exact form (checked exactly below).
    EXPECT_NEAR(d->second, r->second, 1e-15 * std::fabs(r->second)) << d->first;
  }
}

TEST_F(EngineMetricsTest, DirectTextIsCollectWrittenByTheSameFormatter) {
  // The same samples, order and bytes whether the walk writes text directly
  // or MetricFamily objects that are then formatted.
  TextWriter from_families;
  from_families.AddFamilies(metrics_->Collect());
  EXPECT_EQ(Direct(), std::move(from_families).Finish());
}

TEST_F(EngineMetricsTest, EachFamilyOnceWithItsSamplesTogether) {
  std::set<std::string> seen;
  std::string family;
  for (absl::string_view line : absl::StrSplit(Direct(), '\n', absl::SkipEmpty())) {
    if (absl::StartsWith(line, "# TYPE ")) {
      std::vector<std::string> parts = absl::StrSplit(line, ' ');
      ASSERT_EQ(parts.size(), 4u) << line;
      family = parts[2];
      EXPECT_TRUE(seen.insert(family).second) << "second TYPE for " << family;
      continue;
    }
    if (absl::StartsWith(line, "#")) continue;
    ASSERT_FALSE(family.empty()) << line;
    EXPECT_TRUE(absl::StartsWith(line, family)) << line << " under " << family;
  }
  // Process totals 7 + lead-time histogram + stage totals 7 + exited +
  // cycle-time histogram + process windows 10 + stage windows 10 +
  // transitions + 2 quantile summaries + folded.
  EXPECT_EQ(seen.size(), 41u);
}

// Sample values by series; a missing series fails the test (and reads NaN).
class Samples {
 public:
  explicit Samples(MetricSamples samples) : samples_(std::move(samples)) {}
  double at(const std::string& series) const {
    auto it = samples_.find(series);
    if (it != samples_.end()) return it->second;
    ADD_FAILURE() << "no sample " << series;
    return std::nan("");
  }
  size_t count(const std::string& series) const { return samples_.count(series); }

 private:
  MetricSamples samples_;
};

TEST_F(EngineMetricsTest, HandComputedValues) {
  const std::string text = Direct();
  const Samples m(ParseMetrics(text));
  const std::string emea = R"(channel="web",process="lead_to_cash",region="emea")";
  // One case started on each worker under the same values: 1 + 1.
  EXPECT_EQ(m.at("kpid_process_cases_started_total{" + emea + "}"), 2);
  // Revenue 0.1 (worker 0) + 0.2 (worker 1), exactly as doubles add.
  EXPECT_EQ(m.at("kpid_process_revenue_total{" + emea + "}"), 0.1 + 0.2);
  EXPECT_THAT(text, HasSubstr("} 0.30000000000000004\n"));
  // Completed in 5m and 1h: worker 0's only (5 s ago); in 1d: both (2 h ago).
  EXPECT_EQ(m.at("kpid_window_process_completed{" + emea + ",window=\"5m\"}"), 1);
  EXPECT_EQ(m.at("kpid_window_process_completed{" + emea + ",window=\"1h\"}"), 1);
  EXPECT_EQ(m.at("kpid_window_process_completed{" + emea + ",window=\"1d\"}"), 2);
  // avg_deal over 1d: (0.1 + 0.2) / 2.
  EXPECT_EQ(m.at("kpid_window_process_avg_deal{" + emea + ",window=\"1d\"}"), (0.1 + 0.2) / 2);
  // win_ratio: no fallout for emea/web; the odd region's only case fell out.
  EXPECT_EQ(m.at("kpid_window_process_win_ratio{" + emea + ",window=\"1d\"}"), 1);
  const std::string odd = R"(channel="sh\\op",process="lead_to_cash",region="we\"ird\\x\ny")";
  EXPECT_EQ(m.at("kpid_window_process_win_ratio{" + odd + ",window=\"1h\"}"), 0);
  // No completions for the odd region: avg_deal absent, not 0 or NaN.
  EXPECT_EQ(m.count("kpid_window_process_avg_deal{" + odd + ",window=\"1h\"}"), 0u);
  // The fallout from lead: 30 min ago, so in 1h and 1d but not 5m.
  const std::string odd_lead =
      R"(channel="sh\\op",process="lead_to_cash",region="we\"ird\\x\ny",stage="lead")";
  EXPECT_EQ(m.at(R"(kpid_stage_exited_total{channel="sh\\op",outcome="fallout",)"
                 R"(process="lead_to_cash",region="we\"ird\\x\ny",stage="lead"})"),
            1);
  EXPECT_EQ(m.at("kpid_window_stage_fallout_ratio{" + odd_lead + ",window=\"1h\"}"), 1);
  EXPECT_EQ(m.count("kpid_window_stage_fallout_ratio{" + odd_lead + ",window=\"5m\"}"), 0u);
  // Its 2 h cycle time: buckets le=3600 0, le=7200 1 (le is inclusive).
  auto cycle_bucket = [](const std::string& le) {
    return absl::StrCat(R"(kpid_stage_cycle_time_seconds_bucket{channel="sh\\op",le=")", le,
                        R"(",process="lead_to_cash",region="we\"ird\\x\ny",stage="lead"})");
  };
  EXPECT_EQ(m.at(cycle_bucket("3600")), 0);
  EXPECT_EQ(m.at(cycle_bucket("7200")), 1);
  EXPECT_EQ(m.at(cycle_bucket("+Inf")), 1);
  // Backlog over SLA in quote, from worker 1 only.
  EXPECT_EQ(m.at("kpid_stage_backlog_over_sla{" + emea + ",stage=\"quote\"}"), 1);
  EXPECT_EQ(m.at("kpid_stage_sla_breaches_total{" + emea + ",stage=\"quote\"}"), 1);
  // lead -> quote once (worker 0); no other transition is written.
  EXPECT_EQ(m.at(R"(kpid_transitions_total{from="lead",process="lead_to_cash",to="quote"})"), 1);
  // Support: a and b fit (max 2 combinations); c folds into __other__.
  EXPECT_EQ(m.at(R"(kpid_series_folded_total{process="support"})"), 1);
  EXPECT_EQ(m.at(R"(kpid_process_open_cases{channel="__other__",process="support",)"
                 R"(region="__other__"})"),
            1);
  // lead cycle-time quantiles over 1h (all dims): exits of 30 min and 2 h;
  // nearest-rank p50 is the first, within the distribution's 1%.
  EXPECT_NEAR(m.at(R"(kpid_window_stage_cycle_time_seconds{process="lead_to_cash",quantile="0.5",)"
                   R"(stage="lead",window="1h"})"),
              1800, 18);
  EXPECT_EQ(
      m.at(R"(kpid_window_stage_cycle_time_seconds_count{process="lead_to_cash",stage="lead",)"
           R"(window="1h"})"),
      2);
}

// Scrapes read through the series read cache: what changed since the last
// scrape (a fact, a window that moved on) shows, and every scrape equals one
// that reads every series afresh.
TEST_F(EngineMetricsTest, CachedScrapesEqualFreshReads) {
  std::vector<const aggregate::AggregateShard*> shards = {shards_[0].get(), shards_[1].get()};
  std::vector<const cases::DimensionTable*> tables = {tables_[0].get(), tables_[1].get()};
  auto uncached = std::make_shared<EngineMetrics>(&config_, shards, tables, &clock_);
  uncached->set_cache_window_reads(false);
  const std::string emea = R"(channel="web",process="lead_to_cash",region="emea")";

  const std::string first = Direct();
  EXPECT_EQ(first, RenderText({uncached}));
  EXPECT_EQ(Direct(), first);  // all from the cache

  // Worker 1 starts another emea/web case now: 1 + 1 + 1 started.
  const cases::DimsId emea1 = tables_[1]->Resolve(kLeadToCash, Dims("emea", "web"));
  shards_[1]->CaseStarted(kLeadToCash, emea1, kNow);
  const std::string second = Direct();
  EXPECT_EQ(second, RenderText({uncached}));
  const Samples m(ParseMetrics(second));
  EXPECT_EQ(m.at("kpid_process_cases_started_total{" + emea + "}"), 3);
  EXPECT_EQ(m.at("kpid_window_process_started{" + emea + ",window=\"5m\"}"), 2);

  // 10 minutes on, nothing written: the 5m window has moved past both
  // starts (10 min and 10 min 10 s ago), the 1h window has not.
  clock_.Advance(absl::Minutes(10));
  const std::string third = Direct();
  EXPECT_EQ(third, RenderText({uncached}));
  const Samples later(ParseMetrics(third));
  EXPECT_EQ(later.at("kpid_window_process_started{" + emea + ",window=\"5m\"}"), 0);
  EXPECT_EQ(later.at("kpid_window_process_started{" + emea + ",window=\"1h\"}"), 2);
}

// The text cache against formatting every line, over an engine that
// changes between scrapes in every way that changes lines: facts, windows
// sliding with no fact, a new series, other shards under another config (a
// reshape: a new ShardSet generation) and back. Each scrape's bytes must be
// those of a fresh rendering.
class TextCacheTest : public EngineMetricsTest, public ::testing::WithParamInterface<size_t> {};

// With chunks of 128 KB (every family one chunk here), 300 bytes (about a
// series each) and 1000 bytes (a few series each).
INSTANTIATE_TEST_SUITE_P(ChunkBytes, TextCacheTest, ::testing::Values(128 << 10, 300, 1000));

TEST_P(TextCacheTest, GivesTheBytesOfAFreshRendering) {
  // Config generation 2: one worker's shard under a config with other windows.
  model::Config reshaped = TestConfig();
  reshaped.windows = {absl::Minutes(10), absl::Hours(2)};
  auto reshaped_config = std::make_shared<const model::Config>(reshaped);
  cases::DimensionTable reshaped_table(reshaped);
  aggregate::AggregateShard reshaped_shard(reshaped);
  const cases::DimsId apac = reshaped_table.Resolve(kLeadToCash, Dims("apac", "web"));
  reshaped_shard.CaseStarted(kLeadToCash, apac, kNow - absl::Minutes(7));

  aggregate::ShardSet first;
  first.shards = {shards_[0].get(), shards_[1].get()};
  first.tables = {tables_[0].get(), tables_[1].get()};
  first.generation = 1;
  aggregate::ShardSet second;
  second.shards = {&reshaped_shard};
  second.tables = {&reshaped_table};
  second.config = reshaped_config;
  second.generation = 2;
  aggregate::ShardSet current = first;
  const aggregate::ShardSource source = [&current] { return current; };
  auto cached = std::make_shared<EngineMetrics>(&config_, source, &clock_);
  cached->set_text_chunk_bytes(GetParam());
  auto fresh = std::make_shared<EngineMetrics>(&config_, source, &clock_);
  fresh->set_cache_window_reads(false);
  // As HttpServer renders: into the last body's own text, the kept lines shared.
  TextBody body;
  auto scrape = [&] {
    body = RenderBody({cached}, std::move(body).TakeText());
    const EngineMetrics::TextCacheStats stats = cached->text_cache_stats();
    TextBody again = RenderBody({cached}, {});  // the same, all kept
    EXPECT_EQ(cached->text_cache_stats().rendered, 0u);
    EXPECT_EQ(std::move(again).Flatten(), RenderText({fresh}));
    return stats;
  };
  // Every line formatted, then none: 2 processes; lead_to_cash has 2 series
  // (emea/web, the odd one) x 2 stages, support 3 (a, b, __other__) x 2
  // stages: 5 process series + 10 stage series.
  auto stats = scrape();
  EXPECT_EQ(stats.rendered, 15u);
  EXPECT_EQ(scrape().kept, 15u);
  const std::string initial = RenderText({fresh});
  EXPECT_EQ(RenderText({cached}), initial);

  // A case started now in worker 1 for emea/web: only that process series'
  // counts change (its stage series have no fact from it).
  const cases::DimsId emea1 = tables_[1]->Resolve(kLeadToCash, Dims("emea", "web"));
  shards_[1]->CaseStarted(kLeadToCash, emea1, kNow);
  stats = scrape();
  EXPECT_EQ(stats.rendered, 1u);
  EXPECT_EQ(stats.kept, 14u);
  EXPECT_NE(RenderText({cached}), initial);

  // A case started in the odd series only: not the first series of any
  // chunk of lines, so a chunk must be rebuilt for a series in its middle.
  const cases::DimsId odd1 = tables_[1]->Resolve(kLeadToCash, Dims(kOddRegion, "sh\\op"));
  shards_[1]->CaseStarted(kLeadToCash, odd1, kNow);
  stats = scrape();
  EXPECT_EQ(stats.rendered, 1u);
  EXPECT_EQ(stats.kept, 14u);

  // A fact that changes no value (a backlog change of 0 bumps the series'
  // version): the series is read again, and its values, written in place of
  // the last scrape's, compare equal: no line formatted.
  shards_[1]->BacklogChanged(kLeadToCash, 0, odd1, 0, 0);
  stats = scrape();
  EXPECT_EQ(stats.rendered, 0u);
  EXPECT_EQ(stats.kept, 15u);

  // A body still being sent while two later scrapes rebuild its chunks:
  // its lines stay as they were (their memory is reused only once no body
  // refers to them).
  TextBody held = RenderBody({cached}, {});
  const std::string held_text = RenderText({fresh});
  for (int i = 0; i < 2; ++i) {
    shards_[1]->CaseStarted(kLeadToCash, odd1, kNow);
    EXPECT_EQ(scrape().rendered, 1u);
  }
  EXPECT_EQ(std::move(held).Flatten(), held_text);

  // Another, read first by a Collect() (a pass of the read cache that the
  // text cache did not see), then scraped: its lines must change even though
  // the read cache now holds the series as read.
  shards_[1]->CaseStarted(kLeadToCash, emea1, kNow);
  ASSERT_FALSE(cached->Collect().empty());
  stats = scrape();
  EXPECT_EQ(stats.rendered, 1u);
  EXPECT_EQ(stats.kept, 14u);

  // Time passes with no fact: within a 5 s bucket nothing moves; then the
  // windows slide past the facts minute by minute (the 5m window drops
  // emea/web's and support's facts of 10 s and 1 min ago at some step).
  uint64_t rendered_while_sliding = 0;
  clock_.Advance(absl::Seconds(2));
  EXPECT_EQ(scrape().rendered, 0u);
  for (int minute = 0; minute < 8; ++minute) {
    clock_.Advance(absl::Minutes(1));
    rendered_while_sliding += scrape().rendered;
  }
  EXPECT_GT(rendered_while_sliding, 0u);

  // A new series in worker 0 (lead_to_cash has room for a second there):
  // the series list changes, so the process's lines are all formatted.
  const cases::DimsId apac0 = tables_[0]->Resolve(kLeadToCash, Dims("apac", "web"));
  shards_[0]->CaseStarted(kLeadToCash, apac0, clock_.Now());
  stats = scrape();
  EXPECT_EQ(stats.rendered, 3u * 3u);  // lead_to_cash: 3 series + 6 stage series
  EXPECT_EQ(stats.kept, 9u);           // support's

  // A reshape: other shards under another config (other windows), then back.
  current = second;
  stats = scrape();
  EXPECT_EQ(stats.kept, 0u);
  current = first;
  current.generation = 3;
  stats = scrape();
  EXPECT_EQ(stats.kept, 0u);
  EXPECT_EQ(scrape().kept, 18u);

  // What HttpServer sent last, whole.
  EXPECT_EQ(std::move(body).Flatten(), RenderText({fresh}));
}

}  // namespace
}  // namespace kpid::exporter
