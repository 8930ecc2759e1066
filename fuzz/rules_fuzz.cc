// Fuzzes the alert-rule parser: any text must give rules or located errors,
// never a crash, a hang or an escaped yaml-cpp exception; rules that load
// must be ones the engine can index and render.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "daemon/alert/rule.h"
#include "daemon/model/config.h"

namespace {

// The processes, windows and dimensions the seed corpus refers to
// (examples/lead_to_cash.yaml's, and the unit tests' "sales").
constexpr char kConfig[] = R"(
windows: [5m, 1h, 24h, 7d]
dimensions: {names: [region, channel]}
processes:
  - id: lead_to_cash
    stages: [{id: lead, sla: 1h}, {id: mql, sla: 24h}, {id: sql, sla: 48h},
             {id: demo, sla: 72h}, {id: quote, sla: 48h}]
  - id: sales
    stages: [{id: lead, sla: 1h}, {id: quote, sla: 1d}]
)";

const kpid::model::Config& FuzzConfig() {
  static const kpid::model::Config config = *kpid::model::ParseConfig(kConfig, "kpid.yaml");
  return config;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using kpid::alert::AlertRule;
  using kpid::alert::RuleGroup;
  const kpid::model::Config& config = FuzzConfig();
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  const absl::StatusOr<std::vector<RuleGroup>> groups =
      kpid::alert::ParseRules(text, "fuzz.yaml", &config);
  // Without a config (`kpid check-rules` alone) only the rules' shape is
  // checked: what loads against a config loads without one.
  const bool shape_ok = kpid::alert::ParseRules(text, "fuzz.yaml", nullptr).ok();
  if (!groups.ok()) return 0;
  if (!shape_ok) __builtin_trap();
  const std::map<std::string, std::string> labels = {{"stage", "quote"}, {"region", "emea"}};
  for (const RuleGroup& group : *groups) {
    if (group.interval <= absl::ZeroDuration()) __builtin_trap();
    for (const AlertRule& rule : group.rules) {
      // The engine indexes the config with these.
      if (rule.process < 0 || static_cast<size_t>(rule.process) >= config.processes.size()) {
        __builtin_trap();
      }
      const size_t stages = config.processes[static_cast<size_t>(rule.process)].stages.size();
      if (rule.stage && (*rule.stage < 0 || static_cast<size_t>(*rule.stage) >= stages)) {
        __builtin_trap();
      }
      if (rule.window &&
          (*rule.window < 0 || static_cast<size_t>(*rule.window) >= config.windows.size())) {
        __builtin_trap();
      }
      for (const auto& [name, t] : rule.labels) kpid::alert::Render(t, 0.5, labels);
      for (const auto& [name, t] : rule.annotations) kpid::alert::Render(t, 1e300, labels);
    }
  }
  return 0;
}
