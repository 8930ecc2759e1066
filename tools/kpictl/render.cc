#include "tools/kpictl/render.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "daemon/api/proto_time.h"
#include "daemon/common/duration.h"

namespace kpid::kpictl {
namespace {

constexpr const char kAbsent[] = "n/a";

// |v| with `decimals` decimals and thousands separators.
std::string Grouped(double v, int decimals) {
  std::string digits = absl::StrFormat("%.*f", decimals, std::fabs(v));
  const size_t point = digits.find('.');
  std::string integer = digits.substr(0, point);
  std::string grouped;
  for (size_t i = 0; i < integer.size(); ++i) {
    if (i > 0 && (integer.size() - i) % 3 == 0) grouped.push_back(',');
    grouped.push_back(integer[i]);
  }
  if (point != std::string::npos) absl::StrAppend(&grouped, digits.substr(point));
  return grouped;
}

std::string Window(const google::protobuf::Duration& d) {
  return FormatPromDuration(api::FromProto(d));
}

std::string Raw(absl::optional<double> v) {
  return v.has_value() ? absl::StrFormat("%.10g", *v) : "";
}

std::string RawTime(const google::protobuf::Timestamp& t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E*SZ", api::FromProto(t), absl::UTCTimeZone());
}

std::string RawSeconds(const google::protobuf::Duration& d) {
  return Raw(absl::ToDoubleSeconds(api::FromProto(d)));
}

std::string Coverage(const v1::WindowCoverage& c) {
  if (!c.has_from())
    return absl::StrCat(Window(c.window()), " ending ", FormatTime(c.end()), ": nothing kept");
  return absl::StrCat(Window(c.window()), " ending ", FormatTime(c.end()), " covers ",
                      FormatTime(c.from()), " to ", FormatTime(c.to()));
}

std::string Dimensions(const google::protobuf::Map<std::string, std::string>& dims) {
  std::vector<std::pair<std::string, std::string>> sorted(dims.begin(), dims.end());
  std::sort(sorted.begin(), sorted.end());
  return absl::StrJoin(sorted, ", ", absl::PairFormatter("="));
}

// Stage KPIs of the snapshot, in column order.
struct StageColumn {
  const char* title;
  const char* kpi;
  ValueKind kind;
};
constexpr StageColumn kStageColumns[] = {
    {"Entered", "entered", ValueKind::kCount},
    {"Exited", "exited", ValueKind::kCount},
    {"Conversion", "conversion", ValueKind::kRatio},
    {"Fallout", "fallout_ratio", ValueKind::kRatio},
    {"SLA attainment", "sla_attainment", ValueKind::kRatio},
    {"Rework", "rework_ratio", ValueKind::kRatio},
    {"Breaches", "sla_breaches", ValueKind::kCount},
    {"Cycle p50", "cycle_time_p50", ValueKind::kDuration},
    {"Cycle p90", "cycle_time_p90", ValueKind::kDuration},
    {"Cycle p99", "cycle_time_p99", ValueKind::kDuration},
};

constexpr const char* kSnapshotProcessKpis[] = {"started",       "completed",     "fallout",
                                                "win_ratio",     "revenue",       "avg_deal",
                                                "cost",          "cost_to_serve", "feedback_score",
                                                "lead_time_p50", "lead_time_p90", "lead_time_p99"};
constexpr const char* kCsvStageKpis[] = {
    "entered",      "exited",         "advanced",       "fallout",       "sla_met",
    "rework",       "sla_breaches",   "conversion",     "fallout_ratio", "sla_attainment",
    "rework_ratio", "cycle_time_p50", "cycle_time_p90", "cycle_time_p99"};

ValueKind SnapshotKind(absl::string_view kpi) {
  if (kpi == "lead_time_p99" || kpi == "cycle_time_p99") return ValueKind::kDuration;
  return KindOf(kpi);
}

std::string Arrow(const KpiDelta& d) {
  if (!d.flagged()) return "";
  return d.delta() > 0 ? "▲" : "▼";
}

}  // namespace

std::string FormatDuration(double seconds) {
  if (seconds < 0) return absl::StrCat("-", FormatDuration(-seconds));
  if (seconds == 0) return "0s";
  if (seconds < 10) return absl::StrFormat("%.1fs", seconds);
  if (seconds < 60) return absl::StrFormat("%.0fs", seconds);
  // Two units at most: minutes below a day, hours (rounded) beyond.
  int64_t minutes = std::llround(seconds / 60);
  if (minutes >= 1440) minutes = std::llround(seconds / 3600) * 60;
  const int64_t days = minutes / 1440, hours = minutes % 1440 / 60, mins = minutes % 60;
  std::vector<std::string> parts;
  if (days > 0) parts.push_back(absl::StrCat(days, "d"));
  if (hours > 0) parts.push_back(absl::StrCat(hours, "h"));
  if (mins > 0) parts.push_back(absl::StrCat(mins, "m"));
  return absl::StrJoin(parts, " ");
}

std::string FormatDuration(const google::protobuf::Duration& d) {
  return FormatDuration(absl::ToDoubleSeconds(api::FromProto(d)));
}

std::string FormatTime(const google::protobuf::Timestamp& t) {
  return absl::FormatTime("%Y-%m-%d %H:%M UTC", api::FromProto(t), absl::UTCTimeZone());
}

std::string FormatValue(absl::optional<double> value, ValueKind kind) {
  if (!value.has_value()) return kAbsent;
  const std::string sign = *value < 0 ? "-" : "";
  switch (kind) {
    case ValueKind::kRatio:
      return absl::StrFormat("%.1f%%", *value * 100);
    case ValueKind::kMoney:
    case ValueKind::kScore:
      return absl::StrCat(sign, Grouped(*value, 2));
    case ValueKind::kDuration:
      return FormatDuration(*value);
    case ValueKind::kCount:
      return absl::StrCat(sign, Grouped(*value, 0));
  }
  return kAbsent;
}

std::string FormatDelta(const KpiDelta& d, ValueKind kind) {
  if (!d.has_delta()) return "";
  const double v = d.delta();
  const std::string sign = v > 0 ? "+" : v < 0 ? "-" : "";
  switch (kind) {
    case ValueKind::kRatio:
      return absl::StrCat(sign, absl::StrFormat("%.1f pp", std::fabs(v) * 100));
    case ValueKind::kDuration:
      return absl::StrCat(sign, FormatDuration(std::fabs(v)));
    default:
      return absl::StrCat(sign, FormatValue(std::fabs(v), kind));
  }
}

std::string FormatRelative(const KpiDelta& d) {
  if (d.has_relative_delta()) return absl::StrFormat("%+.1f%%", d.relative_delta() * 100);
  if (d.has_delta() && d.delta() != 0) return "from 0";
  return "";
}

namespace {

// The warning a partial answer carries, naming what is missing.
std::string PartialLine(const std::vector<std::string>& missing) {
  return absl::StrCat("PARTIAL: counts of some partitions are missing (",
                      missing.empty() ? "see replicas" : absl::StrJoin(missing, "; "), ").");
}

}  // namespace

Document SnapshotDocument(const v1::Snapshot& s) {
  Document doc;
  doc.title = "KPI snapshot";
  doc.lines.push_back(absl::StrCat(
      "As of ", FormatTime(s.as_of()),
      s.has_watermark() ? absl::StrCat("; latest event ", FormatTime(s.watermark())) : "", "."));
  if (api::FromProto(s.offset()) != absl::ZeroDuration()) {
    doc.lines.push_back(absl::StrCat("Windows end ", FormatDuration(s.offset()), " earlier."));
  }
  if (s.partial()) doc.lines.push_back(PartialLine(MissingReplicas(s)));
  if (!s.dimensions().empty()) {
    doc.lines.push_back(absl::StrCat("Dimensions: ", Dimensions(s.dimensions()),
                                     " (quantiles exist for all dimensions only)."));
  }
  for (const v1::ProcessSnapshot& p : s.processes()) {
    Section section;
    section.heading = p.process();
    section.lines.push_back(absl::StrCat("Open cases now: ", p.open_cases(), "."));
    for (const v1::ProcessWindow& w : p.windows()) {
      section.lines.push_back(absl::StrCat("- ", Coverage(w.coverage())));
    }

    Table kpis{{"KPI"}, {false}, {}};
    for (const v1::ProcessWindow& w : p.windows()) {
      kpis.columns.push_back(Window(w.coverage().window()));
      kpis.right_aligned.push_back(true);
    }
    for (const char* kpi : kSnapshotProcessKpis) {
      std::vector<std::string> row = {kpi};
      for (const v1::ProcessWindow& w : p.windows()) {
        row.push_back(FormatValue(ProcessKpi(w, kpi), SnapshotKind(kpi)));
      }
      kpis.rows.push_back(std::move(row));
    }
    section.tables.push_back(std::move(kpis));

    Table stages{{"Window", "Stage"}, {false, false}, {}};
    for (const StageColumn& c : kStageColumns) {
      stages.columns.push_back(c.title);
      stages.right_aligned.push_back(true);
    }
    for (const v1::ProcessWindow& w : p.windows()) {
      for (const v1::StageWindow& st : w.stages()) {
        std::vector<std::string> row = {Window(w.coverage().window()), st.stage()};
        for (const StageColumn& c : kStageColumns) {
          row.push_back(FormatValue(StageKpi(st, c.kpi), c.kind));
        }
        stages.rows.push_back(std::move(row));
      }
    }
    section.tables.push_back(std::move(stages));

    Table backlog{{"Stage", "SLA", "Backlog", "Over SLA", "Breaches (total)"},
                  {false, true, true, true, true},
                  {}};
    for (const v1::StageBacklog& b : p.backlog()) {
      backlog.rows.push_back({b.stage(), FormatDuration(b.sla()), absl::StrCat(b.backlog()),
                              absl::StrCat(b.backlog_over_sla()),
                              absl::StrCat(b.sla_breaches_total())});
    }
    section.tables.push_back(std::move(backlog));

    bool has_tree = false;
    for (const v1::ProcessWindow& w : p.windows()) has_tree |= w.kpi_tree_size() > 0;
    if (has_tree) {
      Table tree{{"Window", "Node", "Parent", "Value", "Sensitivity"},
                 {false, false, false, true, true},
                 {}};
      for (const v1::ProcessWindow& w : p.windows()) {
        for (const v1::KpiTreeValue& v : w.kpi_tree()) {
          tree.rows.push_back(
              {Window(w.coverage().window()), v.node(), v.parent(),
               FormatValue(v.has_value() ? absl::optional<double>(v.value()) : absl::nullopt,
                           ValueKind::kScore),
               FormatValue(
                   v.has_sensitivity() ? absl::optional<double>(v.sensitivity()) : absl::nullopt,
                   ValueKind::kScore)});
        }
      }
      section.tables.push_back(std::move(tree));
    }
    doc.sections.push_back(std::move(section));
  }
  return doc;
}

Table SnapshotCsv(const v1::Snapshot& s) {
  Table t{{"process", "window", "stage", "kpi", "value"}, {}, {}};
  for (const v1::ProcessSnapshot& p : s.processes()) {
    t.rows.push_back({p.process(), "", "", "open_cases", absl::StrCat(p.open_cases())});
    for (const v1::StageBacklog& b : p.backlog()) {
      t.rows.push_back({p.process(), "", b.stage(), "backlog", absl::StrCat(b.backlog())});
      t.rows.push_back(
          {p.process(), "", b.stage(), "backlog_over_sla", absl::StrCat(b.backlog_over_sla())});
    }
    for (const v1::ProcessWindow& w : p.windows()) {
      const std::string window = Window(w.coverage().window());
      for (const char* kpi : kSnapshotProcessKpis) {
        t.rows.push_back({p.process(), window, "", kpi, Raw(ProcessKpi(w, kpi))});
      }
      for (const v1::StageWindow& st : w.stages()) {
        for (const char* kpi : kCsvStageKpis) {
          t.rows.push_back({p.process(), window, st.stage(), kpi, Raw(StageKpi(st, kpi))});
        }
      }
    }
  }
  return t;
}

Table AlertsTable(const v1::ListAlertsResponse& alerts, bool raw) {
  Table t{{"Alert", "State", "Process", "Stage", "Value", "Active since", "Labels", "Summary"},
          {false, false, false, false, true, false, false, false},
          {}};
  for (const v1::Alert& a : alerts.alerts()) {
    std::vector<std::pair<std::string, std::string>> extra;
    for (const auto& [k, v] : a.labels()) {
      if (k != "alertname" && k != "process" && k != "stage") extra.emplace_back(k, v);
    }
    std::sort(extra.begin(), extra.end());
    auto label = [&a](const std::string& k) {
      auto it = a.labels().find(k);
      return it == a.labels().end() ? std::string() : it->second;
    };
    auto summary = a.annotations().find("summary");
    t.rows.push_back({a.name(), absl::AsciiStrToLower(v1::Alert::State_Name(a.state())),
                      label("process"), label("stage"), absl::StrFormat("%.10g", a.value()),
                      !a.has_active_at() ? ""
                      : raw              ? RawTime(a.active_at())
                                         : FormatTime(a.active_at()),
                      absl::StrJoin(extra, ",", absl::PairFormatter("=")),
                      summary == a.annotations().end() ? "" : summary->second});
  }
  return t;
}

Table CasesTable(const v1::ListBreachingCasesResponse& cases, bool raw) {
  Table t{{"Case", "Process", "Stage", "Age", "Overdue", "Deadline", "Dimensions"},
          {false, false, false, true, true, false, false},
          {}};
  for (const v1::BreachingCase& c : cases.cases()) {
    t.rows.push_back(
        {c.case_id(), c.process(), c.stage(), raw ? RawSeconds(c.age()) : FormatDuration(c.age()),
         raw ? RawSeconds(c.overdue()) : FormatDuration(c.overdue()),
         raw ? RawTime(c.deadline()) : FormatTime(c.deadline()), Dimensions(c.dimensions())});
  }
  return t;
}

Document ReportDocument(const WeeklyReport& r) {
  Document doc;
  doc.title = "Weekly KPI report";
  doc.lines.push_back(
      absl::StrCat("As of ", FormatTime(r.as_of()), ". Flagged (▲ ▼): moved more than ",
                   absl::StrFormat("%g", r.threshold() * 100), "% week over week, or off zero."));
  doc.lines.push_back("");
  doc.lines.push_back(absl::StrCat("- Last 7d: ", Coverage(r.current())));
  doc.lines.push_back(absl::StrCat("- 7d before: ", Coverage(r.previous())));
  if (!r.dimensions().empty()) {
    doc.lines.push_back(absl::StrCat("- Dimensions: ", Dimensions(r.dimensions())));
  }
  if (r.partial()) {
    doc.lines.push_back(PartialLine({r.missing_replicas().begin(), r.missing_replicas().end()}));
  }

  Section highlights;
  highlights.heading = "Moved beyond the threshold";
  for (const ProcessReport& p : r.processes()) {
    for (const KpiDelta& d : p.kpis()) {
      if (!d.flagged()) continue;
      const ValueKind kind = KindOf(d.kpi());
      const std::string relative = FormatRelative(d);
      highlights.lines.push_back(absl::StrCat(
          "- ", p.process(), d.stage().empty() ? "" : absl::StrCat(" ", d.stage()), " ", d.kpi(),
          ": ", FormatValue(d.previous(), kind), " → ", FormatValue(d.current(), kind), " (",
          FormatDelta(d, kind), relative.empty() ? "" : absl::StrCat(", ", relative), ")"));
    }
  }
  if (highlights.lines.empty()) highlights.lines.push_back("Nothing.");
  doc.sections.push_back(std::move(highlights));

  for (const ProcessReport& p : r.processes()) {
    Section s;
    s.heading = p.process();
    Table t{{"Stage", "KPI", "Last 7d", "7d before", "Δ", "Δ %", "Flag"},
            {false, false, true, true, true, true, false},
            {}};
    for (const KpiDelta& d : p.kpis()) {
      const ValueKind kind = KindOf(d.kpi());
      t.rows.push_back(
          {d.stage(), d.kpi(),
           FormatValue(d.has_current() ? absl::optional<double>(d.current()) : absl::nullopt, kind),
           FormatValue(d.has_previous() ? absl::optional<double>(d.previous()) : absl::nullopt,
                       kind),
           FormatDelta(d, kind), FormatRelative(d), Arrow(d)});
    }
    s.tables.push_back(std::move(t));
    doc.sections.push_back(std::move(s));

    Section breaches;
    breaches.heading = absl::StrCat(p.process(), ": stages that breached SLA");
    if (p.sla_breaches().empty()) {
      breaches.lines.push_back("None: every exit within SLA, no case over it.");
    } else {
      Table b{{"Stage", "SLA", "SLA attainment", "Missed SLA", "Breaches", "Over SLA now"},
              {false, true, true, true, true, true},
              {}};
      for (const StageSlaBreach& x : p.sla_breaches()) {
        b.rows.push_back(
            {x.stage(), FormatDuration(x.sla()),
             FormatValue(x.has_sla_attainment() ? absl::optional<double>(x.sla_attainment())
                                                : absl::nullopt,
                         ValueKind::kRatio),
             absl::StrCat(x.missed()), absl::StrCat(x.breaches()),
             absl::StrCat(x.backlog_over_sla())});
      }
      breaches.tables.push_back(std::move(b));
    }
    doc.sections.push_back(std::move(breaches));
  }

  Section cases;
  cases.heading = "Top breaching cases";
  if (!r.breaching_cases_unavailable().empty()) {
    cases.lines.push_back(
        absl::StrCat("kpid could not list them (", r.breaching_cases_unavailable(), ")."));
  } else if (r.top_breaching_cases().empty()) {
    cases.lines.push_back("None.");
  } else {
    v1::ListBreachingCasesResponse response;
    *response.mutable_cases() = r.top_breaching_cases();
    cases.lines.push_back(absl::StrCat(r.top_breaching_cases_size(), " oldest of ",
                                       r.breaching_cases_total(), ", oldest deadline first."));
    cases.tables.push_back(CasesTable(response, /*raw=*/false));
  }
  doc.sections.push_back(std::move(cases));
  return doc;
}

Table ReportCsv(const WeeklyReport& r) {
  Table t{{"process", "stage", "kpi", "current", "previous", "delta", "relative_delta", "flagged"},
          {},
          {}};
  for (const ProcessReport& p : r.processes()) {
    for (const KpiDelta& d : p.kpis()) {
      auto opt = [](bool has, double v) { return has ? absl::optional<double>(v) : absl::nullopt; };
      t.rows.push_back(
          {p.process(), d.stage(), d.kpi(), Raw(opt(d.has_current(), d.current())),
           Raw(opt(d.has_previous(), d.previous())), Raw(opt(d.has_delta(), d.delta())),
           Raw(opt(d.has_relative_delta(), d.relative_delta())), d.flagged() ? "true" : "false"});
    }
  }
  return t;
}

}  // namespace kpid::kpictl
