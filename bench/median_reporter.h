// Google Benchmark's console output plus the median items/s and CPU time of
// every run, so a benchmark can print same-run ratios when it finishes.
//
//   class MyReporter : public MedianReporter {
//     void PrintRatios() override { Ratio("a / b", "BM_A//1", "BM_B//1"); }
//   };
//
// Runs are keyed "<function>/<args>/<threads>" ("BM_Spin//2"). With
// --benchmark_repetitions the median aggregate is used, else the median of
// the plain runs.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "benchmark/benchmark.h"

namespace kpid::bench {

class MedianReporter : public benchmark::ConsoleReporter {
 public:
  MedianReporter() : ConsoleReporter(isatty(STDOUT_FILENO) ? OO_ColorTabular : OO_Tabular) {}

  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      if (run.error_occurred) continue;
      auto rate = run.counters.find("items_per_second");
      if (rate == run.counters.end()) continue;
      const std::string key =
          absl::StrFormat("%s/%s/%d", run.run_name.function_name, run.run_name.args, run.threads);
      if (run.run_type == Run::RT_Aggregate) {
        if (run.aggregate_name == "median") {
          rate_[key].median = rate->second.value;
          cpu_[key].median = run.GetAdjustedCPUTime();
        }
      } else {
        rate_[key].samples.push_back(rate->second.value);
        cpu_[key].samples.push_back(run.GetAdjustedCPUTime());
      }
    }
  }

  void Finalize() override {
    ConsoleReporter::Finalize();
    PrintRatios();
    std::fflush(stdout);
  }

 protected:
  virtual void PrintRatios() = 0;

  // Median items/s of a run; 0 when it did not run.
  double Rate(const std::string& key) const { return Median(rate_, key); }
  // Median CPU time per iteration (ns); 0 when it did not run.
  double Cpu(const std::string& key) const { return Median(cpu_, key); }

  void Ratio(const std::string& label, const std::string& a, const std::string& b) const {
    const double x = Rate(a), y = Rate(b);
    if (x <= 0 || y <= 0) return;
    std::printf("  %-70s %7.3fM/s / %7.3fM/s = %.2f\n", label.c_str(), x / 1e6, y / 1e6, x / y);
  }

 private:
  struct Values {
    double median = -1;  // from the median aggregate, when there is one
    std::vector<double> samples;
  };

  static double Median(const std::map<std::string, Values>& values, const std::string& key) {
    auto it = values.find(key);
    if (it == values.end()) return 0;
    if (it->second.median >= 0) return it->second.median;
    if (it->second.samples.empty()) return 0;
    std::vector<double> v = it->second.samples;
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  }

  std::map<std::string, Values> rate_;
  std::map<std::string, Values> cpu_;
};

}  // namespace kpid::bench
