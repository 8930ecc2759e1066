#include "daemon/export/open_cases_metrics.h"

#include <map>
#include <string>

#include "gtest/gtest.h"

namespace kpid::exporter {
namespace {

constexpr int64_t kT0 = 1'008'000'000;
absl::Time T(int64_t offset_s) { return absl::FromUnixSeconds(kT0 + offset_s); }

model::Config TwoProcesses() {
  absl::StatusOr<model::Config> config = model::ParseConfig(
      "processes:\n"
      "  - id: p\n"
      "    stages: [{id: a, sla: 10m}, {id: b, sla: 1h}]\n"
      "  - id: q\n"
      "    stages: [{id: c, sla: 10m}]\n",
      "t.yaml");
  EXPECT_TRUE(config.ok()) << config.status();
  return *config;
}

// "process/stage" -> age in seconds.
std::map<std::string, double> Ages(const OpenCasesMetrics& metrics) {
  std::map<std::string, double> out;
  for (const prometheus::MetricFamily& f : metrics.Collect()) {
    if (f.name != "kpid_stage_oldest_case_age_seconds") continue;
    EXPECT_EQ(f.type, prometheus::MetricType::Gauge);
    for (const prometheus::ClientMetric& m : f.metric) {
      EXPECT_EQ(m.label.size(), 2u);
      out[m.label[0].value + "/" + m.label[1].value] = m.gauge.value;
    }
  }
  return out;
}

// process -> kpid_process_cases_evicted_total.
std::map<std::string, double> Evicted(const OpenCasesMetrics& metrics) {
  std::map<std::string, double> out;
  for (const prometheus::MetricFamily& f : metrics.Collect()) {
    if (f.name != "kpid_process_cases_evicted_total") continue;
    EXPECT_EQ(f.type, prometheus::MetricType::Counter);
    for (const prometheus::ClientMetric& m : f.metric) {
      EXPECT_EQ(m.label.size(), 1u);
      out[m.label[0].value] = m.counter.value;
    }
  }
  return out;
}

std::shared_ptr<const cases::OpenCasesView> View(
    std::vector<std::vector<absl::optional<absl::Time>>> oldest,
    std::vector<uint64_t> evicted = {}) {
  auto view = std::make_shared<cases::OpenCasesView>();
  view->as_of = T(0);
  view->oldest_entered = std::move(oldest);
  view->evicted = std::move(evicted);
  return view;
}

TEST(OpenCasesMetricsTest, OldestOverEveryWorkerAtTheScrapesNow) {
  const model::Config config = TwoProcesses();
  cases::ManualClock clock(T(1000));
  // Worker 0: p/a since T(100), p/b empty, q/c since T(900).
  // Worker 1: p/a since T(40), p/b since T(990), q/c empty.
  // A third worker has published nothing yet.
  std::vector<std::shared_ptr<const cases::OpenCasesView>> views = {
      View({{T(100), absl::nullopt}, {T(900)}}),
      View({{T(40), T(990)}, {absl::nullopt}}),
      nullptr,
  };
  OpenCasesMetrics metrics(
      &config, [&] { return views; }, &clock);
  // p/a: the older of T(100) and T(40): 1000 - 40 = 960 s; p/b: 1000 - 990 = 10;
  // q/c: 1000 - 900 = 100.
  EXPECT_EQ(Ages(metrics),
            (std::map<std::string, double>{{"p/a", 960}, {"p/b", 10}, {"q/c", 100}}));
  // Between Ticks the views stay; the age grows with the clock: + 5 s each.
  clock.Advance(absl::Seconds(5));
  EXPECT_EQ(Ages(metrics),
            (std::map<std::string, double>{{"p/a", 965}, {"p/b", 15}, {"q/c", 105}}));
}

TEST(OpenCasesMetricsTest, NoOpenCaseNoSample) {
  const model::Config config = TwoProcesses();
  cases::ManualClock clock(T(1000));
  std::vector<std::shared_ptr<const cases::OpenCasesView>> views = {
      View({{absl::nullopt, absl::nullopt}, {absl::nullopt}})};
  OpenCasesMetrics metrics(
      &config, [&] { return views; }, &clock);
  EXPECT_TRUE(Ages(metrics).empty());
  // A case entered after the clock's now (event clocks of two workers) is 0 s old, never negative.
  views = {View({{T(1010), absl::nullopt}, {absl::nullopt}})};
  EXPECT_EQ(Ages(metrics), (std::map<std::string, double>{{"p/a", 0}}));
}

TEST(OpenCasesMetricsTest, EvictionsAreSummedOverWorkersPerProcess) {
  const model::Config config = TwoProcesses();
  cases::ManualClock clock(T(1000));
  std::vector<std::shared_ptr<const cases::OpenCasesView>> views = {
      View({{absl::nullopt, absl::nullopt}, {absl::nullopt}}, {0, 0}),
      nullptr,
  };
  OpenCasesMetrics metrics(
      &config, [&] { return views; }, &clock);
  // Before any eviction every process has its 0 sample.
  EXPECT_EQ(Evicted(metrics), (std::map<std::string, double>{{"p", 0}, {"q", 0}}));
  // Worker 0 evicted 3 of p and 1 of q, worker 1 5 of p: p = 3 + 5 = 8, q = 1.
  views = {View({{absl::nullopt, absl::nullopt}, {absl::nullopt}}, {3, 1}),
           View({{absl::nullopt, absl::nullopt}, {absl::nullopt}}, {5, 0})};
  EXPECT_EQ(Evicted(metrics), (std::map<std::string, double>{{"p", 8}, {"q", 1}}));
}

TEST(OpenCasesMetricsTest, ForgottenIdsAreSummedOverWorkersPerSet) {
  const model::Config config = TwoProcesses();
  cases::ManualClock clock(T(1000));
  auto forgot = [](uint64_t event_ids, uint64_t closed_cases) {
    auto view = std::make_shared<cases::OpenCasesView>();
    view->event_ids_forgotten = event_ids;
    view->closed_cases_forgotten = closed_cases;
    return std::shared_ptr<const cases::OpenCasesView>(std::move(view));
  };
  // Worker 0 forgot 7 event ids and 2 closed cases, worker 1 4 and 0; a
  // third has published nothing: event_ids = 7 + 4 = 11, closed_cases = 2.
  std::vector<std::shared_ptr<const cases::OpenCasesView>> views = {forgot(7, 2), forgot(4, 0),
                                                                    nullptr};
  OpenCasesMetrics metrics(
      &config, [&] { return views; }, &clock);
  std::map<std::string, double> forgotten;
  for (const prometheus::MetricFamily& f : metrics.Collect()) {
    if (f.name != "kpid_dedup_forgotten_total") continue;
    EXPECT_EQ(f.type, prometheus::MetricType::Counter);
    for (const prometheus::ClientMetric& m : f.metric) {
      ASSERT_EQ(m.label.size(), 1u);
      EXPECT_EQ(m.label[0].name, "set");
      forgotten[m.label[0].value] = m.counter.value;
    }
  }
  EXPECT_EQ(forgotten, (std::map<std::string, double>{{"closed_cases", 2}, {"event_ids", 11}}));
}

}  // namespace
}  // namespace kpid::exporter
