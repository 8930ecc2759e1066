#include "tools/kpictl/report.h"

#include <algorithm>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace kpid::kpictl {
namespace {

absl::optional<double> Seconds(bool has, const google::protobuf::Duration& d) {
  if (!has) return absl::nullopt;
  return static_cast<double>(d.seconds()) + d.nanos() / 1e9;
}

}  // namespace

const std::vector<ReportKpi>& ProcessReportKpis() {
  static const auto* const kKpis = new std::vector<ReportKpi>{
      {"started", ValueKind::kCount},
      {"completed", ValueKind::kCount},
      {"fallout", ValueKind::kCount},
      {"win_ratio", ValueKind::kRatio},
      {"revenue", ValueKind::kMoney},
      {"avg_deal", ValueKind::kMoney},
      {"cost", ValueKind::kMoney},
      {"cost_to_serve", ValueKind::kMoney},
      {"feedback_score", ValueKind::kScore},
      {"lead_time_p50", ValueKind::kDuration},
      {"lead_time_p90", ValueKind::kDuration},
  };
  return *kKpis;
}

const std::vector<ReportKpi>& StageReportKpis() {
  static const auto* const kKpis = new std::vector<ReportKpi>{
      {"entered", ValueKind::kCount},           {"exited", ValueKind::kCount},
      {"conversion", ValueKind::kRatio},        {"fallout_ratio", ValueKind::kRatio},
      {"sla_attainment", ValueKind::kRatio},    {"rework_ratio", ValueKind::kRatio},
      {"sla_breaches", ValueKind::kCount},      {"cycle_time_p50", ValueKind::kDuration},
      {"cycle_time_p90", ValueKind::kDuration},
  };
  return *kKpis;
}

ValueKind KindOf(absl::string_view kpi) {
  for (const auto* list : {&ProcessReportKpis(), &StageReportKpis()}) {
    for (const ReportKpi& k : *list) {
      if (k.name == kpi) return k.kind;
    }
  }
  return ValueKind::kCount;
}

absl::optional<double> ProcessKpi(const v1::ProcessWindow& w, absl::string_view kpi) {
  if (kpi == "started") return static_cast<double>(w.started());
  if (kpi == "completed") return static_cast<double>(w.completed());
  if (kpi == "fallout") return static_cast<double>(w.fallout());
  if (kpi == "revenue") return w.revenue();
  if (kpi == "cost") return w.cost();
  if (kpi == "win_ratio" && w.has_win_ratio()) return w.win_ratio();
  if (kpi == "avg_deal" && w.has_avg_deal()) return w.avg_deal();
  if (kpi == "cost_to_serve" && w.has_cost_to_serve()) return w.cost_to_serve();
  if (kpi == "feedback_score" && w.has_feedback_score()) return w.feedback_score();
  if (kpi == "lead_time_p50") return Seconds(w.lead_time().has_p50(), w.lead_time().p50());
  if (kpi == "lead_time_p90") return Seconds(w.lead_time().has_p90(), w.lead_time().p90());
  if (kpi == "lead_time_p99") return Seconds(w.lead_time().has_p99(), w.lead_time().p99());
  return absl::nullopt;
}

absl::optional<double> StageKpi(const v1::StageWindow& s, absl::string_view kpi) {
  if (kpi == "entered") return static_cast<double>(s.entered());
  if (kpi == "exited" || kpi == "throughput") return static_cast<double>(s.exited());
  if (kpi == "advanced") return static_cast<double>(s.advanced());
  if (kpi == "fallout") return static_cast<double>(s.fallout());
  if (kpi == "sla_met") return static_cast<double>(s.sla_met());
  if (kpi == "rework") return static_cast<double>(s.rework());
  if (kpi == "sla_breaches") return static_cast<double>(s.sla_breaches());
  if (kpi == "conversion" && s.has_conversion()) return s.conversion();
  if (kpi == "fallout_ratio" && s.has_fallout_ratio()) return s.fallout_ratio();
  if (kpi == "sla_attainment" && s.has_sla_attainment()) return s.sla_attainment();
  if (kpi == "rework_ratio" && s.has_rework_ratio()) return s.rework_ratio();
  if (kpi == "cycle_time_p50") return Seconds(s.cycle_time().has_p50(), s.cycle_time().p50());
  if (kpi == "cycle_time_p90") return Seconds(s.cycle_time().has_p90(), s.cycle_time().p90());
  if (kpi == "cycle_time_p99") return Seconds(s.cycle_time().has_p99(), s.cycle_time().p99());
  return absl::nullopt;
}

KpiDelta Compare(absl::optional<double> current, absl::optional<double> previous,
                 double threshold) {
  KpiDelta d;
  if (current.has_value()) d.set_current(*current);
  if (previous.has_value()) d.set_previous(*previous);
  if (!current.has_value() || !previous.has_value()) return d;
  const double delta = *current - *previous;
  d.set_delta(delta);
  if (*previous == 0) {
    d.set_flagged(delta != 0);
    return d;
  }
  const double relative = delta / std::fabs(*previous);
  d.set_relative_delta(relative);
  d.set_flagged(std::fabs(relative) > threshold);
  return d;
}

std::vector<std::string> MissingReplicas(const v1::Snapshot& snapshot) {
  std::vector<std::string> missing;
  for (const v1::ReplicaStatus& r : snapshot.replicas()) {
    if (!r.error().empty()) missing.push_back(absl::StrCat(r.replica(), ": ", r.error()));
    if (!r.restoring_partitions().empty()) {
      missing.push_back(absl::StrCat(r.replica(), ": partitions ",
                                     absl::StrJoin(r.restoring_partitions(), ","),
                                     " still restoring"));
    }
  }
  return missing;
}

absl::StatusOr<WeeklyReport> BuildWeeklyReport(const WeeklyInputs& in) {
  const v1::Snapshot& cur = *in.current;
  const v1::Snapshot& prev = *in.previous;
  if (cur.processes_size() != prev.processes_size()) {
    return absl::InvalidArgumentError("the two snapshots hold different processes");
  }
  WeeklyReport report;
  *report.mutable_as_of() = cur.as_of();
  report.set_threshold(in.threshold);
  for (const v1::Snapshot* snapshot : {in.current, in.previous}) {
    if (snapshot->partial()) report.set_partial(true);
    for (const std::string& missing : MissingReplicas(*snapshot)) {
      if (std::find(report.missing_replicas().begin(), report.missing_replicas().end(), missing) ==
          report.missing_replicas().end()) {
        report.add_missing_replicas(missing);
      }
    }
  }
  *report.mutable_dimensions() = cur.dimensions();
  for (int p = 0; p < cur.processes_size(); ++p) {
    const v1::ProcessSnapshot& cp = cur.processes(p);
    const v1::ProcessSnapshot& pp = prev.processes(p);
    if (cp.process() != pp.process() || cp.windows_size() != 1 || pp.windows_size() != 1 ||
        cp.windows(0).stages_size() != pp.windows(0).stages_size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("snapshots of process \"", cp.process(), "\" do not pair up"));
    }
    const v1::ProcessWindow& cw = cp.windows(0);
    const v1::ProcessWindow& pw = pp.windows(0);
    if (p == 0) {
      *report.mutable_current() = cw.coverage();
      *report.mutable_previous() = pw.coverage();
    }
    ProcessReport* out = report.add_processes();
    out->set_process(cp.process());
    for (const ReportKpi& kpi : ProcessReportKpis()) {
      KpiDelta* d = out->add_kpis();
      *d = Compare(ProcessKpi(cw, kpi.name), ProcessKpi(pw, kpi.name), in.threshold);
      d->set_kpi(std::string(kpi.name));
    }
    for (int s = 0; s < cw.stages_size(); ++s) {
      for (const ReportKpi& kpi : StageReportKpis()) {
        KpiDelta* d = out->add_kpis();
        *d = Compare(StageKpi(cw.stages(s), kpi.name), StageKpi(pw.stages(s), kpi.name),
                     in.threshold);
        d->set_stage(cw.stages(s).stage());
        d->set_kpi(std::string(kpi.name));
      }
    }
    for (int s = 0; s < cw.stages_size(); ++s) {
      const v1::StageWindow& st = cw.stages(s);
      const int64_t over_sla = s < cp.backlog_size() ? cp.backlog(s).backlog_over_sla() : 0;
      const uint64_t missed = st.exited() - st.sla_met();
      if (missed == 0 && st.sla_breaches() == 0 && over_sla == 0) continue;
      StageSlaBreach* b = out->add_sla_breaches();
      b->set_stage(st.stage());
      if (s < cp.backlog_size()) *b->mutable_sla() = cp.backlog(s).sla();
      if (st.has_sla_attainment()) b->set_sla_attainment(st.sla_attainment());
      b->set_missed(missed);
      b->set_breaches(st.sla_breaches());
      b->set_backlog_over_sla(over_sla);
    }
  }
  if (in.breaching != nullptr) {
    *report.mutable_top_breaching_cases() = in.breaching->cases();
    report.set_breaching_cases_total(in.breaching->total());
  } else {
    report.set_breaching_cases_unavailable(in.breaching_unavailable);
  }
  return report;
}

}  // namespace kpid::kpictl
