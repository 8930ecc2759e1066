// The catalog of window KPIs of DESIGN §3, by the names configs and rules use.
//
//   if (const KpiInfo* kpi = FindKpi("sla_attainment")) { ... kpi->scope ... }
//
// Names are the contract: KPI-tree nodes (`kpi:`) and alert rules (`kpi:`)
// refer to them.
#pragma once

#include <vector>

#include "absl/strings/string_view.h"

namespace kpid::model {

enum class KpiScope { kStage, kProcess };

struct KpiInfo {
  absl::string_view name;
  KpiScope scope;
  absl::string_view description;
};

// All KPIs, stage-level first.
const std::vector<KpiInfo>& AllKpis();

// The KPI named `name` at `scope`, or nullptr.
const KpiInfo* FindKpi(absl::string_view name, KpiScope scope);

}  // namespace kpid::model
