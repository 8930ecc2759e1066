// Rule replacement while the engine thread evaluates, the shard's writer
// changes the backlog and readers render /metrics. Meant to run under
// ThreadSanitizer (KPID_SANITIZE=thread) as well as plainly: TSan checks the
// locking; the assertions check that readers only ever see alerts of a rule
// set that was in force, and that the engine ends with the last one.
#include <atomic>
#include <set>
#include <thread>

#include "daemon/alert/rule_engine.h"
#include "daemon/common/mutex.h"
#include "gtest/gtest.h"

namespace kpid::alert {
namespace {

constexpr char kConfig[] = R"(
windows: [1h]
processes:
  - id: sales
    stages: [{id: lead, sla: 1h}, {id: quote, sla: 1d}]
)";

// Set A: A1 fires whenever there is a lead backlog, A2 always (>= 0).
// Set B: A2 (same identity: keeps its state) and B1.
constexpr char kRulesA[] = R"(groups:
  - name: g
    interval: 1s
    rules:
      - {alert: A1, process: sales, stage: lead, kpi: backlog, op: ">", threshold: 0}
      - {alert: A2, process: sales, stage: quote, kpi: backlog, op: ">=", threshold: 0}
)";
constexpr char kRulesB[] = R"(groups:
  - name: g
    interval: 1s
    rules:
      - {alert: A2, process: sales, stage: quote, kpi: backlog, op: ">=", threshold: 0}
      - {alert: B1, process: sales, stage: lead, kpi: backlog, op: ">=", threshold: 0}
)";

class CountingSink : public AlertSink {
 public:
  void Send(std::vector<AlertNotification> alerts) override {
    kpid::MutexLock lock(&mu_);
    sent_ += alerts.size();
  }
  size_t sent() {
    kpid::MutexLock lock(&mu_);
    return sent_;
  }

 private:
  kpid::Mutex mu_;
  size_t sent_ ABSL_GUARDED_BY(mu_) = 0;
};

TEST(RuleEngineStressTest, ReplacingRulesWhileEvaluatingAndReading) {
  const model::Config config = *model::ParseConfig(kConfig, "kpid.yaml");
  cases::DimensionTable dims(config);
  aggregate::AggregateShard shard(config);
  cases::WallClock clock;
  CountingSink sink;
  const cases::DimsId none = dims.Resolve(0, ingest::Attributes());
  RuleSet initial{*ParseRules(kRulesA, "a.yaml", &config)};
  RuleEngine engine({.config = &config,
                     .rules = &initial,
                     .shard_source = aggregate::FixedShards({&shard}, {&dims}),
                     .window_clock = &clock,
                     .sink = &sink,
                     .resend_interval = absl::Minutes(1),
                     .generator_url = ""});
  engine.Start();

  std::atomic<bool> done{false};
  std::atomic<int> bad_reads{0};
  // The shard's single writer: a lead case comes and goes.
  std::thread writer([&, none] {
    for (int i = 0; !done.load(std::memory_order_relaxed); ++i) {
      shard.BacklogChanged(0, 0, none, i % 2 == 0 ? 1 : -1, 0);
      std::this_thread::yield();
    }
  });
  std::thread reader([&] {
    const std::set<std::string> known = {"A1", "A2", "B1"};
    while (!done.load(std::memory_order_relaxed)) {
      for (const AlertView& a : engine.Alerts()) {
        if (!known.count(a.labels.at("alertname"))) bad_reads.fetch_add(1);
      }
      // A1 and B1 are never in force together.
      std::set<std::string> names;
      for (const auto& family : engine.Collect()) {
        for (const auto& m : family.metric) names.insert(m.label[0].value);
      }
      if (names.count("A1") && names.count("B1")) bad_reads.fetch_add(1);
    }
  });

  for (int i = 0; i < 200; ++i) {
    const char* yaml = i % 2 == 0 ? kRulesB : kRulesA;
    engine.ReplaceRules(RuleSet{*ParseRules(yaml, "r.yaml", &config)}, absl::Now());
    if (i % 20 == 0) engine.RedeliverFiring(absl::Minutes(1), absl::Now());
    std::this_thread::yield();
  }
  // Last: set A (i = 199). Let the engine evaluate it at least once more.
  absl::SleepFor(absl::Milliseconds(50));
  done.store(true);
  writer.join();
  reader.join();
  engine.Stop();

  EXPECT_EQ(bad_reads.load(), 0);
  for (const AlertView& a : engine.Alerts()) EXPECT_NE(a.labels.at("alertname"), "B1");
  EXPECT_GT(sink.sent(), 0u);
}

}  // namespace
}  // namespace kpid::alert
