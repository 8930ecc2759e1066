#include "daemon/aggregate/distribution.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>

#include "absl/base/casts.h"

namespace kpid::aggregate {
namespace {

const double kInvLogGamma = 1.0 / std::log(Distribution::kGamma);

// The definition of a value's bin: ceil(log_gamma(x)), capped. BinOf gives
// the same bin from two table reads instead of a logarithm.
int BinByLog(double seconds) {
  if (!(seconds >= 1.0)) return 0;
  const double index = std::ceil(std::log(seconds) * kInvLogGamma);
  if (!(index < Distribution::kMaxIndex)) return Distribution::kMaxIndex + 1;
  return static_cast<int>(index) + 1;
}

// 1/128 of an octave (ratio 1.0054) is narrower than a bin (gamma = 1.0202).
constexpr int kPartBits = 7;
// 2^29 s is past the cap (gamma^980 = 3.3e8 s): BinOf needs parts below it only.
constexpr double kTableEnd = 536870912.0;
constexpr size_t kParts = size_t{29} << kPartBits;

struct BinTable {
  // lower[b]: the smallest value in bin b (b >= 1); +inf past the last bin.
  std::array<double, Distribution::kNumBins + 1> lower;
  // The bin of the smallest value of each part of an octave from 1 s on.
  std::array<uint16_t, kParts> first_bin;
};

const BinTable& Table() {
  static const BinTable* const kTable = [] {
    auto* t = new BinTable;
    t->lower.fill(std::numeric_limits<double>::infinity());
    t->lower[1] = 1.0;
    // Bisection over the bit patterns of positive doubles, which order as
    // the values do (BinByLog is non-decreasing).
    const uint64_t one = absl::bit_cast<uint64_t>(1.0);
    const uint64_t end = absl::bit_cast<uint64_t>(kTableEnd);
    for (int b = 2; b < Distribution::kNumBins; ++b) {
      uint64_t lo = one, hi = end;  // BinByLog(lo) < b <= BinByLog(hi)
      while (hi - lo > 1) {
        const uint64_t mid = lo + (hi - lo) / 2;
        (BinByLog(absl::bit_cast<double>(mid)) >= b ? hi : lo) = mid;
      }
      t->lower[static_cast<size_t>(b)] = absl::bit_cast<double>(hi);
    }
    for (size_t part = 0; part < kParts; ++part) {
      const uint64_t bits = ((uint64_t{1023} << kPartBits) + part) << (52 - kPartBits);
      t->first_bin[part] = static_cast<uint16_t>(BinByLog(absl::bit_cast<double>(bits)));
    }
    return t;
  }();
  return *kTable;
}

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
  if (!(seconds >= 1.0)) return 0;                   // also NaN and negatives
  if (!(seconds < kTableEnd)) return kMaxIndex + 1;  // past the cap; also +inf
  // The exponent and the top mantissa bits pick the 1/128 octave `seconds`
  // is in; being narrower than a bin, it holds at most one bin's lower bound.
  // Held here: Table() is a call (and a guard check) per value.
  static const BinTable& table = Table();
  const size_t part = static_cast<size_t>((absl::bit_cast<uint64_t>(seconds) >> (52 - kPartBits)) -
                                          (uint64_t{1023} << kPartBits));
  const int bin = table.first_bin[part];
  return seconds >= table.lower[static_cast<size_t>(bin) + 1] ? bin + 1 : bin;
}

double Distribution::LowerBound(int bin) {
  if (bin <= 0) return -std::numeric_limits<double>::infinity();
  if (bin >= kNumBins) return std::numeric_limits<double>::infinity();
  return Table().lower[static_cast<size_t>(bin)];
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
