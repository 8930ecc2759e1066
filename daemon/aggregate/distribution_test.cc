#include "daemon/aggregate/distribution.h"

#include <cmath>

#include "gtest/gtest.h"

namespace kpid::aggregate {
namespace {

// |got - want| <= rel * want.
::testing::AssertionResult Near(absl::optional<double> got, double want, double rel) {
  if (!got.has_value()) return ::testing::AssertionFailure() << "absent, want " << want;
  if (std::abs(*got - want) <= rel * want) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << *got << " is not within " << rel * 100 << "% of " << want;
}

TEST(DistributionTest, EmptyHasNoQuantiles) {
  Distribution d;
  EXPECT_EQ(d.count(), 0u);
  EXPECT_TRUE(d.empty());
  EXPECT_FALSE(d.Quantile(0.5).has_value());
  EXPECT_FALSE(d.Quantile(0).has_value());
  Distribution other;
  d.Merge(other);
  EXPECT_FALSE(d.Quantile(0.99).has_value());
  EXPECT_EQ(d, other);
}

TEST(DistributionTest, SubSecondValuesShareTheFirstBin) {
  EXPECT_EQ(Distribution::BinOf(0), 0);
  EXPECT_EQ(Distribution::BinOf(0.999), 0);
  EXPECT_EQ(Distribution::BinOf(-5), 0);
  EXPECT_EQ(Distribution::BinOf(std::nan("")), 0);
  EXPECT_DOUBLE_EQ(Distribution::BinValue(0), 0.5);
}

TEST(DistributionTest, OneSecondIsIndexZero) {
  // log_gamma(1) = 0, so bin 1, covering (1/gamma, 1]; its value is
  // 2 / (gamma + 1) = 2 * 0.99 / (0.99 + 1.01) = 0.99.
  EXPECT_EQ(Distribution::BinOf(1), 1);
  EXPECT_NEAR(Distribution::BinValue(1), 0.99, 1e-12);
  // Just above 1 s: index 1, (1, gamma].
  EXPECT_EQ(Distribution::BinOf(1.001), 2);
}

TEST(DistributionTest, EveryValueWithinOnePercent) {
  for (double x = 1; x < 3e8; x *= 1.003) {
    const double got = Distribution::BinValue(Distribution::BinOf(x));
    ASSERT_LE(std::abs(got - x), 0.01 * x * (1 + 1e-9)) << x;
  }
}

// BinOf reads tables; the bins are defined as ceil(log_gamma(x)) + 1, capped.
TEST(DistributionTest, BinOfIsTheLogarithmsBin) {
  const double inv_log_gamma = 1.0 / std::log(Distribution::kGamma);
  auto by_log = [&](double x) {
    if (!(x >= 1.0)) return 0;
    const double index = std::ceil(std::log(x) * inv_log_gamma);
    return index < Distribution::kMaxIndex ? static_cast<int>(index) + 1
                                           : Distribution::kMaxIndex + 1;
  };
  // Around every bin boundary gamma^i (the doubles next to it on both
  // sides), and a dense sweep.
  for (int i = 0; i <= Distribution::kMaxIndex + 2; ++i) {
    double x = std::pow(Distribution::kGamma, i);
    for (int step = 0; step < 4; ++step) x = std::nextafter(x, 0.0);
    for (int step = 0; step < 9; ++step, x = std::nextafter(x, INFINITY)) {
      ASSERT_EQ(Distribution::BinOf(x), by_log(x)) << i << " " << x;
    }
  }
  for (double x = 0.5; x < 1e9; x *= 1.0001) ASSERT_EQ(Distribution::BinOf(x), by_log(x)) << x;
  for (double x : {1.0, 60.0, 3600.0, 86400.0, 536870911.9, 536870912.0}) {
    EXPECT_EQ(Distribution::BinOf(x), by_log(x)) << x;
  }
}

TEST(DistributionTest, CapAtAboutTenYears) {
  // gamma^980 = e^(980 * ln(1.01/0.99)) = e^19.6007 ~ 3.254e8 s (10.3 years);
  // the top bin reports 2 * gamma^980 / (gamma + 1) = 0.99 * 3.254e8 = 3.222e8.
  const int top = Distribution::kNumBins - 1;
  EXPECT_EQ(Distribution::BinOf(1e12), top);
  EXPECT_EQ(Distribution::BinOf(INFINITY), top);
  // 10 years = 3.156e8 s: ceil(ln(3.156e8) / ln(gamma)) = ceil(978.5) = 979, bin 980.
  EXPECT_EQ(Distribution::BinOf(10 * 365.25 * 86400), 980);
  EXPECT_TRUE(Near(Distribution::BinValue(top), 3.222e8, 0.001));
}

TEST(DistributionTest, SmallSetByRank) {
  Distribution d;
  for (double v : {40.0, 10.0, 30.0, 20.0}) d.Add(v);
  EXPECT_EQ(d.count(), 4u);
  // Nearest rank ceil(q * 4): q=0 -> 1st (at least one) = 10; q=0.5 -> 2nd = 20;
  // q=0.75 -> 3rd = 30; q=0.9 -> ceil(3.6) = 4th = 40; q=1 -> 40.
  EXPECT_TRUE(Near(d.Quantile(0), 10, 0.01));
  EXPECT_TRUE(Near(d.Quantile(0.5), 20, 0.01));
  EXPECT_TRUE(Near(d.Quantile(0.75), 30, 0.01));
  EXPECT_TRUE(Near(d.Quantile(0.9), 40, 0.01));
  EXPECT_TRUE(Near(d.Quantile(1), 40, 0.01));
  // Out-of-range q clamps.
  EXPECT_TRUE(Near(d.Quantile(-1), 10, 0.01));
  EXPECT_TRUE(Near(d.Quantile(2), 40, 0.01));
}

TEST(DistributionTest, UniformOneToTenThousand) {
  Distribution d;
  for (int i = 1; i <= 10000; ++i) d.Add(i);
  EXPECT_EQ(d.count(), 10000u);
  // Nearest rank: 0.5 * 10000 -> the 5000th value, 5000; 0.9 -> 9000th, 9000;
  // 0.99 -> 9900th, 9900.
  EXPECT_TRUE(Near(d.Quantile(0.5), 5000, 0.02));
  EXPECT_TRUE(Near(d.Quantile(0.9), 9000, 0.02));
  EXPECT_TRUE(Near(d.Quantile(0.99), 9900, 0.02));
  // The bins guarantee 1%.
  EXPECT_TRUE(Near(d.Quantile(0.5), 5000, 0.01));
  EXPECT_TRUE(Near(d.Quantile(0.99), 9900, 0.01));
}

TEST(DistributionTest, MergeIsExact) {
  Distribution low, high, all;
  for (int i = 1; i <= 5000; ++i) low.Add(i);
  for (int i = 5001; i <= 10000; ++i) high.Add(i);
  for (int i = 1; i <= 10000; ++i) all.Add(i);
  Distribution merged;
  merged.Merge(low);
  merged.Merge(high);
  EXPECT_EQ(merged.count(), 10000u);
  EXPECT_EQ(merged, all);
  EXPECT_EQ(merged.Quantile(0.9), all.Quantile(0.9));
  EXPECT_NE(low, all);
}

TEST(DistributionTest, AddToBinWithCount) {
  Distribution d;
  d.AddToBin(Distribution::BinOf(60), 3);
  d.AddToBin(-1, 5);                      // ignored
  d.AddToBin(Distribution::kNumBins, 5);  // ignored
  EXPECT_EQ(d.count(), 3u);
  EXPECT_TRUE(Near(d.Quantile(0.5), 60, 0.01));
}

}  // namespace
}  // namespace kpid::aggregate
