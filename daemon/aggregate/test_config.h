// The config several aggregator tests share: process "p" with stages "a"
// (SLA 10m) and "b" (SLA 1h), 2h retention, and the windows a test asks for.
#pragma once

#include <vector>

#include "absl/time/time.h"
#include "daemon/model/config.h"

namespace kpid::aggregate {

inline model::Config TwoStageTestConfig(std::vector<absl::Duration> windows) {
  model::Config c;
  c.windows = std::move(windows);
  c.retention = absl::Hours(2);
  model::ProcessConfig p;
  p.id = "p";
  p.stages = {{"a", absl::Minutes(10), {}}, {"b", absl::Hours(1), {}}};
  c.processes.push_back(p);
  return c;
}

}  // namespace kpid::aggregate
