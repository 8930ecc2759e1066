#include "daemon/alert/rule.h"

#include <glob.h>

#include <algorithm>
#include <cmath>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "daemon/common/duration.h"
#include "daemon/common/file_util.h"
#include "daemon/common/yaml_reader.h"

namespace kpid::alert {
namespace {

constexpr std::pair<absl::string_view, CompareOp> kOps[] = {
    {"<", CompareOp::kLess},          {"<=", CompareOp::kLessEqual}, {">", CompareOp::kGreater},
    {">=", CompareOp::kGreaterEqual}, {"==", CompareOp::kEqual},     {"!=", CompareOp::kNotEqual},
};

// KPIs that are current values, not counts over a window.
bool IsCurrentValue(absl::string_view kpi) { return kpi == "backlog" || kpi == "backlog_over_sla"; }

// Labels kpid puts on every alert instance (kpid_alerts{alertname,state},
// DESIGN §4, and the rule's own process/stage/window).
bool IsInstanceLabel(absl::string_view name) {
  return name == "alertname" || name == "state" || name == "process" || name == "stage" ||
         name == "window";
}

bool IsLabelName(absl::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    if (!(absl::ascii_isalpha(c) || c == '_' || (i > 0 && absl::ascii_isdigit(c)))) return false;
  }
  return true;
}

// Visits each `{{ ... }}` of `text`: fn(inner) with surrounding spaces
// stripped. Returns an error message for an unclosed `{{`.
template <typename Fn>
std::string ForEachPlaceholder(absl::string_view text, Fn&& fn) {
  size_t pos = 0;
  while ((pos = text.find("{{", pos)) != absl::string_view::npos) {
    const size_t end = text.find("}}", pos + 2);
    if (end == absl::string_view::npos) return "\"{{\" without a closing \"}}\"";
    fn(absl::StripAsciiWhitespace(text.substr(pos + 2, end - pos - 2)));
    pos = end + 2;
  }
  return "";
}

class RuleParser {
 public:
  // Without a config only the rules' own shape is checked (check-rules with
  // no --config); processes, stages, windows and dimensions then go unchecked.
  RuleParser(absl::string_view filename, const model::Config* config)
      : diag_(std::string(filename)), config_(config) {}

  absl::StatusOr<std::vector<RuleGroup>> Parse(absl::string_view yaml) {
    std::optional<YAML::Node> root = LoadYaml(yaml, &diag_);
    if (!root) return diag_.ToStatus();
    std::vector<RuleGroup> groups;
    {
      MapReader top(*root, "", &diag_);
      if (!top.present()) {
        if (diag_.ok()) diag_.Error("empty rule file: expected \"groups:\"");
        return diag_.ToStatus();
      }
      YAML::Node list = top.Required("groups");
      if (list.IsDefined() && !list.IsSequence()) {
        diag_.Error(list.Mark(), "groups: expected a list");
      } else if (list.IsDefined()) {
        absl::flat_hash_set<std::string> names;
        for (size_t i = 0; i < list.size(); ++i) {
          RuleGroup group = ParseGroup(list[i], absl::StrCat("groups[", i, "]"));
          if (!group.name.empty() && !names.insert(group.name).second) {
            diag_.Error(list[i].Mark(), absl::StrCat("duplicate group name \"", group.name, "\""));
          }
          groups.push_back(std::move(group));
        }
      }
    }
    if (!diag_.ok()) return diag_.ToStatus();
    return groups;
  }

 private:
  std::string Location(const YAML::Mark& mark) const {
    return absl::StrCat(diag_.filename(), ":", mark.line + 1, ":", mark.column + 1);
  }

  RuleGroup ParseGroup(const YAML::Node& node, const std::string& what) {
    RuleGroup group;
    MapReader r(node, what, &diag_);
    if (!r.present()) {
      diag_.Error(node.Mark(), absl::StrCat(what, ": expected a group with name and rules"));
      return group;
    }
    YAML::Node name = r.Required("name");
    if (name.IsDefined()) group.name = ReadString(name, what + ".name", &diag_).value_or("");
    group.interval = r.Duration("interval", group.interval);
    if (YAML::Node n = r.Child("interval");
        n.IsDefined() && group.interval <= absl::ZeroDuration()) {
      diag_.Error(n.Mark(), absl::StrCat(what, ".interval: must be greater than 0"));
    }
    const std::string named = group.name.empty() ? what : absl::StrCat("group ", group.name);
    YAML::Node rules = r.Required("rules");
    if (rules.IsDefined() && !rules.IsSequence()) {
      diag_.Error(rules.Mark(), absl::StrCat(named, ": rules: expected a list"));
    } else if (rules.IsDefined()) {
      for (size_t i = 0; i < rules.size(); ++i) {
        if (std::optional<AlertRule> rule =
                ParseRule(rules[i], absl::StrCat(named, ": rules[", i, "]"))) {
          group.rules.push_back(*std::move(rule));
        }
      }
    }
    return group;
  }

  std::optional<AlertRule> ParseRule(const YAML::Node& node, const std::string& path) {
    // Errors name the rule by its alert name when it has one.
    std::string what = path;
    if (node.IsMap()) {
      for (auto it = node.begin(); it != node.end(); ++it) {
        if (it->first.IsScalar() && it->first.Scalar() == "alert" && it->second.IsScalar() &&
            !it->second.Scalar().empty()) {
          what = absl::StrCat("alert ", it->second.Scalar());
        }
      }
    }
    MapReader r(node, what, &diag_);
    if (!r.present()) {
      diag_.Error(node.Mark(), absl::StrCat(what, ": expected a rule"));
      return std::nullopt;
    }
    AlertRule rule;
    rule.location = Location(node.Mark());
    const size_t errors_before = diag_.errors().size();

    YAML::Node alert = r.Required("alert");
    if (alert.IsDefined()) {
      rule.name = ReadString(alert, what + ".alert", &diag_).value_or("");
      if (!IsLabelName(rule.name)) {
        diag_.Error(alert.Mark(), absl::StrCat(what, ".alert: \"", rule.name,
                                               "\" must be a valid name ([a-zA-Z_][a-zA-Z0-9_]*)"));
      }
    }
    const std::string& named = what;

    const model::ProcessConfig* process = nullptr;
    YAML::Node process_node = r.Required("process");
    if (process_node.IsDefined()) {
      const std::string id = ReadString(process_node, named + ": process", &diag_).value_or("");
      for (size_t p = 0; config_ != nullptr && p < config_->processes.size(); ++p) {
        if (config_->processes[p].id == id) {
          rule.process = static_cast<int>(p);
          process = &config_->processes[p];
        }
      }
      if (config_ != nullptr && process == nullptr && !id.empty()) {
        std::vector<std::string> ids;
        for (const auto& p : config_->processes) ids.push_back(p.id);
        diag_.Error(process_node.Mark(),
                    WithHint(absl::StrCat(named, ": unknown process \"", id, "\""), id, ids));
      }
    }

    YAML::Node stage_node = r.Child("stage");
    if (stage_node.IsDefined() && process != nullptr) {
      const std::string id = ReadString(stage_node, named + ": stage", &diag_).value_or("");
      const int index = process->StageIndex(id);
      if (index < 0) {
        std::vector<std::string> ids;
        for (const auto& s : process->stages) ids.push_back(s.id);
        diag_.Error(stage_node.Mark(), WithHint(absl::StrCat(named, ": unknown stage \"", id,
                                                             "\" of process ", process->id),
                                                id, ids));
      } else {
        rule.stage = index;
      }
    }

    YAML::Node kpi_node = r.Required("kpi");
    if (kpi_node.IsDefined()) {
      rule.kpi = ReadString(kpi_node, named + ": kpi", &diag_).value_or("");
      // With a stage the KPI is the stage's; without one a process KPI wins
      // (e.g. "fallout" is the process's count), else it is every stage's.
      if (stage_node.IsDefined()) {
        rule.scope = model::KpiScope::kStage;
      } else if (model::FindKpi(rule.kpi, model::KpiScope::kProcess) != nullptr) {
        rule.scope = model::KpiScope::kProcess;
      } else {
        rule.scope = model::KpiScope::kStage;
      }
      if (model::FindKpi(rule.kpi, rule.scope) == nullptr) {
        std::vector<std::string> names;
        for (const model::KpiInfo& k : model::AllKpis()) {
          if (k.scope == rule.scope) names.emplace_back(k.name);
        }
        diag_.Error(
            kpi_node.Mark(),
            WithHint(absl::StrCat(named, ": unknown ",
                                  rule.scope == model::KpiScope::kStage ? "stage" : "process",
                                  " KPI \"", rule.kpi, "\""),
                     rule.kpi, names));
      }
    }

    YAML::Node window_node = r.Child("window");
    if (IsCurrentValue(rule.kpi)) {
      if (window_node.IsDefined()) {
        diag_.Error(window_node.Mark(), absl::StrCat(named, ": ", rule.kpi,
                                                     " is a current value; window does not apply"));
      }
    } else if (!rule.kpi.empty()) {
      if (!window_node.IsDefined()) {
        diag_.Error(node.Mark(), absl::StrCat(named, ": missing required key \"window\""));
      } else if (std::optional<absl::Duration> w =
                     ReadDuration(window_node, named + ": window", &diag_);
                 w && config_ != nullptr) {
        auto it = std::find(config_->windows.begin(), config_->windows.end(), *w);
        if (it == config_->windows.end()) {
          std::vector<std::string> windows;
          for (absl::Duration d : config_->windows) windows.push_back(FormatPromDuration(d));
          diag_.Error(window_node.Mark(), absl::StrCat(named, ": window ", FormatPromDuration(*w),
                                                       " is not one of the configured windows (",
                                                       absl::StrJoin(windows, ", "), ")"));
        } else {
          rule.window = static_cast<int>(it - config_->windows.begin());
        }
      }
    }

    YAML::Node op_node = r.Required("op");
    if (op_node.IsDefined()) {
      const std::string op = ReadString(op_node, named + ": op", &diag_).value_or("");
      auto it = std::find_if(std::begin(kOps), std::end(kOps),
                             [&](const auto& entry) { return entry.first == op; });
      if (it == std::end(kOps)) {
        diag_.Error(op_node.Mark(),
                    absl::StrCat(named, ": op \"", op, "\" is not one of < <= > >= == !="));
      } else {
        rule.op = it->second;
      }
    }
    YAML::Node threshold = r.Required("threshold");
    if (threshold.IsDefined()) {
      rule.threshold = ReadDouble(threshold, named + ": threshold", &diag_).value_or(0);
    }
    rule.min_events = r.Int("min_events", 0, 0, int64_t{1} << 40);
    rule.for_duration = r.Duration("for", rule.for_duration);
    rule.keep_firing_for = r.Duration("keep_firing_for", rule.keep_firing_for);
    for (absl::string_view key : {"for", "keep_firing_for"}) {
      if (YAML::Node n = r.Child(key); n.IsDefined()) {
        const absl::Duration d = key == "for" ? rule.for_duration : rule.keep_firing_for;
        if (d < absl::ZeroDuration()) diag_.Error(n.Mark(), absl::StrCat(named, ": ", key, " < 0"));
      }
    }

    YAML::Node by = r.Child("by");
    if (by.IsDefined()) {
      rule.by = ReadStringList(by, named + ": by", &diag_);
      for (size_t i = 0; config_ != nullptr && i < rule.by.size() && i < by.size(); ++i) {
        const auto& names = config_->dimensions.names;
        if (std::find(names.begin(), names.end(), rule.by[i]) == names.end()) {
          diag_.Error(by[i].Mark(), WithHint(absl::StrCat(named, ": by: \"", rule.by[i],
                                                          "\" is not a configured dimension"),
                                             rule.by[i], names));
        } else if (IsInstanceLabel(rule.by[i])) {
          // kpid_alerts would carry the label twice: promtool and Prometheus
          // reject such a scrape whole, every kpid series with it.
          diag_.Error(by[i].Mark(),
                      absl::StrCat(named, ": by: dimension \"", rule.by[i],
                                   "\" has the name of a label kpid sets on every alert"));
        }
      }
    }

    if (!rule.by.empty() &&
        (absl::StartsWith(rule.kpi, "cycle_time_p") || absl::StartsWith(rule.kpi, "lead_time_p"))) {
      diag_.Error(by.Mark(), absl::StrCat(named, ": ", rule.kpi,
                                          " has no breakdown by dimension (quantiles are kept per "
                                          "stage and process); drop \"by\""));
    }

    // Labels a template may name: what every instance carries.
    std::vector<std::string> known_labels = {"alertname", "process", "stage", "window"};
    known_labels.insert(known_labels.end(), rule.by.begin(), rule.by.end());
    ParseTemplates(r.Child("labels"), named + ": labels", known_labels, /*label_names=*/true,
                   &rule.labels);
    ParseTemplates(r.Child("annotations"), named + ": annotations", known_labels,
                   /*label_names=*/false, &rule.annotations);
    r.Finish();
    if (diag_.errors().size() != errors_before) return std::nullopt;
    return rule;
  }

  void ParseTemplates(const YAML::Node& node, const std::string& what,
                      const std::vector<std::string>& known_labels, bool label_names,
                      std::map<std::string, Template>* out) {
    if (!node.IsDefined()) return;
    if (!node.IsMap()) {
      diag_.Error(node.Mark(), absl::StrCat(what, ": expected a mapping"));
      return;
    }
    for (auto it = node.begin(); it != node.end(); ++it) {
      const YAML::Node key = it->first;
      const YAML::Node value = it->second;
      std::optional<std::string> name = ReadString(key, what, &diag_);
      std::optional<std::string> text =
          ReadString(value, absl::StrCat(what, ".", name.value_or("")), &diag_);
      if (!name || !text) continue;
      if (label_names && (!IsLabelName(*name) || absl::StartsWith(*name, "__"))) {
        diag_.Error(key.Mark(), absl::StrCat(what, ": \"", *name, "\" is not a valid label name"));
      }
      if (label_names &&
          (IsInstanceLabel(*name) ||
           std::find(known_labels.begin(), known_labels.end(), *name) != known_labels.end())) {
        diag_.Error(key.Mark(), absl::StrCat(what, ": \"", *name, "\" is set by kpid"));
      }
      std::string problem = ForEachPlaceholder(*text, [&](absl::string_view inner) {
        if (inner == "$value") return;
        absl::string_view label = inner;
        if (absl::ConsumePrefix(&label, "$labels.") &&
            std::find(known_labels.begin(), known_labels.end(), label) != known_labels.end()) {
          return;
        }
        diag_.Error(value.Mark(), absl::StrCat(what, ".", *name, ": unknown placeholder {{ ", inner,
                                               " }} (use $value or $labels.",
                                               absl::StrJoin(known_labels, "|$labels."), ")"));
      });
      if (!problem.empty())
        diag_.Error(value.Mark(), absl::StrCat(what, ".", *name, ": ", problem));
      (*out)[*name] = Template{*text};
    }
  }

  static std::string WithHint(std::string message, absl::string_view word,
                              const std::vector<std::string>& candidates) {
    if (std::string hint = DidYouMean(word, candidates); !hint.empty()) {
      absl::StrAppend(&message, "; did you mean \"", hint, "\"?");
    }
    return message;
  }

  Diagnostics diag_;
  const model::Config* config_;
};

}  // namespace

absl::string_view CompareOpName(CompareOp op) {
  for (const auto& [name, value] : kOps) {
    if (value == op) return name;
  }
  return "?";
}

bool Compare(CompareOp op, double value, double threshold) {
  switch (op) {
    case CompareOp::kLess:
      return value < threshold;
    case CompareOp::kLessEqual:
      return value <= threshold;
    case CompareOp::kGreater:
      return value > threshold;
    case CompareOp::kGreaterEqual:
      return value >= threshold;
    case CompareOp::kEqual:
      return value == threshold;
    case CompareOp::kNotEqual:
      return value != threshold;
  }
  return false;
}

size_t RuleSet::rule_count() const {
  size_t n = 0;
  for (const RuleGroup& g : groups) n += g.rules.size();
  return n;
}

absl::StatusOr<std::vector<RuleGroup>> ParseRules(absl::string_view yaml,
                                                  absl::string_view filename,
                                                  const model::Config* config) {
  return RuleParser(filename, config).Parse(yaml);
}

absl::StatusOr<RuleSet> LoadRuleFiles(const std::vector<std::string>& paths,
                                      const model::Config* config) {
  RuleSet set;
  std::vector<std::string> errors;
  absl::flat_hash_map<std::string, std::string> seen;  // alert name -> location
  for (const std::string& path : paths) {
    absl::StatusOr<std::string> text = ReadFile(path);
    if (!text.ok()) {
      errors.emplace_back(text.status().message());
      continue;
    }
    absl::StatusOr<std::vector<RuleGroup>> groups = ParseRules(*text, path, config);
    if (!groups.ok()) {
      errors.emplace_back(groups.status().message());
      continue;
    }
    for (RuleGroup& group : *groups) {
      for (const AlertRule& rule : group.rules) {
        auto [it, inserted] = seen.emplace(rule.name, rule.location);
        if (!inserted) {
          errors.push_back(absl::StrCat(rule.location, ": duplicate alert name \"", rule.name,
                                        "\" (first at ", it->second, ")"));
        }
      }
      set.groups.push_back(std::move(group));
    }
  }
  if (!errors.empty()) return absl::InvalidArgumentError(absl::StrJoin(errors, "\n"));
  return set;
}

absl::StatusOr<std::vector<std::string>> ExpandRuleGlobs(const model::Config& config) {
  std::string base;
  if (const size_t slash = config.source_path.rfind('/'); slash != std::string::npos) {
    base = config.source_path.substr(0, slash + 1);
  }
  std::vector<std::string> paths;
  for (const std::string& pattern : config.rules) {
    const std::string full = absl::StartsWith(pattern, "/") ? pattern : base + pattern;
    glob_t matches{};
    const int rc = ::glob(full.c_str(), GLOB_ERR, nullptr, &matches);
    if (rc == 0) {
      for (size_t i = 0; i < matches.gl_pathc; ++i) paths.emplace_back(matches.gl_pathv[i]);
    }
    ::globfree(&matches);
    const bool has_wildcard = full.find_first_of("*?[") != std::string::npos;
    if (rc == GLOB_NOMATCH && !has_wildcard) {
      return absl::NotFoundError(absl::StrCat("rules: ", full, " does not exist"));
    }
    if (rc != 0 && rc != GLOB_NOMATCH) {
      return absl::UnavailableError(absl::StrCat("rules: cannot read ", full));
    }
  }
  std::sort(paths.begin(), paths.end());
  paths.erase(std::unique(paths.begin(), paths.end()), paths.end());
  return paths;
}

std::string Render(const Template& t, double value,
                   const std::map<std::string, std::string>& labels) {
  std::string out;
  absl::string_view text = t.text;
  size_t pos = 0;
  while (true) {
    const size_t open = text.find("{{", pos);
    const size_t close = open == absl::string_view::npos ? open : text.find("}}", open + 2);
    if (close == absl::string_view::npos) {
      absl::StrAppend(&out, text.substr(pos));
      return out;
    }
    absl::StrAppend(&out, text.substr(pos, open - pos));
    absl::string_view inner = absl::StripAsciiWhitespace(text.substr(open + 2, close - open - 2));
    if (inner == "$value") {
      absl::StrAppend(&out, value);
    } else if (absl::ConsumePrefix(&inner, "$labels.")) {
      if (auto it = labels.find(std::string(inner)); it != labels.end()) out.append(it->second);
    }
    pos = close + 2;
  }
}

}  // namespace kpid::alert
