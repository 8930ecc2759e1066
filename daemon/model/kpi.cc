#include "daemon/model/kpi.h"

namespace kpid::model {

const std::vector<KpiInfo>& AllKpis() {
  static const auto* const kKpis = new std::vector<KpiInfo>{
      {"entered", KpiScope::kStage, "cases that entered the stage"},
      {"exited", KpiScope::kStage, "cases that left the stage (throughput)"},
      {"throughput", KpiScope::kStage, "cases that left the stage"},
      {"advanced", KpiScope::kStage, "exits that moved on"},
      {"fallout", KpiScope::kStage, "exits that fell out"},
      {"sla_met", KpiScope::kStage, "exits within the stage SLA"},
      {"rework", KpiScope::kStage, "re-entries of the stage"},
      {"conversion", KpiScope::kStage, "advanced / exits"},
      {"fallout_ratio", KpiScope::kStage, "fallout / exits"},
      {"sla_attainment", KpiScope::kStage, "exits within SLA / exits"},
      {"rework_ratio", KpiScope::kStage, "rework / entered"},
      {"cycle_time_p50", KpiScope::kStage, "median time in stage of the exits"},
      {"cycle_time_p90", KpiScope::kStage, "90th percentile time in stage"},
      {"cycle_time_p99", KpiScope::kStage, "99th percentile time in stage"},
      {"backlog", KpiScope::kStage, "open cases in the stage now"},
      {"backlog_over_sla", KpiScope::kStage, "open cases past the stage SLA now"},
      {"sla_breaches", KpiScope::kStage, "open cases that passed their deadline"},
      {"started", KpiScope::kProcess, "cases started"},
      {"events", KpiScope::kProcess,
       "accepted events of every kind (0 over a window: the stream has gone quiet)"},
      {"completed", KpiScope::kProcess, "cases completed"},
      {"fallout", KpiScope::kProcess, "cases fallen out"},
      {"win_ratio", KpiScope::kProcess, "completed / (completed + fallout)"},
      {"revenue", KpiScope::kProcess, "sum of completed amounts"},
      {"avg_deal", KpiScope::kProcess, "revenue / completed"},
      {"cost", KpiScope::kProcess, "sum of costs"},
      {"cost_to_serve", KpiScope::kProcess, "cost / completed"},
      {"feedback_score", KpiScope::kProcess, "mean feedback score"},
      {"lead_time_p50", KpiScope::kProcess, "median lead time of completed cases"},
      {"lead_time_p90", KpiScope::kProcess, "90th percentile lead time"},
      {"lead_time_p99", KpiScope::kProcess, "99th percentile lead time"},
  };
  return *kKpis;
}

const KpiInfo* FindKpi(absl::string_view name, KpiScope scope) {
  for (const KpiInfo& kpi : AllKpis()) {
    if (kpi.name == name && kpi.scope == scope) return &kpi;
  }
  return nullptr;
}

}  // namespace kpid::model
