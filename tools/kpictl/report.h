// The arithmetic of `kpictl report weekly`: two snapshots of the same
// processes (the last 7d, and the 7d before via offset 7d) side by side,
// with absolute and relative deltas and the KPIs that moved flagged.
//
//   KpiDelta d = Compare(/*current=*/12, /*previous=*/10, /*threshold=*/0.1);
//   // d.delta() == 2, d.relative_delta() == 0.2, d.flagged()
//
// Rules (also in weekly_report.proto): delta when both values exist;
// relative delta = delta / |previous| when previous != 0; flagged when
// |relative delta| > threshold, or when a KPI moves off a zero baseline
// (0 -> anything else), where no relative delta exists.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/optional.h"
#include "kpid/v1/kpi_service.pb.h"
#include "weekly_report.pb.h"  // generated (tools/kpictl/weekly_report.proto)

namespace kpid::kpictl {

// How a KPI's value reads (for rendering; the report holds plain numbers).
enum class ValueKind { kCount, kRatio, kMoney, kDuration, kScore };

struct ReportKpi {
  absl::string_view name;
  ValueKind kind;
};

// The process-level and stage-level KPIs of the report, in report order.
const std::vector<ReportKpi>& ProcessReportKpis();
const std::vector<ReportKpi>& StageReportKpis();
// kCount for an unknown name.
ValueKind KindOf(absl::string_view kpi);

// A KPI's value in a snapshot window; absent when it has none. Durations in
// seconds.
absl::optional<double> ProcessKpi(const v1::ProcessWindow& window, absl::string_view kpi);
absl::optional<double> StageKpi(const v1::StageWindow& stage, absl::string_view kpi);

KpiDelta Compare(absl::optional<double> current, absl::optional<double> previous, double threshold);

struct WeeklyInputs {
  // Both from GetSnapshot with windows = [7d]; previous with offset 7d.
  const v1::Snapshot* current = nullptr;
  const v1::Snapshot* previous = nullptr;
  double threshold = 0.1;
  // ListBreachingCases' answer, or null with the reason in
  // breaching_unavailable.
  const v1::ListBreachingCasesResponse* breaching = nullptr;
  std::string breaching_unavailable;
};

// INVALID_ARGUMENT when the snapshots do not pair up (other processes,
// not exactly one window each).
// What a partial snapshot lacks: "replica: error" per replica that did not
// answer, "replica: partitions 1,2 still restoring" per restoring one.
std::vector<std::string> MissingReplicas(const v1::Snapshot& snapshot);

absl::StatusOr<WeeklyReport> BuildWeeklyReport(const WeeklyInputs& inputs);

}  // namespace kpid::kpictl
