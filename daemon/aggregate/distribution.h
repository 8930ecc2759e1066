// A mergeable distribution of durations with bounded relative error, for the
// window quantiles of DESIGN §3 (cycle-time and lead-time p50/p90/p99).
//
//   Distribution d;
//   d.Add(3600);                                   // seconds
//   absl::optional<double> p90 = d.Quantile(0.9);  // absent when empty
//   total.Merge(d);                                // exact: bins add
//
// Log-linear bins as in DDSketch (Masson et al., VLDB 2019) with relative
// accuracy a = 1%: gamma = (1 + a) / (1 - a); a value x >= 1 s goes to index
// i = ceil(log_gamma(x)), which covers (gamma^(i-1), gamma^i] and reports its
// midpoint 2 * gamma^i / (gamma + 1), at most 1% from any value in it. Values
// below 1 s (also negative or NaN) share one bin [0, 1 s) reported as 0.5 s;
// values above gamma^kMaxIndex (~10.3 years) count in the top bin. Quantiles
// are nearest-rank: the smallest bin with at least ceil(q * count)
// observations at or below it.
//
// The bin layout is fixed (kNumBins), so bins index the same in every
// distribution and the aggregator's per-bucket uint32 bins (see
// aggregate_shard.h) merge into a Distribution bin by bin.
//
// A plain value type; not thread-safe (readers build one per read).
#pragma once

#include <cstdint>
#include <vector>

#include "absl/types/optional.h"

namespace kpid::aggregate {

class Distribution {
 public:
  static constexpr double kRelativeAccuracy = 0.01;
  static constexpr double kGamma = (1 + kRelativeAccuracy) / (1 - kRelativeAccuracy);
  // gamma^980 s = 3.26e8 s, about 10.3 years: the cap.
  static constexpr int kMaxIndex = 980;
  // Bin 0 holds [0, 1 s); bin i + 1 holds index i in [0, kMaxIndex].
  static constexpr int kNumBins = kMaxIndex + 2;

  // The bin of a duration in seconds.
  static int BinOf(double seconds);
  // The value a bin reports.
  static double BinValue(int bin);
  // The smallest value BinOf puts in `bin` (bin 0: -inf; past the last
  // bin: +inf), so bin b holds [LowerBound(b), LowerBound(b + 1)).
  static double LowerBound(int bin);

  void Add(double seconds, uint64_t n = 1) { AddToBin(BinOf(seconds), n); }
  // `bin` in [0, kNumBins); anything else is ignored.
  void AddToBin(int bin, uint64_t n);
  void Merge(const Distribution& other);

  uint64_t count() const { return count_; }
  bool empty() const { return count_ == 0; }
  // The q-quantile (q clamped to [0, 1]), or absent when empty.
  absl::optional<double> Quantile(double q) const;

  // Per-bin counts: empty until the first Add, then kNumBins long.
  const std::vector<uint64_t>& bins() const { return bins_; }

  friend bool operator==(const Distribution& a, const Distribution& b);
  friend bool operator!=(const Distribution& a, const Distribution& b) { return !(a == b); }

 private:
  std::vector<uint64_t> bins_;
  uint64_t count_ = 0;
};

}  // namespace kpid::aggregate
