#include "daemon/alert/rule_engine.h"

#include <algorithm>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "daemon/aggregate/kpi_reading.h"
#include "daemon/common/duration.h"
#include "daemon/common/log.h"
#include "daemon/export/metric_builder.h"

namespace kpid::alert {
namespace {

constexpr absl::Duration kChangePoll = absl::Milliseconds(10);

std::string Fingerprint(const std::map<std::string, std::string>& labels) {
  std::string key;
  for (const auto& [k, v] : labels) absl::StrAppend(&key, k, "\x1f", v, "\x1e");
  return key;
}

}  // namespace

std::string RuleIdentity(const RuleGroup& group, const AlertRule& rule) {
  // Fields joined with separators no YAML scalar of a valid rule contains.
  std::string id = absl::StrCat(group.name, "\x1f", rule.name, "\x1f", rule.process, "\x1f",
                                rule.stage ? absl::StrCat(*rule.stage) : "*", "\x1f", rule.kpi,
                                "\x1f", rule.window ? absl::StrCat(*rule.window) : "-", "\x1f");
  for (const std::string& by : rule.by) absl::StrAppend(&id, by, "\x1e");
  absl::StrAppend(&id, "\x1f");
  for (const auto& [name, t] : rule.labels) absl::StrAppend(&id, name, "\x1d", t.text, "\x1e");
  return id;
}

RuleEngine::RuleEngine(Options options)
    : options_(std::move(options)),
      shards_(options_.shard_source),
      seen_changes_(options_.config->processes.size(), 0),
      resend_interval_(options_.resend_interval) {
  absl::MutexLock lock(&eval_mu_);
  InstallRules(options_.rules);
}

RuleEngine::~RuleEngine() { Stop(); }

void RuleEngine::Start() {
  thread_ = std::thread([this] { Run(); });
}

void RuleEngine::Stop() {
  stop_.store(true, std::memory_order_release);
  if (thread_.joinable()) thread_.join();
}

void RuleEngine::Run() {
  while (!stop_.load(std::memory_order_acquire)) {
    EvaluateDue(absl::Now());
    absl::SleepFor(kChangePoll);
  }
}

void RuleEngine::InstallRules(const RuleSet* rules) {
  rules_ = rules;
  active_.clear();
  for (const RuleGroup& group : rules->groups) {
    std::vector<ActiveRule>& active = active_.emplace_back();
    for (const AlertRule& rule : group.rules) active.push_back({&rule, RuleIdentity(group, rule)});
  }
  next_due_.assign(rules->groups.size(), absl::InfinitePast());
}

RuleReplacement RuleEngine::ReplaceRules(RuleSet rules, absl::Time wall_now) {
  auto owned = std::make_unique<const RuleSet>(std::move(rules));
  absl::MutexLock eval_lock(&eval_mu_);
  std::set<std::string> old_ids;
  std::map<std::string, absl::Time> due_by_group;
  for (size_t g = 0; g < active_.size(); ++g) {
    for (const ActiveRule& active : active_[g]) old_ids.insert(active.identity);
    due_by_group[rules_->groups[g].name] = next_due_[g];
  }
  InstallRules(owned.get());
  owned_rules_ = std::move(owned);  // the old set is no longer referenced
  // A group that stays keeps its schedule; a new one is due now.
  for (size_t g = 0; g < rules_->groups.size(); ++g) {
    auto it = due_by_group.find(rules_->groups[g].name);
    if (it != due_by_group.end()) next_due_[g] = it->second;
  }

  RuleReplacement result;
  std::set<std::string> new_ids;
  for (const auto& group : active_) {
    for (const ActiveRule& active : group) {
      new_ids.insert(active.identity);
      ++(old_ids.count(active.identity) ? result.kept : result.added);
    }
  }
  for (const std::string& id : old_ids) result.removed += new_ids.count(id) == 0;

  std::vector<AlertNotification> out;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = instances_.begin(); it != instances_.end();) {
      if (new_ids.count(it->second.rule)) {
        ++it;
        continue;
      }
      if (it->second.state.phase() == AlertPhase::kFiring) {
        // Its rule will never resolve it: resolve it now rather than leave
        // it firing in Alertmanager until its endsAt runs out.
        AlertNotification n = Notification(it->second, wall_now);
        n.ends_at = wall_now;
        out.push_back(std::move(n));
        ++result.resolved;
      }
      it = instances_.erase(it);
    }
  }
  Send(std::move(out));
  return result;
}

void RuleEngine::RedeliverFiring(absl::Duration resend_interval, absl::Time wall_now) {
  absl::MutexLock eval_lock(&eval_mu_);
  resend_interval_ = resend_interval;
  std::vector<AlertNotification> out;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [key, instance] : instances_) {
      if (instance.state.phase() != AlertPhase::kFiring) continue;
      out.push_back(Notification(instance, wall_now));
      instance.last_sent = wall_now;
    }
  }
  Send(std::move(out));
}

void RuleEngine::Send(std::vector<AlertNotification> out) {
  if (!out.empty() && options_.sink != nullptr) options_.sink->Send(std::move(out));
}

void RuleEngine::EvaluateAll(absl::Time wall_now) {
  absl::MutexLock eval_lock(&eval_mu_);
  const aggregate::ShardSet set = shards_();
  const aggregate::MergedReader reader(set.shards);
  std::vector<AlertNotification> out;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& group : active_) {
      for (const ActiveRule& active : group) EvaluateRule(active, set, reader, wall_now, &out);
    }
  }
  Send(std::move(out));
}

void RuleEngine::EvaluateDue(absl::Time wall_now) {
  absl::MutexLock eval_lock(&eval_mu_);
  const aggregate::ShardSet set = shards_();
  const aggregate::MergedReader reader(set.shards);
  // Another set of engines (a partition assigned or revoked) changes the
  // sums without a new fact: every process counts as changed.
  const bool new_set = set.generation != seen_generation_;
  seen_generation_ = set.generation;
  std::vector<bool> changed(seen_changes_.size());
  for (size_t p = 0; p < seen_changes_.size(); ++p) {
    const uint64_t n = reader.ChangeCount(static_cast<int>(p));
    changed[p] = new_set || n != seen_changes_[p];
    seen_changes_[p] = n;
  }
  std::vector<AlertNotification> out;
  {
    absl::MutexLock lock(&mu_);
    for (size_t g = 0; g < active_.size(); ++g) {
      const bool due = wall_now >= next_due_[g];
      if (due) next_due_[g] = wall_now + rules_->groups[g].interval;
      for (const ActiveRule& active : active_[g]) {
        if (due || changed[static_cast<size_t>(active.rule->process)]) {
          EvaluateRule(active, set, reader, wall_now, &out);
        }
      }
    }
  }
  Send(std::move(out));
}

void RuleEngine::EvaluateRule(const ActiveRule& active, const aggregate::ShardSet& set,
                              const aggregate::MergedReader& reader, absl::Time wall_now,
                              std::vector<AlertNotification>* out) {
  const AlertRule& rule = *active.rule;
  const model::ProcessConfig& process = options_.config->processes[rule.process];
  const auto& dim_names = options_.config->dimensions.names;

  // Series grouped by the values of the rule's `by` dimensions (one group of
  // everything without `by`).
  std::vector<size_t> by_index;
  for (const std::string& name : rule.by) {
    by_index.push_back(static_cast<size_t>(std::find(dim_names.begin(), dim_names.end(), name) -
                                           dim_names.begin()));
  }
  std::map<std::vector<std::string>, std::vector<aggregate::MergedReader::SeriesRef>> groups;
  if (!rule.by.empty()) {
    for (const auto& ref : reader.ListSeries(rule.process)) {
      const std::vector<std::string>& values =
          set.tables[static_cast<size_t>(ref.shard)]->Values(rule.process, ref.dims);
      std::vector<std::string> key;
      for (size_t i : by_index) key.push_back(i < values.size() ? values[i] : "");
      groups[key].push_back(ref);
    }
  } else {
    groups[{}];
  }

  const absl::Time window_end = options_.window_clock->Now();
  const aggregate::WindowSpan span =
      rule.window ? reader.Resolve(*rule.window, window_end) : aggregate::WindowSpan{};
  const bool quantile = aggregate::QuantileOf(rule.kpi).has_value();
  const bool current = rule.kpi == "backlog" || rule.kpi == "backlog_over_sla";

  std::vector<int> stages;
  if (rule.scope == model::KpiScope::kStage) {
    if (rule.stage) {
      stages.push_back(*rule.stage);
    } else {
      for (size_t s = 0; s < process.stages.size(); ++s) stages.push_back(static_cast<int>(s));
    }
  } else {
    stages.push_back(-1);
  }

  for (const auto& [by_values, refs] : groups) {
    const bool all = rule.by.empty();
    aggregate::SeriesWindow window;
    aggregate::SeriesTotals totals;
    if (current) {
      totals = all ? reader.ReadAllDimsTotals(rule.process)
                   : reader.ReadSeriesTotals(rule.process, refs);
    } else if (!quantile) {
      window = all ? reader.ReadAllDimsWindow(rule.process, span)
                   : reader.ReadSeriesWindow(rule.process, refs, span);
    }
    for (int stage : stages) {
      aggregate::KpiReading reading;
      if (current) {
        const size_t s = static_cast<size_t>(stage);
        if (s < totals.stages.size()) {
          const auto& t = totals.stages[s];
          reading.value =
              static_cast<double>(rule.kpi == "backlog" ? t.backlog : t.backlog_over_sla);
        } else {
          reading.value = 0;
        }
        reading.events = UINT64_MAX;  // a current value needs no minimum
      } else {
        reading = aggregate::ReadWindowKpi(reader, rule.process, stage, rule.kpi, span, &window);
      }

      Verdict verdict = Verdict::kNone;
      if (reading.value && reading.events >= static_cast<uint64_t>(rule.min_events)) {
        verdict =
            Compare(rule.op, *reading.value, rule.threshold) ? Verdict::kTrue : Verdict::kFalse;
      }
      std::map<std::string, std::string> labels = {{"alertname", rule.name},
                                                   {"process", process.id}};
      if (stage >= 0) labels["stage"] = process.stages[static_cast<size_t>(stage)].id;
      if (rule.window) {
        labels["window"] = FormatPromDuration(options_.config->windows[*rule.window]);
      }
      for (size_t i = 0; i < rule.by.size(); ++i) labels[rule.by[i]] = by_values[i];
      Apply(active, std::move(labels), verdict, reading.value.value_or(0), wall_now, out);
    }
  }
}

void RuleEngine::Apply(const ActiveRule& active, std::map<std::string, std::string> labels,
                       Verdict verdict, double value, absl::Time wall_now,
                       std::vector<AlertNotification>* out) {
  const AlertRule& rule = *active.rule;
  // Rule labels join the identity; templates see kpid's labels.
  const std::map<std::string, std::string> base = labels;
  for (const auto& [name, t] : rule.labels) labels[name] = Render(t, value, base);
  const std::string key = Fingerprint(labels);
  auto it = instances_.find(key);
  if (it == instances_.end()) {
    if (verdict != Verdict::kTrue) return;  // nothing to track until it first holds
    it = instances_.emplace(key, Instance{active.identity, labels, {}, {}, absl::InfinitePast()})
             .first;
  }
  Instance& instance = it->second;
  const Transition transition =
      instance.state.Evaluate(verdict, value, wall_now, rule.for_duration, rule.keep_firing_for);
  instance.annotations.clear();
  for (const auto& [name, t] : rule.annotations) {
    instance.annotations[name] = Render(t, instance.state.value(), base);
  }
  switch (transition) {
    case Transition::kFired:
      log::Warn("alert firing", {{"alert", rule.name}, {"value", absl::StrCat(value)}});
      [[fallthrough]];
    case Transition::kResolved:
      out->push_back(Notification(instance, wall_now));
      instance.last_sent = wall_now;
      break;
    case Transition::kCancelled:
      instances_.erase(it);
      return;
    default:
      if (instance.state.phase() == AlertPhase::kFiring &&
          wall_now - instance.last_sent >= resend_interval_) {
        out->push_back(Notification(instance, wall_now));
        instance.last_sent = wall_now;
      }
  }
}

AlertNotification RuleEngine::Notification(const Instance& instance, absl::Time wall_now) const {
  AlertNotification n;
  n.labels = instance.labels;
  n.annotations = instance.annotations;
  n.starts_at = instance.state.active_at();
  n.generator_url = options_.generator_url;
  // Firing: valid for a few resend intervals, so Alertmanager resolves it by
  // itself only if kpid stops sending; resolved: ends when it resolved.
  n.ends_at = instance.state.phase() == AlertPhase::kResolved ? instance.state.resolved_at()
                                                              : wall_now + 4 * resend_interval_;
  return n;
}

std::vector<AlertView> RuleEngine::Alerts() const {
  absl::MutexLock lock(&mu_);
  std::vector<AlertView> views;
  for (const auto& [key, instance] : instances_) {
    views.push_back({instance.labels, instance.annotations, instance.state.phase(),
                     instance.state.value(), instance.state.active_at()});
  }
  return views;
}

std::vector<prometheus::MetricFamily> RuleEngine::Collect() const {
  prometheus::MetricFamily family = exporter::Family(
      "kpid_alerts", "Pending and firing alert instances (1 each), as Prometheus' ALERTS.",
      prometheus::MetricType::Gauge);
  for (const AlertView& alert : Alerts()) {
    if (alert.phase != AlertPhase::kPending && alert.phase != AlertPhase::kFiring) continue;
    exporter::Labels labels = {{"alertname", alert.labels.at("alertname")},
                               {"state", std::string(AlertPhaseName(alert.phase))}};
    for (const auto& [k, v] : alert.labels) {
      if (k != "alertname") labels.push_back({k, v});
    }
    exporter::AddGauge(&family, std::move(labels), 1);
  }
  return {std::move(family)};
}

}  // namespace kpid::alert
