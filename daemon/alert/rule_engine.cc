#include "daemon/alert/rule_engine.h"

#include <algorithm>
#include <filesystem>
#include <set>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "daemon/aggregate/kpi_reading.h"
#include "daemon/common/duration.h"
#include "daemon/common/log.h"
#include "daemon/common/state_codec.h"
#include "daemon/common/state_file.h"
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

std::string RuleIdentity(const model::Config& config, const RuleGroup& group,
                         const AlertRule& rule) {
  // By name (process, stage, window), not by index into the config: state
  // files carry identities over to a config with processes added or reordered.
  // Fields joined with separators no YAML scalar of a valid rule contains.
  const model::ProcessConfig& process = config.processes[static_cast<size_t>(rule.process)];
  std::string id = absl::StrCat(
      group.name, "\x1f", rule.name, "\x1f", process.id, "\x1f",
      rule.stage ? process.stages[static_cast<size_t>(*rule.stage)].id : "*", "\x1f", rule.kpi,
      "\x1f",
      rule.window ? FormatPromDuration(config.windows[static_cast<size_t>(*rule.window)]) : "-",
      "\x1f");
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
  kpid::MutexLock lock(&eval_mu_);
  rules_config_ = std::shared_ptr<const model::Config>(std::shared_ptr<void>(), options_.config);
  InstallRules(options_.rules);
}

RuleEngine::~RuleEngine() { Stop(); }

void RuleEngine::Start() {
  if (!options_.state_path.empty()) RestoreStateFile(absl::Now());
  thread_ = std::thread([this] { Run(); });
}

void RuleEngine::Stop() {
  stop_.store(true, std::memory_order_release);
  if (!thread_.joinable()) return;
  thread_.join();
  // After the last evaluation: a clean restart loses nothing.
  if (!options_.state_path.empty()) Checkpoint(absl::Now());
}

void RuleEngine::Run() {
  absl::Time next_checkpoint = absl::Now() + options_.checkpoint_interval;
  while (!stop_.load(std::memory_order_acquire)) {
    const absl::Time now = absl::Now();
    EvaluateDue(now);
    if (!options_.state_path.empty() && now >= next_checkpoint) {
      Checkpoint(now);
      next_checkpoint = now + options_.checkpoint_interval;
    }
    absl::SleepFor(kChangePoll);
  }
}

void RuleEngine::InstallRules(const RuleSet* rules) {
  rules_ = rules;
  active_.clear();
  for (const RuleGroup& group : rules->groups) {
    std::vector<ActiveRule>& active = active_.emplace_back();
    for (const AlertRule& rule : group.rules) {
      active.push_back({&rule, RuleIdentity(*rules_config_, group, rule)});
    }
  }
  next_due_.assign(rules->groups.size(), absl::InfinitePast());
}

RuleReplacement RuleEngine::ReplaceRules(RuleSet rules, absl::Time wall_now) {
  return ReplaceRules(std::move(rules), nullptr, wall_now);
}

RuleReplacement RuleEngine::ReplaceRules(RuleSet rules, std::shared_ptr<const model::Config> config,
                                         absl::Time wall_now) {
  auto owned = std::make_unique<const RuleSet>(std::move(rules));
  kpid::MutexLock eval_lock(&eval_mu_);
  std::set<std::string> old_ids;
  std::map<std::string, absl::Time> due_by_group;
  for (size_t g = 0; g < active_.size(); ++g) {
    for (const ActiveRule& active : active_[g]) old_ids.insert(active.identity);
    due_by_group[rules_->groups[g].name] = next_due_[g];
  }
  // Identities are names (process, stage, window ids), so the old ones
  // compare with the new ones across a config change.
  if (config != nullptr) rules_config_ = std::move(config);
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
    kpid::MutexLock lock(&mu_);
    for (auto it = instances_.begin(); it != instances_.end();) {
      if (new_ids.count(it->second.rule)) {
        ++it;
        continue;
      }
      result.resolved += ResolveOrphan(it->second, wall_now, &out);
      it = instances_.erase(it);
    }
  }
  Send(std::move(out));
  return result;
}

bool RuleEngine::ResolveOrphan(const Instance& instance, absl::Time wall_now,
                               std::vector<AlertNotification>* out) const {
  if (instance.state.phase() != AlertPhase::kFiring) return false;
  // Its rule will never resolve it: resolve it now rather than leave it
  // firing in Alertmanager until its endsAt runs out.
  AlertNotification n = Notification(instance, wall_now);
  n.ends_at = wall_now;
  out->push_back(std::move(n));
  return true;
}

void RuleEngine::RedeliverFiring(absl::Duration resend_interval, absl::Time wall_now) {
  kpid::MutexLock eval_lock(&eval_mu_);
  resend_interval_ = resend_interval;
  std::vector<AlertNotification> out;
  {
    kpid::MutexLock lock(&mu_);
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

bool RuleEngine::SameShape(const aggregate::ShardSet& set) {
  if (&aggregate::ConfigOf(set, *options_.config) != rules_config_.get()) return false;
  seen_changes_.resize(rules_config_->processes.size(), 0);
  return true;
}

void RuleEngine::EvaluateAll(absl::Time wall_now) {
  kpid::MutexLock eval_lock(&eval_mu_);
  const aggregate::ShardSet set = shards_();
  const aggregate::MergedReader reader(set.shards);
  const bool same_shape = SameShape(set);
  std::vector<AlertNotification> out;
  {
    kpid::MutexLock lock(&mu_);
    for (const auto& group : active_) {
      for (const ActiveRule& active : group) {
        if (same_shape) EvaluateRule(active, set, reader, wall_now, &out);
      }
    }
    ResendFiring(wall_now, &out);
  }
  Send(std::move(out));
}

void RuleEngine::EvaluateDue(absl::Time wall_now) {
  kpid::MutexLock eval_lock(&eval_mu_);
  const aggregate::ShardSet set = shards_();
  const aggregate::MergedReader reader(set.shards);
  // Another set of engines (a partition assigned or revoked) changes the
  // sums without a new fact: every process counts as changed.
  const bool same_shape = SameShape(set);
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
    kpid::MutexLock lock(&mu_);
    for (size_t g = 0; g < active_.size(); ++g) {
      // A group due while the rules wait for their config stays due.
      if (!same_shape) continue;
      const bool due = wall_now >= next_due_[g];
      if (due) next_due_[g] = wall_now + rules_->groups[g].interval;
      for (const ActiveRule& active : active_[g]) {
        if (due || changed[static_cast<size_t>(active.rule->process)]) {
          EvaluateRule(active, set, reader, wall_now, &out);
        }
      }
    }
    ResendFiring(wall_now, &out);
  }
  Send(std::move(out));
}

void RuleEngine::ResendFiring(absl::Time wall_now, std::vector<AlertNotification>* out) {
  // Over every instance, not only those just evaluated: a firing alert of a
  // group with a long interval, or one restored whose series has no data
  // yet, must still be re-sent before its endsAt runs out in Alertmanager.
  for (auto& [key, instance] : instances_) {
    if (instance.state.phase() != AlertPhase::kFiring ||
        wall_now - instance.last_sent < resend_interval_) {
      continue;
    }
    out->push_back(Notification(instance, wall_now));
    instance.last_sent = wall_now;
  }
}

void RuleEngine::EvaluateRule(const ActiveRule& active, const aggregate::ShardSet& set,
                              const aggregate::MergedReader& reader, absl::Time wall_now,
                              std::vector<AlertNotification>* out) {
  const AlertRule& rule = *active.rule;
  const model::ProcessConfig& process = rules_config_->processes[rule.process];
  const auto& dim_names = rules_config_->dimensions.names;

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
        labels["window"] = FormatPromDuration(rules_config_->windows[*rule.window]);
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
      break;  // re-sends: ResendFiring
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

std::string RuleEngine::SaveState(absl::Time wall_now) const {
  StateEncoder e;
  SaveTime(&e, wall_now);
  kpid::MutexLock lock(&mu_);
  e.Varint(instances_.size());
  for (const auto& [key, instance] : instances_) {
    e.String(instance.rule);
    for (const auto* map : {&instance.labels, &instance.annotations}) {
      e.Varint(map->size());
      for (const auto& [name, value] : *map) {
        e.String(name);
        e.String(value);
      }
    }
    instance.state.Save(&e);
  }
  return e.Take();
}

absl::StatusOr<AlertStateRestore> RuleEngine::RestoreState(uint32_t version,
                                                           absl::string_view payload,
                                                           absl::Time wall_now) {
  if (version != kAlertStateVersion) {
    return absl::DataLossError(absl::StrCat(
        "alert state version ", version, " is not one this kpid reads (", kAlertStateVersion, ")"));
  }
  StateDecoder d(payload);
  const absl::Time saved_at = LoadTime(&d);
  // An instance takes at least: 3 one-byte counts or lengths, then the
  // state's phase, value (8 bytes) and 5 times.
  const size_t count = d.Count(3 + 1 + 8 + 5);
  std::vector<Instance> loaded;
  loaded.reserve(count);
  for (size_t i = 0; i < count && d.ok(); ++i) {
    Instance& instance = loaded.emplace_back();
    instance.rule = d.String();
    for (auto* map : {&instance.labels, &instance.annotations}) {
      const size_t n = d.Count(2);
      for (size_t j = 0; j < n && d.ok(); ++j) {
        std::string name = d.String();
        (*map)[std::move(name)] = d.String();
      }
    }
    // Readers (Collect) need the alert name of every instance.
    if (instance.labels.count("alertname") == 0) d.Invalidate();
    if (!AlertState::Load(&d, &instance.state)) d.Invalidate();
  }
  if (saved_at == absl::InfinitePast()) d.Invalidate();
  if (!d.ok() || d.remaining() != 0) {
    return absl::DataLossError("malformed alert state (truncated or corrupt)");
  }

  AlertStateRestore result;
  result.downtime = std::max(wall_now - saved_at, absl::ZeroDuration());
  kpid::MutexLock eval_lock(&eval_mu_);
  std::set<std::string> ids;
  for (const auto& group : active_) {
    for (const ActiveRule& active : group) ids.insert(active.identity);
  }
  std::vector<AlertNotification> out;
  {
    kpid::MutexLock lock(&mu_);
    instances_.clear();
    for (Instance& instance : loaded) {
      if (ids.count(instance.rule) == 0) {
        ++result.dropped;
        result.resolved += ResolveOrphan(instance, wall_now, &out);
        continue;
      }
      instance.state.Resume(result.downtime);
      // Whether the last send before the restart was delivered is unknown:
      // send again at once (Alertmanager merges it into the alert it has).
      instance.last_sent = absl::InfinitePast();
      std::string key = Fingerprint(instance.labels);
      instances_[std::move(key)] = std::move(instance);
      ++result.restored;
    }
  }
  Send(std::move(out));
  return result;
}

void RuleEngine::RestoreStateFile(absl::Time wall_now) {
  const std::string& path = options_.state_path;
  std::error_code error;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path(), error);
  if (error) {
    log::Error("cannot create the state folder", {{"path", path}, {"error", error.message()}});
  }
  bool restored = false;
  bool rejected = false;
  // The current file, else its .prev; and .prev again when the current
  // file's envelope is sound but its payload is not.
  for (std::string next = path; !next.empty() && !restored;) {
    StateFileRead read = ReadStateFile(next, kAlertStateKind);
    next.clear();
    for (const absl::Status& bad : read.rejected) {
      log::Error("alert state file rejected", {{"error", bad.message()}});
      restores_corrupt_.fetch_add(1, std::memory_order_relaxed);
      rejected = true;
    }
    if (!read.file) break;
    absl::StatusOr<AlertStateRestore> r =
        RestoreState(read.file->version, read.file->payload, wall_now);
    if (!r.ok()) {
      log::Error("alert state file rejected",
                 {{"path", read.file->path}, {"error", r.status().message()}});
      restores_corrupt_.fetch_add(1, std::memory_order_relaxed);
      rejected = true;
      if (read.file->path == path) next = absl::StrCat(path, ".prev");
      continue;
    }
    restored = true;
    restores_restored_.fetch_add(1, std::memory_order_relaxed);
    restore_dropped_.fetch_add(r->dropped, std::memory_order_relaxed);
    log::Info("alert state restored", {{"path", read.file->path},
                                       {"alerts", absl::StrCat(r->restored)},
                                       {"dropped", absl::StrCat(r->dropped)},
                                       {"resolved", absl::StrCat(r->resolved)},
                                       {"downtime", absl::FormatDuration(r->downtime)}});
  }
  if (restored) return;
  if (rejected) {
    log::Warn("starting with no alert state", {{"path", path}});
  } else {
    restores_missing_.fetch_add(1, std::memory_order_relaxed);
    log::Info("no alert state to restore (first start)", {{"path", path}});
  }
}

void RuleEngine::Checkpoint(absl::Time wall_now) {
  const std::string payload = SaveState(wall_now);
  MutexLock lock(&checkpoint_mu_);
  const absl::Status s =
      WriteStateFile(options_.state_path, kAlertStateKind, kAlertStateVersion, payload);
  if (s.ok()) {
    checkpoints_ok_.fetch_add(1, std::memory_order_relaxed);
    if (checkpoint_failing_) log::Info("alert state checkpoints work again");
    checkpoint_failing_ = false;
    return;
  }
  checkpoints_failed_.fetch_add(1, std::memory_order_relaxed);
  // Once per failing spell: the metric counts every failure.
  if (!checkpoint_failing_) log::Error("alert state checkpoint failed", {{"error", s.message()}});
  checkpoint_failing_ = true;
}

std::vector<AlertView> RuleEngine::Alerts() const {
  kpid::MutexLock lock(&mu_);
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
  std::vector<prometheus::MetricFamily> families;
  families.push_back(std::move(family));
  if (options_.state_path.empty()) return families;

  auto count = [](const std::atomic<uint64_t>& n) {
    return static_cast<double>(n.load(std::memory_order_relaxed));
  };
  prometheus::MetricFamily restores = exporter::Family(
      "kpid_alert_state_restores_total",
      "Alert state restores at start: restored (a state file), corrupt (a file rejected), "
      "missing (no file).",
      prometheus::MetricType::Counter);
  exporter::AddCounter(&restores, {{"result", "restored"}}, count(restores_restored_));
  exporter::AddCounter(&restores, {{"result", "corrupt"}}, count(restores_corrupt_));
  exporter::AddCounter(&restores, {{"result", "missing"}}, count(restores_missing_));
  families.push_back(std::move(restores));
  prometheus::MetricFamily checkpoints =
      exporter::Family("kpid_alert_state_checkpoints_total", "Alert state checkpoints written.",
                       prometheus::MetricType::Counter);
  exporter::AddCounter(&checkpoints, {{"result", "ok"}}, count(checkpoints_ok_));
  exporter::AddCounter(&checkpoints, {{"result", "failed"}}, count(checkpoints_failed_));
  families.push_back(std::move(checkpoints));
  prometheus::MetricFamily dropped = exporter::Family(
      "kpid_alert_state_dropped_total",
      "Restored alert instances dropped because their rule is no longer configured.",
      prometheus::MetricType::Counter);
  exporter::AddCounter(&dropped, {}, count(restore_dropped_));
  families.push_back(std::move(dropped));
  return families;
}

}  // namespace kpid::alert
