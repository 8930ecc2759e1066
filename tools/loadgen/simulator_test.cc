#include "tools/loadgen/simulator.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tools/loadgen/sink.h"

namespace kpid::loadgen {
namespace {

using kpid::v1::ProcessEvent;
using ::testing::HasSubstr;

// Process "p": three stages with fallout, rework and (for b) the default
// median of sla/2; process "q": one stage, all defaults.
constexpr absl::string_view kConfig = R"yaml(
kafka: {brokers: "127.0.0.1:9092", topic: events}
dimensions: {names: [region, channel]}
processes:
  - id: p
    stages:
      - {id: a, sla: 1h, simulate: {median: 10m, sigma: 0.5, fallout: 0.1}}
      - {id: b, sla: 2h, simulate: {sigma: 0.4, fallout: 0.5, rework: 0.2}}
      - {id: c, sla: 4h, simulate: {median: 30m, fallout: 0.0, rework: 0.3}}
    simulate:
      arrivals_per_hour: 3600
      deal_median: 20000
      deal_sigma: 0.5
      cost_per_case: 10
      feedback_odds: 0.5
      attributes: {region: [emea, amer]}
  - id: q
    stages: [{id: x, sla: 1m}]
    simulate: {arrivals_per_hour: 60}
)yaml";

model::Config TestConfig() {
  absl::StatusOr<model::Config> config = model::ParseConfig(kConfig, "test.yaml");
  EXPECT_TRUE(config.ok()) << config.status();
  return *config;
}

int64_t Micros(const ProcessEvent& e) {
  return e.occurred_at().seconds() * 1000000 + e.occurred_at().nanos() / 1000;
}

std::string Bytes(const model::Config& config, const SimulatorOptions& options) {
  Simulator sim(config, options);
  std::string all, one;
  ProcessEvent event;
  while (sim.Next(&event)) {
    SerializeDeterministic(event, &one);
    all += one;
  }
  return all;
}

TEST(SimulatorTest, SameSeedSameBytesOtherSeedOrStartOtherBytes) {
  const model::Config config = TestConfig();
  SimulatorOptions options;
  options.seed = 42;
  options.max_events = 5000;
  const std::string first = Bytes(config, options);
  EXPECT_EQ(first, Bytes(config, options));
  EXPECT_GT(first.size(), 5000u * 40);

  SimulatorOptions other_seed = options;
  other_seed.seed = 43;
  EXPECT_NE(first, Bytes(config, other_seed));

  SimulatorOptions other_start = options;
  other_start.start = options.start + absl::Hours(1);
  EXPECT_NE(first, Bytes(config, other_start));
}

TEST(SimulatorTest, StopsAfterMaxEventsAndKeepsTimeOrder) {
  const model::Config config = TestConfig();
  SimulatorOptions options;
  options.max_events = 20000;
  Simulator sim(config, options);
  EXPECT_EQ(sim.now(), options.start);
  ProcessEvent event;
  int64_t last = absl::ToUnixMicros(options.start);
  absl::flat_hash_set<std::string> ids;
  int n = 0;
  while (sim.Next(&event)) {
    ++n;
    ASSERT_GE(Micros(event), last) << event.DebugString();
    last = Micros(event);
    EXPECT_EQ(absl::ToUnixMicros(sim.now()), last);
    EXPECT_TRUE(ids.insert(event.event_id()).second) << "duplicate " << event.event_id();
  }
  EXPECT_EQ(n, 20000);
  EXPECT_EQ(sim.counts().total, 20000);
  EXPECT_EQ(sim.counts().stage_entered + sim.counts().case_completed + sim.counts().case_fallout +
                sim.counts().cost + sim.counts().feedback,
            20000);
  EXPECT_GT(sim.open_cases(), 0);
  EXPECT_FALSE(sim.Next(&event));
}

TEST(SimulatorTest, IdsAreReadable) {
  const model::Config config = TestConfig();
  SimulatorOptions options;
  options.seed = 255;
  options.max_events = 1;
  Simulator sim(config, options);
  ProcessEvent event;
  ASSERT_TRUE(sim.Next(&event));
  EXPECT_EQ(event.event_id(), "ff-1767225600-0");
  ASSERT_TRUE(absl::StartsWith(event.case_id(), event.process() + "-"));
  EXPECT_EQ(event.case_id().size(), event.process().size() + 9);  // "-" + 8 digits
}

TEST(SimulatorTest, CheckOptions) {
  const model::Config config = TestConfig();
  SimulatorOptions options;
  EXPECT_TRUE(Simulator::CheckOptions(config, options).ok());
  options.processes = {"q"};
  EXPECT_TRUE(Simulator::CheckOptions(config, options).ok());
  options.processes = {"q", "nope"};
  absl::Status status = Simulator::CheckOptions(config, options);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("nope"));
}

// A process simulates the same cases alone as beside others (only event ids,
// a global sequence, differ).
TEST(SimulatorTest, SelectedProcessIsIndependentOfTheOthers) {
  const model::Config config = TestConfig();
  auto run = [&](std::vector<std::string> processes) {
    SimulatorOptions options;
    options.processes = std::move(processes);
    Simulator sim(config, options);
    std::vector<std::string> out;
    ProcessEvent event;
    std::string bytes;
    while (sim.Next(&event) &&
           Micros(event) < absl::ToUnixMicros(options.start + absl::Hours(10))) {
      if (event.process() != "q") continue;
      event.clear_event_id();
      SerializeDeterministic(event, &bytes);
      out.push_back(bytes);
    }
    return out;
  };
  const std::vector<std::string> alone = run({"q"});
  EXPECT_GT(alone.size(), 300u);
  EXPECT_EQ(alone, run({}));
}

// Everything a case does, as seen in its events.
struct CaseTrace {
  int64_t started_us = 0;
  std::vector<std::string> stages;  // entered, in order
  std::vector<int64_t> entered_us;
  int terminals = 0;
  bool completed = false;
  bool after_terminal_bad = false;  // a non COST/FEEDBACK event after the end
  int costs = 0;
  int feedbacks = 0;
  std::map<std::string, std::string> attributes;
};

struct Stats {
  // Per stage of "p": exits, fallouts, time-in-stage samples (seconds).
  std::map<std::string, int> exits, fallouts, rework_eligible_exits, rework_exits;
  std::map<std::string, std::vector<double>> sojourn_s;
  std::vector<double> deals;
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

class SimulatorStatsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const model::Config config = TestConfig();
    SimulatorOptions options;
    options.seed = 7;
    start_us_ = absl::ToUnixMicros(options.start);
    // Cases of p arriving in the first 6 hours (~21600) all end well within 40h.
    const int64_t end_us = start_us_ + 40 * 3600 * int64_t{1000000};
    Simulator sim(config, options);
    ProcessEvent e;
    traces_ = new std::map<std::string, CaseTrace>;
    stats_ = new Stats;
    std::map<std::string, int> reworks;
    while (sim.Next(&e) && Micros(e) < end_us) {
      if (e.process() != "p") continue;
      const int64_t t = Micros(e);
      CaseTrace& c = (*traces_)[e.case_id()];
      const bool known = !c.stages.empty();
      if (!known) {
        c.started_us = t;
        c.attributes = {e.attributes().begin(), e.attributes().end()};
      }
      EXPECT_EQ(c.attributes,
                (std::map<std::string, std::string>{e.attributes().begin(), e.attributes().end()}))
          << "attributes change within case " << e.case_id();
      if (c.terminals > 0 && e.kind() != ProcessEvent::COST && e.kind() != ProcessEvent::FEEDBACK) {
        c.after_terminal_bad = true;
      }
      // An exit from the current stage (anything but COST/FEEDBACK after the first event).
      const bool exits =
          known && c.terminals == 0 &&
          (e.kind() == ProcessEvent::STAGE_ENTERED || e.kind() == ProcessEvent::CASE_COMPLETED ||
           e.kind() == ProcessEvent::CASE_FALLOUT);
      if (exits && c.started_us < start_us_ + 6 * 3600 * int64_t{1000000}) {
        const std::string& s = c.stages.back();
        ++stats_->exits[s];
        stats_->sojourn_s[s].push_back((t - c.entered_us.back()) / 1e6);
        if (e.kind() == ProcessEvent::CASE_FALLOUT) ++stats_->fallouts[s];
        if (s != "a" && reworks[e.case_id()] < Simulator::kMaxReworks &&
            e.kind() != ProcessEvent::CASE_FALLOUT) {
          ++stats_->rework_eligible_exits[s];
          if (e.kind() == ProcessEvent::STAGE_ENTERED && e.stage() < s) ++stats_->rework_exits[s];
        }
      }
      switch (e.kind()) {
        case ProcessEvent::STAGE_ENTERED:
          if (known && e.stage() < c.stages.back()) ++reworks[e.case_id()];
          c.stages.push_back(e.stage());
          c.entered_us.push_back(t);
          break;
        case ProcessEvent::CASE_COMPLETED:
          ++c.terminals;
          c.completed = true;
          stats_->deals.push_back(e.amount());
          EXPECT_DOUBLE_EQ(e.amount(), std::round(e.amount() * 100) / 100);
          break;
        case ProcessEvent::CASE_FALLOUT:
          ++c.terminals;
          EXPECT_THAT(e.reason(), ::testing::AnyOf("lost", "rejected", "abandoned"));
          break;
        case ProcessEvent::COST:
          ++c.costs;
          EXPECT_EQ(e.amount(), 10);
          break;
        case ProcessEvent::FEEDBACK:
          ++c.feedbacks;
          EXPECT_GE(e.score(), 0);
          EXPECT_LE(e.score(), 10);
          EXPECT_EQ(e.score(), std::floor(e.score()));
          break;
        default:
          ADD_FAILURE() << "unexpected kind " << e.DebugString();
      }
    }
  }
  static void TearDownTestSuite() {
    delete traces_;
    delete stats_;
  }

  // Cases that arrived in the first 6 hours: all of them have ended.
  template <typename F>
  static void ForEarlyCases(F f) {
    for (const auto& [id, c] : *traces_) {
      if (c.started_us < start_us_ + 6 * 3600 * int64_t{1000000}) f(id, c);
    }
  }

  static inline int64_t start_us_ = 0;
  static inline std::map<std::string, CaseTrace>* traces_ = nullptr;
  static inline Stats* stats_ = nullptr;
};

TEST_F(SimulatorStatsTest, CasesFollowTheStages) {
  const std::vector<std::string> order = {"a", "b", "c"};
  int cases = 0;
  ForEarlyCases([&](const std::string& id, const CaseTrace& c) {
    ++cases;
    ASSERT_FALSE(c.stages.empty()) << id;
    EXPECT_EQ(c.stages.front(), "a") << id;
    EXPECT_EQ(c.terminals, 1) << id;
    EXPECT_FALSE(c.after_terminal_bad) << id;
    int reworks = 0;
    for (size_t i = 1; i < c.stages.size(); ++i) {
      const int from = std::find(order.begin(), order.end(), c.stages[i - 1]) - order.begin();
      const int to = std::find(order.begin(), order.end(), c.stages[i]) - order.begin();
      EXPECT_TRUE(to == from + 1 || to == from - 1) << id << ": " << from << "->" << to;
      if (to == from - 1) ++reworks;
    }
    EXPECT_LE(reworks, Simulator::kMaxReworks) << id;
    if (c.completed) {
      EXPECT_EQ(c.stages.back(), "c") << id;
      EXPECT_EQ(c.costs, 1) << id;
      EXPECT_LE(c.feedbacks, 1) << id;
    } else {
      EXPECT_EQ(c.costs + c.feedbacks, 0) << id;
    }
    EXPECT_THAT(c.attributes.at("region"), ::testing::AnyOf("emea", "amer"));
    EXPECT_THAT(c.attributes.at("channel"),
                ::testing::AnyOf("channel_a", "channel_b", "channel_c"));
    EXPECT_EQ(c.attributes.size(), 2u);
  });
  EXPECT_GT(cases, 20000);
}

TEST_F(SimulatorStatsTest, ArrivalsFollowTheRate) {
  int early = 0;
  ForEarlyCases([&](const std::string&, const CaseTrace&) { ++early; });
  EXPECT_NEAR(early, 6 * 3600, 6 * 3600 * 0.05);
}

TEST_F(SimulatorStatsTest, FalloutAndReworkOdds) {
  ASSERT_GT(stats_->exits["b"], 5000);
  EXPECT_NEAR(static_cast<double>(stats_->fallouts["b"]) / stats_->exits["b"], 0.5, 0.03);
  EXPECT_NEAR(static_cast<double>(stats_->fallouts["a"]) / stats_->exits["a"], 0.1, 0.02);
  EXPECT_EQ(stats_->fallouts["c"], 0);
  // Among the exits that were free to go back: rework odds of b and c.
  EXPECT_NEAR(static_cast<double>(stats_->rework_exits["b"]) / stats_->rework_eligible_exits["b"],
              0.2, 0.03);
  EXPECT_NEAR(static_cast<double>(stats_->rework_exits["c"]) / stats_->rework_eligible_exits["c"],
              0.3, 0.03);
}

TEST_F(SimulatorStatsTest, TimeInStageHasTheConfiguredMedian) {
  EXPECT_NEAR(Median(stats_->sojourn_s["a"]), 600, 60);    // simulate.median: 10m
  EXPECT_NEAR(Median(stats_->sojourn_s["b"]), 3600, 360);  // sla / 2
  EXPECT_NEAR(Median(stats_->sojourn_s["c"]), 1800, 180);  // simulate.median: 30m
}

TEST_F(SimulatorStatsTest, DealsAndFeedback) {
  ASSERT_GT(stats_->deals.size(), 3000u);
  EXPECT_NEAR(Median(stats_->deals), 20000, 2000);
  int completed = 0, feedback = 0;
  ForEarlyCases([&](const std::string&, const CaseTrace& c) {
    if (!c.completed) return;
    ++completed;
    feedback += c.feedbacks;
  });
  EXPECT_NEAR(static_cast<double>(feedback) / completed, 0.5, 0.05);
}

TEST(SimulatorTest, SerializationIsDeterministicDespiteMapOrder) {
  ProcessEvent a;
  ProcessEvent b;
  for (int i = 0; i < 30; ++i) (*a.mutable_attributes())[absl::StrCat("k", i)] = "v";
  for (int i = 29; i >= 0; --i) (*b.mutable_attributes())[absl::StrCat("k", i)] = "v";
  std::string sa, sb, ja, jb;
  SerializeDeterministic(a, &sa);
  SerializeDeterministic(b, &sb);
  EXPECT_EQ(sa, sb);
  ASSERT_TRUE(ToJsonDeterministic(a, &ja).ok());
  ASSERT_TRUE(ToJsonDeterministic(b, &jb).ok());
  EXPECT_EQ(ja, jb);
  EXPECT_THAT(ja, HasSubstr(R"("k0":"v","k1":"v","k10":"v")"));
}

}  // namespace
}  // namespace kpid::loadgen
