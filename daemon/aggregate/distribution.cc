#include "daemon/aggregate/distribution.h"

#include <algorithm>
#include <array>
#include <cmath>

namespace kpid::aggregate {
namespace {

const double kInvLogGamma = 1.0 / std::log(Distribution::kGamma);

const std::array<double, Distribution::kNumBins>& BinValues() {
  static const auto* const kValues = [] {
    auto* values = new std::array<double, Distribution::kNumBins>;
    (*values)[0] = 0.5;
    for (int i = 0; i <= Distribution::kMaxIndex; ++i) {
      (*values)[static_cast<size_t>(i) + 1] =
          2 * std::pow(Distribution::kGamma, i) / (Distribution::kGamma + 1);
    }
    return values;
  }();
  return *kValues;
}

}  // namespace

int Distribution::BinOf(double seconds) {
  if (!(seconds >= 1.0)) return 0;  // also NaN and negatives
  const double index = std::ceil(std::log(seconds) * kInvLogGamma);
  if (!(index < kMaxIndex)) return kMaxIndex + 1;  // also +inf
  return static_cast<int>(index) + 1;
}

double Distribution::BinValue(int bin) {
  return BinValues()[static_cast<size_t>(std::clamp(bin, 0, kNumBins - 1))];
}

void Distribution::AddToBin(int bin, uint64_t n) {
  if (bin < 0 || bin >= kNumBins || n == 0) return;
  if (bins_.empty()) bins_.assign(kNumBins, 0);
  bins_[static_cast<size_t>(bin)] += n;
  count_ += n;
}

void Distribution::Merge(const Distribution& other) {
  if (other.empty()) return;
  if (bins_.empty()) bins_.assign(kNumBins, 0);
  for (size_t i = 0; i < bins_.size(); ++i) bins_[i] += other.bins_[i];
  count_ += other.count_;
}

absl::optional<double> Distribution::Quantile(double q) const {
  if (count_ == 0) return absl::nullopt;
  q = std::isnan(q) ? 0 : std::clamp(q, 0.0, 1.0);
  // Nearest rank: the smallest value with at least q * count observations at
  // or below it. Unlike interpolating between ranks it never reports a value
  // below what a q share of the cases really took (p99 of 3 exits is the
  // slowest, not the middle one). The epsilon keeps 0.9 * 10000 at 9000.
  const uint64_t rank = std::max<uint64_t>(
      1, static_cast<uint64_t>(std::ceil(q * static_cast<double>(count_) - 1e-9)));
  uint64_t seen = 0;
  for (size_t i = 0; i < bins_.size(); ++i) {
    seen += bins_[i];
    if (seen >= rank) return BinValue(static_cast<int>(i));
  }
  return BinValue(kNumBins - 1);  // unreachable: seen == count_ >= rank at the end
}

bool operator==(const Distribution& a, const Distribution& b) {
  if (a.count_ != b.count_) return false;
  if (a.count_ == 0) return true;
  return a.bins_ == b.bins_;
}

}  // namespace kpid::aggregate
