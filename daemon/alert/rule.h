// Alert rules (DESIGN §5): the kpid format, parsed and validated against the
// config, so a rule set that loads is one the engine can evaluate.
//
//   absl::StatusOr<RuleSet> rules = LoadRuleFiles({"rules/sla.yaml"}, config);
//   // error message: one "file:line:col: message" per line
//
//   groups:
//     - name: lead_to_cash_sla
//       interval: 1s
//       rules:
//         - alert: QuoteSlaAttainmentLow
//           process: lead_to_cash
//           stage: quote            # omit: one instance per stage
//           kpi: sla_attainment     # a window KPI, or backlog / backlog_over_sla
//           window: 1h
//           op: "<"
//           threshold: 0.95
//           min_events: 20
//           for: 5m
//           keep_firing_for: 10m
//           by: [region]            # one instance per value of these dimensions
//           labels: {severity: page}
//           annotations: {summary: "Quote SLA attainment {{ $value }} < 95%"}
//
// Values are plain data, immutable once loaded.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "daemon/model/config.h"
#include "daemon/model/kpi.h"

namespace kpid::alert {

enum class CompareOp { kLess, kLessEqual, kGreater, kGreaterEqual, kEqual, kNotEqual };

// "<", "<=", ">", ">=", "==", "!=".
absl::string_view CompareOpName(CompareOp op);
bool Compare(CompareOp op, double value, double threshold);

// A label or annotation value with `{{ $value }}` and `{{ $labels.NAME }}`
// placeholders, checked at load.
struct Template {
  std::string text;
};

struct AlertRule {
  std::string name;          // `alert`
  std::string location;      // "file:line:col" of the rule, for logs
  int process = -1;          // index into Config::processes
  std::optional<int> stage;  // unset: every stage of the process
  std::string kpi;
  model::KpiScope scope = model::KpiScope::kStage;
  // Index into Config::windows; unset for the current-state KPIs (backlog,
  // backlog_over_sla), which have no window.
  std::optional<int> window;
  CompareOp op = CompareOp::kLess;
  double threshold = 0;
  int64_t min_events = 0;  // no verdict with fewer exits (or events) in the window
  absl::Duration for_duration = absl::ZeroDuration();
  absl::Duration keep_firing_for = absl::ZeroDuration();
  std::vector<std::string> by;  // dimension names
  std::map<std::string, Template> labels;
  std::map<std::string, Template> annotations;
};

struct RuleGroup {
  std::string name;
  absl::Duration interval = absl::Seconds(1);
  std::vector<AlertRule> rules;
};

struct RuleSet {
  std::vector<RuleGroup> groups;
  size_t rule_count() const;
};

// Parses one file's text; `filename` prefixes every error. With a null
// `config` only the rules' own shape is checked (processes, stages, windows
// and dimensions unresolved): for `kpid check-rules` without --config.
absl::StatusOr<std::vector<RuleGroup>> ParseRules(absl::string_view yaml,
                                                  absl::string_view filename,
                                                  const model::Config* config);

// Reads and parses every file; alert names must be unique across all of them.
// Every error of every file is reported, not just the first.
absl::StatusOr<RuleSet> LoadRuleFiles(const std::vector<std::string>& paths,
                                      const model::Config* config);

// Expands the config's `rules:` globs (relative to the config file's folder).
absl::StatusOr<std::vector<std::string>> ExpandRuleGlobs(const model::Config& config);

// Fills a template: `{{ $value }}` and `{{ $labels.NAME }}` (spaces inside
// the braces optional). Unknown labels render empty.
std::string Render(const Template& t, double value,
                   const std::map<std::string, std::string>& labels);

}  // namespace kpid::alert
