// Evaluates the alert rules over the aggregator and drives each alert
// instance's state machine; sends firing and resolved alerts to an AlertSink.
//
//   RuleEngine engine({.config = &config, .rules = &rules, .shard_source = source,
//                      .window_clock = &clock, .sink = notifier});
//   engine.Start();        // its own thread
//   ...                    // /metrics renders engine.Collect(): kpid_alerts{alertname,state,...}
//   engine.Stop();
//
// Each group is evaluated every `interval`; in between, every 10 ms the
// engine checks each process's change count (exits and breaches) and
// re-evaluates that process's rules at once when it moved, so an SLA breach
// pages within milliseconds instead of waiting for the next tick.
//
// Instances: a rule without `stage` has one per stage (stage KPIs); `by`
// adds one per combination of those dimensions' values. A KPI that has no
// value (a ratio with a zero denominator) or whose window holds fewer than
// min_events gives no verdict (see AlertState). Window ends come from
// `window_clock` (wall time, or the latest event time with clock: event);
// alert times (`for`, keep_firing_for, startsAt) are wall time.
//
// Rules can be replaced while running (hot reload, ReplaceRules): the
// instances of every rule whose identity is unchanged keep their state
// (pending `for` progress, firing, keep_firing_for, last sent); a removed
// rule's firing instances are resolved (sent with endsAt = now) and dropped;
// a new rule starts with no instances. A rule's identity is its group, its
// alert name and what it measures and how its instances are labelled
// (process, stage, kpi, window, by, labels). Its tuning (threshold, op,
// min_events, for, keep_firing_for, annotations, the group interval) is not
// part of it: like Prometheus, which carries active alerts over by rule name
// and labels whatever the expression, a retuned rule keeps its alerts and the
// next evaluation judges them by the new tuning.
//
// Restarts (with `state_path`): Start restores the alert instances of the
// state file before the first evaluation, the engine thread checkpoints them
// every `checkpoint_interval` and Stop once more after the last evaluation.
// An instance keeps its phase and its episode's start (startsAt), so a
// firing alert is re-sent at the first evaluation after the restart with the
// same labels and startsAt and Alertmanager, which already has it, does not
// notify again; the `for` and keep_firing_for clocks stop while kpid is down
// (AlertState::Resume). Instances are matched to the rules by RuleIdentity,
// as on a reload; those of rules that are gone are dropped and counted, and
// the firing ones among them sent resolved, as a reload does. A
// file that cannot be used is logged and counted, and the engine starts
// from the previous checkpoint (<path>.prev) or with no alerts.
//
// State file payload, version 1 (daemon/common/state_codec.h alphabet):
//   saved_at (signed varint, Unix ns) | instance count (varint) | per
//   instance: rule identity (string) | labels (count, then name, value
//   strings) | annotations (likewise) | AlertState::Save: phase (varint),
//   value (double), active_at, pending_since, last_true, fired_at,
//   resolved_at (signed varints, Unix ns, INT64_MIN for none).
//
// Thread-safety: Evaluate* and ReplaceRules may be called from any thread;
// they are serialized (evaluate + send, or swap + send, happen as one step,
// so a notification computed under the old rules never reaches the sink
// after one computed under the new). Collect and Alerts may be called from
// any thread and see the instances of either the old or the new rules, never
// a mix (they copy under a mutex that the event path never takes).
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "daemon/aggregate/merged_reader.h"
#include "daemon/aggregate/shard_set.h"
#include "daemon/alert/alert_state.h"
#include "daemon/alert/notifier.h"
#include "daemon/alert/rule.h"
#include "daemon/cases/clock.h"
#include "daemon/cases/dimension_table.h"
#include "daemon/common/mutex.h"
#include "daemon/model/config.h"
#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"

namespace kpid::alert {

// What ReplaceRules did, for the logs.
struct RuleReplacement {
  size_t added = 0;     // rules with a new identity: start with no instances
  size_t removed = 0;   // rules whose identity is gone: their instances dropped
  size_t kept = 0;      // rules whose instances kept their state
  size_t resolved = 0;  // firing instances of removed rules, sent resolved
};

// What RestoreState did, for the logs.
struct AlertStateRestore {
  size_t restored = 0;      // instances whose rule is still there
  size_t dropped = 0;       // instances of rules that are gone
  size_t resolved = 0;      // firing ones of those, sent resolved
  absl::Duration downtime;  // from the checkpoint to the restore
};

// A rule's identity across rule replacements and restarts (see RuleEngine):
// group, alert name, process, stage, kpi, window, by and labels, by name;
// not the tuning.
std::string RuleIdentity(const model::Config& config, const RuleGroup& group,
                         const AlertRule& rule);

// The state file's kind and the payload version this kpid writes.
inline constexpr absl::string_view kAlertStateKind = "alerts";
inline constexpr uint32_t kAlertStateVersion = 1;

// One alert instance as readers see it.
struct AlertView {
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> annotations;
  AlertPhase phase;
  double value;
  absl::Time active_at;
};

class RuleEngine : public prometheus::Collectable {
 public:
  struct Options {
    const model::Config* config = nullptr;
    const RuleSet* rules = nullptr;  // must outlive the engine or the next ReplaceRules
    // The current shards, taken once per evaluation pass (the daemon's
    // engines come and go with partitions).
    aggregate::ShardSource shard_source;
    const cases::Clock* window_clock = nullptr;
    AlertSink* sink = nullptr;  // may be null: states only
    absl::Duration resend_interval = absl::Minutes(1);
    std::string generator_url;
    // Durable alert state (see above); empty: none.
    std::string state_path = "";  // = "": designated initializers may leave it out
    absl::Duration checkpoint_interval = absl::Seconds(10);
  };

  explicit RuleEngine(Options options);
  ~RuleEngine() override;  // Stop()

  // Restores the state file (with state_path), then starts the engine thread.
  void Start();
  // Stops the engine thread, then checkpoints (with state_path). Idempotent.
  void Stop();

  // Evaluates every rule now (tests; the engine thread uses the finer calls).
  void EvaluateAll(absl::Time wall_now);
  // Groups whose interval has come, and processes whose data changed.
  void EvaluateDue(absl::Time wall_now);

  // Evaluates with `rules` from now on, keeping the state of unchanged rules
  // (see above). `rules` must have been loaded against the engine's config
  // (same processes, stages, windows and dimensions). The removed rules'
  // resolves go to the sink before this returns.
  RuleReplacement ReplaceRules(RuleSet rules, absl::Time wall_now);
  // The same with rules loaded against `config`, which a reload may have
  // changed (processes, stages, dimensions): the config the engines are
  // shaped by from now on (EngineRegistry::config()), the same object the
  // shard sets carry. Rules are only evaluated over a shard set of their
  // own config (ShardSet::config, or Options::config for a set without),
  // so between a reshape and the rules' replacement no pass reads one
  // shape with rules of the other; those passes are skipped.
  RuleReplacement ReplaceRules(RuleSet rules, std::shared_ptr<const model::Config> config,
                               absl::Time wall_now);

  // The delivery changed (new Alertmanagers, a new notifier): re-send every
  // firing alert now, so a new Alertmanager knows it without waiting for the
  // next resend, and re-send every `resend_interval` from now on.
  void RedeliverFiring(absl::Duration resend_interval, absl::Time wall_now);

  // The alert instances as a state file payload (kAlertStateVersion).
  std::string SaveState(absl::Time wall_now) const;
  // Replaces the alert instances by those of a payload SaveState wrote
  // (`version` from the state file), keeping those whose rule is still there;
  // DataLoss (and no change) when the payload is malformed or of a newer
  // version. Firing instances are re-sent at the next evaluation; the firing
  // instances of rules that are gone are sent resolved before this returns.
  absl::StatusOr<AlertStateRestore> RestoreState(uint32_t version, absl::string_view payload,
                                                 absl::Time wall_now);
  // Restores `state_path` (or its .prev), logging and counting what happened.
  void RestoreStateFile(absl::Time wall_now);
  // Writes the state to `state_path`, logging and counting failures.
  void Checkpoint(absl::Time wall_now);

  std::vector<AlertView> Alerts() const;
  // kpid_alerts{alertname, state, process, stage, <by dims>} 1 for every
  // pending or firing instance, like Prometheus' ALERTS. With state_path
  // also kpid_alert_state_restores_total{result="restored|corrupt|missing"}
  // (a state file restored; a file rejected as corrupt or unreadable; no
  // file at all), kpid_alert_state_checkpoints_total{result="ok|failed"} and
  // kpid_alert_state_dropped_total (restored instances whose rule is gone).
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  struct Instance {
    std::string rule;                           // RuleIdentity of its rule
    std::map<std::string, std::string> labels;  // identity
    AlertState state;
    std::map<std::string, std::string> annotations;
    absl::Time last_sent = absl::InfinitePast();
  };

  // A rule with its identity, computed once per rule set.
  struct ActiveRule {
    const AlertRule* rule;
    std::string identity;
  };

  void InstallRules(const RuleSet* rules) ABSL_EXCLUSIVE_LOCKS_REQUIRED(eval_mu_);
  // Whether `set` is shaped by the rules' config (see ReplaceRules); if so,
  // seen_changes_ follows its process count.
  bool SameShape(const aggregate::ShardSet& set) ABSL_EXCLUSIVE_LOCKS_REQUIRED(eval_mu_);
  void EvaluateRule(const ActiveRule& active, const aggregate::ShardSet& set,
                    const aggregate::MergedReader& reader, absl::Time wall_now,
                    std::vector<AlertNotification>* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(eval_mu_, mu_);
  void Apply(const ActiveRule& active, std::map<std::string, std::string> labels, Verdict verdict,
             double value, absl::Time wall_now, std::vector<AlertNotification>* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(eval_mu_, mu_);
  AlertNotification Notification(const Instance& instance, absl::Time wall_now) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(eval_mu_);
  // Sends `instance` (of a rule that is gone) resolved if it was firing.
  bool ResolveOrphan(const Instance& instance, absl::Time wall_now,
                     std::vector<AlertNotification>* out) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(eval_mu_);
  // Firing instances not sent for a resend interval, evaluated or not.
  void ResendFiring(absl::Time wall_now, std::vector<AlertNotification>* out)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(eval_mu_, mu_);
  void Send(std::vector<AlertNotification> out) ABSL_EXCLUSIVE_LOCKS_REQUIRED(eval_mu_);
  void Run();

  Options options_;
  aggregate::ShardSource shards_;

  // Serializes evaluations and rule replacements (taken before mu_).
  kpid::Mutex eval_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  const RuleSet* rules_ ABSL_GUARDED_BY(eval_mu_);
  // What rules_ was loaded against (not owned until a replacement brings one).
  std::shared_ptr<const model::Config> rules_config_ ABSL_GUARDED_BY(eval_mu_);
  std::unique_ptr<const RuleSet> owned_rules_ ABSL_GUARDED_BY(eval_mu_);   // after a replacement
  std::vector<std::vector<ActiveRule>> active_ ABSL_GUARDED_BY(eval_mu_);  // per group, per rule
  std::vector<absl::Time> next_due_ ABSL_GUARDED_BY(eval_mu_);             // per group
  std::vector<uint64_t> seen_changes_ ABSL_GUARDED_BY(eval_mu_);           // per process
  uint64_t seen_generation_ ABSL_GUARDED_BY(eval_mu_) = 0;                 // of the shard set
  absl::Duration resend_interval_ ABSL_GUARDED_BY(eval_mu_);

  mutable kpid::Mutex mu_;
  std::map<std::string, Instance> instances_ ABSL_GUARDED_BY(mu_);  // by label fingerprint

  std::atomic<bool> stop_{false};
  std::thread thread_;

  // Serializes checkpoints (the state file's writes are not thread-safe).
  kpid::Mutex checkpoint_mu_;
  bool checkpoint_failing_ ABSL_GUARDED_BY(checkpoint_mu_) = false;  // logs a failure once
  std::atomic<uint64_t> restores_restored_{0};
  std::atomic<uint64_t> restores_corrupt_{0};
  std::atomic<uint64_t> restores_missing_{0};
  std::atomic<uint64_t> checkpoints_ok_{0};
  std::atomic<uint64_t> checkpoints_failed_{0};
  std::atomic<uint64_t> restore_dropped_{0};
};

}  // namespace kpid::alert
