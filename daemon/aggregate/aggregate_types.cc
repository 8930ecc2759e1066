#include "daemon/aggregate/aggregate_types.h"

#include <cmath>
#include <limits>

#include "daemon/aggregate/distribution.h"

namespace kpid::aggregate {

absl::optional<double> StageWindowCounts::Value(absl::string_view kpi) const {
  if (kpi == "entered") return static_cast<double>(entered);
  if (kpi == "exited" || kpi == "throughput") return static_cast<double>(exited());
  if (kpi == "advanced") return static_cast<double>(advanced);
  if (kpi == "fallout") return static_cast<double>(fallout);
  if (kpi == "sla_met") return static_cast<double>(sla_met);
  if (kpi == "rework") return static_cast<double>(rework);
  if (kpi == "sla_breaches") return static_cast<double>(sla_breaches);
  if (kpi == "conversion") return conversion();
  if (kpi == "fallout_ratio") return fallout_ratio();
  if (kpi == "sla_attainment") return sla_attainment();
  if (kpi == "rework_ratio") return rework_ratio();
  return absl::nullopt;
}

void StageWindowCounts::Merge(const StageWindowCounts& o) {
  entered += o.entered;
  advanced += o.advanced;
  fallout += o.fallout;
  sla_met += o.sla_met;
  rework += o.rework;
  sla_breaches += o.sla_breaches;
}

absl::optional<double> ProcessWindowCounts::Value(absl::string_view kpi) const {
  if (kpi == "started") return static_cast<double>(started);
  if (kpi == "completed") return static_cast<double>(completed);
  if (kpi == "fallout") return static_cast<double>(fallout);
  if (kpi == "revenue") return revenue;
  if (kpi == "cost") return cost;
  if (kpi == "events") return static_cast<double>(events());
  if (kpi == "win_ratio") return win_ratio();
  if (kpi == "avg_deal") return avg_deal();
  if (kpi == "cost_to_serve") return cost_to_serve();
  if (kpi == "feedback_score") return feedback_score();
  return absl::nullopt;
}

void ProcessWindowCounts::Merge(const ProcessWindowCounts& o) {
  started += o.started;
  completed += o.completed;
  fallout += o.fallout;
  revenue += o.revenue;
  cost += o.cost;
  score_sum += o.score_sum;
  score_count += o.score_count;
  cost_count += o.cost_count;
  stage_entries += o.stage_entries;
}

void SeriesWindow::Merge(const SeriesWindow& o) {
  process.Merge(o.process);
  if (stages.size() < o.stages.size()) stages.resize(o.stages.size());
  for (size_t i = 0; i < o.stages.size(); ++i) stages[i].Merge(o.stages[i]);
}

int LatencyHistogram::BucketOf(double seconds) {
  // lower_bound: the first bound >= seconds, so a value equal to a bound
  // counts in that bound's bucket (le is inclusive); halving without
  // branches, since exits come in no order a branch predictor could learn.
  // NaN counts in +Inf.
  if (seconds != seconds) return kBuckets - 1;
  static_assert(kBounds.size() == 16, "four halvings");
  const double* first = kBounds.data();
  for (size_t n = kBounds.size(); n > 1; n -= n / 2) {
    first = first[n / 2 - 1] < seconds ? first + n / 2 : first;
  }
  return static_cast<int>(first - kBounds.data()) + (*first < seconds ? 1 : 0);
}

const uint8_t* LatencyHistogram::BuildBinBuckets() {
  static_assert(kBuckets <= kBucketMask + 1, "a bucket index fits the mask");
  constexpr double kInf = std::numeric_limits<double>::infinity();
  auto* entries = new uint8_t[Distribution::kNumBins];
  for (int bin = 0; bin < Distribution::kNumBins; ++bin) {
    // The bin's smallest and largest values (bin 0 also holds the
    // negatives; the last bin everything up to +inf).
    const int below = BucketOf(Distribution::LowerBound(bin));
    const double last = std::nextafter(Distribution::LowerBound(bin + 1), -kInf);
    // BucketOf(last) is `below` or, when kBounds[below] is inside the bin, below + 1.
    const bool split = BucketOf(last) != below;
    entries[bin] = static_cast<uint8_t>(below | (split ? 0x80 : 0));
  }
  return entries;
}

uint64_t LatencyHistogram::count() const {
  uint64_t n = 0;
  for (uint64_t b : buckets) n += b;
  return n;
}

uint64_t LatencyHistogram::cumulative(int i) const {
  uint64_t n = 0;
  for (int b = 0; b <= i && b < kBuckets; ++b) n += buckets[static_cast<size_t>(b)];
  return n;
}

void LatencyHistogram::Merge(const LatencyHistogram& o) {
  for (size_t i = 0; i < buckets.size(); ++i) buckets[i] += o.buckets[i];
  sum += o.sum;
}

void StageTotals::Merge(const StageTotals& o) {
  entered += o.entered;
  exited_advanced += o.exited_advanced;
  exited_fallout += o.exited_fallout;
  sla_met += o.sla_met;
  sla_missed += o.sla_missed;
  rework += o.rework;
  sla_breaches += o.sla_breaches;
  expired += o.expired;
  backlog += o.backlog;
  backlog_over_sla += o.backlog_over_sla;
  cycle_time.Merge(o.cycle_time);
}

void ProcessTotals::Merge(const ProcessTotals& o) {
  started += o.started;
  completed += o.completed;
  fallout += o.fallout;
  expired += o.expired;
  revenue += o.revenue;
  cost += o.cost;
  score_sum += o.score_sum;
  score_count += o.score_count;
  cost_count += o.cost_count;
  lead_time.Merge(o.lead_time);
}

int64_t SeriesTotals::open_cases() const {
  int64_t n = 0;
  for (const StageTotals& s : stages) n += s.backlog;
  return n;
}

void SeriesTotals::Merge(const SeriesTotals& o) {
  process.Merge(o.process);
  if (stages.size() < o.stages.size()) stages.resize(o.stages.size());
  for (size_t i = 0; i < o.stages.size(); ++i) stages[i].Merge(o.stages[i]);
}

}  // namespace kpid::aggregate
