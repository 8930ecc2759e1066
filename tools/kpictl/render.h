// What kpictl shows for each command, in each format: snapshots, alerts,
// breaching cases and the weekly report as Documents (table, markdown) or
// long-form Tables (CSV, raw numbers for spreadsheets). JSON is the
// messages themselves (table.h ToJson).
#pragma once

#include <string>

#include "absl/types/optional.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/timestamp.pb.h"
#include "kpid/v1/kpi_service.pb.h"
#include "tools/kpictl/report.h"
#include "tools/kpictl/table.h"
#include "weekly_report.pb.h"  // generated (tools/kpictl/weekly_report.proto)

namespace kpid::kpictl {

// "n/a" when absent. Ratios as percentages ("66.7%"), money and scores with
// two decimals and thousands separators ("4,000.00"), counts whole
// ("1,204"), durations by their largest units ("1d 2h", "25m", "40s").
std::string FormatValue(absl::optional<double> value, ValueKind kind);
std::string FormatDuration(double seconds);
std::string FormatDuration(const google::protobuf::Duration& d);
// "2026-03-16 00:00 UTC".
std::string FormatTime(const google::protobuf::Timestamp& t);
// The absolute delta, signed: "+2", "-5.0 pp" (ratios in percentage
// points), "+1h 5m"; empty when absent.
std::string FormatDelta(const KpiDelta& d, ValueKind kind);
// "+20.0%"; "from 0" for a move off a zero baseline; empty when absent.
std::string FormatRelative(const KpiDelta& d);

Document SnapshotDocument(const v1::Snapshot& snapshot);
Table SnapshotCsv(const v1::Snapshot& snapshot);
// `raw`: RFC 3339 times and seconds (CSV) instead of readable ones.
Table AlertsTable(const v1::ListAlertsResponse& alerts, bool raw);
Table CasesTable(const v1::ListBreachingCasesResponse& cases, bool raw);
Document ReportDocument(const WeeklyReport& report);
Table ReportCsv(const WeeklyReport& report);

}  // namespace kpid::kpictl
