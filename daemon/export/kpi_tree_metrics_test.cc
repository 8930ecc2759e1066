#include "daemon/export/kpi_tree_metrics.h"

#include <map>

#include "daemon/aggregate/aggregate_shard.h"
#include "gtest/gtest.h"

namespace kpid::exporter {
namespace {

constexpr int64_t kT0 = 1'008'000'000;
absl::Time T(int64_t offset_s) { return absl::FromUnixSeconds(kT0 + offset_s); }

// "name{k=v,...}" -> value, labels in exposition order.
std::map<std::string, double> Samples(const std::vector<prometheus::MetricFamily>& families) {
  std::map<std::string, double> out;
  for (const prometheus::MetricFamily& f : families) {
    for (const prometheus::ClientMetric& m : f.metric) {
      std::string key = f.name + "{";
      for (const auto& l : m.label) key += l.name + "=" + l.value + ",";
      out[key + "}"] = m.gauge.value;
    }
  }
  return out;
}

TEST(KpiTreeMetricsTest, NodesAndLeafSensitivitiesPerWindow) {
  absl::StatusOr<model::Config> config = model::ParseConfig(
      "windows: [1m, 1h]\n"
      "retention: 2h\n"
      "processes:\n"
      "  - id: p\n"
      "    stages: [{id: a, sla: 10m}]\n"
      "    kpi_tree:\n"
      "      - {id: revenue, product: [leads, deal]}\n"
      "      - {id: leads, kpi: started}\n"
      "      - {id: deal, kpi: avg_deal}\n"
      "  - id: q\n"
      "    stages: [{id: a, sla: 10m}]\n",
      "t.yaml");
  ASSERT_TRUE(config.ok()) << config.status();
  aggregate::AggregateShard shard(*config);
  // 4 started, 2 completed for 300 + 500 at T(0); the 1m window ending at
  // T(600) holds none of it.
  for (int i = 0; i < 4; ++i) shard.CaseStarted(0, 0, T(0));
  shard.CaseCompleted(0, 0, T(0), 300, absl::Hours(1));
  shard.CaseCompleted(0, 0, T(0), 500, absl::Hours(1));
  cases::ManualClock clock(T(600));
  KpiTreeMetrics metrics(&*config, {&shard}, &clock);

  // 1h: leads 4, deal 800 / 2 = 400, revenue 1600; sensitivities 1% of 1600.
  // 1m: leads 0 and deal absent (no completions), so revenue is absent.
  const std::map<std::string, double> got = Samples(metrics.Collect());
  const std::map<std::string, double> want = {
      {"kpid_kpi_tree_value{process=p,node=revenue,parent=,window=1h,}", 1600},
      {"kpid_kpi_tree_value{process=p,node=leads,parent=revenue,window=1h,}", 4},
      {"kpid_kpi_tree_value{process=p,node=deal,parent=revenue,window=1h,}", 400},
      {"kpid_kpi_tree_value{process=p,node=leads,parent=revenue,window=1m,}", 0},
      {"kpid_kpi_tree_sensitivity{process=p,node=leads,window=1h,}", 16},
      {"kpid_kpi_tree_sensitivity{process=p,node=deal,window=1h,}", 16},
  };
  ASSERT_EQ(got.size(), want.size());
  for (const auto& [series, value] : want) {
    ASSERT_TRUE(got.contains(series)) << series;
    EXPECT_NEAR(got.at(series), value, 1e-9) << series;
  }
}

}  // namespace
}  // namespace kpid::exporter
